//! The official DINO and DINOv2 backbone checkpoints, and the supervised DeiT ones to compare them
//! with, and where they are downloaded to (the URLs of the facebookresearch/dino, /dinov2 and /deit
//! READMEs and `hubconf.py`). The
//! official pages publish no checksums: a download is
//! verified against a SHA-256 only when one is given, and the computed SHA-256 is always recorded.

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variable naming the checkpoint folder directly (overrides the default).
pub const CACHE_ENV: &str = "DINOSCOPE_CACHE";

/// One official backbone checkpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OfficialCheckpoint {
    /// Short stable id, e.g. `dino_vits8`.
    pub id: &'static str,
    /// Human-readable name, e.g. `DINO ViT-S/8`.
    pub title: &'static str,
    pub url: &'static str,
    /// Approximate size (fp32 parameters), for the user's information only.
    pub size_mb: f32,
    /// Published SHA-256, when there is one (none is published today).
    pub sha256: Option<&'static str>,
    /// One line on what the model is good for.
    pub note: &'static str,
}

impl OfficialCheckpoint {
    /// A DINO or DINOv2 backbone (the DeiT entries are supervised, for comparison).
    pub fn self_supervised(&self) -> bool {
        self.id.starts_with("dino")
    }

    /// The file name the checkpoint is stored under (the last segment of the URL).
    pub fn file_name(&self) -> &'static str {
        self.url.rsplit('/').next().unwrap_or(self.id)
    }
}

const fn checkpoint(
    id: &'static str,
    title: &'static str,
    url: &'static str,
    size_mb: f32,
    note: &'static str,
) -> OfficialCheckpoint {
    OfficialCheckpoint {
        id,
        title,
        url,
        size_mb,
        sha256: None,
        note,
    }
}

/// The backbone-only checkpoints of the DINO and DINOv2 releases, then the supervised DeiT models
/// (trained with ImageNet-1k labels; their classifier head is ignored when loading).
pub const OFFICIAL: [OfficialCheckpoint; 15] = [
    checkpoint(
        "dino_vits16",
        "DINO ViT-S/16",
        "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
        86.7,
        "small, 16-px patches: fast",
    ),
    checkpoint(
        "dino_vits8",
        "DINO ViT-S/8",
        "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
        86.7,
        "small, 8-px patches: sharp attention maps",
    ),
    checkpoint(
        "dino_vits8_300ep",
        "DINO ViT-S/8 (300 epochs)",
        "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_300ep_pretrain/dino_deitsmall8_300ep_pretrain.pth",
        86.7,
        "the model of the paper's attention figures",
    ),
    checkpoint(
        "dino_vitb16",
        "DINO ViT-B/16",
        "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
        343.0,
        "base, 16-px patches",
    ),
    checkpoint(
        "dino_vitb8",
        "DINO ViT-B/8",
        "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
        343.0,
        "base, 8-px patches: slow on large images",
    ),
    checkpoint(
        "dinov2_vits14",
        "DINOv2 ViT-S/14",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
        88.2,
        "small: good PCA and correspondences",
    ),
    checkpoint(
        "dinov2_vits14_reg4",
        "DINOv2 ViT-S/14 + registers",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
        88.2,
        "with 4 registers: cleaner attention maps",
    ),
    checkpoint(
        "dinov2_vitb14",
        "DINOv2 ViT-B/14",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        346.0,
        "base",
    ),
    checkpoint(
        "dinov2_vitb14_reg4",
        "DINOv2 ViT-B/14 + registers",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth",
        346.0,
        "base with 4 registers",
    ),
    checkpoint(
        "dinov2_vitl14",
        "DINOv2 ViT-L/14",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
        1220.0,
        "large: slow without a GPU",
    ),
    checkpoint(
        "dinov2_vitl14_reg4",
        "DINOv2 ViT-L/14 + registers",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth",
        1220.0,
        "large with 4 registers",
    ),
    checkpoint(
        "dinov2_vitg14",
        "DINOv2 ViT-g/14",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_pretrain.pth",
        4550.0,
        "giant (SwiGLU): needs a large GPU",
    ),
    checkpoint(
        "dinov2_vitg14_reg4",
        "DINOv2 ViT-g/14 + registers",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_reg4_pretrain.pth",
        4550.0,
        "giant with 4 registers",
    ),
    checkpoint(
        "deit_s16",
        "DeiT ViT-S/16 (supervised)",
        "https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth",
        88.2,
        "ImageNet labels, same shape as DINO ViT-S/16: supervised vs DINO",
    ),
    checkpoint(
        "deit_b16",
        "DeiT ViT-B/16 (supervised)",
        "https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth",
        346.3,
        "ImageNet labels, same shape as DINO ViT-B/16",
    ),
];

/// Finds an official checkpoint by id.
pub fn official(id: &str) -> Option<&'static OfficialCheckpoint> {
    OFFICIAL.iter().find(|c| c.id == id)
}

/// Where checkpoints are stored: `$DINOSCOPE_CACHE`, else `$XDG_CACHE_HOME/dinoscope/checkpoints`,
/// else `~/.cache/dinoscope/checkpoints`; `None` when none of these is set.
pub fn checkpoint_dir() -> Option<PathBuf> {
    checkpoint_dir_from(|name| std::env::var_os(name))
}

/// [`checkpoint_dir`] with the environment given as a function (for tests).
pub fn checkpoint_dir_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(CACHE_ENV) {
        return Some(dir);
    }
    // The XDG spec says relative values are to be ignored.
    if let Some(xdg) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("dinoscope").join("checkpoints"));
    }
    set("HOME").map(|home| home.join(".cache").join("dinoscope").join("checkpoints"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_official_ones_and_ids_unique() {
        for c in &OFFICIAL {
            let (base, suffix) = if c.id.starts_with("dinov2") {
                ("https://dl.fbaipublicfiles.com/dinov2/", "_pretrain.pth")
            } else if c.id.starts_with("deit") {
                ("https://dl.fbaipublicfiles.com/deit/deit_", "_patch16_224-")
            } else {
                ("https://dl.fbaipublicfiles.com/dino/", "_pretrain.pth")
            };
            assert!(c.url.starts_with(base), "{}", c.url);
            assert!(c.file_name().contains(suffix), "{}", c.url);
            assert!(c.file_name().ends_with(".pth"), "{}", c.url);
            assert_eq!(OFFICIAL.iter().filter(|o| o.id == c.id).count(), 1);
            assert_eq!(
                c.self_supervised(),
                !c.title.contains("supervised)"),
                "{}",
                c.id
            );
        }
        assert_eq!(
            official("dino_vits8").map(|c| c.url),
            Some(
                "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth"
            )
        );
        assert_eq!(
            official("dinov2_vits14").map(|c| c.url),
            Some("https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth")
        );
    }

    #[test]
    fn cache_dir_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            checkpoint_dir_from(env(&[
                ("DINOSCOPE_CACHE", "/data/ckpt"),
                ("HOME", "/home/a")
            ])),
            Some(PathBuf::from("/data/ckpt"))
        );
        assert_eq!(
            checkpoint_dir_from(env(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/a")])),
            Some(PathBuf::from("/xdg/dinoscope/checkpoints"))
        );
        assert_eq!(
            checkpoint_dir_from(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/a")])),
            Some(PathBuf::from("/home/a/.cache/dinoscope/checkpoints"))
        );
        assert_eq!(checkpoint_dir_from(env(&[("DINOSCOPE_CACHE", "")])), None);
    }
}
