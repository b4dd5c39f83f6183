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
