//! NumPy `.npy` files (float32, C order) and `.npz` archives, the interchange format of the CLI and the exports.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ArrayFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
}

/// Writes `data` with the given shape as a float32 C-order `.npy` file (atomically).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), ArrayFileError> {
    use npyz::WriterBuilder;
    let io = |source| ArrayFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let shape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
    crate::atomic_file::write_with(path, |file| {
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(file)
            .begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    })
    .map_err(io)
}

/// Reads a float32 or float64 `.npy` file as f32 with its shape.
pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>), ArrayFileError> {
    let io = |source| ArrayFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let array = npyz::NpyFile::new(&bytes[..]).map_err(|e| ArrayFileError::Format {
        path: path.to_path_buf(),
        detail: format!("not a .npy file ({e})"),
    })?;
    to_f32(array, path)
}

/// Reads array `name` of a NumPy `.npz` archive as f32 with its shape; an archive with a single
/// array gives that array whatever its name.
pub fn read_npz(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>), ArrayFileError> {
    let format = |detail: String| ArrayFileError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let mut archive = npyz::npz::NpzArchive::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => ArrayFileError::Io {
            path: path.to_path_buf(),
            source: e,
        },
        _ => format(format!("not a .npz file ({e})")),
    })?;
    let mut names: Vec<String> = archive.array_names().map(str::to_string).collect();
    names.sort();
    let chosen = match names.as_slice() {
        [only] => only.clone(),
        _ if names.iter().any(|n| n == name) => name.to_string(),
        _ => {
            return Err(format(format!(
                "no array `{name}` in the archive (it has: {})",
                names.join(", ")
            )));
        }
    };
    let array = archive
        .by_name(&chosen)
        .map_err(|e| format(format!("cannot read array `{chosen}` ({e})")))?
        .ok_or_else(|| format(format!("no array `{chosen}`")))?;
    to_f32(array, path)
}

/// A float32 or float64 C-order array as f32 with its shape.
fn to_f32<R: std::io::Read>(
    array: npyz::NpyFile<R>,
    path: &Path,
) -> Result<(Vec<usize>, Vec<f32>), ArrayFileError> {
    let io = |source| ArrayFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let shape: Vec<usize> = array.shape().iter().map(|&s| s as usize).collect();
    if array.order() != npyz::Order::C {
        return Err(ArrayFileError::Format {
            path: path.to_path_buf(),
            detail: "Fortran-ordered arrays are not supported; save with C order".into(),
        });
    }
    let type_str = array.dtype().descr();
    let data: Vec<f32> = match type_str.as_str() {
        "'<f4'" => array.into_vec::<f32>().map_err(io)?,
        "'<f8'" => array
            .into_vec::<f64>()
            .map_err(io)?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => {
            return Err(ArrayFileError::Format {
                path: path.to_path_buf(),
                detail: format!("element type {other} is not float32/float64"),
            });
        }
    };
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_shape_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_npy(&path, &[2, 3, 4], &data).unwrap();
        let (shape, back) = read_npy(&path).unwrap();
        assert_eq!(shape, vec![2, 3, 4]);
        assert_eq!(back, data);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x93NUMPY"));
        let header = String::from_utf8_lossy(&bytes[10..80]);
        assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    }

    #[test]
    fn npz_arrays_are_found_by_name_or_as_the_only_one() {
        use npyz::WriterBuilder;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.npz");
        let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
        for name in ["arr_0", "other"] {
            let mut w = npz
                .array::<f32>(name, Default::default())
                .unwrap()
                .default_dtype()
                .shape(&[2, 3])
                .begin_nd()
                .unwrap();
            w.extend((0..6).map(|i| i as f32)).unwrap();
            w.finish().unwrap();
        }
        drop(npz);
        let (shape, data) = read_npz(&path, "arr_0").unwrap();
        assert_eq!((shape, data[5]), (vec![2, 3], 5.0));
        let err = read_npz(&path, "missing").unwrap_err().to_string();
        assert!(
            err.contains("d.npz") && err.contains("arr_0, other"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npy");
        std::fs::write(&path, b"hello").unwrap();
        let err = read_npy(&path).unwrap_err();
        assert!(err.to_string().contains("not a .npy file"), "{err}");
    }
}
