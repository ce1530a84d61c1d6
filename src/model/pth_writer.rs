//! Writing PyTorch `.pth` files the way `torch.save` does (zip format, PyTorch >= 1.6), so that
//! `torch.load(path, weights_only=True)` reads them.
//!
//! Layout of the archive (every entry stored uncompressed, storage records aligned to 64 bytes):
//! - `archive/data.pkl`: the object tree, pickle protocol 2; every tensor is
//!   `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` where `storage` is a
//!   persistent id `('storage', torch.FloatStorage, '<n>', 'cpu', numel)`;
//! - `archive/data/<n>`: the raw little-endian f32 values of storage `n` (one per tensor, row-major);
//! - `archive/.format_version` (`1`), `archive/.storage_alignment` (`64`), `archive/byteorder` (`little`),
//!   `archive/version` (`3`), as torch 2.x writes them.
//!
//! Only the globals the `weights_only` unpickler allows are referenced (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`). No memo is used: each value is written
//! where it appears. Entries carry a fixed timestamp, so equal trees give byte-identical files.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use super::checkpoint::RawTensor;

/// A Python value to pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<PyValue>),
    List(Vec<PyValue>),
    /// A plain `dict` (keys in insertion order, as Python keeps them).
    Dict(Vec<(PyValue, PyValue)>),
    /// `collections.OrderedDict` with string keys (what `state_dict()` returns).
    OrderedDict(Vec<(String, PyValue)>),
    /// A contiguous f32 CPU tensor (`shape` empty for a 0-dimensional tensor).
    Tensor(RawTensor),
}

impl PyValue {
    pub fn str(s: impl Into<String>) -> PyValue {
        PyValue::Str(s.into())
    }

    /// A plain dict with string keys.
    pub fn dict<K: Into<String>>(items: impl IntoIterator<Item = (K, PyValue)>) -> PyValue {
        PyValue::Dict(
            items
                .into_iter()
                .map(|(k, v)| (PyValue::Str(k.into()), v))
                .collect(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PthWriteError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("{}: tensor with shape {shape:?} holds {len} values", path.display())]
    TensorSize {
        path: PathBuf,
        shape: Vec<usize>,
        len: usize,
    },
}

/// Pickle opcodes used here (protocol 2).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const STOP: u8 = b'.';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const EMPTY_LIST: u8 = b']';
    pub const APPENDS: u8 = b'e';
    pub const EMPTY_DICT: u8 = b'}';
    pub const SETITEMS: u8 = b'u';
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BINPERSID: u8 = b'Q';
}

/// Pickles a tree, collecting the tensors' storages in the order their ids are handed out.
struct Pickler<'a> {
    out: Vec<u8>,
    storages: Vec<&'a RawTensor>,
}

impl<'a> Pickler<'a> {
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(op::GLOBAL);
        self.out
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn int(&mut self, v: i64) {
        match v {
            0..=0xff => self.out.extend_from_slice(&[op::BININT1, v as u8]),
            0x100..=0xffff => {
                self.out.push(op::BININT2);
                self.out.extend_from_slice(&(v as u16).to_le_bytes());
            }
            _ if i32::try_from(v).is_ok() => {
                self.out.push(op::BININT);
                self.out.extend_from_slice(&(v as i32).to_le_bytes());
            }
            _ => {
                self.out.extend_from_slice(&[op::LONG1, 8]);
                self.out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push(op::BINUNICODE);
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    /// Opens a tuple of `n` items (a MARK when no fixed-size opcode fits) and returns its closing opcode.
    fn open_tuple(&mut self, n: usize) -> u8 {
        match n {
            0 => op::EMPTY_TUPLE,
            1 => op::TUPLE1,
            2 => op::TUPLE2,
            3 => op::TUPLE3,
            _ => {
                self.out.push(op::MARK);
                op::TUPLE
            }
        }
    }

    fn tuple(&mut self, items: &'a [PyValue]) {
        let close = self.open_tuple(items.len());
        for item in items {
            self.value(item);
        }
        self.out.push(close);
    }

    fn usize_tuple(&mut self, values: &[usize]) {
        let close = self.open_tuple(values.len());
        for &v in values {
            self.int(v as i64);
        }
        self.out.push(close);
    }

    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.out.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
    }

    fn tensor(&mut self, t: &'a RawTensor) {
        let key = self.storages.len();
        self.storages.push(t);
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.push(op::MARK);
        // Persistent id of the storage.
        self.out.push(op::MARK);
        self.string("storage");
        self.global("torch", "FloatStorage");
        self.string(&key.to_string());
        self.string("cpu");
        self.int(t.data.len() as i64);
        self.out.extend_from_slice(&[op::TUPLE, op::BINPERSID]);
        self.int(0);
        self.usize_tuple(&t.shape);
        let stride: Vec<usize> = (0..t.shape.len())
            .map(|i| t.shape[i + 1..].iter().product())
            .collect();
        self.usize_tuple(&stride);
        self.out.push(op::NEWFALSE);
        self.empty_ordered_dict();
        self.out.extend_from_slice(&[op::TUPLE, op::REDUCE]);
    }

    fn value(&mut self, value: &'a PyValue) {
        match value {
            PyValue::None => self.out.push(op::NONE),
            PyValue::Bool(b) => self.out.push(if *b { op::NEWTRUE } else { op::NEWFALSE }),
            PyValue::Int(v) => self.int(*v),
            PyValue::Float(v) => {
                self.out.push(op::BINFLOAT);
                self.out.extend_from_slice(&v.to_be_bytes());
            }
            PyValue::Str(s) => self.string(s),
            PyValue::Tuple(items) => self.tuple(items),
            PyValue::List(items) => {
                self.out.push(op::EMPTY_LIST);
                if !items.is_empty() {
                    self.out.push(op::MARK);
                    for item in items {
                        self.value(item);
                    }
                    self.out.push(op::APPENDS);
                }
            }
            PyValue::Dict(items) => {
                self.out.push(op::EMPTY_DICT);
                if !items.is_empty() {
                    self.out.push(op::MARK);
                    for (k, v) in items {
                        self.value(k);
                        self.value(v);
                    }
                    self.out.push(op::SETITEMS);
                }
            }
            PyValue::OrderedDict(items) => {
                self.empty_ordered_dict();
                if !items.is_empty() {
                    self.out.push(op::MARK);
                    for (k, v) in items {
                        self.string(k);
                        self.value(v);
                    }
                    self.out.push(op::SETITEMS);
                }
            }
            PyValue::Tensor(t) => self.tensor(t),
        }
    }
}

/// The pickle stream (`data.pkl`) of `root` and the tensors whose storages it refers to, in key order.
pub fn pickle(root: &PyValue) -> (Vec<u8>, Vec<&RawTensor>) {
    let mut p = Pickler {
        out: vec![op::PROTO, 2],
        storages: Vec::new(),
    };
    p.value(root);
    p.out.push(op::STOP);
    (p.out, p.storages)
}

fn check_sizes(value: &PyValue, path: &Path) -> Result<(), PthWriteError> {
    let children: Vec<&PyValue> = match value {
        PyValue::Tuple(items) | PyValue::List(items) => items.iter().collect(),
        PyValue::Dict(items) => items.iter().flat_map(|(k, v)| [k, v]).collect(),
        PyValue::OrderedDict(items) => items.iter().map(|(_, v)| v).collect(),
        PyValue::Tensor(t) if t.shape.iter().product::<usize>() != t.data.len() => {
            return Err(PthWriteError::TensorSize {
                path: path.to_path_buf(),
                shape: t.shape.clone(),
                len: t.data.len(),
            });
        }
        _ => Vec::new(),
    };
    children.into_iter().try_for_each(|c| check_sizes(c, path))
}

fn write_archive<W: Write + Seek>(root: &PyValue, sink: W) -> zip::result::ZipResult<W> {
    use zip::write::SimpleFileOptions;
    let (pickled, storages) = pickle(root);
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(true);
    let aligned = options.with_alignment(64);
    let mut zip = zip::ZipWriter::new(sink);
    zip.start_file("archive/data.pkl", options)?;
    zip.write_all(&pickled)?;
    for (name, text) in [
        (".format_version", "1"),
        (".storage_alignment", "64"),
        ("byteorder", "little"),
    ] {
        zip.start_file(format!("archive/{name}"), options)?;
        zip.write_all(text.as_bytes())?;
    }
    for (key, tensor) in storages.iter().enumerate() {
        zip.start_file(format!("archive/data/{key}"), aligned)?;
        let bytes: Vec<u8> = tensor.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        zip.write_all(&bytes)?;
    }
    zip.start_file("archive/version", options)?;
    zip.write_all(b"3\n")?;
    zip.finish()
}

/// Writes `root` as a `torch.save` file at `path`, through `<path>.partial` and a rename so an
/// interrupted save never leaves a truncated file behind.
pub fn write_pth(path: &Path, root: &PyValue) -> Result<(), PthWriteError> {
    check_sizes(root, path)?;
    let mut zip_error = None;
    crate::atomic_file::write_with(path, |out| {
        write_archive(root, out).map(|_| ()).map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            zip_error = Some(e);
            io
        })
    })
    .map_err(|source| match zip_error.take() {
        Some(source) => PthWriteError::Zip {
            path: path.to_path_buf(),
            source,
        },
        None => PthWriteError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use burn::store::pytorch_reader::{PickleValue, PytorchReader};

    use super::*;

    fn tensor(shape: &[usize], data: &[f32]) -> PyValue {
        PyValue::Tensor(RawTensor {
            shape: shape.to_vec(),
            data: data.to_vec(),
        })
    }

    #[test]
    fn written_files_read_back_with_the_pytorch_reader() {
        let root = PyValue::dict([
            (
                "model",
                PyValue::OrderedDict(vec![
                    ("w".into(), tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.])),
                    ("step".into(), tensor(&[], &[7.])),
                ]),
            ),
            ("epoch", PyValue::Int(70_000)),
            ("big", PyValue::Int(-(1 << 40))),
            ("lr", PyValue::Float(0.25)),
            (
                "groups",
                PyValue::List(vec![PyValue::Tuple(vec![
                    PyValue::Int(300),
                    PyValue::None,
                    PyValue::Bool(true),
                    PyValue::str("x"),
                ])]),
            ),
            (
                "state",
                PyValue::Dict(vec![(PyValue::Int(3), tensor(&[1], &[0.5]))]),
            ),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pth");
        write_pth(&path, &root).unwrap();
        assert!(!dir.path().join("a.pth.partial").exists());

        let reader = PytorchReader::new(&path).unwrap();
        let w = reader.get("model.w").unwrap();
        assert_eq!(w.shape(), &[2, 3]);
        let bytes = w.read().unwrap();
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(values, vec![1., 2., 3., 4., 5., 6.]);
        assert_eq!(reader.get("model.step").unwrap().shape(), &[] as &[usize]);
        assert!(reader.get("state.3").is_some());

        let PickleValue::Dict(top) = PytorchReader::read_pickle_data(&path, None).unwrap() else {
            panic!("not a dict");
        };
        assert_eq!(top["epoch"], PickleValue::Int(70_000));
        assert_eq!(top["big"], PickleValue::Int(-(1 << 40)));
        assert_eq!(top["lr"], PickleValue::Float(0.25));
        assert_eq!(
            top["groups"],
            PickleValue::List(vec![PickleValue::List(vec![
                PickleValue::Int(300),
                PickleValue::None,
                PickleValue::Bool(true),
                PickleValue::String("x".into()),
            ])])
        );
    }

    #[test]
    fn equal_trees_give_identical_files_and_bad_tensors_are_refused() {
        let root = PyValue::dict([("t", tensor(&[2], &[1., 2.]))]);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pth"), dir.path().join("b.pth"));
        write_pth(&a, &root).unwrap();
        write_pth(&b, &root).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let bad = PyValue::dict([("t", tensor(&[3], &[1., 2.]))]);
        let err = write_pth(&a, &bad).unwrap_err();
        assert!(err.to_string().contains("a.pth"), "{err}");
    }
}
