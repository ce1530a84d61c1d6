//! NumPy `.npy` files (float32, C order) and `.npz` archives, the interchange format of the CLI and the exports.

use std::io::Read;
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

/// `[rows, cols]` row-major values as `[cols, rows]`.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(data.len(), rows * cols);
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
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
    let array = parse_npy(&bytes).map_err(|detail| ArrayFileError::Format {
        path: path.to_path_buf(),
        detail: format!("not a .npy file ({detail})"),
    })?;
    to_f32(array, path)
}

/// Deflate cannot expand its input more than about 1,032 times: a zip entry declaring more is a lie.
const MAX_DEFLATE_RATIO: u64 = 1_032;

/// Reads array `name` of a NumPy `.npz` archive as f32 with its shape; an archive with a single
/// array gives that array whatever its name. The entry is read whole, at most its declared size,
/// after checking that size against what the entry can hold (so a crafted archive cannot make it
/// allocate more than 1,032 times the file's size).
pub fn read_npz(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>), ArrayFileError> {
    let io = |source| ArrayFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let format = |detail: String| ArrayFileError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format(format!("not a .npz file ({e})")))?;
    let mut names = Vec::new();
    for entry_name in archive.file_names() {
        let entry_name = entry_name.map_err(|e| format(format!("not a .npz file ({e})")))?;
        if let Some(stem) = entry_name.strip_suffix(".npy") {
            names.push(stem.to_string());
        }
    }
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
    let cannot_read =
        |e: &dyn std::fmt::Display| format(format!("cannot read array `{chosen}` ({e})"));
    let mut entry = archive
        .by_name(&format!("{chosen}.npy"))
        .map_err(|e| cannot_read(&e))?;
    let declared = entry.size();
    let holds_at_most = match entry.compression() {
        zip::CompressionMethod::Stored => entry.compressed_size(),
        _ => entry.compressed_size().saturating_mul(MAX_DEFLATE_RATIO),
    };
    if declared > holds_at_most {
        return Err(format(format!(
            "array `{chosen}` declares {declared} bytes but its {} stored bytes cannot hold them",
            entry.compressed_size()
        )));
    }
    let capacity = usize::try_from(declared).map_err(|e| cannot_read(&e))?;
    let mut bytes = Vec::with_capacity(capacity);
    (&mut entry)
        .take(declared)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot_read(&e))?;
    let array = parse_npy(&bytes)
        .map_err(|e| format(format!("array `{chosen}` is not a .npy array ({e})")))?;
    to_f32(array, path)
}

/// Opens `.npy` bytes, first checking that the header the file declares fits in it: the header
/// length field (2 bytes in format 1, 4 in formats 2 and 3) would otherwise be allocated as
/// claimed, up to 4 GiB.
fn parse_npy(bytes: &[u8]) -> Result<npyz::NpyFile<&[u8]>, String> {
    let (width, length_at) = match bytes.get(..8) {
        Some([0x93, b'N', b'U', b'M', b'P', b'Y', 1, _]) => (2, 8),
        Some([0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3, _]) => (4, 8),
        Some(_) => return Err("no .npy magic string".into()),
        None => return Err("shorter than a .npy header".into()),
    };
    let field = bytes
        .get(length_at..length_at + width)
        .ok_or("shorter than a .npy header")?;
    let header = field
        .iter()
        .rev()
        .fold(0usize, |n, &b| (n << 8) | b as usize);
    if length_at + width + header > bytes.len() {
        return Err(format!(
            "the header declares {header} bytes, more than the file holds"
        ));
    }
    npyz::NpyFile::new(bytes).map_err(|e| e.to_string())
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
    fn a_header_length_larger_than_the_file_is_refused_before_allocating() {
        // Format 3 reads a 4-byte header length: here about 632 MiB, in a 40-byte file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lying.npy");
        let mut bytes = b"\x93NUMPY\x03\x00".to_vec();
        bytes.extend_from_slice(&0x277B_0076u32.to_le_bytes());
        bytes.extend_from_slice(b"{'descr': '<f4', 'fortran'");
        std::fs::write(&path, &bytes).unwrap();
        let error = read_npy(&path).unwrap_err().to_string();
        assert!(error.contains("header declares 662372470 bytes"), "{error}");
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
