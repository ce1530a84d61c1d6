//! Image files on disk: the one list of image extensions and the one folder walker, shared by the
//! app's gallery, the training data and the command line's image sets.
//!
//! Folders are searched recursively with `walkdir`, following symbolic links: a link back to a parent
//! folder is not entered again, and a file reached twice (two links to one folder) is listed once.
//! Entries that cannot be read are listed with the reason, never silently dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"];

/// Folders this many levels below the root are not entered (listed as skipped).
pub const MAX_DEPTH: usize = 32;

/// Whether the path's extension is one of [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

#[derive(Debug, thiserror::Error)]
#[error("{}: cannot read the folder: {source}", path.display())]
pub struct FolderError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// An entry below the root that was not searched, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedEntry {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for SkippedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// The images found below a folder, sorted by path, and the entries that could not be searched.
#[derive(Clone, Debug, Default)]
pub struct FolderImages {
    pub images: Vec<PathBuf>,
    pub skipped: Vec<SkippedEntry>,
}

/// Finds the image files below `root`, recursively. Fails only when `root` itself cannot be listed.
pub fn find_images(root: &Path) -> Result<FolderImages, FolderError> {
    let mut found = FolderImages::default();
    let mut seen = HashSet::new();
    let walk = WalkDir::new(root)
        .follow_links(true)
        .max_depth(MAX_DEPTH)
        .sort_by_file_name();
    for entry in walk {
        let entry = match entry {
            Ok(entry) => entry,
            // A link back to a folder being searched: its images are found once, on the way down.
            Err(e) if e.loop_ancestor().is_some() => continue,
            Err(e) if e.depth() == 0 => {
                return Err(FolderError {
                    path: root.to_path_buf(),
                    source: e.into(),
                });
            }
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                let reason = e
                    .io_error()
                    .map_or_else(|| e.to_string(), |io| io.to_string());
                found.skipped.push(SkippedEntry { path, reason });
                continue;
            }
        };
        let path = entry.path();
        if entry.file_type().is_dir() {
            if entry.depth() == MAX_DEPTH {
                found.skipped.push(SkippedEntry {
                    path: path.to_path_buf(),
                    reason: format!("not searched: more than {MAX_DEPTH} folders deep"),
                });
            }
        } else if has_image_extension(path) {
            // Two links to one folder would otherwise list its images twice.
            let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            if seen.insert(canonical) {
                found.images.push(path.to_path_buf());
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    fn names(root: &Path, found: &FolderImages) -> Vec<String> {
        found
            .images
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn finds_images_recursively_sorted_and_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [
            "b.PNG",
            "a.jpg",
            "notes.txt",
            "sub/c.webp",
            "sub/deeper/d.TIFF",
        ] {
            touch(&root.join(name));
        }
        let found = find_images(root).unwrap();
        assert_eq!(
            names(root, &found),
            ["a.jpg", "b.PNG", "sub/c.webp", "sub/deeper/d.TIFF"]
        );
        assert!(found.skipped.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_a_parent_folder_adds_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("a.png"));
        touch(&root.join("sub/b.png"));
        std::os::unix::fs::symlink(root, root.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("again")).unwrap();
        let found = find_images(root).unwrap();
        assert_eq!(names(root, &found), ["a.png", "again/b.png"]);
        assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    }

    #[cfg(unix)]
    #[test]
    fn dangling_links_and_unreadable_folders_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("a.png"));
        std::os::unix::fs::symlink(root.join("missing"), root.join("gone.png")).unwrap();
        let found = find_images(root).unwrap();
        assert_eq!(names(root, &found), ["a.png"]);
        assert_eq!(found.skipped.len(), 1);
        assert_eq!(found.skipped[0].path, root.join("gone.png"));
    }

    #[test]
    fn folders_beyond_the_depth_cap_are_reported_not_searched() {
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_path_buf();
        for _ in 0..MAX_DEPTH {
            deep.push("d");
        }
        touch(&deep.join("x.png"));
        let found = find_images(dir.path()).unwrap();
        assert!(found.images.is_empty());
        assert_eq!(found.skipped.len(), 1);
        assert!(found.skipped[0].reason.contains("folders deep"));
    }

    #[test]
    fn an_unreadable_root_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let error = find_images(&missing).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&missing.display().to_string())
        );
    }
}
