//! Stable Diffusion weights from diffusers / transformers `.safetensors` files, read one tensor at
//! a time: the UNet file is 3.4 GB in f32, so it is never held in memory as bytes beside its
//! decoded values. F16 and BF16 files are decoded to f32, the precision everything computes in.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

use super::group_norm::GroupNorm;
use crate::model::raw_tensor::f32_values;

/// Largest JSON header accepted; real headers are well under 1 MB.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// What is wrong with a weights file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsProblem {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a safetensors file ({0})")]
    NotSafetensors(String),
    #[error("the file is truncated: tensor `{name}` ends past its end")]
    Truncated { name: String },
    #[error("tensor `{name}` is missing")]
    Missing { name: String },
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tensor `{name}` has unsupported element type {dtype}")]
    DType { name: String, dtype: String },
}

/// A weights problem, with the file it was found in.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct WeightsError {
    pub path: PathBuf,
    pub problem: WeightsProblem,
}

#[derive(Clone, Debug)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

/// The index of a `.safetensors` file; tensors are read from disk on demand.
#[derive(Clone, Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    data_start: u64,
    entries: HashMap<String, Entry>,
}

impl SafetensorsFile {
    /// Reads and checks the header: every tensor's bytes must lie inside the file and match its
    /// shape and type, so a truncated download is found here rather than halfway through loading.
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        Self::index(path).map_err(|problem| WeightsError {
            path: path.to_path_buf(),
            problem,
        })
    }

    fn index(path: &Path) -> Result<Self, WeightsProblem> {
        let mut file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes)
            .map_err(|_| WeightsProblem::NotSafetensors("shorter than 8 bytes".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
            return Err(WeightsProblem::NotSafetensors(format!(
                "header length {header_len} does not fit a {file_len}-byte file"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)?;
        let json: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| WeightsProblem::NotSafetensors(format!("bad header: {e}")))?;
        let data_start = 8 + header_len;
        let mut entries = HashMap::with_capacity(json.len());
        for (name, value) in json {
            if name == "__metadata__" {
                continue;
            }
            let entry = parse_entry(&name, &value)?;
            if data_start + entry.end > file_len {
                return Err(WeightsProblem::Truncated { name });
            }
            entries.insert(name, entry);
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            data_start,
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Every tensor name in the file, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The stored shape of `name`, if the file has it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// The values of `name` as f32, after checking its shape is `expected`.
    pub fn read(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, WeightsError> {
        self.read_values(name, expected)
            .map_err(|problem| self.error(problem))
    }

    fn read_values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, WeightsProblem> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| WeightsProblem::Missing { name: name.into() })?;
        if entry.shape != expected {
            return Err(WeightsProblem::Shape {
                name: name.into(),
                found: entry.shape.clone(),
                expected: expected.to_vec(),
            });
        }
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.data_start + entry.begin))?;
        let mut bytes = vec![0u8; (entry.end - entry.begin) as usize];
        file.read_exact(&mut bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => WeightsProblem::Truncated { name: name.into() },
            _ => WeightsProblem::Io(e),
        })?;
        f32_values(&bytes, &entry.dtype).ok_or_else(|| WeightsProblem::DType {
            name: name.into(),
            dtype: entry.dtype.clone(),
        })
    }

    /// An error about this file.
    pub fn error(&self, problem: WeightsProblem) -> WeightsError {
        WeightsError {
            path: self.path.clone(),
            problem,
        }
    }

    /// `name` as a tensor of shape `expected` on `device`.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        expected: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, WeightsError> {
        let values = self.read(name, &expected)?;
        Ok(Tensor::from_data(TensorData::new(values, expected), device))
    }

    /// A PyTorch `nn.Linear` (`{prefix}.weight` `[out, in]`, optional `{prefix}.bias`) as a burn
    /// `Linear`, whose weight is `[in, out]`.
    pub fn linear(
        &self,
        prefix: &str,
        [inputs, outputs]: [usize; 2],
        bias: bool,
        device: &Device,
    ) -> Result<Linear, WeightsError> {
        let weight = self.tensor(&format!("{prefix}.weight"), [outputs, inputs], device)?;
        let bias = match bias {
            true => Some(Param::from_tensor(self.tensor(
                &format!("{prefix}.bias"),
                [outputs],
                device,
            )?)),
            false => None,
        };
        Ok(Linear {
            weight: Param::from_tensor(weight.transpose()),
            bias,
        })
    }

    /// A PyTorch `nn.Conv2d` with a square kernel, symmetric padding and a bias.
    pub fn conv2d(
        &self,
        prefix: &str,
        [inputs, outputs]: [usize; 2],
        kernel: usize,
        stride: usize,
        padding: PaddingConfig2d,
        device: &Device,
    ) -> Result<Conv2d, WeightsError> {
        let weight = self.tensor(
            &format!("{prefix}.weight"),
            [outputs, inputs, kernel, kernel],
            device,
        )?;
        let bias = self.tensor(&format!("{prefix}.bias"), [outputs], device)?;
        Ok(Conv2d {
            weight: Param::from_tensor(weight),
            bias: Some(Param::from_tensor(bias)),
            stride: [stride; 2],
            kernel_size: [kernel; 2],
            dilation: [1, 1],
            groups: 1,
            padding,
        })
    }

    /// A PyTorch `nn.LayerNorm(dim, eps)` with affine weights.
    pub fn layer_norm(
        &self,
        prefix: &str,
        dim: usize,
        eps: f64,
        device: &Device,
    ) -> Result<LayerNorm, WeightsError> {
        let mut norm = LayerNormConfig::new(dim).with_epsilon(eps).init(device);
        norm.gamma = Param::from_tensor(self.tensor(&format!("{prefix}.weight"), [dim], device)?);
        norm.beta = Some(Param::from_tensor(self.tensor(
            &format!("{prefix}.bias"),
            [dim],
            device,
        )?));
        Ok(norm)
    }

    /// A PyTorch `nn.GroupNorm(groups, channels, eps)` with affine weights.
    pub fn group_norm(
        &self,
        prefix: &str,
        groups: usize,
        channels: usize,
        eps: f64,
        device: &Device,
    ) -> Result<GroupNorm, WeightsError> {
        let gamma = self.tensor(&format!("{prefix}.weight"), [channels], device)?;
        let beta = self.tensor(&format!("{prefix}.bias"), [channels], device)?;
        Ok(GroupNorm::new(gamma, beta, groups, eps))
    }
}

fn parse_entry(name: &str, value: &serde_json::Value) -> Result<Entry, WeightsProblem> {
    let bad = |what: &str| WeightsProblem::NotSafetensors(format!("tensor `{name}`: {what}"));
    let dtype = value["dtype"]
        .as_str()
        .ok_or_else(|| bad("no dtype"))?
        .to_string();
    let shape = value["shape"]
        .as_array()
        .ok_or_else(|| bad("no shape"))?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("bad shape"))?;
    let offsets = value["data_offsets"]
        .as_array()
        .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)))
        .ok_or_else(|| bad("bad data_offsets"))?;
    let (begin, end) = offsets;
    let element_bytes = match dtype.as_str() {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        _ => 1,
    };
    let bytes = shape
        .iter()
        .try_fold(element_bytes as u64, |n, &d| n.checked_mul(d as u64));
    if end < begin || bytes != Some(end - begin) {
        return Err(bad("its byte range does not match its shape"));
    }
    Ok(Entry {
        dtype,
        shape,
        begin,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> tempfile::NamedTempFile {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            let begin = data.len();
            data.extend_from_slice(bytes);
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
            );
        }
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&header);
        out.extend_from_slice(&data);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), out).unwrap();
        file
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reads_f32_and_f16_tensors_and_checks_shapes() {
        let half: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let file = write_file(&[
            ("a", "F32", vec![2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
            ("b", "F16", vec![2], half),
        ]);
        let weights = SafetensorsFile::open(file.path()).unwrap();
        assert_eq!(weights.read("a", &[2, 2]).unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(weights.read("b", &[2]).unwrap(), [1.5, -2.0]);
        let err = weights.read("a", &[4]).unwrap_err();
        assert!(matches!(err.problem, WeightsProblem::Shape { .. }), "{err}");
        let err = weights.read("c", &[1]).unwrap_err();
        assert!(err.to_string().contains("`c` is missing"), "{err}");
        assert!(err.to_string().contains(&file.path().display().to_string()));
    }

    #[test]
    fn a_truncated_file_is_refused_when_opened_naming_the_tensor() {
        let file = write_file(&[
            ("first", "F32", vec![2], f32_bytes(&[1.0, 2.0])),
            ("last", "F32", vec![3], f32_bytes(&[1.0, 2.0, 3.0])),
        ]);
        let bytes = std::fs::read(file.path()).unwrap();
        std::fs::write(file.path(), &bytes[..bytes.len() - 4]).unwrap();
        let err = SafetensorsFile::open(file.path()).unwrap_err();
        assert!(
            matches!(&err.problem, WeightsProblem::Truncated { name } if name == "last"),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_inconsistent_headers_are_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"PK\x03\x04 not safetensors at all").unwrap();
        let err = SafetensorsFile::open(file.path()).unwrap_err();
        assert!(
            matches!(err.problem, WeightsProblem::NotSafetensors(_)),
            "{err}"
        );

        let wrong_size = write_file(&[("a", "F32", vec![3], f32_bytes(&[1.0, 2.0]))]);
        let err = SafetensorsFile::open(wrong_size.path()).unwrap_err();
        assert!(
            matches!(err.problem, WeightsProblem::NotSafetensors(_)),
            "{err}"
        );
    }

    #[test]
    fn integer_tensors_are_indexed_but_not_decoded() {
        let file = write_file(&[("ids", "I64", vec![1], 7i64.to_le_bytes().to_vec())]);
        let weights = SafetensorsFile::open(file.path()).unwrap();
        let err = weights.read("ids", &[1]).unwrap_err();
        assert!(matches!(err.problem, WeightsProblem::DType { .. }), "{err}");
    }

    #[test]
    fn linear_weights_are_transposed_to_burns_layout() {
        let file = write_file(&[
            // PyTorch [out = 3, in = 2].
            (
                "fc.weight",
                "F32",
                vec![3, 2],
                f32_bytes(&[1., 2., 3., 4., 5., 6.]),
            ),
            ("fc.bias", "F32", vec![3], f32_bytes(&[0.5, 0.0, -0.5])),
        ]);
        let device = Device::flex();
        let weights = SafetensorsFile::open(file.path()).unwrap();
        let fc = weights.linear("fc", [2, 3], true, &device).unwrap();
        let y = fc.forward(Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 1.0], [1, 2]),
            &device,
        ));
        assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), [3.5, 7.0, 10.5]);
    }
}
