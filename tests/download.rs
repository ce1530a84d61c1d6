//! Checkpoint downloads against a small HTTP server on 127.0.0.1 (started by each test on a
//! thread): full download with hash check, resume of a truncated `.part`, a server that ignores
//! `Range`, wrong hash, 404, cancel then resume.

mod common;

use std::net::TcpListener;
use std::path::Path;

use common::http::{Seen, Server};
use dinoscope::model::download::{
    DownloadError, DownloadProgress, download, hash_path, part_path, recorded_hash, sha256_file,
};
use dinoscope::model::{LoadOptions, backend, load_model};

const NAME: &str = "v1_p8.pth";

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(common::fixture(NAME)).unwrap()
}

fn no_progress() -> impl FnMut(DownloadProgress) -> bool {
    |_| true
}

fn assert_no_final_file(dest: &Path) {
    assert!(!dest.exists(), "{} should not exist", dest.display());
    assert!(!hash_path(dest).exists());
}

#[test]
fn full_download_is_verified_recorded_and_loads() {
    let bytes = fixture_bytes();
    let server = Server::start(NAME, bytes.clone(), true);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("nested/checkpoints").join(NAME);
    let expected = sha256_file(&common::fixture(NAME)).unwrap();
    let mut reports = Vec::new();
    let done = download(
        &server.url(NAME),
        &dest,
        Some(&expected.to_uppercase()),
        &mut |p| {
            reports.push(p);
            true
        },
    )
    .unwrap();
    assert_eq!(done.sha256, expected);
    assert_eq!(done.bytes, bytes.len() as u64);
    assert_eq!(done.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert!(!part_path(&dest).exists());
    assert_eq!(recorded_hash(&dest), Some(expected));
    // Progress counts up to the whole file, whose size the server announced.
    let last = reports.last().unwrap();
    assert_eq!(last.received, bytes.len() as u64);
    assert_eq!(last.total, Some(bytes.len() as u64));
    assert!(reports.windows(2).all(|w| w[0].received <= w[1].received));
    assert_eq!(server.seen()[0].range, None);
    // What arrived is a checkpoint the model loader takes.
    let device = backend::cpu();
    // (The tiny fixture's head count cannot be inferred from its shapes.)
    let options = LoadOptions {
        config: None,
        heads: Some(2),
        ..LoadOptions::default()
    };
    let loaded = load_model(&dest, &options, &device.device).unwrap();
    assert_eq!(loaded.vit.config().patch_size, 8);
}

#[test]
fn a_truncated_part_is_resumed_with_a_range_request() {
    let bytes = fixture_bytes();
    let server = Server::start(NAME, bytes.clone(), true);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(NAME);
    let cut = 70_001;
    std::fs::write(part_path(&dest), &bytes[..cut]).unwrap();
    let expected = sha256_file(&common::fixture(NAME)).unwrap();
    let done = download(
        &server.url(NAME),
        &dest,
        Some(&expected),
        &mut no_progress(),
    )
    .unwrap();
    assert_eq!(done.resumed_from, cut as u64);
    assert_eq!(done.sha256, expected);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(
        server.seen(),
        vec![Seen {
            path: format!("/{NAME}"),
            range: Some(format!("bytes={cut}-")),
        }]
    );
    // A part that already holds the whole file is answered 416 and simply finished.
    let dest2 = dir.path().join("again.pth");
    std::fs::write(part_path(&dest2), &bytes).unwrap();
    let done = download(&server.url(NAME), &dest2, None, &mut no_progress()).unwrap();
    assert_eq!(done.sha256, expected);
    assert_eq!(std::fs::read(&dest2).unwrap(), bytes);
}

#[test]
fn a_server_ignoring_range_restarts_the_part() {
    let bytes = fixture_bytes();
    let server = Server::start(NAME, bytes.clone(), false);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(NAME);
    // A stale part with wrong content: the full answer replaces it.
    std::fs::write(part_path(&dest), vec![7u8; 5000]).unwrap();
    let done = download(&server.url(NAME), &dest, None, &mut no_progress()).unwrap();
    assert_eq!(done.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(done.sha256, sha256_file(&common::fixture(NAME)).unwrap());
}

#[test]
fn a_wrong_hash_is_an_error_and_leaves_no_file() {
    let server = Server::start(NAME, fixture_bytes(), true);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(NAME);
    let wrong = "0".repeat(64);
    let err = download(&server.url(NAME), &dest, Some(&wrong), &mut no_progress()).unwrap_err();
    match &err {
        DownloadError::HashMismatch {
            url,
            expected,
            actual,
        } => {
            assert_eq!(url, &server.url(NAME));
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha256_file(&common::fixture(NAME)).unwrap());
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(NAME), "{err}");
    assert_no_final_file(&dest);
    assert!(!part_path(&dest).exists(), "a corrupt part is not kept");
    // A malformed expected hash is refused before any request.
    let err = download(&server.url(NAME), &dest, Some("xyz"), &mut no_progress()).unwrap_err();
    assert!(matches!(err, DownloadError::BadExpectedHash(_)), "{err:?}");
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_404_is_an_error_naming_the_url() {
    let server = Server::start(NAME, fixture_bytes(), true);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("missing.pth");
    let url = server.url("no/such/checkpoint.pth");
    let err = download(&url, &dest, None, &mut no_progress()).unwrap_err();
    assert!(
        matches!(err, DownloadError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    assert_no_final_file(&dest);
    assert!(!part_path(&dest).exists());
    // Nothing listens on a closed port: a transport error, also naming the URL.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/x.pth", l.local_addr().unwrap())
    };
    let err = download(&closed, &dest, None, &mut no_progress()).unwrap_err();
    assert!(matches!(err, DownloadError::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains(&closed), "{err}");
}

#[test]
fn cancel_keeps_the_part_and_a_later_download_resumes_it() {
    let bytes = fixture_bytes();
    let server = Server::start(NAME, bytes.clone(), true);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(NAME);
    // Stop after the first chunk arrived.
    let err = download(&server.url(NAME), &dest, None, &mut |p| p.received == 0).unwrap_err();
    assert!(matches!(err, DownloadError::Cancelled), "{err:?}");
    assert_no_final_file(&dest);
    let kept = std::fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0 && kept < bytes.len() as u64, "kept {kept} bytes");
    assert_eq!(
        std::fs::read(part_path(&dest)).unwrap(),
        bytes[..kept as usize]
    );
    let done = download(&server.url(NAME), &dest, None, &mut no_progress()).unwrap();
    assert_eq!(done.resumed_from, kept);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(
        server.seen().last().unwrap().range,
        Some(format!("bytes={kept}-"))
    );
}
