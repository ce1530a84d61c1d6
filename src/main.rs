use clap::Parser;
use dinoscope::cli::{Cli, run};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        // No subcommand: the desktop app.
        return match dinoscope::app::run() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot start the desktop app: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    };
    match run(command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
