//! Resumable, SHA-256-verified checkpoint downloads (no GUI: the app runs them on a background
//! thread, tests against a local server).
//!
//! Bytes go to `<dest>.part`; an existing `.part` is resumed with an HTTP `Range` request (a
//! server that ignores it sends the whole file, which then replaces the part). Only a complete,
//! verified file is renamed to `dest`, and its SHA-256 is recorded next to it in
//! `<dest>.sha256` (`sha256sum` format).

pub mod catalog;
pub mod hub;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use catalog::{CACHE_ENV, OFFICIAL, OfficialCheckpoint, checkpoint_dir, official};

/// Bytes read per step; progress is reported and cancellation checked after each.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url}: the server answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{url}: SHA-256 mismatch (expected {expected}, got {actual}); the downloaded file was deleted"
    )]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: the download stopped after {received} of {expected} bytes; retry to resume")]
    Incomplete {
        url: String,
        received: u64,
        expected: u64,
    },
    #[error("expected SHA-256 \"{0}\" is not 64 hexadecimal digits")]
    BadExpectedHash(String),
    #[error("download cancelled")]
    Cancelled,
    #[error("{url}: the answer is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
}

/// How far a download got (sent after every chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Bytes of the file on disk so far (resumed bytes included).
    pub received: u64,
    /// Size of the whole file, when the server says.
    pub total: Option<u64>,
}

impl DownloadProgress {
    pub fn fraction(&self) -> Option<f32> {
        self.total
            .filter(|&t| t > 0)
            .map(|t| (self.received as f64 / t as f64).clamp(0.0, 1.0) as f32)
    }
}

/// A finished download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    pub bytes: u64,
    /// Bytes already on disk from an earlier attempt (0 for a fresh download).
    pub resumed_from: u64,
}

/// `dest` with `.part` appended to its file name.
pub fn part_path(dest: &Path) -> PathBuf {
    suffixed(dest, ".part")
}

/// `dest` with `.sha256` appended to its file name (the recorded hash).
pub fn hash_path(dest: &Path) -> PathBuf {
    suffixed(dest, ".sha256")
}

fn suffixed(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    dest.with_file_name(name)
}

/// The SHA-256 recorded for a finished download at `dest`, if both files exist.
pub fn recorded_hash(dest: &Path) -> Option<String> {
    if !dest.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(hash_path(dest)).ok()?;
    let hex = text.split_whitespace().next()?.to_ascii_lowercase();
    is_sha256(&hex).then_some(hex)
}

fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Normalises an expected hash (trimmed, lower case) or rejects it.
pub fn parse_sha256(text: &str) -> Result<String, DownloadError> {
    let hex = text.trim().to_ascii_lowercase();
    if is_sha256(&hex) {
        Ok(hex)
    } else {
        Err(DownloadError::BadExpectedHash(text.trim().to_string()))
    }
}

/// SHA-256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, DownloadError> {
    let io = |source| DownloadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    hash_reader(&mut file, &mut hasher).map_err(io)?;
    Ok(hex(&hasher.finalize()))
}

fn hash_reader(reader: &mut impl Read, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How patient a download is.
#[derive(Clone, Copy, Debug)]
pub struct DownloadSettings {
    /// A connection that delivers no byte for this long is given up (the `.part` is kept).
    pub idle_timeout: Duration,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        DownloadSettings {
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;

fn agent(settings: &DownloadSettings) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Redirects are followed by `request`, which refuses a downgrade from https to http.
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(settings.idle_timeout))
        .timeout_per_read(Some(settings.idle_timeout))
        .user_agent(concat!("dinoscope/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Where a redirect from `from` to `location` leads: an absolute URL, or a path on the same
/// server. A redirect from https to plain http is refused (it would expose the download to
/// tampering); other hosts are allowed, since checkpoint hosts redirect to their CDNs.
pub fn redirect_target(from: &str, location: &str) -> Result<String, DownloadError> {
    let refuse = |detail: String| DownloadError::Transport {
        url: from.to_string(),
        detail,
    };
    let location = location.trim();
    let target = if location.contains("://") {
        location.to_string()
    } else if location.starts_with('/') {
        let (scheme, rest) = from
            .split_once("://")
            .ok_or_else(|| refuse(format!("cannot resolve the redirect to {location}")))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        format!("{scheme}://{authority}{location}")
    } else {
        return Err(refuse(format!(
            "redirect to an unsupported location `{location}`"
        )));
    };
    let scheme = |url: &str| url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match (scheme(from).as_deref(), scheme(&target).as_deref()) {
        (Some("https"), Some("https")) | (Some("http"), Some("http" | "https")) => Ok(target),
        (Some("https"), Some("http")) => Err(refuse(format!(
            "refused a redirect from https to plain http ({target})"
        ))),
        _ => Err(refuse(format!("refused a redirect to {target}"))),
    }
}

/// The file name a URL's download is stored under: the last segment of its path (query and
/// fragment dropped, nothing decoded), refused when it could name anything but one file in the
/// download folder (empty, `.`, `..`, hidden, or holding a separator or control character).
pub fn file_name_from_url(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
    let (_, path) = after_scheme.split_once('/')?;
    let name = path.rsplit('/').next()?;
    let safe = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['\\', ':'])
        && !name.chars().any(char::is_control);
    safe.then(|| name.to_string())
}

/// What the server answered to a (range) request.
enum Answer {
    /// The body continues the part at this offset; `total` is the whole file's size if known.
    Body {
        start: u64,
        total: Option<u64>,
        body: ureq::Body,
    },
    /// The part already holds the whole file (`416` with a matching size).
    AlreadyComplete,
    /// The range could not be served: start again from zero.
    Restart,
}

/// `bytes START-END/TOTAL` or `bytes */TOTAL` -> (START, TOTAL).
fn parse_content_range(value: &str) -> (Option<u64>, Option<u64>) {
    let rest = value.trim().strip_prefix("bytes").unwrap_or("").trim();
    let (range, total) = rest.split_once('/').unwrap_or((rest, "*"));
    let start = range
        .split_once('-')
        .and_then(|(s, _)| s.trim().parse().ok());
    (start, total.trim().parse().ok())
}

fn request(agent: &ureq::Agent, url: &str, offset: u64) -> Result<Answer, DownloadError> {
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let transport = |e: ureq::Error| DownloadError::Transport {
            url: current.clone(),
            detail: e.to_string(),
        };
        let mut builder = agent.get(&current);
        if offset > 0 {
            builder = builder.header("Range", format!("bytes={offset}-"));
        }
        let response = builder.call().map_err(transport)?;
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| DownloadError::Transport {
                    url: current.clone(),
                    detail: "a redirect without a Location".into(),
                })?;
            current = redirect_target(&current, location)?;
            continue;
        }
        return answer(&current, offset, response);
    }
    Err(DownloadError::Transport {
        url: url.to_string(),
        detail: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

fn answer(
    url: &str,
    offset: u64,
    response: ureq::http::Response<ureq::Body>,
) -> Result<Answer, DownloadError> {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let length: Option<u64> = header("content-length").and_then(|v| v.trim().parse().ok());
    let (range_start, range_total) = header("content-range")
        .map(|v| parse_content_range(&v))
        .unwrap_or((None, None));
    match status {
        200 => Ok(Answer::Body {
            start: 0,
            total: length,
            body: response.into_body(),
        }),
        206 if offset > 0 && range_start == Some(offset) => Ok(Answer::Body {
            start: offset,
            total: range_total.or(length.map(|l| l + offset)),
            body: response.into_body(),
        }),
        // A range we did not ask for: do not trust it.
        206 => Ok(Answer::Restart),
        416 if offset > 0 => Ok(if range_total == Some(offset) {
            Answer::AlreadyComplete
        } else {
            Answer::Restart
        }),
        _ => Err(DownloadError::Status {
            url: url.to_string(),
            status,
        }),
    }
}

/// Downloads `url` to `dest`, resuming `<dest>.part` if present, verifying the SHA-256 against
/// `expected_sha256` when given. `progress` is called after every chunk; returning `false`
/// cancels (the `.part` is kept for a later resume). On a hash mismatch the part is deleted and
/// `dest` is not created.
pub fn download(
    url: &str,
    dest: &Path,
    expected_sha256: Option<&str>,
    progress: &mut dyn FnMut(DownloadProgress) -> bool,
) -> Result<Downloaded, DownloadError> {
    download_with(
        url,
        dest,
        expected_sha256,
        &DownloadSettings::default(),
        progress,
    )
}

/// [`download`] with explicit [`DownloadSettings`].
pub fn download_with(
    url: &str,
    dest: &Path,
    expected_sha256: Option<&str>,
    settings: &DownloadSettings,
    progress: &mut dyn FnMut(DownloadProgress) -> bool,
) -> Result<Downloaded, DownloadError> {
    let done = download_file(
        url,
        dest,
        &part_path(dest),
        expected_sha256,
        settings,
        progress,
    )?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let record = hash_path(dest);
    crate::atomic_file::write(&record, format!("{}  {name}\n", done.sha256).as_bytes()).map_err(
        |source| DownloadError::Io {
            path: record.clone(),
            source,
        },
    )?;
    Ok(done)
}

/// The download itself, with the part file named by the caller and no hash recorded beside
/// `dest` (the Hugging Face cache names its blobs by hash and its parts `<blob>.incomplete`).
pub fn download_file(
    url: &str,
    dest: &Path,
    part: &Path,
    expected_sha256: Option<&str>,
    settings: &DownloadSettings,
    progress: &mut dyn FnMut(DownloadProgress) -> bool,
) -> Result<Downloaded, DownloadError> {
    let expected = expected_sha256.map(parse_sha256).transpose()?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DownloadError::Io { path, source }
    };
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let agent = agent(settings);
    let mut offset = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let resumed_from;
    let (hasher, received) = loop {
        match request(&agent, url, offset)? {
            Answer::Restart if offset > 0 => offset = 0,
            Answer::Restart => {
                return Err(DownloadError::Transport {
                    url: url.to_string(),
                    detail: "the server sent a partial answer to a full request".into(),
                });
            }
            Answer::AlreadyComplete => {
                resumed_from = offset;
                let mut hasher = Sha256::new();
                let mut file = File::open(part).map_err(io(part))?;
                let n = hash_reader(&mut file, &mut hasher).map_err(io(part))?;
                break (hasher, n);
            }
            Answer::Body { start, total, body } => {
                resumed_from = start;
                break receive(url, part, start, total, body, progress)?;
            }
        }
    };
    let sha256 = hex(&hasher.finalize());
    if let Some(expected) = expected
        && expected != sha256
    {
        // A corrupt or wrong file is useless for resuming too.
        let _ = std::fs::remove_file(part);
        return Err(DownloadError::HashMismatch {
            url: url.to_string(),
            expected,
            actual: sha256,
        });
    }
    std::fs::rename(part, dest).map_err(io(dest))?;
    Ok(Downloaded {
        path: dest.to_path_buf(),
        sha256,
        bytes: received,
        resumed_from,
    })
}

/// The whole body of a small answer (an API's JSON), at most `limit` bytes; redirects followed
/// as for downloads.
pub fn fetch_bytes(
    url: &str,
    settings: &DownloadSettings,
    limit: u64,
) -> Result<Vec<u8>, DownloadError> {
    let body = match request(&agent(settings), url, 0)? {
        Answer::Body { body, .. } => body,
        Answer::AlreadyComplete | Answer::Restart => {
            return Err(DownloadError::Transport {
                url: url.to_string(),
                detail: "the server sent a partial answer to a full request".into(),
            });
        }
    };
    let mut bytes = Vec::new();
    body.into_reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DownloadError::Transport {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
    if bytes.len() as u64 > limit {
        return Err(DownloadError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// Appends the body to the part from `start` (hashing what is already there first); returns the
/// hasher over the whole file and its length.
fn receive(
    url: &str,
    part: &Path,
    start: u64,
    total: Option<u64>,
    body: ureq::Body,
    progress: &mut dyn FnMut(DownloadProgress) -> bool,
) -> Result<(Sha256, u64), DownloadError> {
    let io = |source| DownloadError::Io {
        path: part.to_path_buf(),
        source,
    };
    let mut hasher = Sha256::new();
    let mut file = if start > 0 {
        let mut existing = File::open(part).map_err(io)?;
        let mut head = (&mut existing).take(start);
        let n = hash_reader(&mut head, &mut hasher).map_err(io)?;
        if n != start {
            return Err(DownloadError::Incomplete {
                url: url.to_string(),
                received: n,
                expected: start,
            });
        }
        // The part is exactly `start` bytes long (that is what was asked for): append.
        OpenOptions::new().append(true).open(part).map_err(io)?
    } else {
        File::create(part).map_err(io)?
    };
    let mut received = start;
    if !progress(DownloadProgress { received, total }) {
        return Err(DownloadError::Cancelled);
    }
    let mut reader = body.into_reader();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.flush();
                return Err(DownloadError::Transport {
                    url: url.to_string(),
                    detail: format!("{e} after {received} bytes; retry to resume"),
                });
            }
        };
        file.write_all(&buf[..n]).map_err(io)?;
        hasher.update(&buf[..n]);
        received += n as u64;
        if !progress(DownloadProgress { received, total }) {
            let _ = file.flush();
            return Err(DownloadError::Cancelled);
        }
    }
    file.flush().map_err(io)?;
    file.sync_all().map_err(io)?;
    if let Some(total) = total
        && received != total
    {
        return Err(DownloadError::Incomplete {
            url: url.to_string(),
            received,
            expected: total,
        });
    }
    Ok((hasher, received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_parsed() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            (Some(100), Some(1000))
        );
        assert_eq!(parse_content_range("bytes */1000"), (None, Some(1000)));
        assert_eq!(parse_content_range("bytes 5-9/*"), (Some(5), None));
        assert_eq!(parse_content_range("garbage"), (None, None));
    }

    #[test]
    fn redirects_resolve_and_never_downgrade_to_http() {
        let from = "https://a.example/x/model.pth";
        assert_eq!(
            redirect_target(from, "/y/model.pth").unwrap(),
            "https://a.example/y/model.pth"
        );
        assert_eq!(
            redirect_target(from, "https://cdn.example/m").unwrap(),
            "https://cdn.example/m"
        );
        assert!(redirect_target(from, "http://a.example/model.pth").is_err());
        assert!(redirect_target(from, "file:///etc/passwd").is_err());
        assert!(redirect_target(from, "relative/model.pth").is_err());
        assert_eq!(
            redirect_target("http://127.0.0.1:8/a", "https://h/b").unwrap(),
            "https://h/b"
        );
    }

    #[test]
    fn url_file_names_stay_inside_the_download_folder() {
        let name = |url| file_name_from_url(url);
        assert_eq!(
            name("https://h/a/model.pth?x=1#f").as_deref(),
            Some("model.pth")
        );
        assert_eq!(name("http://127.0.0.1:80/v.pth").as_deref(), Some("v.pth"));
        assert_eq!(
            name("https://h/a/x%2F..%2Fy").as_deref(),
            Some("x%2F..%2Fy")
        );
        for bad in [
            "https://h/a/",
            "https://h/..",
            "https://h/.",
            "https://h/.bashrc",
            "https://h",
            "https://h/a\\..\\x",
            "https://h/C:x",
            "https://h/a\u{7}b",
        ] {
            assert_eq!(name(bad), None, "{bad}");
        }
    }

    #[test]
    fn expected_hashes_are_validated() {
        let h = "AB".repeat(32);
        assert_eq!(parse_sha256(&format!(" {h}\n")).unwrap(), "ab".repeat(32));
        assert!(matches!(
            parse_sha256("abc"),
            Err(DownloadError::BadExpectedHash(_))
        ));
    }

    #[test]
    fn sidecar_paths_append_to_the_file_name() {
        let dest = Path::new("/c/dino_deitsmall8_pretrain.pth");
        assert_eq!(
            part_path(dest),
            Path::new("/c/dino_deitsmall8_pretrain.pth.part")
        );
        assert_eq!(
            hash_path(dest),
            Path::new("/c/dino_deitsmall8_pretrain.pth.sha256")
        );
    }

    #[test]
    fn sha256_of_a_known_string() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
