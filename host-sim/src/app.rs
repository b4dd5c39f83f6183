//! The commands: `anonymise` (files, folders, videos, webcams), `info`, `eval` and `synth`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use veil_core::detect::Class;

use crate::batch::{self, Job, Kind, PlanOptions};
use crate::cli::{AnonymiseArgs, Cli, Command, DetectorChoice, InfoArgs, PipelineArgs};
use crate::detectors::{
    self, AnyDetector, Decoder, DetectorOptions, CENTERFACE_FILE, CLP_FILE, RETINAFACE_FILE,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::report::{hex, print_json, Failure, StreamFile, Summary};
use crate::{io_image, io_video};

/// `println!` that ignores a closed standard output (e.g. `veil info | head`).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// Run a parsed command line. Messages go to standard error; `--json` output to standard out.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Anonymise(a) => anonymise(&a),
        Command::Info(i) => info(&i),
        Command::Eval(e) => crate::eval::command(&e),
        Command::Synth(s) => crate::synth::command(&s),
    }
}

fn models_dir(opt: &Option<PathBuf>) -> PathBuf {
    opt.clone().unwrap_or_else(detectors::default_models_dir)
}

/// Open the detector the options ask for.
pub fn open_detector(a: &PipelineArgs) -> Result<AnyDetector> {
    let config = a.config()?;
    let min = Class::ALL
        .iter()
        .filter(|c| config.filter.enabled[c.index()])
        .map(|c| config.filter.threshold[c.index()])
        .min()
        .unwrap_or(0);
    let opts = DetectorOptions {
        model: a.model.clone(),
        models_dir: models_dir(&a.models_dir),
        threads: a.threads,
        detect_size: a.detect_scale.as_deref().map(crate::cli::parse_size).transpose()?,
        // Slightly below the pipeline's own threshold, which decides.
        min_score: (f32::from(min) / 65535.0 - 1e-4).max(0.0),
    };
    detectors::open_for(a.detector, &opts, config.filter.enabled)
}

fn progress_style(bar: bool) -> ProgressStyle {
    let t = if bar {
        "{spinner} {prefix} [{bar:30}] {pos}/{len} {msg} ({per_sec}, eta {eta})"
    } else {
        "{spinner} {prefix} {pos} {msg} ({per_sec})"
    };
    ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

fn anonymise(a: &AnonymiseArgs) -> Result<()> {
    let started = Instant::now();
    let live = a.camera.is_some();
    let config = a.config(live)?;
    let detector = open_detector(&a.pipeline)?;
    let det_name = detector.name();
    let mut engine = Engine::new(detector, config, a.every)?;
    if let Some(p) = &a.boxes {
        engine.set_boxes(StreamFile::create(p)?);
    }
    if let Some(p) = &a.evidence {
        engine.set_evidence(StreamFile::create(p)?);
    }
    let multi = MultiProgress::with_draw_target(if a.pipeline.quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let mut summary = Summary {
        detector: det_name.to_string(),
        model_id: hex(&veil_core::Detector::model_id(engine.detector())),
        config_hash: hex(&engine.config().hash()),
        inputs: 0,
        succeeded: 0,
        failed: 0,
        ignored: 0,
        other_shards: 0,
        outputs: Vec::new(),
        failures: Vec::new(),
        stats: Default::default(),
        chain_next_seq: 0,
        chain_head: String::new(),
        seconds: 0.0,
        fps: 0.0,
        dry_run: a.dry_run,
    };
    if let Some(index) = a.camera {
        summary.inputs = 1;
        let r = crate::camera::run(index, a, &mut engine, &multi);
        match r {
            Ok(out) => {
                summary.succeeded = 1;
                summary.outputs.extend(out.map(|p| p.display().to_string()));
            }
            Err(e) => {
                let _ = engine.finish_reports();
                return Err(e);
            }
        }
    } else {
        let plan = batch::plan(
            &a.inputs,
            a.output.as_deref(),
            &PlanOptions {
                shard: a.pipeline.shard.as_deref().map(crate::cli::parse_shard).transpose()?,
                allow_inside_input: a.allow_inside_input,
                dry_run: a.dry_run,
            },
        )?;
        summary.inputs = plan.jobs.len();
        summary.ignored = plan.ignored;
        summary.other_shards = plan.other_shards;
        let files = multi.add(ProgressBar::new(plan.jobs.len() as u64));
        files.set_style(progress_style(true));
        files.set_prefix("files");
        let mut preview = open_preview_if(a, &plan.jobs)?;
        for job in &plan.jobs {
            files.set_message(job.rel.clone());
            match process_job(job, a, &mut engine, &multi, preview.as_mut()) {
                Ok(out) => {
                    summary.succeeded += 1;
                    if let Some(o) = out {
                        summary.outputs.push(o.display().to_string());
                    }
                }
                Err(e) => {
                    multi.suspend(|| eprintln!("veil: error: {e}"));
                    summary.failed += 1;
                    summary
                        .failures
                        .push(Failure { input: job.input.display().to_string(), error: e.to_string() });
                }
            }
            files.inc(1);
        }
        files.finish_and_clear();
        for p in engine.finish_reports()? {
            summary.outputs.push(p.display().to_string());
        }
        // Everything is written; the window keeps the last frame on screen.
        if let Some(p) = preview.as_mut() {
            p.hold(a.preview_hold);
        }
    }
    for p in engine.finish_reports()? {
        summary.outputs.push(p.display().to_string());
    }
    let secs = started.elapsed().as_secs_f64();
    summary.chain_next_seq = engine.chain().next_seq();
    summary.chain_head = hex(&engine.chain().head());
    summary.stats = std::mem::take(&mut engine.stats);
    summary.seconds = secs;
    summary.fps = if secs > 0.0 { summary.stats.frames as f64 / secs } else { 0.0 };
    if a.pipeline.json {
        print_json(&summary)?;
    } else if !a.pipeline.quiet {
        let s = &summary.stats;
        let outcomes: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!(
            "veil: {} of {} inputs done ({} failed), {} frames, {} detections, {} regions redacted [{}], \
             {:.1} s, {:.2} frames/s{}",
            summary.succeeded,
            summary.inputs,
            summary.failed,
            s.frames,
            s.detections,
            s.regions,
            outcomes.join(", "),
            secs,
            summary.fps,
            if a.dry_run { " (dry run: nothing written)" } else { "" }
        );
    }
    if summary.failed > 0 {
        return Err(Error::BatchFailed { failed: summary.failed, total: summary.inputs });
    }
    Ok(())
}

#[cfg(feature = "preview")]
type PreviewWindow = crate::preview::Preview;
#[cfg(not(feature = "preview"))]
type PreviewWindow = crate::preview::NoPreview;

fn open_preview_if(a: &AnonymiseArgs, jobs: &[Job]) -> Result<Option<PreviewWindow>> {
    if !a.preview {
        return Ok(None);
    }
    if !jobs.iter().any(|j| j.kind == Kind::Video) {
        return Err(Error::usage(
            "--preview",
            "the preview shows videos and webcams; no video among the inputs",
        ));
    }
    PreviewWindow::open("veil preview").map(Some)
}

fn process_job(
    job: &Job,
    a: &AnonymiseArgs,
    engine: &mut Engine,
    multi: &MultiProgress,
    preview: Option<&mut PreviewWindow>,
) -> Result<Option<PathBuf>> {
    if let Some(out) = &job.output {
        if !a.dry_run {
            batch::check_output(out, a.force)?;
        }
    }
    let mut stream = engine.stream(&job.rel)?;
    let dest = if a.dry_run { None } else { job.output.as_deref() };
    let work = |tmp: Option<&Path>| -> Result<u64> {
        match job.kind {
            Kind::Image => io_image::process_image(&job.input, tmp, &mut stream),
            Kind::Video => {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(progress_style(true));
                bar.set_prefix("frames");
                let mut hook = preview.map(|p| move |buf: &[u8], l, r: &_| p.show(buf, l, r));
                let r = io_video::process_video(
                    &job.input,
                    tmp,
                    &mut stream,
                    a.video_format,
                    &bar,
                    hook.as_mut().map(|h| h as &mut io_video::FrameHook<'_>),
                );
                bar.finish_and_clear();
                r
            }
        }
    };
    match dest {
        Some(d) => {
            batch::write_via_temp(d, |tmp| work(Some(tmp)))?;
            Ok(Some(d.to_path_buf()))
        }
        None => {
            work(None)?;
            Ok(None)
        }
    }
}

#[derive(Serialize)]
struct DetectorInfo {
    name: &'static str,
    available: bool,
    model: Option<String>,
    model_id: Option<String>,
    note: String,
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    ort_library: String,
    ort_status: String,
    models_dir: String,
    detectors: Vec<DetectorInfo>,
    features: Vec<&'static str>,
}

fn info(i: &InfoArgs) -> Result<()> {
    let ort_path = detectors::ort_library_path();
    let ort_status = match detectors::init_ort() {
        Ok(()) => "loaded".to_string(),
        Err(e) => e.to_string(),
    };
    let dir = models_dir(&i.models_dir);
    let builtin = veil_core::nn::Model::parse(detectors::BUILTIN_FACE)
        .and_then(|f| veil_core::nn::Model::parse(detectors::BUILTIN_PLATE).map(|p| (f.id(), p.id())));
    let mut dets = vec![match builtin {
        Ok((face, plate)) => DetectorInfo {
            name: "builtin",
            available: true,
            model: Some("models/int8/retinaface-mnet025.vlnn + models/int8/clp-det.vlnn (built in)".into()),
            model_id: Some(format!("face {} plate {}", hex(&face), hex(&plate))),
            note: "int8 engine, no set-up".into(),
        },
        Err(e) => DetectorInfo {
            name: "builtin",
            available: false,
            model: None,
            model_id: None,
            note: format!("built-in model blob unusable: {e}"),
        },
    }];
    for (name, file, dec) in [
        ("centerface", CENTERFACE_FILE, Decoder::CenterFace),
        ("retinaface", RETINAFACE_FILE, Decoder::RetinaFace),
        ("clp-det", CLP_FILE, Decoder::ClpDet),
    ] {
        let lookup = DetectorOptions {
            model: None,
            models_dir: dir.clone(),
            threads: 1,
            detect_size: None,
            min_score: 0.0,
        };
        let path = detectors::model_path(&lookup, file);
        let canonical = std::fs::read(&path)
            .map_err(|e| Error::io(&path, e))
            .and_then(|b| detectors::canonical_model(dec, b));
        let (available, model_id, note) = match canonical {
            Err(Error::Model { msg, .. }) => (false, None, format!("unusable model: {msg}")),
            Ok(bytes) => (
                ort_status == "loaded",
                Some(hex(&detectors::model_id(dec, &bytes))),
                if ort_status == "loaded" {
                    "ready".to_string()
                } else {
                    "needs the ONNX Runtime library".into()
                },
            ),
            Err(_) => (false, None, Error::ModelMissing { path: path.clone() }.to_string()),
        };
        dets.push(DetectorInfo { name, available, model: Some(path.display().to_string()), model_id, note });
    }
    let info = Info {
        version: env!("CARGO_PKG_VERSION"),
        ort_library: ort_path.display().to_string(),
        ort_status,
        models_dir: dir.display().to_string(),
        detectors: dets,
        features: [
            cfg!(feature = "camera").then_some("camera"),
            cfg!(feature = "preview").then_some("preview"),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    if i.json {
        return print_json(&info);
    }
    outln!("veil {}", info.version);
    outln!("ONNX Runtime: {} ({})", info.ort_library, info.ort_status);
    outln!("models: {}", info.models_dir);
    outln!("detectors:");
    for d in &info.detectors {
        outln!(
            "  {:<11} {:<13} {}{}",
            d.name,
            if d.available { "available" } else { "unavailable" },
            d.model_id.as_deref().map(|m| format!("model id {m}; ")).unwrap_or_default(),
            d.note
        );
    }
    outln!("features: {}", info.features.join(", "));
    Ok(())
}

/// The detector the options select, for callers that only need its name.
pub fn detector_name(c: DetectorChoice) -> &'static str {
    match c {
        DetectorChoice::Builtin => "builtin",
        DetectorChoice::Centerface => "centerface",
        DetectorChoice::Retinaface => "retinaface",
        DetectorChoice::ClpDet => "clp-det",
    }
}
