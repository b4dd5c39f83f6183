//! End-to-end tests of the `veil` binary: images of each format, folders, videos, failures.

mod common;

use common::*;
use image::ImageFormat;
use veil_core::evidence::{self, Chain, RECORD_LEN};

fn fill_args(det: [&str; 2]) -> Vec<&str> {
    let mut v = det.to_vec();
    v.extend(["--mode", "fill", "--color", "ff00ff", "--shape", "rect"]);
    v
}

#[test]
fn images_of_each_format_keep_format_and_redact_faces() {
    let Some(det) = centerface() else { return };
    let dir = scratch("formats");
    let src = rgb(&face_jpg());
    let formats = [
        ("png", ImageFormat::Png),
        ("jpg", ImageFormat::Jpeg),
        ("bmp", ImageFormat::Bmp),
        ("tiff", ImageFormat::Tiff),
        ("webp", ImageFormat::WebP),
        ("gif", ImageFormat::Gif),
    ];
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for (ext, f) in formats {
        src.save_with_format(input.join(format!("face.{ext}")), f).unwrap();
    }
    let out = dir.join("out");
    let mut args = vec!["anonymise", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--json"];
    args.extend(fill_args(det));
    let o = run(&mut veil(&args));
    assert!(o.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["succeeded"], 6);
    assert_eq!(summary["stats"]["frames"], 6);
    for (ext, f) in formats {
        let p = out.join(format!("face.{ext}"));
        let reader = image::ImageReader::open(&p).unwrap().with_guessed_format().unwrap();
        assert_eq!(reader.format(), Some(f), "{ext} keeps its format");
        let img = reader.decode().unwrap().to_rgb8();
        assert_eq!(img.dimensions(), src.dimensions());
        let orig = rgb(&input.join(format!("face.{ext}")));
        // Lossy formats (JPEG, GIF's palette) get a tolerance.
        let tol = if matches!(f, ImageFormat::Jpeg | ImageFormat::Gif) { 60 } else { 0 };
        for (x, y) in FACE_CENTRES {
            assert!(
                near(img.get_pixel(x, y).0, MAGENTA, tol),
                "{ext}: face at ({x},{y}) filled: {:?}",
                img.get_pixel(x, y)
            );
            assert!(!near(orig.get_pixel(x, y).0, MAGENTA, 60), "{ext}: input is not magenta there");
        }
        let (bx, by) = BACKGROUND;
        assert!(
            near(img.get_pixel(bx, by).0, orig.get_pixel(bx, by).0, if tol == 0 { 0 } else { 30 }),
            "{ext} background kept"
        );
    }
    assert!(!tree(&out).iter().any(|f| f.contains("veil-tmp")), "no temporary files left");
}

#[test]
fn folder_tree_is_mirrored_and_non_media_ignored() {
    let det = BUILTIN;
    let dir = scratch("tree");
    let input = dir.join("photos");
    std::fs::create_dir_all(input.join("2024/june")).unwrap();
    std::fs::create_dir_all(input.join("empty")).unwrap();
    std::fs::copy(face_jpg(), input.join("2024/june/party.jpg")).unwrap();
    rgb(&face_jpg()).save(input.join("2024/group.png")).unwrap();
    std::fs::write(input.join("notes.txt"), "not an image").unwrap();
    let out = dir.join("anon");
    let mut args = vec!["anonymise", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--json"];
    args.extend(fill_args(det));
    let o = run(&mut veil(&args));
    assert!(o.status.success());
    assert_eq!(tree(&out), ["2024/group.png", "2024/june/party.jpg"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["ignored"], 1);
    assert_eq!(tree(&input).len(), 3, "input tree untouched");
    // Two inputs: each goes under its own name.
    let out2 = dir.join("anon2");
    let single = dir.join("single.jpg");
    std::fs::copy(face_jpg(), &single).unwrap();
    let mut args =
        vec!["anonymise", input.to_str().unwrap(), single.to_str().unwrap(), "-o", out2.to_str().unwrap()];
    args.extend(fill_args(det));
    assert!(run(&mut veil(&args)).status.success());
    assert_eq!(tree(&out2), ["photos/2024/group.png", "photos/2024/june/party.jpg", "single.jpg"]);
}

#[test]
fn output_inside_input_needs_permission_and_inputs_are_never_overwritten() {
    let det = BUILTIN;
    let dir = scratch("inside");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(face_jpg(), input.join("a.jpg")).unwrap();
    let inside = input.join("anon");
    let mut args = vec!["anonymise", input.to_str().unwrap(), "-o", inside.to_str().unwrap()];
    args.extend(fill_args(det));
    let o = run(&mut veil(&args));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--allow-inside-input"));
    assert!(!inside.exists());
    args.push("--allow-inside-input");
    assert!(run(&mut veil(&args)).status.success());
    assert_eq!(tree(&input), ["a.jpg", "anon/a.jpg"]);
    // A second run does not walk into its own output folder, and refuses to replace outputs.
    let o = run(&mut veil(&args));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("output exists"));
    args.push("--force");
    assert!(run(&mut veil(&args)).status.success());
    assert_eq!(tree(&input), ["a.jpg", "anon/a.jpg"]);

    // Same file as input and output: refused even with --force.
    let f = input.join("a.jpg");
    let before = std::fs::read(&f).unwrap();
    let mut args = vec!["anonymise", f.to_str().unwrap(), "-o", f.to_str().unwrap(), "--force"];
    args.extend(fill_args(det));
    let o = run(&mut veil(&args));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite an input"));
    assert_eq!(std::fs::read(&f).unwrap(), before);
}

#[test]
fn corrupt_and_truncated_files_are_named_and_the_batch_goes_on() {
    let det = BUILTIN;
    let dir = scratch("corrupt");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(face_jpg(), input.join("good.jpg")).unwrap();
    let jpg = std::fs::read(face_jpg()).unwrap();
    std::fs::write(input.join("cut.jpg"), &jpg[..jpg.len() / 2]).unwrap();
    let mut png = Vec::new();
    rgb(&face_jpg()).write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png).unwrap();
    std::fs::write(input.join("cut.png"), &png[..png.len() / 3]).unwrap();
    std::fs::write(input.join("noise.png"), (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>())
        .unwrap();
    let mut gif = Vec::new();
    rgb(&face_jpg()).write_to(&mut std::io::Cursor::new(&mut gif), ImageFormat::Gif).unwrap();
    std::fs::write(input.join("cut.gif"), &gif[..gif.len() / 2]).unwrap();
    std::fs::write(input.join("empty.bmp"), b"").unwrap();
    let out = dir.join("out");
    let mut args = vec!["anonymise", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--json"];
    args.extend(fill_args(det));
    let o = run(&mut veil(&args));
    assert_eq!(o.status.code(), Some(1), "non-zero exit after the batch");
    let err = String::from_utf8_lossy(&o.stderr);
    for name in ["cut.jpg", "cut.png", "noise.png", "cut.gif", "empty.bmp"] {
        assert!(err.lines().any(|l| l.contains(name) && l.contains("cannot decode")), "{name} reported");
    }
    assert!(!err.contains("panicked"));
    assert_eq!(tree(&out), ["good.jpg"], "the good file is done, nothing half-written");
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((s["succeeded"].as_u64(), s["failed"].as_u64()), (Some(1), Some(5)));
}

#[test]
fn evidence_chain_and_boxes_cover_every_frame() {
    let Some(det) = centerface() else { return };
    let dir = scratch("evidence");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for n in ["a.jpg", "b.jpg", "c.jpg"] {
        std::fs::copy(face_jpg(), input.join(n)).unwrap();
    }
    let ev = dir.join("chain.bin");
    let boxes = dir.join("boxes.jsonl");
    let outdir = dir.join("out");
    let mut args = vec![
        "anonymise",
        input.to_str().unwrap(),
        "-o",
        outdir.to_str().unwrap(),
        "--evidence",
        ev.to_str().unwrap(),
        "--boxes",
        boxes.to_str().unwrap(),
    ];
    args.extend(fill_args(det));
    assert!(run(&mut veil(&args)).status.success());
    let bytes = std::fs::read(&ev).unwrap();
    assert_eq!(bytes.len(), 3 * RECORD_LEN);
    let head = evidence::verify_bytes(Chain::new(), &bytes).expect("chain verifies");
    assert_eq!(head.next_seq(), 3);
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&boxes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["record"]["seq"], i as u64);
        // One synthetic timeline for the run: each file starts 1 µs after the previous one.
        assert_eq!(l["record"]["time_us"], i as u64);
        assert_eq!(l["record"]["outcome"], "normal");
        let dets = l["detections"].as_array().unwrap();
        assert!(dets.len() >= 4, "faces found: {}", dets.len());
        assert!(dets.iter().all(|d| d["score"].as_f64().unwrap() >= 0.5));
        assert_eq!(l["regions"].as_array().unwrap().len(), l["record"]["regions"].as_u64().unwrap() as usize);
        let rec = evidence::Record::parse(&bytes[i * RECORD_LEN..(i + 1) * RECORD_LEN]).unwrap();
        assert_eq!(l["record"]["digest"], veil_sim::report::hex(&rec.digest()));
    }
    // Tracks never leak from one file into the next: each file starts with fresh track ids 0..
    assert_eq!(lines[1]["tracks"][0]["hits"], 1);
}

#[test]
fn exclusion_zones_thresholds_and_classes_control_redaction() {
    let Some(det) = centerface() else { return };
    let dir = scratch("filters");
    let src = dir.join("face.png");
    rgb(&face_jpg()).save(&src).unwrap();
    let run_with = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec!["anonymise", src.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(fill_args(det));
        args.extend(extra);
        assert!(run(&mut veil(&args)).status.success());
        rgb(&out)
    };
    let orig = rgb(&src);
    // The whole image excluded, a threshold nothing reaches, or only plates: output == input.
    for (name, extra) in [
        ("excluded.png", &["--exclude", "0,0,500,332"][..]),
        ("thresh.png", &["--thresh", "face=1.0"][..]),
        ("plates.png", &["--classes", "plate"][..]),
    ] {
        assert_eq!(run_with(name, extra), orig, "{name}");
    }
    // Exclude only the right half: the left face is filled, the right one is not.
    let half = run_with("half.png", &["--exclude", "250,0,250,332"]);
    assert!(near(half.get_pixel(76, 175).0, MAGENTA, 0));
    assert_eq!(half.get_pixel(301, 201), orig.get_pixel(301, 201));
    // --min-size above every face: untouched.
    assert_eq!(run_with("min.png", &["--min-size", "200"]), orig);
}

#[test]
fn pixelate_blur_and_noise_change_the_faces_only() {
    let Some(det) = centerface() else { return };
    let dir = scratch("modes");
    let src = dir.join("face.png");
    rgb(&face_jpg()).save(&src).unwrap();
    let orig = rgb(&src);
    for mode in ["pixelate", "blur", "noise"] {
        let out = dir.join(format!("{mode}.png"));
        let o = run(&mut veil(&[
            "anonymise",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            det[0],
            det[1],
            "--mode",
            mode,
        ]));
        assert!(o.status.success());
        let img = rgb(&out);
        let (x, y) = FACE_CENTRES[0];
        let changed = (y - 10..y + 10)
            .flat_map(|yy| (x - 10..x + 10).map(move |xx| (xx, yy)))
            .filter(|&(xx, yy)| img.get_pixel(xx, yy) != orig.get_pixel(xx, yy))
            .count();
        assert!(changed > 200, "{mode}: {changed} of 400 face pixels changed");
        assert_eq!(img.get_pixel(BACKGROUND.0, BACKGROUND.1), orig.get_pixel(BACKGROUND.0, BACKGROUND.1));
    }
}

#[test]
fn shards_split_a_batch_without_overlap() {
    let det = BUILTIN;
    let dir = scratch("shards");
    let input = dir.join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    let small = image::imageops::resize(&rgb(&face_jpg()), 100, 75, image::imageops::FilterType::Triangle);
    for i in 0..8 {
        small.save(input.join(if i % 2 == 0 { format!("{i}.png") } else { format!("sub/{i}.png") })).unwrap();
    }
    let mut all = Vec::new();
    for shard in ["1/3", "2/3", "3/3"] {
        let out = dir.join(format!("out{}", &shard[..1]));
        let mut args =
            vec!["anonymise", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--shard", shard];
        args.extend(fill_args(det));
        assert!(run(&mut veil(&args)).status.success());
        // The same shard twice gives the same files.
        let again = dir.join(format!("again{}", &shard[..1]));
        let mut args2 =
            vec!["anonymise", input.to_str().unwrap(), "-o", again.to_str().unwrap(), "--shard", shard];
        args2.extend(fill_args(det));
        assert!(run(&mut veil(&args2)).status.success());
        assert_eq!(tree(&out), tree(&again));
        all.extend(tree(&out));
    }
    all.sort();
    assert_eq!(all, tree(&input), "every file in exactly one shard");
    let o =
        run(&mut veil(&["anonymise", input.to_str().unwrap(), "-o", "x", "--shard", "4/3", det[0], det[1]]));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--shard"));
}

#[test]
fn dry_run_writes_no_media() {
    let Some(det) = centerface() else { return };
    let dir = scratch("dry");
    let out = dir.join("out");
    let o = run(&mut veil(&[
        "anonymise",
        face_jpg().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--dry-run",
        "--json",
        det[0],
        det[1],
    ]));
    assert!(o.status.success());
    assert!(!out.exists());
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["dry_run"], true);
    assert!(s["stats"]["detections"].as_u64().unwrap() >= 4);
}

#[test]
fn video_keeps_frames_rate_audio_and_metadata_and_is_redacted() {
    let Some(det) = centerface() else { return };
    if !have("ffmpeg") || !have("ffprobe") {
        println!("skipped: ffmpeg/ffprobe not installed (run `cargo xtask setup`)");
        return;
    }
    let dir = scratch("video");
    let input = dir.join("clip.mp4");
    make_face_video(&input, "2");
    for (fmt, every) in [("rgb24", "1"), ("nv12", "5"), ("yuyv422", "1")] {
        let out = dir.join(format!("out-{fmt}.mp4"));
        let boxes = dir.join(format!("{fmt}.jsonl"));
        let mut args = vec![
            "anonymise",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--video-format",
            fmt,
            "--every",
            every,
            "--boxes",
            boxes.to_str().unwrap(),
        ];
        args.extend(fill_args(det));
        assert!(run(&mut veil(&args)).status.success(), "{fmt}");
        let (a, b) = (streams(&input), streams(&out));
        assert_eq!(a, b, "{fmt}: same streams, frame counts and rates");
        assert_eq!(b[0], ("video".into(), "50".into(), "25/1".into()));
        assert_eq!(b[1].0, "audio");
        let title = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format_tags=title", "-of", "csv=p=0"])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&title.stdout).trim(), "veil-test");
        // Frame 30 (a coasted frame with --every 5) is redacted at the faces, kept elsewhere.
        let png = dir.join(format!("{fmt}-f30.png"));
        let st = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-i"])
            .arg(&out)
            .args(["-vf", "select=eq(n\\,31)", "-frames:v", "1"])
            .arg(&png)
            .status()
            .unwrap();
        assert!(st.success());
        let f = rgb(&png);
        let orig = rgb(&face_jpg());
        for (x, y) in FACE_CENTRES {
            assert!(
                near(f.get_pixel(x, y).0, MAGENTA, 40),
                "{fmt}: face ({x},{y}) = {:?}",
                f.get_pixel(x, y)
            );
        }
        let (bx, by) = BACKGROUND;
        assert!(near(f.get_pixel(bx, by).0, orig.get_pixel(bx, by).0, 40), "{fmt}: background kept");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&boxes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 50);
        let coasted = lines.iter().filter(|l| l["record"]["outcome"] == "coasted").count();
        assert_eq!(coasted, if every == "5" { 40 } else { 0 }, "{fmt}");
    }
}

#[test]
fn truncated_video_is_a_clear_error() {
    let Some(det) = centerface() else { return };
    if !have("ffmpeg") {
        println!("skipped: ffmpeg not installed");
        return;
    }
    let dir = scratch("video-cut");
    let full = dir.join("full.mp4");
    make_face_video(&full, "1");
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = dir.join("garbage.mkv");
    std::fs::write(&garbage, b"definitely not a matroska file").unwrap();
    for input in [&cut, &garbage] {
        let out = dir.join("out.mp4");
        let mut args = vec!["anonymise", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(fill_args(det));
        let o = run(&mut veil(&args));
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        let name = input.file_name().unwrap().to_str().unwrap();
        assert!(err.lines().any(|l| l.contains(name) && l.contains("cannot decode")), "{name} named");
        assert!(!out.exists() && tree(&dir).iter().all(|f| !f.contains("veil-tmp")));
    }
}

#[test]
fn missing_onnx_runtime_is_a_clear_error() {
    let dir = scratch("no-ort");
    let o =
        run(veil(&["anonymise", face_jpg().to_str().unwrap(), "-o", dir.join("o.jpg").to_str().unwrap()])
            .args(["--detector", "centerface"])
            .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ONNX Runtime") && err.contains("cargo xtask setup") && err.contains("/nonexistent")
    );
    let o = run(veil(&["info"]).env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so"));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("cargo xtask setup"));
}

#[test]
fn missing_model_is_a_clear_error() {
    if !ort_lib().is_file() {
        println!("skipped: no ONNX Runtime library");
        return;
    }
    let dir = scratch("no-model");
    let o =
        run(veil(&["anonymise", face_jpg().to_str().unwrap(), "-o", dir.join("o.jpg").to_str().unwrap()])
            .args(["--detector", "retinaface", "--model", "/nonexistent/model.onnx"]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/model.onnx") && err.contains("cargo xtask setup"));
}

#[test]
fn missing_camera_is_a_clear_error() {
    let dir = scratch("camera");
    let det = BUILTIN;
    let o = run(&mut veil(&[
        "anonymise",
        "--camera",
        "57",
        "-o",
        dir.join("cam.mp4").to_str().unwrap(),
        det[0],
        det[1],
    ]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("camera 57") && err.contains("does not exist"), "{err}");
    assert!(!dir.join("cam.mp4").exists());
    // Neither a recording nor a preview asked for: a usage error before touching the device.
    let o = run(&mut veil(&["anonymise", "--camera", "0", det[0], det[1]]));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--preview"));
}

#[test]
fn bad_option_values_are_usage_errors() {
    for args in [
        &["--thresh", "face=2"][..],
        &["--exclude", "1,2,3"][..],
        &["--detect-scale", "640"][..],
        &["--mask-scale", "-1"][..],
        &["--mode", "pixelate", "--block", "0"][..],
        &["--color", "red", "--mode", "fill"][..],
    ] {
        let mut all = vec!["anonymise", "x.jpg", "-o", "y.jpg", "--detector", "centerface"];
        all.extend(args);
        let o = run(&mut veil(&all));
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("invalid"), "{args:?}");
    }
}

#[test]
fn retinaface_and_detect_scale_find_the_faces() {
    if centerface().is_none() {
        return;
    }
    let dir = scratch("retina");
    let face = face_jpg();
    for (name, extra) in [
        ("retina.png", &["--detector", "retinaface"][..]),
        ("scaled.png", &["--detector", "centerface", "--detect-scale", "320x240"][..]),
    ] {
        let out = dir.join(name);
        let boxes = dir.join(format!("{name}.jsonl"));
        let mut args = vec![
            "anonymise",
            face.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--boxes",
            boxes.to_str().unwrap(),
        ];
        args.extend(extra);
        assert!(run(&mut veil(&args)).status.success());
        let l: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&boxes).unwrap().lines().next().unwrap()).unwrap();
        let dets = l["detections"].as_array().unwrap();
        // Boxes are in full-frame pixels whatever size the detector ran at.
        for (x, y) in FACE_CENTRES {
            let hit = dets.iter().any(|d| {
                let i = |k: &str| d[k].as_i64().unwrap();
                i("x0") <= x as i64 && (x as i64) < i("x1") && i("y0") <= y as i64 && (y as i64) < i("y1")
            });
            assert!(hit, "{name}: a box covers ({x},{y}): {dets:?}");
        }
    }
}

#[test]
fn plate_detector_and_explicit_output_format() {
    if centerface().is_none() {
        return;
    }
    let model = repo().join(".cache/models/clp_det.onnx");
    if !model.is_file() {
        println!("skipped: no model at {} (run `cargo xtask setup`)", model.display());
        return;
    }
    let dir = scratch("plates");
    let cars = repo().join("data/dlib/mmod_cars_test_image2.jpg");
    let out = dir.join("cars.png");
    let boxes = dir.join("b.jsonl");
    let o = run(&mut veil(&[
        "anonymise",
        cars.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--detector",
        "clp-det",
        "--boxes",
        boxes.to_str().unwrap(),
        "--mode",
        "fill",
        "--color",
        "ff00ff",
    ]));
    assert!(o.status.success());
    let l: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&boxes).unwrap().lines().next().unwrap()).unwrap();
    let dets = l["detections"].as_array().unwrap();
    // The Lexus' plate, centre about (1236, 336) in the 2482×614 photo.
    assert!(dets.iter().any(|d| d["class"] == "plate"
        && d["x0"].as_i64().unwrap() < 1236
        && d["x1"].as_i64().unwrap() > 1236
        && d["y0"].as_i64().unwrap() < 336
        && d["y1"].as_i64().unwrap() > 336));
    // `-o cars.png` for a JPEG input writes PNG.
    let reader = image::ImageReader::open(&out).unwrap().with_guessed_format().unwrap();
    assert_eq!(reader.format(), Some(ImageFormat::Png));
    assert_eq!(reader.decode().unwrap().to_rgb8().get_pixel(1236, 336).0, MAGENTA);
}

#[test]
fn builtin_detector_is_the_default_and_needs_no_setup() {
    let dir = scratch("builtin");
    let out = dir.join("out.png");
    let boxes = dir.join("b.jsonl");
    // No ONNX Runtime, no model cache: the default detector still runs.
    let o = run(veil(&[
        "anonymise",
        face_jpg().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--boxes",
        boxes.to_str().unwrap(),
        "--json",
    ])
    .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
    .env("VEIL_MODELS_DIR", "/nonexistent"));
    assert!(o.status.success());
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["detector"], "builtin");
    assert_eq!(s["stats"]["outcomes"]["normal"], 1);
    let l: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&boxes).unwrap().lines().next().unwrap()).unwrap();
    assert!(!l["detections"].as_array().unwrap().is_empty(), "the int8 engine finds faces in the photo");
    assert_eq!(rgb(&out).dimensions(), rgb(&face_jpg()).dimensions());
}

#[test]
fn other_containers_keep_streams_and_frame_counts() {
    if !have("ffmpeg") || !have("ffprobe") {
        println!("skipped: ffmpeg/ffprobe not installed (run `cargo xtask setup`)");
        return;
    }
    let dir = scratch("containers");
    // MPEG-TS starts late (1.4 s) and AVI's index counts one frame more than it holds.
    for (ext, codecs) in [
        ("ts", &["-c:v", "libx264", "-c:a", "aac"][..]),
        ("avi", &["-c:v", "mpeg4", "-c:a", "libmp3lame"][..]),
    ] {
        let input = dir.join(format!("in.{ext}"));
        let st = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-loop", "1", "-framerate", "25", "-i"])
            .arg(face_jpg())
            .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "1", "-pix_fmt", "yuv420p"])
            .args(codecs)
            .arg("-shortest")
            .arg(&input)
            .status()
            .unwrap();
        assert!(st.success());
        let out = dir.join(format!("out.{ext}"));
        let mut args = vec!["anonymise", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(BUILTIN);
        assert!(run(&mut veil(&args)).status.success(), "{ext}");
        assert_eq!(streams(&input), streams(&out), "{ext}");
    }
}
