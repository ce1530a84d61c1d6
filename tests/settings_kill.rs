//! No lost settings: the app's settings file, saved again and again by a process that is killed
//! (SIGKILL) at random moments, is after every kill one whole version that loads.
//!
//! A test binary without the test harness: run with `DINOSCOPE_SETTINGS_WRITER=<file>` it is the
//! writer (it saves settings until it is killed); run plainly it is the test, and starts itself as
//! the writer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dinoscope::app::state::Settings;
use dinoscope::rng::Rng;

const WRITER: &str = "DINOSCOPE_SETTINGS_WRITER";
const ROUNDS: usize = 20;
const PATHS: usize = 4000;

/// Version `version` of the settings: every remembered path carries the version, so a mix of two
/// versions is detected.
fn settings(version: usize) -> Settings {
    Settings {
        image_paths: (0..PATHS)
            .map(|i| PathBuf::from(format!("/photos/v{version}/image-{i:05}.jpg")))
            .collect(),
        ..Settings::default()
    }
}

fn version_of(settings: &Settings) -> Option<usize> {
    let first = settings.image_paths.first()?.to_str()?;
    let version = first
        .strip_prefix("/photos/v")?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    (settings.image_paths.len() == PATHS && *settings == self::settings(version)).then_some(version)
}

fn write_forever(file: &Path) -> ! {
    for version in 1.. {
        if let Err(e) = settings(version).save(file) {
            eprintln!("{}: {e}", file.display());
            std::process::exit(2);
        }
    }
    unreachable!("the writer runs until it is killed")
}

fn main() {
    if let Some(file) = std::env::var_os(WRITER) {
        write_forever(Path::new(&file));
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("settings.json");
    let exe = std::env::current_exe().expect("the test binary's path");
    // The settings of an earlier session: they must survive every kill if nothing newer does.
    settings(0).save(&file).expect("the first settings");
    let mut rng = Rng::new(11);
    let mut saved = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .env(WRITER, &file)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting the writer");
        std::thread::sleep(Duration::from_millis(40 + rng.below(160) as u64));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("the writer's exit");
        assert!(
            status.code().is_none(),
            "round {round}: the writer stopped by itself: {status}"
        );
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("round {round}: {}: {e}", file.display()));
        let loaded: Settings = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("round {round}: {} does not load: {e}", file.display()));
        let version = version_of(&loaded)
            .unwrap_or_else(|| panic!("round {round}: {} mixes versions", file.display()));
        saved += usize::from(version > 0);
    }
    println!("settings_kill: {ROUNDS} kills, each left one whole version ({saved} a newer one)");
    assert!(saved > 0, "no kill landed after a save");
}
