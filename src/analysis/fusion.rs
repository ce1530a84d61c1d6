//! Fusing two dense descriptor sources as sd-dino does (Zhang et al., "A Tale of Two Features",
//! NeurIPS 2023; Junyi42/sd-dino):
//! optional joint ("co") PCA per source over both images, bilinear resampling of the coarser source
//! to the finer grid, separate L2 normalisation per source, per-source weights, concatenation.
//! The second source is another model's [`FeatureMap`] or an external map from a file (for example
//! Stable Diffusion features exported from Python).

use std::path::{Path, PathBuf};

use crate::analysis::features::{FeatureMap, l2_normalize_rows};
use crate::analysis::pca::Pca;
use crate::arrays::transpose;
use crate::model::Grid;

/// A feature map read from a file: `rows x cols` cells of `dim` channels, cells row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalMap {
    pub path: PathBuf,
    pub rows: usize,
    pub cols: usize,
    pub dim: usize,
    /// `[rows * cols, dim]`.
    pub data: Vec<f32>,
}

/// What is wrong with an external feature file.
#[derive(Debug, thiserror::Error)]
pub enum ExternalProblem {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Format(String),
    #[error("expected a [C, h, w] or [1, C, h, w] array (PyTorch layout), got shape {0:?}")]
    Rank(Vec<usize>),
    #[error("value {index} is {value} (NaN or infinite)")]
    NotFinite { index: usize, value: f32 },
    #[error("no tensor named `{name}`; the file has: {}", available.join(", "))]
    MissingTensor {
        name: String,
        available: Vec<String>,
    },
    #[error("the file holds several tensors ({}); name one", names.join(", "))]
    SeveralTensors { names: Vec<String> },
    #[error("unsupported element type {0}; use float32, float16, bfloat16 or float64")]
    DType(String),
    #[error("extension must be .npy or .safetensors")]
    Extension,
}

#[derive(Debug, thiserror::Error)]
pub enum FusionError {
    #[error("{}: {problem}", path.display())]
    External {
        path: PathBuf,
        problem: ExternalProblem,
    },
    #[error(
        "the two images' second-source maps differ in channels: {a} has {dim_a}, {b} has {dim_b}"
    )]
    ChannelMismatch {
        a: String,
        b: String,
        dim_a: usize,
        dim_b: usize,
    },
    #[error(
        "{}: its {rows}x{cols} grid does not have the image's aspect ratio (model grid {grid_rows}x{grid_cols}); was it made from another image or a padded square?",
        path.display()
    )]
    AspectMismatch {
        path: PathBuf,
        rows: usize,
        cols: usize,
        grid_rows: usize,
        grid_cols: usize,
    },
    #[error(
        "co-PCA to {dims} dimensions needs at least that many channels and cells; a source has {channels} channels and {cells} cells"
    )]
    PcaDims {
        dims: usize,
        channels: usize,
        cells: usize,
    },
    #[error("fusion weights must be finite, non-negative and not both zero; got {0:?}")]
    BadWeights([f32; 2]),
}

fn external_error(path: &Path, problem: impl Into<ExternalProblem>) -> FusionError {
    FusionError::External {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Loads a `[C, h, w]` or `[1, C, h, w]` map from `.npy` or `.safetensors` (the only tensor, or
/// `tensor` by name) and transposes it to cells x channels.
pub fn load_external(path: &Path, tensor: Option<&str>) -> Result<ExternalMap, FusionError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let (shape, values) = match extension.as_deref() {
        Some("npy") => crate::arrays::read_npy(path).map_err(|e| match e {
            crate::arrays::ArrayFileError::Io { source, .. } => external_error(path, source),
            crate::arrays::ArrayFileError::Format { detail, .. } => {
                external_error(path, ExternalProblem::Format(detail))
            }
        })?,
        Some("safetensors") => read_safetensors(path, tensor)?,
        _ => return Err(external_error(path, ExternalProblem::Extension)),
    };
    let (dim, rows, cols) = match shape[..] {
        [c, h, w] | [1, c, h, w] if c > 0 && h > 0 && w > 0 => (c, h, w),
        _ => return Err(external_error(path, ExternalProblem::Rank(shape))),
    };
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(external_error(
            path,
            ExternalProblem::NotFinite { index, value },
        ));
    }
    let data = transpose(&values, dim, rows * cols);
    Ok(ExternalMap {
        path: path.to_path_buf(),
        rows,
        cols,
        dim,
        data,
    })
}

fn read_safetensors(
    path: &Path,
    name: Option<&str>,
) -> Result<(Vec<usize>, Vec<f32>), FusionError> {
    use safetensors::Dtype;
    let bytes = std::fs::read(path).map_err(|e| external_error(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        external_error(
            path,
            ExternalProblem::Format(format!("not a safetensors file ({e})")),
        )
    })?;
    let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    names.sort();
    let chosen = match (name, names.as_slice()) {
        (Some(n), _) if names.iter().any(|x| x == n) => n.to_string(),
        (Some(n), _) => {
            return Err(external_error(
                path,
                ExternalProblem::MissingTensor {
                    name: n.to_string(),
                    available: names,
                },
            ));
        }
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(external_error(
                path,
                ExternalProblem::SeveralTensors { names },
            ));
        }
    };
    let view = file
        .tensor(&chosen)
        .map_err(|e| external_error(path, ExternalProblem::Format(e.to_string())))?;
    let raw = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(external_error(
                path,
                ExternalProblem::DType(format!("{other:?}")),
            ));
        }
    };
    Ok((view.shape().to_vec(), values))
}

/// The second source of one image.
#[derive(Clone, Copy, Debug)]
pub enum SecondSource<'a> {
    /// Another model's descriptors of the same image.
    Model(&'a FeatureMap),
    /// A map from a file, assumed to cover the model image.
    External(&'a ExternalMap),
}

impl SecondSource<'_> {
    fn cells(&self) -> Cells {
        match *self {
            SecondSource::Model(m) => Cells {
                rows: m.grid.rows,
                cols: m.grid.cols,
                dim: m.dim,
                data: m.data.clone(),
            },
            SecondSource::External(e) => Cells {
                rows: e.rows,
                cols: e.cols,
                dim: e.dim,
                data: e.data.clone(),
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            SecondSource::Model(_) => "the second model".into(),
            SecondSource::External(e) => e.path.display().to_string(),
        }
    }
}

/// How the two sources are combined.
#[derive(Clone, Debug, PartialEq)]
pub struct FusionConfig {
    /// Weights of (primary, second) after per-source normalisation; sd-dino's default is 1, 1.
    pub weights: [f32; 2],
    /// Joint PCA of each source over both images to this many dimensions (sd-dino's co-PCA).
    pub co_pca: Option<usize>,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            weights: [1.0, 1.0],
            co_pca: None,
        }
    }
}

/// A source's map on its own grid.
#[derive(Clone, Debug)]
struct Cells {
    rows: usize,
    cols: usize,
    dim: usize,
    data: Vec<f32>,
}

impl Cells {
    fn of(map: &FeatureMap) -> Cells {
        Cells {
            rows: map.grid.rows,
            cols: map.grid.cols,
            dim: map.dim,
            data: map.data.clone(),
        }
    }

    fn len(&self) -> usize {
        self.rows * self.cols
    }
}

/// Source index and weights of one output sample along an axis for `F.interpolate(mode="bilinear",
/// align_corners=False)`: `src = max(0, (i + 0.5) * in / out - 0.5)`.
fn interpolation_axis(from: usize, to: usize) -> Vec<(usize, usize, f32)> {
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|i| {
            let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
            let low = (src.floor() as usize).min(from - 1);
            let high = (low + 1).min(from - 1);
            (low, high, (src - low as f64) as f32)
        })
        .collect()
}

/// Bilinear resampling (align_corners=False) of a `[rows * cols, dim]` map to `to = (rows, cols)`.
pub fn resize_bilinear(
    data: &[f32],
    dim: usize,
    from: (usize, usize),
    to: (usize, usize),
) -> Vec<f32> {
    if from == to {
        return data.to_vec();
    }
    let ys = interpolation_axis(from.0, to.0);
    let xs = interpolation_axis(from.1, to.1);
    let cell = |r: usize, c: usize| &data[(r * from.1 + c) * dim..(r * from.1 + c + 1) * dim];
    let mut out = Vec::with_capacity(to.0 * to.1 * dim);
    for &(y0, y1, wy) in &ys {
        for &(x0, x1, wx) in &xs {
            let (a, b, c, d) = (cell(y0, x0), cell(y0, x1), cell(y1, x0), cell(y1, x1));
            for k in 0..dim {
                let top = a[k] + (b[k] - a[k]) * wx;
                let bottom = c[k] + (d[k] - c[k]) * wx;
                out.push(top + (bottom - top) * wy);
            }
        }
    }
    out
}

/// Replaces both images' maps of one source by their projection on a PCA fitted to both together.
fn co_pca(maps: [&mut Cells; 2], dims: usize) -> Result<(), FusionError> {
    let [a, b] = maps;
    let cells = a.len() + b.len();
    if dims == 0 || dims > a.dim || dims > cells {
        return Err(FusionError::PcaDims {
            dims,
            channels: a.dim,
            cells,
        });
    }
    let mut joint = a.data.clone();
    joint.extend_from_slice(&b.data);
    let pca = Pca::fit(&joint, a.dim, dims);
    for map in [a, b] {
        map.data = pca.transform(&map.data);
        map.dim = pca.n_components();
    }
    Ok(())
}

/// Checks that an external map can stand for the image whose model grid is `grid`.
fn check_aspect(external: &ExternalMap, grid: Grid) -> Result<(), FusionError> {
    let ours = external.cols as f64 / external.rows as f64;
    let model = grid.cols as f64 / grid.rows as f64;
    if (ours / model - 1.0).abs() > 0.1 {
        return Err(FusionError::AspectMismatch {
            path: external.path.clone(),
            rows: external.rows,
            cols: external.cols,
            grid_rows: grid.rows,
            grid_cols: grid.cols,
        });
    }
    Ok(())
}

/// Fuses the primary model's maps of images A and B with a second source.
///
/// Per image, the output lives on the finer of the two grids: the second model's when it has more
/// cells, otherwise the primary's. External maps carry no pixel geometry, so they are always
/// resampled to the primary grid (up when coarser, as sd-dino does; down when finer). Channels are
/// `[primary, second]`, each block unit-normalised per cell and scaled by its weight.
pub fn fuse_pair(
    primary: [&FeatureMap; 2],
    second: [SecondSource<'_>; 2],
    config: &FusionConfig,
) -> Result<[FeatureMap; 2], FusionError> {
    let weights = config.weights;
    check_weights(weights)?;
    for (map, source) in primary.iter().zip(&second) {
        if let SecondSource::External(e) = source {
            check_aspect(e, map.grid)?;
        }
    }
    let mut first_cells = primary.map(Cells::of);
    let mut second_cells = second.map(|s| s.cells());
    if second_cells[0].dim != second_cells[1].dim {
        return Err(FusionError::ChannelMismatch {
            a: second[0].describe(),
            b: second[1].describe(),
            dim_a: second_cells[0].dim,
            dim_b: second_cells[1].dim,
        });
    }
    if let Some(dims) = config.co_pca {
        let [a, b] = &mut first_cells;
        co_pca([a, b], dims)?;
        let [a, b] = &mut second_cells;
        co_pca([a, b], dims)?;
    }
    let [first_a, first_b] = first_cells;
    let [second_a, second_b] = second_cells;
    Ok([
        fuse_image(primary[0], second[0], [first_a, second_a], weights),
        fuse_image(primary[1], second[1], [first_b, second_b], weights),
    ])
}

/// Fuses one image's maps of two sources that cover the same model image (no PCA): sd-dino's
/// per-source L2 normalisation, weights and concatenation, on the finer of the two grids.
pub fn fuse_maps(
    primary: &FeatureMap,
    second: &FeatureMap,
    weights: [f32; 2],
) -> Result<FeatureMap, FusionError> {
    check_weights(weights)?;
    Ok(fuse_image(
        primary,
        SecondSource::Model(second),
        [Cells::of(primary), Cells::of(second)],
        weights,
    ))
}

fn check_weights(weights: [f32; 2]) -> Result<(), FusionError> {
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights == [0.0, 0.0] {
        return Err(FusionError::BadWeights(weights));
    }
    Ok(())
}

/// One image's fused map from its (possibly PCA-reduced) source cells.
fn fuse_image(
    primary: &FeatureMap,
    second: SecondSource<'_>,
    sources: [Cells; 2],
    weights: [f32; 2],
) -> FeatureMap {
    let (grid, image_size) = match second {
        SecondSource::Model(m) if m.grid.len() > primary.grid.len() => (m.grid, m.image_size),
        _ => (primary.grid, primary.image_size),
    };
    let parts: Vec<(Vec<f32>, usize)> = sources
        .into_iter()
        .zip(weights)
        .map(|(cells, weight)| {
            let mut data = resize_bilinear(
                &cells.data,
                cells.dim,
                (cells.rows, cells.cols),
                (grid.rows, grid.cols),
            );
            l2_normalize_rows(&mut data, cells.dim);
            data.iter_mut().for_each(|v| *v *= weight);
            (data, cells.dim)
        })
        .collect();
    let dim: usize = parts.iter().map(|(_, d)| d).sum();
    let mut data = Vec::with_capacity(grid.len() * dim);
    for cell in 0..grid.len() {
        for (values, d) in &parts {
            data.extend_from_slice(&values[cell * d..(cell + 1) * d]);
        }
    }
    FeatureMap {
        grid,
        dim,
        data,
        image_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::similarity::{Score, ScoringRows, nearest_neighbors};

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect()
    }

    fn feature_map(rows: usize, cols: usize, dim: usize, seed: u64) -> FeatureMap {
        FeatureMap {
            grid: Grid {
                rows,
                cols,
                patch: 8,
                stride: 4,
            },
            dim,
            data: values(rows * cols * dim, seed),
            image_size: (4 * cols + 4, 4 * rows + 4),
        }
    }

    fn external(rows: usize, cols: usize, dim: usize, seed: u64) -> ExternalMap {
        ExternalMap {
            path: PathBuf::from(format!("ext{seed}.npy")),
            rows,
            cols,
            dim,
            data: values(rows * cols * dim, seed),
        }
    }

    fn matches(a: &FeatureMap, b: &FeatureMap, score: Score) -> Vec<usize> {
        nearest_neighbors(
            &ScoringRows::from_map(a, score),
            &ScoringRows::from_map(b, score),
        )
        .forward
    }

    fn fuse(
        primary: [&FeatureMap; 2],
        second: [&ExternalMap; 2],
        weights: [f32; 2],
    ) -> [FeatureMap; 2] {
        let config = FusionConfig {
            weights,
            co_pca: None,
        };
        fuse_pair(
            primary,
            [
                SecondSource::External(second[0]),
                SecondSource::External(second[1]),
            ],
            &config,
        )
        .unwrap()
    }

    #[test]
    fn bilinear_resize_matches_torch_align_corners_false() {
        // torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False).
        let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 1, (2, 2), (4, 4));
        let expected = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (o, e) in out.iter().zip(expected) {
            assert!((o - e).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn a_zero_weight_leaves_matching_to_the_other_source() {
        let (pa, pb) = (feature_map(6, 8, 5, 1), feature_map(6, 8, 5, 2));
        let (ea, eb) = (external(3, 4, 7, 3), external(3, 4, 7, 4));
        let [fa, fb] = fuse([&pa, &pb], [&ea, &eb], [1.0, 0.0]);
        assert_eq!((fa.grid, fa.dim), (pa.grid, 12));
        assert_eq!(
            matches(&fa, &fb, Score::NegativeL2),
            matches(&pa, &pb, Score::Cosine)
        );

        let [fa, fb] = fuse([&pa, &pb], [&ea, &eb], [0.0, 1.0]);
        let up = |e: &ExternalMap| FeatureMap {
            data: resize_bilinear(&e.data, e.dim, (e.rows, e.cols), (6, 8)),
            dim: e.dim,
            ..pa.clone()
        };
        assert_eq!(
            matches(&fa, &fb, Score::NegativeL2),
            matches(&up(&ea), &up(&eb), Score::Cosine)
        );
    }

    #[test]
    fn scaling_both_weights_keeps_the_l2_matches() {
        let (pa, pb) = (feature_map(5, 5, 6, 5), feature_map(5, 5, 6, 6));
        let (ea, eb) = (external(5, 5, 3, 7), external(5, 5, 3, 8));
        let [a1, b1] = fuse([&pa, &pb], [&ea, &eb], [1.0, 0.5]);
        let [a3, b3] = fuse([&pa, &pb], [&ea, &eb], [3.0, 1.5]);
        assert_eq!(
            matches(&a1, &b1, Score::NegativeL2),
            matches(&a3, &b3, Score::NegativeL2)
        );
        // Unequal weights do change the matches here, so the test can fail.
        let [a2, b2] = fuse([&pa, &pb], [&ea, &eb], [1.0, 3.0]);
        assert_ne!(
            matches(&a1, &b1, Score::NegativeL2),
            matches(&a2, &b2, Score::NegativeL2)
        );
    }

    #[test]
    fn a_sources_scale_does_not_matter() {
        let (pa, pb) = (feature_map(4, 6, 6, 9), feature_map(4, 6, 6, 10));
        let (ea, eb) = (external(2, 3, 4, 11), external(2, 3, 4, 12));
        let scaled = |e: &ExternalMap| ExternalMap {
            data: e.data.iter().map(|v| v * 250.0).collect(),
            ..e.clone()
        };
        let plain = fuse([&pa, &pb], [&ea, &eb], [1.0, 1.0]);
        let loud = fuse([&pa, &pb], [&scaled(&ea), &scaled(&eb)], [1.0, 1.0]);
        for (p, l) in plain.iter().zip(&loud) {
            assert!(
                p.data
                    .iter()
                    .zip(&l.data)
                    .all(|(x, y)| (x - y).abs() < 1e-5)
            );
        }
    }

    #[test]
    fn a_finer_second_model_sets_the_grid() {
        let (pa, pb) = (feature_map(3, 4, 5, 13), feature_map(3, 4, 5, 14));
        let (sa, sb) = (feature_map(6, 8, 2, 15), feature_map(6, 8, 2, 16));
        let [fa, _] = fuse_pair(
            [&pa, &pb],
            [SecondSource::Model(&sa), SecondSource::Model(&sb)],
            &FusionConfig::default(),
        )
        .unwrap();
        assert_eq!(
            (fa.grid, fa.dim, fa.image_size),
            (sa.grid, 7, sa.image_size)
        );
        // Every cell holds two unit blocks.
        let norm: f32 = fa.descriptor(5)[..5].iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn co_pca_reduces_each_source() {
        let (pa, pb) = (feature_map(4, 4, 6, 17), feature_map(4, 4, 6, 18));
        let (ea, eb) = (external(4, 4, 5, 19), external(4, 4, 5, 20));
        let config = FusionConfig {
            weights: [1.0, 1.0],
            co_pca: Some(3),
        };
        let [fa, fb] = fuse_pair(
            [&pa, &pb],
            [SecondSource::External(&ea), SecondSource::External(&eb)],
            &config,
        )
        .unwrap();
        assert_eq!((fa.dim, fb.dim), (6, 6));
        let too_many = FusionConfig {
            co_pca: Some(9),
            ..config
        };
        let err = fuse_pair(
            [&pa, &pb],
            [SecondSource::External(&ea), SecondSource::External(&eb)],
            &too_many,
        )
        .unwrap_err();
        assert!(matches!(err, FusionError::PcaDims { dims: 9, .. }), "{err}");
    }

    #[test]
    fn mismatched_maps_are_rejected_with_the_file_name() {
        let (pa, pb) = (feature_map(4, 6, 3, 21), feature_map(4, 6, 3, 22));
        let (ea, eb) = (external(2, 3, 4, 23), external(2, 3, 5, 24));
        let second = [SecondSource::External(&ea), SecondSource::External(&eb)];
        let err = fuse_pair([&pa, &pb], second, &FusionConfig::default()).unwrap_err();
        assert!(
            err.to_string().contains("ext23.npy has 4, ext24.npy has 5"),
            "{err}"
        );
        let square = external(4, 4, 4, 25);
        let second = [
            SecondSource::External(&square),
            SecondSource::External(&square),
        ];
        let err = fuse_pair([&pa, &pb], second, &FusionConfig::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("ext25.npy: its 4x4 grid"),
            "{err}"
        );
        let config = FusionConfig {
            weights: [0.0, 0.0],
            co_pca: None,
        };
        let second = [SecondSource::External(&ea), SecondSource::External(&ea)];
        assert!(matches!(
            fuse_pair([&pa, &pb], second, &config),
            Err(FusionError::BadWeights(_))
        ));
    }

    #[test]
    fn external_files_load_in_pytorch_layout_or_fail_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // [1, C=2, h=2, w=3]: channel planes; cell (0, 1) holds (1, 7).
        let planes: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let good = dir.path().join("a.npy");
        crate::arrays::write_npy(&good, &[1, 2, 2, 3], &planes).unwrap();
        let map = load_external(&good, None).unwrap();
        assert_eq!((map.rows, map.cols, map.dim), (2, 3, 2));
        assert_eq!(&map.data[2..4], &[1.0, 7.0]);

        let flat = dir.path().join("flat.npy");
        crate::arrays::write_npy(&flat, &[12], &planes).unwrap();
        let err = load_external(&flat, None).unwrap_err().to_string();
        assert!(
            err.contains("flat.npy") && err.contains("[C, h, w]"),
            "{err}"
        );

        let mut bad = planes.clone();
        bad[5] = f32::NAN;
        let nan = dir.path().join("nan.npy");
        crate::arrays::write_npy(&nan, &[2, 2, 3], &bad).unwrap();
        let err = load_external(&nan, None).unwrap_err().to_string();
        assert!(
            err.contains("nan.npy") && err.contains("value 5 is NaN"),
            "{err}"
        );

        let st = dir.path().join("two.safetensors");
        let bytes: Vec<u8> = planes.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = |shape: Vec<usize>| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes).unwrap()
        };
        safetensors::serialize_to_file(
            [("s3", view(vec![2, 2, 3])), ("s4", view(vec![1, 2, 2, 3]))],
            None,
            &st,
        )
        .unwrap();
        let err = load_external(&st, None).unwrap_err().to_string();
        assert!(
            err.contains("two.safetensors") && err.contains("s3, s4"),
            "{err}"
        );
        assert_eq!(load_external(&st, Some("s4")).unwrap().data, map.data);
        assert!(
            load_external(&st, Some("s5"))
                .unwrap_err()
                .to_string()
                .contains("no tensor named `s5`")
        );
    }
}
