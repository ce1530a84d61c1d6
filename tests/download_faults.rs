//! Downloads from misbehaving servers on 127.0.0.1: a connection dropped mid-body, a wrong
//! `Content-Length`, redirects (to another server, in a loop), a `206` for the wrong range, a
//! server that stalls, and URLs naming files outside the download folder. After each, the file on
//! disk is either complete and verified, or absent (with the `.part` kept for resuming).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::http::{Request, ScriptedServer, Server};
use common::{dinoscope, stderr};
use dinoscope::model::download::{
    DownloadError, DownloadSettings, download, download_with, hash_path, part_path, recorded_hash,
    sha256_file,
};

const NAME: &str = "v1_p8.pth";

fn body() -> Vec<u8> {
    std::fs::read(common::fixture(NAME)).unwrap()
}

fn expected_hash() -> String {
    sha256_file(&common::fixture(NAME)).unwrap()
}

fn headers(out: &mut TcpStream, status: &str, extra: &str) -> std::io::Result<()> {
    write!(out, "HTTP/1.1 {status}\r\n{extra}Connection: close\r\n\r\n")
}

fn fetch(url: &str, dest: &Path) -> Result<(), DownloadError> {
    download(url, dest, Some(&expected_hash()), &mut |_| true).map(|_| ())
}

/// The final file is absent, and so is its recorded hash.
fn assert_absent(dest: &Path) {
    assert!(!dest.exists(), "{} exists", dest.display());
    assert!(!hash_path(dest).exists());
}

/// The final file is the whole fixture, with its hash recorded.
fn assert_complete(dest: &Path) {
    assert_eq!(std::fs::read(dest).unwrap(), body());
    assert_eq!(recorded_hash(dest), Some(expected_hash()));
    assert!(!part_path(dest).exists());
}

#[test]
fn a_connection_dropped_mid_body_keeps_the_part_and_resumes() {
    let half = body().len() / 2;
    let dropping = ScriptedServer::start(move |_, out| {
        let body = body();
        headers(
            out,
            "200 OK",
            &format!("Content-Length: {}\r\n", body.len()),
        )?;
        out.write_all(&body[..half])
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(NAME);
    let error = fetch(&dropping.url(NAME), &dest).unwrap_err();
    assert!(
        matches!(
            error,
            DownloadError::Incomplete { .. } | DownloadError::Transport { .. }
        ),
        "{error}"
    );
    assert_absent(&dest);
    assert_eq!(
        std::fs::metadata(part_path(&dest)).unwrap().len(),
        half as u64
    );

    let good = Server::start(NAME, body(), true);
    fetch(&good.url(NAME), &dest).unwrap();
    assert_complete(&dest);
    assert_eq!(
        good.seen()[0].range.as_deref(),
        Some(&*format!("bytes={half}-"))
    );
}

#[test]
fn a_content_length_that_lies_never_gives_a_final_file() {
    let dir = tempfile::tempdir().unwrap();
    for claimed_extra in [100i64, -100] {
        let server = ScriptedServer::start(move |_, out| {
            let body = body();
            let claimed = body.len() as i64 + claimed_extra;
            headers(out, "200 OK", &format!("Content-Length: {claimed}\r\n"))?;
            out.write_all(&body)
        });
        let dest = dir.path().join(format!("lie{claimed_extra}.pth"));
        let error = fetch(&server.url(NAME), &dest).unwrap_err();
        assert!(
            matches!(
                error,
                DownloadError::Incomplete { .. }
                    | DownloadError::Transport { .. }
                    | DownloadError::HashMismatch { .. }
            ),
            "{error}"
        );
        assert_absent(&dest);
    }
}

#[test]
fn redirects_to_another_server_are_followed_and_loops_end() {
    let good = Server::start(NAME, body(), true);
    let target = good.url(NAME);
    let redirecting = ScriptedServer::start(move |_, out| {
        headers(
            out,
            "302 Found",
            &format!("Location: {target}\r\nContent-Length: 0\r\n"),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(NAME);
    fetch(&redirecting.url("start"), &dest).unwrap();
    assert_complete(&dest);

    let looping = ScriptedServer::start(|request: &Request, out: &mut TcpStream| {
        headers(
            out,
            "301 Moved Permanently",
            &format!("Location: {}x\r\nContent-Length: 0\r\n", request.path),
        )
    });
    let dest = dir.path().join("loop.pth");
    let error = fetch(&looping.url("a"), &dest).unwrap_err();
    assert!(error.to_string().contains("redirects"), "{error}");
    assert_absent(&dest);
    assert!(!part_path(&dest).exists());
}

#[test]
fn a_partial_answer_for_the_wrong_range_is_not_appended() {
    // Always `206` from byte 0, whatever was asked: the part must not grow with wrong bytes.
    let wrong = ScriptedServer::start(|_, out| {
        let body = body();
        headers(
            out,
            "206 Partial Content",
            &format!(
                "Content-Range: bytes 0-{}/{}\r\nContent-Length: {}\r\n",
                body.len() - 1,
                body.len(),
                body.len()
            ),
        )?;
        out.write_all(&body)
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(NAME);
    let head = &body()[..1000];
    std::fs::write(part_path(&dest), head).unwrap();
    let error = fetch(&wrong.url(NAME), &dest).unwrap_err();
    assert!(error.to_string().contains("partial answer"), "{error}");
    assert_absent(&dest);
    // A server that then answers properly completes the same download.
    let good = Server::start(NAME, body(), true);
    fetch(&good.url(NAME), &dest).unwrap();
    assert_complete(&dest);
}

#[test]
fn a_stalled_server_times_out_and_keeps_the_part() {
    let stalling = ScriptedServer::start(|_, out| {
        let body = body();
        headers(
            out,
            "200 OK",
            &format!("Content-Length: {}\r\n", body.len()),
        )?;
        out.write_all(&body[..4096])?;
        out.flush()?;
        std::thread::sleep(Duration::from_secs(20));
        out.write_all(&body[4096..])
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(NAME);
    let settings = DownloadSettings {
        idle_timeout: Duration::from_millis(500),
    };
    let started = Instant::now();
    let error = download_with(
        &stalling.url(NAME),
        &dest,
        Some(&expected_hash()),
        &settings,
        &mut |_| true,
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
    assert!(matches!(error, DownloadError::Transport { .. }), "{error}");
    assert_absent(&dest);
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 4096);
}

#[test]
fn urls_naming_files_outside_the_download_folder_are_refused() {
    let server = Server::start(NAME, body(), true);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for path in ["a/..", "..%2F..%2Fevil.pth", ".hidden", "dir/"] {
        let url = server.url(path);
        let out = dinoscope(&[
            "download",
            "--url",
            &url,
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{url} was accepted");
        assert!(stderr(&out).contains("names no file"), "{}", stderr(&out));
    }
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "cache")
        .collect();
    assert!(outside.is_empty(), "written outside the cache: {outside:?}");
}
