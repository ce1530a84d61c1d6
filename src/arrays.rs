//! NumPy `.npy` files (float32, C order), the interchange format of the CLI and the exports.

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

/// Writes `data` with the given shape as a float32 C-order `.npy` file.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), ArrayFileError> {
    use npyz::WriterBuilder;
    let io = |source| ArrayFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let shape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(file)
        .begin_nd()
        .map_err(io)?;
    writer.extend(data.iter().copied()).map_err(io)?;
    writer.finish().map_err(io)
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
    fn garbage_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npy");
        std::fs::write(&path, b"hello").unwrap();
        let err = read_npy(&path).unwrap_err();
        assert!(err.to_string().contains("not a .npy file"), "{err}");
    }
}
