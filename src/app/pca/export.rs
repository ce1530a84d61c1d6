//! Exports of the PCA view: per image the colouring as the screen shows it (PNG) and the
//! projections (`.npy`, as `dinoscope pca` writes them).

use std::path::{Path, PathBuf};

use super::figure;
use super::job::{PcaImage, PcaResult};
use crate::app::export::{create_dir, save_png, unique_stems};
use crate::app::notifications::AppError;
use crate::arrays::write_npy;

/// One image's PCA colouring as the screen shows it (model image size, background black).
pub fn export_pca_png(path: &Path, image: &PcaImage) -> Result<(), AppError> {
    save_png(path, &image.colored)
}

/// The DINOv2 paper figure of `result`: its images in a row over their colourings.
pub fn export_figure(path: &Path, result: &PcaResult) -> Result<(), AppError> {
    save_png(path, &figure::compose(result))
}

/// One image's PCA projections, `[rows, cols, 3]` float32 (as `dinoscope pca` writes them).
pub fn export_pca_npy(path: &Path, image: &PcaImage) -> Result<(), AppError> {
    write_npy(
        path,
        &[image.grid.rows, image.grid.cols, 3],
        &image.view.projections,
    )?;
    Ok(())
}

/// `<stem>_pca.png` and `<stem>_pca.npy` for every image of the result into `dir` (created if
/// missing; images with the same name get `-2`, `-3`... appended). Returns the files written.
pub fn export_pca(dir: &Path, result: &PcaResult) -> Result<Vec<PathBuf>, AppError> {
    create_dir(dir)?;
    let stems = unique_stems(result.images.iter().map(|i| i.name.as_str()));
    let mut written = Vec::new();
    for (image, stem) in result.images.iter().zip(stems) {
        let png = dir.join(format!("{stem}_pca.png"));
        let npy = dir.join(format!("{stem}_pca.npy"));
        export_pca_png(&png, image)?;
        export_pca_npy(&npy, image)?;
        written.extend([png, npy]);
    }
    Ok(written)
}
