//! `dinoscope download` against a small HTTP server on 127.0.0.1: full download, resume of a
//! partial file, a wrong hash (error naming the file, non-zero exit), the catalogue.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::http::Server;
use dinoscope::model::download::{OFFICIAL, hash_path, part_path, recorded_hash, sha256_file};

const NAME: &str = "v1_p8.pth";

fn dinoscope(args: &[&str], cache: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dinoscope"));
    command.arg("download").args(args);
    match cache {
        Some(dir) => command.env("DINOSCOPE_CACHE", dir),
        None => command.env_remove("DINOSCOPE_CACHE"),
    };
    command.output().expect("run dinoscope")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture() -> (Vec<u8>, String) {
    let path = common::fixture(NAME);
    (std::fs::read(&path).unwrap(), sha256_file(&path).unwrap())
}

#[test]
fn downloads_a_url_into_the_cache_from_the_environment() {
    let (bytes, hash) = fixture();
    let server = Server::start(NAME, bytes.clone(), true);
    let dir = tempfile::tempdir().unwrap();
    let out = dinoscope(
        &["--url", &server.url(NAME), "--sha256", &hash],
        Some(dir.path()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dest = dir.path().join(NAME);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(recorded_hash(&dest), Some(hash.clone()));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&hash) && stdout.contains("(verified)"),
        "{stdout}"
    );
    // Asked again, nothing is fetched.
    let again = dinoscope(&["--url", &server.url(NAME)], Some(dir.path()));
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("already downloaded"));
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn resumes_a_partial_file_in_the_given_cache_dir() {
    let (bytes, hash) = fixture();
    let server = Server::start(NAME, bytes.clone(), true);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("ckpt");
    std::fs::create_dir_all(&cache).unwrap();
    let dest = cache.join(NAME);
    let half = bytes.len() / 2;
    std::fs::write(part_path(&dest), &bytes[..half]).unwrap();
    let out = dinoscope(
        &[
            "--url",
            &server.url(NAME),
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        // --cache-dir wins over the environment.
        Some(&dir.path().join("elsewhere")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(recorded_hash(&dest), Some(hash));
    assert_eq!(
        server.seen()[0].range.as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
    assert!(text(&out.stdout).contains(&format!("resumed from byte {half}")));
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn a_wrong_hash_fails_naming_the_file_and_keeps_nothing() {
    let (bytes, _) = fixture();
    let server = Server::start(NAME, bytes, true);
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let out = dinoscope(
        &["--url", &server.url(NAME), "--sha256", &wrong],
        Some(dir.path()),
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let dest = dir.path().join(NAME);
    assert!(stderr.contains(&dest.display().to_string()), "{stderr}");
    assert!(stderr.contains("SHA-256 mismatch"), "{stderr}");
    assert!(!dest.exists() && !part_path(&dest).exists() && !hash_path(&dest).exists());
}

#[test]
fn failures_exit_non_zero_with_a_clear_message() {
    let server = Server::start(NAME, b"x".to_vec(), true);
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--url", &server.url("missing.pth")], "HTTP 404"),
        (&["no_such_model"], "unknown checkpoint `no_such_model`"),
        (&[], "name a checkpoint"),
        (
            &["--url", &server.url(NAME), "--sha256", "abc"],
            "not 64 hexadecimal digits",
        ),
    ];
    for (args, message) in cases {
        let out = dinoscope(args, Some(dir.path()));
        assert!(!out.status.success(), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn the_catalogue_lists_every_official_checkpoint_and_marks_downloaded_ones() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint already there (file and recorded hash) is found by its id without a download.
    let first = &OFFICIAL[0];
    let dest = dir.path().join(first.file_name());
    std::fs::write(&dest, b"weights").unwrap();
    let hash = sha256_file(&dest).unwrap();
    std::fs::write(hash_path(&dest), format!("{hash}  {}\n", first.file_name())).unwrap();
    let out = dinoscope(&["--list"], Some(dir.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for c in &OFFICIAL {
        let line = stdout
            .lines()
            .find(|l| l.contains(c.url))
            .unwrap_or_else(|| panic!("{} missing from {stdout}", c.id));
        assert!(line.contains(c.id));
        assert_eq!(line.starts_with('*'), c.id == first.id, "{line}");
    }
    let out = dinoscope(&[first.id], Some(dir.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already downloaded"));
}
