//! Export of the correspondence view: the view as one PNG (source with the point, each target
//! with its score heatmap and best match, best-buddy markers), a JSON report of the query and
//! the pairs, and each target's scores as `.npy`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use serde_json::{Value, json};

use super::job::{CorrImage, CorrSpec};
use crate::analysis::colormap::Colormap;
use crate::analysis::coords::PixelMap;
use crate::analysis::correspond::{BestBuddies, PointQuery, pixel_heatmap};
use crate::analysis::figure::{RED, dot, overlay_heatmap, pair_color, pair_marker, side_by_side};
use crate::app::export::{create_dir, save_json, save_png, unique_stems};
use crate::app::notifications::AppError;
use crate::app::tasks::ImageId;
use crate::arrays::write_npy;

pub const PNG_FILE: &str = "correspondence.png";
pub const JSON_FILE: &str = "correspondence.json";

/// An answered point query: the point it was asked for and the target of each match.
#[derive(Clone, Debug)]
pub struct ShownQuery {
    /// Source original-image pixel-index `(x, y)`.
    pub point: (f64, f64),
    pub query: Arc<PointQuery>,
    pub targets: Vec<ImageId>,
}

/// What the correspondence view shows, taken by value so the export can run on its own thread.
#[derive(Clone, Debug)]
pub struct CorrExport {
    pub spec: CorrSpec,
    pub source: Arc<CorrImage>,
    pub targets: Vec<Arc<CorrImage>>,
    pub query: Option<ShownQuery>,
    /// Best buddies per target, when shown.
    pub buddies: Vec<(ImageId, Arc<BestBuddies>)>,
    pub colormap: Colormap,
    pub opacity: f32,
}

/// Original-image pixel-index `(x, y)` to model-image pixel-index coordinates.
fn to_model(image: &CorrImage, (x, y): (f64, f64)) -> (f64, f64) {
    image.descriptors.pixels.to_model_index((x, y))
}

/// `(row, col)` of a patch index.
fn row_col(image: &CorrImage, patch: usize) -> [usize; 2] {
    let cols = image.descriptors.grid().cols.max(1);
    [patch / cols, patch % cols]
}

impl CorrExport {
    /// The match of a target in the query, if it was asked.
    fn match_of(&self, target: ImageId) -> Option<&crate::analysis::correspond::PointMatch> {
        let q = self.query.as_ref()?;
        let i = q.targets.iter().position(|&t| t == target)?;
        q.query.matches.get(i)
    }

    fn buddies_of(&self, target: ImageId) -> Option<&BestBuddies> {
        self.buddies
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, b)| b.as_ref())
    }

    /// The view at the model images' size: the source, then each target, side by side.
    pub fn image(&self) -> RgbImage {
        let mut left = self.source.prepared.rgb.clone();
        if let Some(q) = &self.query {
            dot(&mut left, to_model(&self.source, q.point), 5.0, RED);
        }
        for target in &self.targets {
            let mut right = match self.match_of(target.id) {
                Some(found) => {
                    let (w, h) = (target.prepared.width(), target.prepared.height());
                    let pixels = PixelMap::identity(found.grid);
                    let heat = pixel_heatmap(&found.scores, &pixels, (w as u32, h as u32));
                    let mut image = overlay_heatmap(
                        &target.prepared.rgb,
                        &heat.values,
                        self.colormap,
                        self.opacity.clamp(0.0, 1.0),
                    );
                    dot(&mut image, to_model(target, found.best_pixel), 5.0, RED);
                    image
                }
                None => target.prepared.rgb.clone(),
            };
            if let Some(buddies) = self.buddies_of(target.id) {
                let n = buddies.pairs.len();
                for (i, pair) in buddies.pairs.iter().enumerate() {
                    let colour = pair_color(i, n);
                    pair_marker(&mut left, to_model(&self.source, pair.pixel_a), colour);
                    pair_marker(&mut right, to_model(target, pair.pixel_b), colour);
                }
            }
            left = side_by_side(&left, &right);
        }
        left
    }

    /// The JSON report; `heatmaps` names each target's `.npy` file.
    pub fn report(&self, heatmaps: &[(ImageId, String)]) -> Value {
        let source = &self.source;
        let grid = |image: &CorrImage| {
            let g = image.descriptors.grid();
            [g.rows, g.cols]
        };
        let query = self.query.as_ref().map(|q| {
            json!({
                "image": source.name,
                "point": [q.point.0, q.point.1],
                "patch": q.query.source_patch,
                "patch_row_col": row_col(source, q.query.source_patch),
                "patch_center": source.descriptors.pixels.patch_center(q.query.source_patch),
            })
        });
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|target| {
                let found = self.match_of(target.id);
                json!({
                    "image": target.name,
                    "grid": grid(target),
                    "best_patch": found.map(|m| m.best_patch),
                    "best_patch_row_col": found.map(|m| row_col(target, m.best_patch)),
                    "best_pixel": found.map(|m| [m.best_pixel.0, m.best_pixel.1]),
                    "best_score": found.map(|m| m.best_score),
                    "heatmap": heatmaps.iter().find(|(t, _)| *t == target.id).map(|(_, f)| f),
                    "best_buddies": self.buddies_of(target.id),
                })
            })
            .collect();
        json!({
            "descriptors": {
                "layer": self.spec.layer,
                "facet": format!("{:?}", self.spec.facet).to_lowercase(),
                "stride": self.spec.stride,
                "log_bin": self.spec.log_bin,
            },
            "source": {
                "image": source.name,
                "grid": grid(source),
                "model_size": [source.prepared.width(), source.prepared.height()],
            },
            "query": query,
            "targets": targets,
        })
    }
}

/// Into `dir` (created if missing): [`PNG_FILE`], [`JSON_FILE`] and, when a point is matched,
/// `<target stem>_similarity.npy` (`[rows, cols]` scores) per target. Returns the files written.
pub fn export_correspondence(dir: &Path, shown: &CorrExport) -> Result<Vec<PathBuf>, AppError> {
    create_dir(dir)?;
    let mut names = vec![shown.source.name.as_str()];
    names.extend(shown.targets.iter().map(|t| t.name.as_str()));
    let stems = unique_stems(names);
    let mut written = Vec::new();
    let mut heatmaps = Vec::new();
    for (target, stem) in shown.targets.iter().zip(stems.iter().skip(1)) {
        if let Some(found) = shown.match_of(target.id) {
            let name = format!("{stem}_similarity.npy");
            let path = dir.join(&name);
            write_npy(&path, &[found.grid.rows, found.grid.cols], &found.scores)?;
            heatmaps.push((target.id, name));
            written.push(path);
        }
    }
    let png = dir.join(PNG_FILE);
    save_png(&png, &shown.image())?;
    written.push(png);
    let path = dir.join(JSON_FILE);
    save_json(&path, &shown.report(&heatmaps))?;
    written.push(path);
    Ok(written)
}
