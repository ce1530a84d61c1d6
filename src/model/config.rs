//! Architecture descriptions of every official DINO / DINOv2 backbone, plus small training configurations.
//! Supervised ViTs (DeiT, timm) share the DINO v1 architecture and differ only in their family.

use std::fmt;

/// Which official code base a model follows; it decides token layout details and naming.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Family {
    Dino,
    Dinov2,
    /// Trained with labels (DeiT, timm `VisionTransformer`): a classifier `head` in the file, which
    /// dinoscope ignores, and timm's positional resampling.
    Supervised,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Dino => "DINO",
            Family::Dinov2 => "DINOv2",
            Family::Supervised => "Supervised",
        }
    }
}

/// How the positional table is resampled for a grid other than the training grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PosEmbedMode {
    /// `F.interpolate(scale_factor=((gh+0.1)/M, (gw+0.1)/M), mode="bicubic")`: DINO v1 and DINOv2 without registers.
    BicubicOffset,
    /// `F.interpolate(size=(gh, gw), mode="bicubic", antialias=True)`: DINOv2 with registers, and timm's
    /// `resample_abs_pos_embed` (supervised ViTs).
    BicubicAntialias,
}

/// Feed-forward block of each transformer layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FfnKind {
    /// `fc1 -> erf GELU -> fc2` with the given hidden width.
    Mlp { hidden: usize },
    /// DINOv2 ViT-g: `w12 -> silu(x1) * x2 -> w3` with the given hidden width.
    SwiGlu { hidden: usize },
}

/// Bounds well above every published ViT (ViT-g: width 1536, 40 blocks, patch 14, grid 37).
const MAX_WIDTH: usize = 16_384;
const MAX_BLOCKS: usize = 256;
const MAX_PATCH_SIZE: usize = 256;
const MAX_POS_GRID: usize = 1_024;
const MAX_REGISTERS: usize = 256;
const MAX_FFN_RATIO: usize = 16;

/// Why a configuration cannot make a working model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid model configuration: {0}")]
pub struct ConfigError(pub String);

/// Everything needed to build a ViT backbone.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VitConfig {
    pub family: Family,
    pub patch_size: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub ffn: FfnKind,
    pub layer_scale: bool,
    pub registers: usize,
    /// Side of the square grid the positional table was trained on.
    pub pos_grid: usize,
    pub pos_mode: PosEmbedMode,
    pub layer_norm_eps: f64,
}

/// The named releases (and small training sizes) users can ask for with `--arch`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Arch {
    #[value(name = "vits16")]
    VitS16,
    #[value(name = "vits8")]
    VitS8,
    #[value(name = "vitb16")]
    VitB16,
    #[value(name = "vitb8")]
    VitB8,
    #[value(name = "dinov2-vits14")]
    Dinov2S14,
    #[value(name = "dinov2-vitb14")]
    Dinov2B14,
    #[value(name = "dinov2-vitl14")]
    Dinov2L14,
    #[value(name = "dinov2-vitg14")]
    Dinov2G14,
    #[value(name = "dinov2-vits14-reg4")]
    Dinov2S14Reg,
    #[value(name = "dinov2-vitb14-reg4")]
    Dinov2B14Reg,
    #[value(name = "dinov2-vitl14-reg4")]
    Dinov2L14Reg,
    #[value(name = "dinov2-vitg14-reg4")]
    Dinov2G14Reg,
    /// 192-d, 3 heads, 12 blocks, patch 16 (DINO's `vit_tiny`).
    #[value(name = "vit-tiny")]
    VitTiny,
    /// 96-d, 3 heads, 4 blocks, patch 8: trains in minutes on a CPU.
    #[value(name = "vit-nano")]
    VitNano,
}

impl Arch {
    pub const ALL: [Arch; 14] = [
        Arch::VitS16,
        Arch::VitS8,
        Arch::VitB16,
        Arch::VitB8,
        Arch::Dinov2S14,
        Arch::Dinov2B14,
        Arch::Dinov2L14,
        Arch::Dinov2G14,
        Arch::Dinov2S14Reg,
        Arch::Dinov2B14Reg,
        Arch::Dinov2L14Reg,
        Arch::Dinov2G14Reg,
        Arch::VitTiny,
        Arch::VitNano,
    ];

    pub fn config(self) -> VitConfig {
        use Arch::*;
        match self {
            VitS16 => VitConfig::dino(16, 384, 12, 6),
            VitS8 => VitConfig::dino(8, 384, 12, 6),
            VitB16 => VitConfig::dino(16, 768, 12, 12),
            VitB8 => VitConfig::dino(8, 768, 12, 12),
            Dinov2S14 => VitConfig::dinov2(384, 12, 6, false, 0),
            Dinov2B14 => VitConfig::dinov2(768, 12, 12, false, 0),
            Dinov2L14 => VitConfig::dinov2(1024, 24, 16, false, 0),
            Dinov2G14 => VitConfig::dinov2(1536, 40, 24, true, 0),
            Dinov2S14Reg => VitConfig::dinov2(384, 12, 6, false, 4),
            Dinov2B14Reg => VitConfig::dinov2(768, 12, 12, false, 4),
            Dinov2L14Reg => VitConfig::dinov2(1024, 24, 16, false, 4),
            Dinov2G14Reg => VitConfig::dinov2(1536, 40, 24, true, 4),
            VitTiny => VitConfig::dino(16, 192, 12, 3),
            VitNano => VitConfig {
                pos_grid: 8,
                ..VitConfig::dino(8, 96, 4, 3)
            },
        }
    }

    /// The architecture whose configuration equals `config`, if it is a named one.
    pub fn matching(config: &VitConfig) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| &a.config() == config)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

impl VitConfig {
    /// A DINO v1 ViT trained at 224 px.
    pub fn dino(patch_size: usize, dim: usize, depth: usize, heads: usize) -> Self {
        VitConfig {
            family: Family::Dino,
            patch_size,
            dim,
            depth,
            heads,
            ffn: FfnKind::Mlp { hidden: 4 * dim },
            layer_scale: false,
            registers: 0,
            pos_grid: 224 / patch_size,
            pos_mode: PosEmbedMode::BicubicOffset,
            layer_norm_eps: 1e-6,
        }
    }

    /// A DINOv2 ViT/14 trained at 518 px, optionally with SwiGLU and register tokens.
    pub fn dinov2(dim: usize, depth: usize, heads: usize, swiglu: bool, registers: usize) -> Self {
        let ffn = if swiglu {
            FfnKind::SwiGlu {
                hidden: swiglu_hidden(dim),
            }
        } else {
            FfnKind::Mlp { hidden: 4 * dim }
        };
        VitConfig {
            family: Family::Dinov2,
            patch_size: 14,
            dim,
            depth,
            heads,
            ffn,
            layer_scale: true,
            registers,
            pos_grid: 37,
            pos_mode: if registers > 0 {
                PosEmbedMode::BicubicAntialias
            } else {
                PosEmbedMode::BicubicOffset
            },
            layer_norm_eps: 1e-6,
        }
    }

    /// Checks that a model can be built and run from this configuration: every size positive, the
    /// width split evenly into heads, and sizes no real model exceeds (so a crafted file cannot ask
    /// for an absurd allocation). Every configuration read from outside passes through here.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why: String| Err(ConfigError(why));
        let positive = [
            ("patch size", self.patch_size, MAX_PATCH_SIZE),
            ("width", self.dim, MAX_WIDTH),
            ("depth", self.depth, MAX_BLOCKS),
            ("head count", self.heads, MAX_WIDTH),
            ("positional grid", self.pos_grid, MAX_POS_GRID),
        ];
        for (what, value, max) in positive {
            if value == 0 || value > max {
                return bad(format!("{what} {value} is outside 1..={max}"));
            }
        }
        if !self.dim.is_multiple_of(self.heads) {
            return bad(format!(
                "{} channels cannot be split into {} heads",
                self.dim, self.heads
            ));
        }
        let hidden = match self.ffn {
            FfnKind::Mlp { hidden } | FfnKind::SwiGlu { hidden } => hidden,
        };
        if hidden == 0 || hidden > MAX_FFN_RATIO * self.dim {
            return bad(format!(
                "feed-forward width {hidden} is outside 1..={}",
                MAX_FFN_RATIO * self.dim
            ));
        }
        if self.registers > MAX_REGISTERS {
            return bad(format!(
                "{} register tokens (at most {MAX_REGISTERS})",
                self.registers
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!(
                "LayerNorm eps {} is not a positive number",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    /// Number of leading non-patch tokens (CLS plus registers).
    pub fn prefix_tokens(&self) -> usize {
        1 + self.registers
    }

    pub fn param_count(&self) -> usize {
        let d = self.dim;
        let p = self.patch_size;
        let mut n = d + (1 + self.pos_grid * self.pos_grid) * d + 3 * p * p * d + d + 2 * d;
        if self.family == Family::Dinov2 {
            n += d + self.registers * d;
        }
        let ffn = match self.ffn {
            FfnKind::Mlp { hidden } => 2 * d * hidden + hidden + d,
            FfnKind::SwiGlu { hidden } => 2 * d * hidden + 2 * hidden + hidden * d + d,
        };
        let block = 4 * d
            + (3 * d * d + 3 * d)
            + (d * d + d)
            + ffn
            + if self.layer_scale { 2 * d } else { 0 };
        n + self.depth * block
    }

    /// Human-readable name: the release name when it is one, else the shape.
    pub fn describe(&self) -> String {
        let family = self.family.name();
        let shape = format!(
            "{family} ViT {}d x{} blocks, {} heads, patch {}{}",
            self.dim,
            self.depth,
            self.heads,
            self.patch_size,
            if self.registers > 0 {
                format!(", {} registers", self.registers)
            } else {
                String::new()
            }
        );
        match Arch::matching(self) {
            Some(arch) => format!("{arch} ({shape})"),
            None => shape,
        }
    }
}

/// SwiGLU hidden width used by DINOv2: `(int(4 * dim * 2 / 3) + 7) // 8 * 8`.
pub fn swiglu_hidden(dim: usize) -> usize {
    (4 * dim * 2 / 3).div_ceil(8) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_counts_match_the_published_ones() {
        assert_eq!(Arch::VitS16.config().param_count(), 21_665_664);
        assert_eq!(Arch::VitS8.config().param_count(), 21_670_272);
        assert_eq!(Arch::VitB16.config().param_count(), 85_798_656);
        assert_eq!(Arch::Dinov2S14.config().param_count(), 22_056_576);
        assert_eq!(Arch::Dinov2L14.config().param_count(), 304_368_640);
        assert_eq!(Arch::Dinov2G14.config().param_count(), 1_136_480_768);
        assert_eq!(
            Arch::Dinov2S14Reg.config().param_count(),
            22_056_576 + 1_536
        );
    }

    #[test]
    fn swiglu_hidden_of_vitg_is_4096() {
        assert_eq!(swiglu_hidden(1536), 4096);
    }

    #[test]
    fn every_named_config_is_valid() {
        for arch in Arch::ALL {
            assert_eq!(arch.config().validate(), Ok(()), "{arch}");
        }
    }

    #[test]
    fn configs_that_cannot_run_are_refused() {
        let base = Arch::VitNano.config();
        let broken = [
            VitConfig {
                heads: 0,
                ..base.clone()
            },
            VitConfig {
                heads: 5,
                ..base.clone()
            },
            VitConfig {
                dim: 0,
                ..base.clone()
            },
            VitConfig {
                depth: 0,
                ..base.clone()
            },
            VitConfig {
                patch_size: 0,
                ..base.clone()
            },
            VitConfig {
                pos_grid: 0,
                ..base.clone()
            },
            VitConfig {
                dim: 1 << 40,
                heads: 1,
                ..base.clone()
            },
            VitConfig {
                ffn: FfnKind::Mlp { hidden: 0 },
                ..base.clone()
            },
            VitConfig {
                registers: 1 << 30,
                ..base.clone()
            },
            VitConfig {
                layer_norm_eps: f64::NAN,
                ..base.clone()
            },
            VitConfig {
                layer_norm_eps: 0.0,
                ..base.clone()
            },
        ];
        for config in broken {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn named_configs_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(Arch::matching(&arch.config()), Some(arch));
        }
    }
}
