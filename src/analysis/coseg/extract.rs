//! Batched extraction for co-segmentation: descriptors and saliency of many images, same-sized
//! images sharing one forward pass.

use burn::tensor::{Device, Tensor, TensorData};

use super::{CosegError, Plan, Span};
use crate::analysis::colormap::normalize_min_max;
use crate::analysis::features::{FeatureMap, l2_normalize_rows, log_bin};
use crate::analysis::progress::{Progress, report};
use crate::model::host::{HostReadError, f32_values};
use crate::model::preprocess::prepare;
use crate::model::{Facet, Grid, LayerOutputs, PreparedImage, Resize, Vit};

/// Batches of same-sized images are capped so that one block's attention scores stay below this
/// many entries per head (about three 224-pixel images at stride 4).
const BATCH_SCORE_BUDGET: usize = 1 << 25;

/// What one image contributes to the clustering.
pub(super) struct ImageFeatures {
    pub grid: Grid,
    pub dim: usize,
    /// L2-normalised descriptors, `[grid.len(), dim]`.
    pub descriptors: Vec<f32>,
    /// On the descriptor grid, in [0, 1].
    pub saliency: Vec<f32>,
    /// The CLS token's descriptor (outlier removal only).
    pub cls: Option<Vec<f32>>,
}

pub(super) fn descriptor_dim(features: &[ImageFeatures]) -> usize {
    features.first().map_or(0, |f| f.dim)
}

/// Descriptors and saliency of every image, same-sized images batched together.
pub(super) fn extract_features(
    vit: &Vit,
    images: &[&PreparedImage],
    plan: &Plan,
    progress: &mut Progress<'_>,
    span: Span,
) -> Result<Vec<ImageFeatures>, CosegError> {
    let total = images.len();
    let mut done = 0;
    let mut extracted = Vec::with_capacity(total);
    for batch in same_size_batches(images, plan) {
        report(
            progress,
            span.at(done as f32 / total as f32),
            &format!("descriptors and saliency: image {} of {total}", done + 1),
        )?;
        let members: Vec<&PreparedImage> = batch.iter().map(|&i| images[i]).collect();
        let descriptors = batch_descriptors(vit, &members, plan)?;
        let grid = descriptors[0].grid;
        let saliency = batch_saliency(vit, &members, grid, plan, &batch)?;
        for ((index, mut features), saliency) in batch.iter().zip(descriptors).zip(saliency) {
            features.saliency = saliency;
            extracted.push((*index, features));
        }
        done += batch.len();
    }
    extracted.sort_by_key(|(index, _)| *index);
    Ok(extracted.into_iter().map(|(_, f)| f).collect())
}

/// Indices of same-sized images, in batches whose attention scores stay within
/// [`BATCH_SCORE_BUDGET`]; sizes in order of first appearance.
fn same_size_batches(images: &[&PreparedImage], plan: &Plan) -> Vec<Vec<usize>> {
    let mut groups: Vec<((usize, usize), Vec<usize>)> = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let size = (image.width(), image.height());
        match groups.iter_mut().find(|(s, _)| *s == size) {
            Some((_, members)) => members.push(i),
            None => groups.push((size, vec![i])),
        }
    }
    groups
        .into_iter()
        .flat_map(|((width, height), members)| {
            let tokens =
                Grid::for_image(height, width, plan.patch, plan.stride).map_or(1, |g| g.len() + 1);
            let per_batch = (BATCH_SCORE_BUDGET / (tokens * tokens)).max(1);
            members
                .chunks(per_batch)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `[B, 3, H, W]` of same-sized images.
fn stack(images: &[&PreparedImage], device: &Device) -> Tensor<4> {
    let (height, width) = (images[0].height(), images[0].width());
    let data: Vec<f32> = images
        .iter()
        .flat_map(|image| image.normalized.iter().copied())
        .collect();
    Tensor::from_data(
        TensorData::new(data, [images.len(), 3, height, width]),
        device,
    )
}

/// Normalised descriptors (and CLS descriptors when planned) of a batch; saliency left empty.
fn batch_descriptors(
    vit: &Vit,
    images: &[&PreparedImage],
    plan: &Plan,
) -> Result<Vec<ImageFeatures>, HostReadError> {
    let outputs = vit.layer_outputs(stack(images, &vit.device()), plan.layer, plan.stride);
    let grid = outputs.grid;
    let descriptors = outputs.descriptors(plan.facet);
    let [_, patches, dim] = descriptors.dims();
    let data = f32_values(descriptors)?;
    let mut cls_rows = if plan.with_cls {
        let cls = f32_values(cls_descriptors(&outputs, plan.facet))?;
        let per_image = cls.len() / images.len();
        Some(
            cls.chunks_exact(per_image)
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>()
                .into_iter(),
        )
    } else {
        None
    };
    Ok(data
        .chunks_exact(patches * dim)
        .enumerate()
        .map(|(i, image_data)| {
            let map = FeatureMap {
                grid,
                dim,
                data: image_data.to_vec(),
                image_size: (images[i].width(), images[i].height()),
            };
            let mut map = if plan.log_bin { log_bin(&map, 2) } else { map };
            l2_normalize_rows(&mut map.data, map.dim);
            ImageFeatures {
                grid,
                dim: map.dim,
                descriptors: map.data,
                saliency: Vec::new(),
                cls: cls_rows.as_mut().and_then(Iterator::next),
            }
        })
        .collect())
}

/// The CLS token's facet, `[B, D]`, in the channel order of the patch descriptors.
fn cls_descriptors(outputs: &LayerOutputs, facet: Facet) -> Tensor<2> {
    match facet {
        Facet::Token => {
            let [b, _, d] = outputs.tokens.dims();
            outputs.tokens.clone().narrow(1, 0, 1).reshape([b, d])
        }
        _ => {
            let per_head = outputs.per_head(facet);
            let [b, h, _, hd] = per_head.dims();
            per_head
                .narrow(2, 0, 1)
                .reshape([b, h, hd])
                .swap_dims(1, 2)
                .reshape([b, hd * h])
        }
    }
}

/// Saliency of a batch on the descriptor grid (§1.5, §2.2): the last block's CLS attention over
/// the patches, averaged over the planned heads and min-max normalised.
fn batch_saliency(
    vit: &Vit,
    images: &[&PreparedImage],
    descriptor_grid: Grid,
    plan: &Plan,
    indices: &[usize],
) -> Result<Vec<Vec<f32>>, CosegError> {
    let halves;
    let (inputs, stride) = if plan.low_res {
        halves = images
            .iter()
            .zip(indices)
            .map(|(image, &index)| half_size(image, index, plan))
            .collect::<Result<Vec<_>, _>>()?;
        (halves.iter().collect::<Vec<_>>(), plan.patch)
    } else {
        (images.to_vec(), plan.stride)
    };
    let model = vit.config();
    let (probs, grid) =
        vit.attention_rows(stack(&inputs, &vit.device()), model.depth - 1, &[0], stride);
    let [b, heads, _, tokens] = probs.dims();
    let prefix = model.prefix_tokens();
    let patches = tokens - prefix;
    let rows = f32_values(probs.reshape([b, heads, tokens]).narrow(2, prefix, patches))?;
    Ok(rows
        .chunks_exact(heads * patches)
        .map(|image_rows| {
            let mut mean = vec![0f32; patches];
            for &head in &plan.heads {
                let row = &image_rows[head * patches..(head + 1) * patches];
                mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
            }
            mean.iter_mut().for_each(|m| *m /= plan.heads.len() as f32);
            let saliency = normalize_min_max(&mean);
            if plan.low_res {
                resize_nearest(
                    &saliency,
                    (grid.rows, grid.cols),
                    (descriptor_grid.rows, descriptor_grid.cols),
                    pil_source,
                )
            } else {
                saliency
            }
        })
        .collect())
}

/// The image at half its height and width (Lanczos), for the low-resolution saliency pass.
fn half_size(
    image: &PreparedImage,
    index: usize,
    plan: &Plan,
) -> Result<PreparedImage, CosegError> {
    let half = Resize::Exact {
        width: image.rgb.width() / 2,
        height: image.rgb.height() / 2,
    };
    prepare(&image.rgb, half, plan.patch, usize::MAX).map_err(|_| CosegError::ImageTooSmall {
        index,
        width: image.width(),
        height: image.height(),
        min_side: plan.min_side(),
        low_res: true,
    })
}

/// Nearest-neighbour resampling of a row-major grid; `source(i, from, to)` picks the source
/// index of output index `i` along one axis.
pub(super) fn resize_nearest<T: Copy>(
    values: &[T],
    from: (usize, usize),
    to: (usize, usize),
    source: fn(usize, usize, usize) -> usize,
) -> Vec<T> {
    let ((fr, fc), (tr, tc)) = (from, to);
    (0..tr)
        .flat_map(|y| {
            let sy = source(y, fr, tr).min(fr - 1);
            (0..tc).map(move |x| values[sy * fc + source(x, fc, tc).min(fc - 1)])
        })
        .collect()
}

/// PIL's nearest rule, `floor((i + 0.5) * from / to)`: what `transforms.Resize(NEAREST)` does to
/// the reference's low-resolution saliency map.
pub(super) fn pil_source(i: usize, from: usize, to: usize) -> usize {
    (2 * i + 1) * from / (2 * to)
}

/// torch's nearest rule, `floor(i * from / to)` (`nn.Upsample`).
pub(super) fn torch_source(i: usize, from: usize, to: usize) -> usize {
    i * from / to
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::features::{DescriptorSpec, extract, saliency};
    use crate::model::preprocess::DEFAULT_MAX_PATCHES;
    use crate::model::{LoadOptions, load_model};

    /// The 3-block, 2-head, patch-8 fixture model.
    fn fixture_model() -> Vit {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/v1_p8_hf.safetensors");
        let options = LoadOptions {
            config: None,
            heads: Some(2),
            ..LoadOptions::default()
        };
        load_model(&path, &options, &Device::flex()).unwrap().vit
    }

    fn picture(seed: u32) -> PreparedImage {
        let rgb = image::RgbImage::from_fn(40, 32, |x, y| {
            image::Rgb([
                (x * 6 + seed) as u8,
                (y * 7) as u8,
                ((x * y + seed) % 251) as u8,
            ])
        });
        prepare(&rgb, Resize::None, 8, DEFAULT_MAX_PATCHES).unwrap()
    }

    fn plan(log_bin: bool, with_cls: bool) -> Plan {
        Plan {
            layer: 1,
            facet: Facet::Value,
            stride: 4,
            log_bin,
            patch: 8,
            heads: vec![0, 1],
            low_res: true,
            with_cls,
        }
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn batched_descriptors_match_one_image_at_a_time() {
        let vit = fixture_model();
        let images = [picture(1), picture(90)];
        let refs: Vec<&PreparedImage> = images.iter().collect();
        for (log_bin, with_cls) in [(false, true), (true, false)] {
            let batch = batch_descriptors(&vit, &refs, &plan(log_bin, with_cls)).unwrap();
            assert_eq!(batch.len(), 2);
            for (image, got) in images.iter().zip(&batch) {
                let spec = DescriptorSpec {
                    layer: 1,
                    facet: Facet::Value,
                    stride: Some(4),
                    log_bin,
                };
                let alone = extract(&vit, image, spec).unwrap().normalized();
                assert_eq!((got.grid, got.dim), (alone.grid, alone.dim));
                let diff = max_diff(&got.descriptors, &alone.data);
                assert!(diff < 1e-5, "bin {log_bin}: {diff}");
                assert_eq!(got.cls.as_ref().map(Vec::len), with_cls.then_some(32));
            }
            assert_ne!(batch[0].descriptors, batch[1].descriptors);
        }
    }

    #[test]
    fn batched_low_res_saliency_is_the_half_size_map_resized() {
        let vit = fixture_model();
        let images = [picture(1), picture(90)];
        let refs: Vec<&PreparedImage> = images.iter().collect();
        let grid = Grid::for_image(32, 40, 8, 4).unwrap();
        let batch = batch_saliency(&vit, &refs, grid, &plan(false, false), &[0, 1]).unwrap();
        for (image, got) in images.iter().zip(&batch) {
            let half = prepare(
                &image.rgb,
                Resize::Exact {
                    width: 20,
                    height: 16,
                },
                8,
                DEFAULT_MAX_PATCHES,
            )
            .unwrap();
            let (alone, small) = saliency(&vit, &half, None, &[0, 1]).unwrap();
            assert_eq!((small.rows, small.cols), (2, 2));
            let expected = resize_nearest(&alone, (2, 2), (grid.rows, grid.cols), pil_source);
            assert!(max_diff(got, &expected) < 1e-5);
        }
    }

    #[test]
    fn low_res_saliency_is_resized_with_pixel_centres() {
        // PIL samples 0.3, 0.9, 1.5, 2.1, 2.7 -> 0, 0, 1, 2, 2 (torch would give 0, 0, 1, 1, 2).
        let resized = resize_nearest(&[0.0, 1.0, 2.0], (1, 3), (1, 5), pil_source);
        assert_eq!(resized, vec![0.0, 0.0, 1.0, 2.0, 2.0]);
        let upsampled = resize_nearest(&[0.0, 1.0, 2.0], (1, 3), (1, 5), torch_source);
        assert_eq!(upsampled, vec![0.0, 0.0, 1.0, 1.0, 2.0]);
    }
}
