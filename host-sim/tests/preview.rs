//! The live preview under Xvfb: a screenshot of the window (xwd) must show the redacted frame
//! (fill colour exactly where the pipeline redacted, the original elsewhere) with the overlay.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Kills its processes when dropped (also when an assertion fails).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A decoded XWD screenshot (24/32-bit TrueColor).
struct Shot {
    w: usize,
    h: usize,
    px: Vec<[u8; 3]>,
}

fn be(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

fn parse_xwd(b: &[u8]) -> Shot {
    let header = be(b, 0) as usize;
    let (w, h) = (be(b, 4) as usize, be(b, 5) as usize);
    let byte_order = be(b, 7);
    let bpp = be(b, 11) as usize;
    let bpl = be(b, 12) as usize;
    let (rm, gm, bm) = (be(b, 14), be(b, 15), be(b, 16));
    let ncolors = be(b, 19) as usize;
    assert_eq!(bpp, 32, "expected a 32-bit TrueColor screen");
    let data = &b[header + ncolors * 12..];
    let ch = |v: u32, m: u32| ((v & m) >> m.trailing_zeros()) as u8;
    let mut px = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let o = y * bpl + x * 4;
            let raw: [u8; 4] = data[o..o + 4].try_into().unwrap();
            let v = if byte_order == 0 { u32::from_le_bytes(raw) } else { u32::from_be_bytes(raw) };
            px.push([ch(v, rm), ch(v, gm), ch(v, bm)]);
        }
    }
    Shot { w, h, px }
}

fn screenshot(display: &str, dir: &Path) -> Option<Shot> {
    let f = dir.join("shot.xwd");
    let st =
        Command::new("xwd").args(["-root", "-silent", "-display", display, "-out"]).arg(&f).status().ok()?;
    if !st.success() {
        return None;
    }
    Some(parse_xwd(&std::fs::read(f).ok()?))
}

#[test]
fn preview_window_shows_the_redacted_frame_with_overlay() {
    let Some(det) = centerface() else { return };
    for bin in ["Xvfb", "xwd", "ffmpeg"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            println!("skipped: {bin} not installed (Debian packages xvfb, x11-apps, ffmpeg)");
            return;
        }
    }
    let dir = scratch("preview");
    let video = dir.join("clip.mp4");
    make_face_video(&video, "1");
    let n = 40 + std::process::id() % 50;
    let display = format!(":{n}");
    let mut procs = Procs(Vec::new());
    procs.0.push(
        Command::new("Xvfb")
            .args([&display, "-screen", "0", "800x600x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = format!("/tmp/.X11-unix/X{n}");
    let t0 = Instant::now();
    while !Path::new(&socket).exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = dir.join("out.mp4");
    let boxes = dir.join("boxes.jsonl");
    procs.0.push(
        veil(&[
            "anonymise",
            video.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            det[0],
            det[1],
            "--mode",
            "fill",
            "--color",
            "ff00ff",
            "--shape",
            "rect",
            "--preview",
            "--preview-hold",
            "60",
            "--boxes",
            boxes.to_str().unwrap(),
        ])
        .env("DISPLAY", &display)
        .spawn()
        .unwrap(),
    );
    // The reports are renamed into place after the last frame; the window then holds it.
    let t0 = Instant::now();
    while !boxes.exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "veil did not finish the video");
        if let Ok(Some(st)) = procs.0[1].try_wait() {
            panic!("veil exited early: {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(700));
    let shot = screenshot(&display, &dir).expect("xwd screenshot");
    // Kept for inspection when the test fails.
    let flat: Vec<u8> = shot.px.iter().flatten().copied().collect();
    image::RgbImage::from_raw(shot.w as u32, shot.h as u32, flat)
        .unwrap()
        .save(dir.join("shot.png"))
        .unwrap();
    // The last frame's redacted regions, in frame pixels.
    let last: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&boxes).unwrap().lines().last().unwrap()).unwrap();
    let regions = last["regions"].as_array().unwrap().clone();
    assert!(regions.len() >= 4);
    // Find the window: the offset where the background matches the original photo.
    let orig = rgb(&face_jpg());
    let (fw, fh) = orig.dimensions();
    let score = |ox: usize, oy: usize| -> u64 {
        (0..fh as usize)
            .step_by(25)
            .flat_map(|y| (0..fw as usize).step_by(25).map(move |x| (x, y)))
            .map(|(x, y)| {
                let s = shot.px[(oy + y) * shot.w + ox + x];
                let o = orig.get_pixel(x as u32, y as u32).0;
                s.iter().zip(o).map(|(a, b)| a.abs_diff(b) as u64).sum::<u64>()
            })
            .sum()
    };
    let (mut best, mut at) = (u64::MAX, (0, 0));
    for oy in 0..=shot.h - fh as usize {
        for ox in 0..=shot.w - fw as usize {
            let s = score(ox, oy);
            if s < best {
                best = s;
                at = (ox, oy);
            }
        }
    }
    let (ox, oy) = at;
    let px = |x: i64, y: i64| shot.px[(oy as i64 + y) as usize * shot.w + (ox as i64 + x) as usize];
    // Inside every region, away from the box outlines and labels: exactly the fill colour.
    for r in &regions {
        let g = |k: &str| r[k].as_i64().unwrap();
        let (cx, cy) = ((g("x0") + g("x1")) / 2, (g("y0") + g("y1")) / 2);
        for (dx, dy) in [(0, 0), (-3, 2), (3, -2)] {
            assert_eq!(px(cx + dx, cy + dy), MAGENTA, "region {r} centre on screen");
        }
    }
    // Outside the regions: the original frame (video compression tolerance).
    let (bx, by) = BACKGROUND;
    assert!(near(px(bx as i64, by as i64), orig.get_pixel(bx, by).0, 40), "background shown as is");
    // Overlay: green detection outlines and the white fps text in the top-left corner.
    let green = (0..fh as i64)
        .flat_map(|y| (0..fw as i64).map(move |x| (x, y)))
        .filter(|&(x, y)| px(x, y) == [0, 255, 0])
        .count();
    assert!(green > 100, "detection boxes drawn ({green} green pixels)");
    let white = (0..16)
        .flat_map(|y| (0..80).map(move |x| (x, y)))
        .filter(|&(x, y)| px(x, y) == [255, 255, 255])
        .count();
    assert!(white > 20, "fps text drawn ({white} white pixels)");
}
