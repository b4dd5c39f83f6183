//! The `veil eval` / `veil synth` argument structs work as clap subcommands.

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Eval(Box<veil_sim::eval::EvalArgs>),
    Synth(veil_sim::synth::SynthArgs),
}

#[test]
fn subcommands_parse() {
    Cli::command().debug_assert();
    let c = Cli::try_parse_from([
        "veil",
        "eval",
        "a.xml",
        "b.xml",
        "--detector",
        "centerface",
        "--coverage",
        "0.8",
        "--shard",
        "2/3",
        "--json",
        "--overlay",
        "ov",
    ])
    .unwrap();
    let Cmd::Eval(a) = c.cmd else { panic!("eval") };
    let o = a.options().unwrap();
    assert_eq!(o.labels.len(), 2);
    assert_eq!(o.shard, Some((1, 3)));
    assert_eq!(o.params.coverage, 0.8);
    assert!(a.pipeline.json);
    let c = Cli::try_parse_from(["veil", "synth", "-o", "out", "-n", "7", "--backgrounds", "x.jpg", "y.jpg"])
        .unwrap();
    let Cmd::Synth(s) = c.cmd else { panic!("synth") };
    let o = s.options().unwrap();
    assert_eq!((o.count, o.backgrounds.len()), (7, 2));
    let c = Cli::try_parse_from(["veil", "synth", "-o", "o", "--faces-per-image", "3..1"]).unwrap();
    let Cmd::Synth(s) = c.cmd else { panic!("synth") };
    assert!(s.options().is_err(), "MIN > MAX is refused");
}

#[test]
fn eval_refuses_anonymise_only_options() {
    for extra in [&["--output", "x"][..], &["--camera", "0"], &["--evidence", "e"], &["--every", "2"]] {
        let mut argv = vec!["veil", "eval", "a.xml"];
        argv.extend(extra);
        assert!(Cli::try_parse_from(&argv).is_err(), "{extra:?}");
    }
}

/// The `veil` binary runs both subcommands.
#[test]
fn binary_runs_eval_and_synth() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let veil = || std::process::Command::new(env!("CARGO_BIN_EXE_veil"));
    let labels = repo.join("data/dlib/faces/testing.xml");
    let o = veil()
        .arg("eval")
        .arg(&labels)
        .args(["--detector", "builtin", "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["detector"], "builtin");
    assert_eq!(r["images"], 5);
    assert!(r["classes"][0]["all"]["gt"].as_u64().unwrap() > 0);

    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("veil-sim/eval-cli-synth");
    let _ = std::fs::remove_dir_all(&out);
    let o = veil().arg("synth").arg("-o").arg(&out).args(["-n", "3", "--seed", "1"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for i in 0..3 {
        assert!(out.join(format!("synth_{i:05}.png")).is_file());
    }
    // The generated labels load back through `veil eval`.
    let o = veil().arg("eval").arg(out.join("labels.json")).args(["--json", "--quiet"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["images"], 3);
}
