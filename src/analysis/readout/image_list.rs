//! A labelled image set given as a CSV list of `path,label` rows (paths relative to the list's
//! folder; an empty or missing label leaves the image unlabelled; a `path,label` header is
//! optional), and the choice between such a list and a folder of class sub-folders.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::embed::{LabelledImages, labelled_folder};
use crate::image_files::FolderError;

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{}: {source}", file.display())]
    Read { file: PathBuf, source: csv::Error },
    #[error("{}: line {line}: expected `path,label` or `path`, got {fields} fields", file.display())]
    Fields {
        file: PathBuf,
        line: u64,
        fields: usize,
    },
    #[error("{}: line {line}: {}: no such file", file.display(), path.display())]
    Missing {
        file: PathBuf,
        line: u64,
        path: PathBuf,
    },
    #[error("{}: no images listed", file.display())]
    Empty { file: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum ImageSetError {
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    List(#[from] ListError),
}

/// The images listed in the CSV `file`, in its order.
pub fn labelled_list(file: &Path) -> Result<LabelledImages, ListError> {
    let read = |source| ListError::Read {
        file: file.to_path_buf(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(file)
        .map_err(read)?;
    let base = file.parent().unwrap_or(Path::new(""));
    let mut rows: Vec<(PathBuf, Option<String>)> = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(read)?;
        let line = record.position().map_or(index as u64 + 1, |p| p.line());
        let fields: Vec<&str> = record.iter().collect();
        if index == 0
            && fields
                .first()
                .is_some_and(|f| f.eq_ignore_ascii_case("path"))
        {
            continue;
        }
        let (path, label) = match fields.as_slice() {
            [""] | [] => continue,
            [path] => (*path, None),
            [path, label] => (*path, Some(*label).filter(|l| !l.is_empty())),
            _ => {
                return Err(ListError::Fields {
                    file: file.to_path_buf(),
                    line,
                    fields: fields.len(),
                });
            }
        };
        let path = base.join(path);
        if !path.is_file() {
            return Err(ListError::Missing {
                file: file.to_path_buf(),
                line,
                path,
            });
        }
        rows.push((path, label.map(str::to_string)));
    }
    if rows.is_empty() {
        return Err(ListError::Empty {
            file: file.to_path_buf(),
        });
    }
    let classes: Vec<String> = rows
        .iter()
        .filter_map(|(_, l)| l.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let labels = rows
        .iter()
        .map(|(_, l)| l.as_ref().and_then(|l| classes.iter().position(|c| c == l)))
        .collect();
    Ok(LabelledImages {
        paths: rows.into_iter().map(|(p, _)| p).collect(),
        labels,
        classes,
        subsets: None,
        skipped: Vec::new(),
    })
}

/// A `.csv` list, or a folder of class sub-folders.
pub fn labelled_images(path: &Path) -> Result<LabelledImages, ImageSetError> {
    let is_list = path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    Ok(if is_list {
        labelled_list(path)?
    } else {
        labelled_folder(path)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::new(8, 8).save(path).unwrap();
    }

    #[test]
    fn a_list_gives_paths_in_its_order_sorted_classes_and_unlabelled_rows() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.png", "img/b.png", "c.png", "d d.png"] {
            touch(&dir.path().join(name));
        }
        let list = dir.path().join("set.csv");
        std::fs::write(
            &list,
            "path,label\nimg/b.png,zebra\na.png, ant \nc.png,\n\"d d.png\"\n",
        )
        .unwrap();
        let set = labelled_images(&list).unwrap();
        let names: Vec<_> = set
            .paths
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf())
            .collect();
        let expected: Vec<PathBuf> = ["img/b.png", "a.png", "c.png", "d d.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(names, expected);
        assert_eq!(set.classes, ["ant", "zebra"]);
        assert_eq!(set.labels, [Some(1), Some(0), None, None]);
    }

    #[test]
    fn missing_files_and_extra_fields_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("a.png"));
        let list = dir.path().join("set.csv");
        std::fs::write(&list, "a.png,x\nnope.png,y\n").unwrap();
        let err = labelled_list(&list).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("nope.png"), "{err}");
        std::fs::write(&list, "a.png,x,extra\n").unwrap();
        let err = labelled_list(&list).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("3 fields"), "{err}");
        std::fs::write(&list, "path,label\n").unwrap();
        assert!(matches!(labelled_list(&list), Err(ListError::Empty { .. })));
    }
}
