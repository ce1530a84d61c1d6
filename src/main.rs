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
    let runtime_dir = headless_runtime_dir();
    let outcome = run(command);
    if let Some(dir) = runtime_dir {
        let _ = std::fs::remove_dir(dir);
    }
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Without a desktop session `XDG_RUNTIME_DIR` is unset, and the Vulkan drivers' window-system
/// code prints "XDG_RUNTIME_DIR is invalid" on every GPU probe, although the command line never
/// opens a window. A private, empty runtime folder for this process silences that; it is removed
/// on exit.
#[cfg(unix)]
fn headless_runtime_dir() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let current = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from);
    if current.is_some_and(|dir| dir.is_dir()) {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("dinoscope-runtime-{}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
    // SAFETY: called on the main thread before the command starts any other thread, so no other
    // thread can be reading the environment.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    Some(dir)
}

#[cfg(not(unix))]
fn headless_runtime_dir() -> Option<std::path::PathBuf> {
    None
}
