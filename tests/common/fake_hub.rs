//! A fake Hugging Face hub on 127.0.0.1 for the SD download tests: its API's file list (with the
//! LFS SHA-256 and git SHA-1 of each file, as `model_info(files_metadata=True)` gives them) and
//! `resolve/<commit>/<path>`, and what a download leaves in the cache.

use std::path::Path;
use std::time::Duration;

use sha1::Digest as _;

use super::http::Server;

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

pub type Files = Vec<(String, Vec<u8>)>;

pub fn sha256(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

pub fn git_sha1(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn is_lfs(path: &str) -> bool {
    path.ends_with(".safetensors")
}

/// The blob name huggingface_hub gives a file: LFS SHA-256, else git SHA-1.
pub fn blob_name(path: &str, bytes: &[u8]) -> String {
    if is_lfs(path) {
        sha256(bytes)
    } else {
        git_sha1(bytes)
    }
}

/// The API's answer for `files` of `repo_id` (`model_info(files_metadata=True)`'s JSON, the parts
/// we read).
pub fn manifest(repo_id: &str, files: &Files, commit: &str) -> Vec<u8> {
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, bytes)| {
            let mut s = serde_json::json!({
                "rfilename": path,
                "size": bytes.len(),
                "blobId": git_sha1(path.as_bytes()),
            });
            if is_lfs(path) {
                s["lfs"] = serde_json::json!({
                    "sha256": sha256(bytes),
                    "size": bytes.len(),
                    "pointerSize": 134,
                });
            } else {
                s["blobId"] = git_sha1(bytes).into();
            }
            s
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "id": repo_id,
        "sha": commit,
        "siblings": siblings,
    }))
    .unwrap()
}

/// The routes of a hub serving `served` of `repo_id` at [`COMMIT`] while its API describes
/// `listed`.
pub fn routes(repo_id: &str, listed: &Files, served: &Files) -> Files {
    let mut routes = vec![(
        format!("api/models/{repo_id}/revision/main?blobs=True"),
        manifest(repo_id, listed, COMMIT),
    )];
    routes.extend(
        served
            .iter()
            .map(|(path, bytes)| (format!("{repo_id}/resolve/{COMMIT}/{path}"), bytes.clone())),
    );
    routes
}

/// A hub serving `served` of `repo_id` while its API describes `listed`.
pub fn hub(repo_id: &str, listed: &Files, served: &Files) -> Server {
    Server::start_many(routes(repo_id, listed, served), true)
}

/// [`hub`], sending each body `chunk` bytes at a time with `pause` between (a slow connection).
pub fn slow_hub(repo_id: &str, files: &Files, chunk: usize, pause: Duration) -> Server {
    Server::start_throttled(routes(repo_id, files, files), chunk, pause)
}

/// The unfinished parts and hash records anywhere under `cache`.
pub fn leftovers(cache: &Path) -> Vec<String> {
    walkdir::WalkDir::new(cache)
        .into_iter()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".incomplete") || n.ends_with(".sha256") || n.ends_with(".part"))
        .collect()
}
