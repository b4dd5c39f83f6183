//! `veil`: Veil's anonymisation pipeline on images, folders, videos and webcams.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = veil_sim::cli::Cli::parse();
    match veil_sim::app::run(cli).map_err(anyhow::Error::from) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("veil: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
