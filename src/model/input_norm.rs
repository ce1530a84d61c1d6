//! The input normalisation a model was trained with, and folding it into the patch embedding.
//!
//! dinoscope always feeds ImageNet-normalised pixels (`(x - mean) / std` with ImageNet's mean and std).
//! A model trained with another normalisation (timm's AugReg ViTs use mean = std = 0.5, "inception")
//! sees `x_model = a * x_imagenet + c` per channel, with `a = std_in / std_model` and
//! `c = (mean_in - mean_model) / std_model`. The patch embedding is an unpadded convolution, so it is
//! linear in its input and the affine map folds into its weights exactly:
//! `W'[d, ch] = a[ch] * W[d, ch]`, `b'[d] = b[d] + sum over ch, i, j of W[d, ch, i, j] * c[ch]`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::preprocess::{IMAGENET_MEAN, IMAGENET_STD};
use super::raw_tensor::RawTensor;

/// Per-channel mean and standard deviation of the model's training inputs (RGB, pixels in 0..=1).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InputNorm {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Largest `config.json` read (timm's are about 1 KB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl InputNorm {
    /// What dinoscope's preprocessing applies, and what DINO, DINOv2 and DeiT were trained with.
    pub const IMAGENET: InputNorm = InputNorm {
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };
    /// timm's `IMAGENET_INCEPTION_MEAN` / `_STD` (AugReg and original Google ViTs).
    pub const INCEPTION: InputNorm = InputNorm {
        mean: [0.5; 3],
        std: [0.5; 3],
    };

    /// `imagenet`, `inception`, or the numbers.
    pub fn describe(&self) -> String {
        if *self == InputNorm::IMAGENET {
            "imagenet".into()
        } else if *self == InputNorm::INCEPTION {
            "inception (mean 0.5, std 0.5)".into()
        } else {
            format!("mean {:?}, std {:?}", self.mean, self.std)
        }
    }

    /// Every entry finite and every std positive.
    fn check(&self) -> Result<(), String> {
        if self.mean.iter().chain(&self.std).any(|v| !v.is_finite()) {
            return Err("the mean and std must be finite numbers".into());
        }
        if self.std.iter().any(|&s| s <= 0.0) {
            return Err(format!("std {:?} has an entry <= 0", self.std));
        }
        Ok(())
    }
}

impl FromStr for InputNorm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "imagenet" => Ok(InputNorm::IMAGENET),
            "inception" => Ok(InputNorm::INCEPTION),
            _ => Err(format!(
                "unknown input normalisation `{s}`: use imagenet (mean 0.485,0.456,0.406, std \
                 0.229,0.224,0.225) or inception (mean = std = 0.5)"
            )),
        }
    }
}

/// A `config.json` beside a checkpoint that says nothing usable about the normalisation.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why} (give --input-norm to ignore it)", path.display())]
pub struct InputConfigError {
    pub path: PathBuf,
    pub why: String,
}

/// The normalisation a timm Hugging Face Hub folder states: `pretrained_cfg.mean` / `.std` of the
/// `config.json` next to `checkpoint`. `None` when there is no such file, or it has no
/// `pretrained_cfg` (the `config.json` of a `transformers` model or of a dinoscope training run).
pub fn timm_config_norm(checkpoint: &Path) -> Result<Option<InputNorm>, InputConfigError> {
    let path = checkpoint.with_file_name("config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let fail = |why: String| InputConfigError {
        path: path.clone(),
        why,
    };
    let size = std::fs::metadata(&path)
        .map_err(|e| fail(format!("cannot read it: {e}")))?
        .len();
    if size > MAX_CONFIG_BYTES {
        return Err(fail(format!(
            "{size} bytes is too large for a model configuration"
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
    let Some(cfg) = json.get("pretrained_cfg") else {
        return Ok(None);
    };
    let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3], InputConfigError> {
        let Some(value) = cfg.get(key) else {
            return Ok(default);
        };
        let numbers: Option<Vec<f32>> = value
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect())
            .unwrap_or(None);
        match numbers.as_deref() {
            Some(&[r, g, b]) => Ok([r, g, b]),
            _ => Err(fail(format!(
                "`pretrained_cfg.{key}` is {value}, not a list of 3 numbers"
            ))),
        }
    };
    // timm's default when a configuration gives none (`timm.data.resolve_data_config`).
    let norm = InputNorm {
        mean: triple("mean", IMAGENET_MEAN)?,
        std: triple("std", IMAGENET_STD)?,
    };
    norm.check()
        .map_err(|why| fail(format!("`pretrained_cfg`: {why}")))?;
    Ok(Some(norm))
}

/// Rewrites a `[D, 3, p, q]` patch-embedding weight and its `[D]` bias so that the model takes
/// ImageNet-normalised inputs instead of inputs normalised with `norm`. Exact up to float rounding;
/// a no-op for [`InputNorm::IMAGENET`]. Tensors of other shapes are left for the loader to report.
pub fn fold_into_patch_embed(weight: &mut RawTensor, bias: &mut RawTensor, norm: InputNorm) {
    if norm == InputNorm::IMAGENET {
        return;
    }
    let [dim, 3, p, q] = weight.shape[..] else {
        return;
    };
    if bias.shape != [dim] || weight.data.len() != dim * 3 * p * q || bias.data.len() != dim {
        return;
    }
    let scale: [f64; 3] =
        std::array::from_fn(|c| f64::from(IMAGENET_STD[c]) / f64::from(norm.std[c]));
    let shift: [f64; 3] = std::array::from_fn(|c| {
        (f64::from(IMAGENET_MEAN[c]) - f64::from(norm.mean[c])) / f64::from(norm.std[c])
    });
    let plane = p * q;
    for (filter, b) in weight.data.chunks_exact_mut(3 * plane).zip(&mut bias.data) {
        let mut offset = f64::from(*b);
        for (c, channel) in filter.chunks_exact_mut(plane).enumerate() {
            for w in channel {
                offset += f64::from(*w) * shift[c];
                *w = (f64::from(*w) * scale[c]) as f32;
            }
        }
        *b = offset as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: Vec<usize>, f: impl Fn(usize) -> f32) -> RawTensor {
        let data = (0..shape.iter().product()).map(f).collect();
        RawTensor { shape, data }
    }

    /// The patch embedding of one `p x p` patch, computed directly (a dot product per output channel).
    fn embed(weight: &RawTensor, bias: &RawTensor, patch: &[f32]) -> Vec<f64> {
        weight
            .data
            .chunks_exact(patch.len())
            .zip(&bias.data)
            .map(|(w, &b)| {
                f64::from(b)
                    + w.iter()
                        .zip(patch)
                        .map(|(&w, &x)| f64::from(w) * f64::from(x))
                        .sum::<f64>()
            })
            .collect()
    }

    #[test]
    fn folding_gives_the_model_what_its_own_normalisation_would() {
        let (dim, p) = (5, 4);
        let weight = tensor(vec![dim, 3, p, p], |i| ((i * 37 % 23) as f32 - 11.0) / 10.0);
        let bias = tensor(vec![dim], |i| i as f32 * 0.3 - 0.5);
        let custom = InputNorm {
            mean: [0.3, 0.6, 0.1],
            std: [0.2, 0.4, 0.9],
        };
        for norm in [InputNorm::INCEPTION, custom] {
            let (mut w, mut b) = (weight.clone(), bias.clone());
            fold_into_patch_embed(&mut w, &mut b, norm);
            // A patch of raw pixels in 0..=1, normalised both ways.
            let raw: Vec<f32> = (0..3 * p * p)
                .map(|i| (i * 53 % 97) as f32 / 96.0)
                .collect();
            let with = |n: InputNorm| -> Vec<f32> {
                raw.iter()
                    .enumerate()
                    .map(|(i, &x)| (x - n.mean[i / (p * p)]) / n.std[i / (p * p)])
                    .collect()
            };
            let expected = embed(&weight, &bias, &with(norm));
            let folded = embed(&w, &b, &with(InputNorm::IMAGENET));
            for (e, f) in expected.iter().zip(&folded) {
                assert!((e - f).abs() < 1e-5, "{norm:?}: {e} vs {f}");
            }
        }
    }

    #[test]
    fn imagenet_and_malformed_tensors_are_left_alone() {
        let weight = tensor(vec![2, 3, 2, 2], |i| i as f32);
        let bias = tensor(vec![2], |i| i as f32);
        let (mut w, mut b) = (weight.clone(), bias.clone());
        fold_into_patch_embed(&mut w, &mut b, InputNorm::IMAGENET);
        assert_eq!((&w, &b), (&weight, &bias));
        let mut wrong_bias = tensor(vec![3], |i| i as f32);
        fold_into_patch_embed(&mut w, &mut wrong_bias, InputNorm::INCEPTION);
        assert_eq!(w, weight);
    }

    #[test]
    fn names_parse() {
        assert_eq!("inception".parse(), Ok(InputNorm::INCEPTION));
        assert_eq!("ImageNet".parse(), Ok(InputNorm::IMAGENET));
        assert!(
            "clip"
                .parse::<InputNorm>()
                .unwrap_err()
                .contains("inception")
        );
    }

    #[test]
    fn config_json_is_read_from_beside_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("model.safetensors");
        assert!(timm_config_norm(&weights).unwrap().is_none());
        let config = dir.path().join("config.json");
        let cases = [
            (
                r#"{"pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}"#,
                Some(InputNorm::INCEPTION),
            ),
            // timm's default when the configuration names none
            (r#"{"pretrained_cfg": {}}"#, Some(InputNorm::IMAGENET)),
            // a transformers or dinoscope configuration
            (r#"{"hidden_size": 384}"#, None),
        ];
        for (text, expected) in cases {
            std::fs::write(&config, text).unwrap();
            assert_eq!(timm_config_norm(&weights).unwrap(), expected, "{text}");
        }
        for (text, why) in [
            ("{not json", "not valid JSON"),
            (
                r#"{"pretrained_cfg": {"mean": [0.5, 0.5]}}"#,
                "not a list of 3",
            ),
            (
                r#"{"pretrained_cfg": {"std": [0.5, 0, 0.5]}}"#,
                "has an entry <= 0",
            ),
        ] {
            std::fs::write(&config, text).unwrap();
            let err = timm_config_norm(&weights).unwrap_err().to_string();
            assert!(err.contains(&config.display().to_string()), "{err}");
            assert!(err.contains(why), "{err}");
        }
    }
}
