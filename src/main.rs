use clap::Parser;
use dinoscope::cli::{Cli, run};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        eprintln!("the desktop app is not built yet; run `dinoscope --help` for the commands");
        return std::process::ExitCode::FAILURE;
    };
    match run(command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
