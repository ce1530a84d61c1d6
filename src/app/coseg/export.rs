//! Export of the co-segmentation view: per image the view as PNG (labels over the image, or the
//! cut-out foreground, as shown), the patch labels and the foreground mask as `.npy`, and a JSON
//! legend naming every label.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::job::CosegResult;
use super::panel::label_name;
use crate::analysis::overlay::part_color;
use crate::app::export::{create_dir, save_json, save_png, unique_stems};
use crate::app::notifications::{AppError, file_label};
use crate::app::state::{CosegMode, CosegShow};
use crate::arrays::write_npy;

/// The legend file of a co-segmentation export.
pub const LEGEND_FILE: &str = "coseg_legend.json";

/// Per patch its label as float32 (`NaN` for none), row-major `[rows, cols]` (as `dinoscope
/// coseg` / `partseg` write `<stem>_labels.npy`).
pub fn label_values(labels: &[Option<usize>]) -> Vec<f32> {
    labels
        .iter()
        .map(|l| l.map_or(f32::NAN, |l| l as f32))
        .collect()
}

/// Into `dir` (created if missing), per image `<stem>`: `<stem>_coseg.png` (what the view
/// shows), `<stem>_labels.npy` and `<stem>_foreground.npy` (`[rows, cols]`, 1 = foreground);
/// and [`LEGEND_FILE`]. Returns the files written.
pub fn export_coseg(
    dir: &Path,
    result: &CosegResult,
    show: CosegShow,
) -> Result<Vec<PathBuf>, AppError> {
    create_dir(dir)?;
    let stems = unique_stems(result.images.iter().map(|i| i.name.as_str()));
    let mut written = Vec::new();
    let mut images = Vec::new();
    for (image, stem) in result.images.iter().zip(&stems) {
        let png = dir.join(format!("{stem}_coseg.png"));
        let labels = dir.join(format!("{stem}_labels.npy"));
        let foreground = dir.join(format!("{stem}_foreground.npy"));
        save_png(
            &png,
            match show {
                CosegShow::Labels => &image.overlay,
                CosegShow::Foreground => &image.cutout,
            },
        )?;
        let shape = [image.grid.rows, image.grid.cols];
        write_npy(&labels, &shape, &label_values(&image.labels))?;
        let mask: Vec<f32> = image.foreground.iter().map(|&f| f as u8 as f32).collect();
        write_npy(&foreground, &shape, &mask)?;
        images.push(json!({
            "image": image.name,
            "grid": shape,
            "model_size": [image.prepared.width(), image.prepared.height()],
            "outlier": image.outlier,
            "png": file_label(&png),
            "labels": file_label(&labels),
            "foreground": file_label(&foreground),
        }));
        written.extend([png, labels, foreground]);
    }
    let legend: Vec<_> = result
        .legend
        .iter()
        .map(|e| {
            json!({
                "label": e.label,
                "name": label_name(result.mode, e.label),
                "colour": part_color(e.label, result.labels.max(1)),
                "foreground": e.foreground,
                "votes": e.votes,
                "patches": e.patches,
            })
        })
        .collect();
    let report = json!({
        "mode": match result.mode {
            CosegMode::Foreground => "foreground",
            CosegMode::Parts => "parts",
        },
        "shown": match show {
            CosegShow::Labels => "labels",
            CosegShow::Foreground => "foreground",
        },
        "k": result.k,
        "labels": result.labels,
        "votes_needed": result.needed,
        "legend": legend,
        "images": images,
    });
    let path = dir.join(LEGEND_FILE);
    save_json(&path, &report)?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::label_values;

    #[test]
    fn patches_without_a_label_are_nan() {
        let values = label_values(&[Some(2), None, Some(0)]);
        assert_eq!(values[0], 2.0);
        assert!(values[1].is_nan());
        assert_eq!(values[2], 0.0);
    }
}
