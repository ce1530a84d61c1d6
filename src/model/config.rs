//! Architecture descriptions of every official DINO / DINOv2 backbone, plus small training configurations.

use std::fmt;

/// Which official code base a model follows; it decides token layout details and naming.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Family {
    Dino,
    Dinov2,
}

/// How the positional table is resampled for a grid other than the training grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PosEmbedMode {
    /// `F.interpolate(scale_factor=((gh+0.1)/M, (gw+0.1)/M), mode="bicubic")`: DINO v1 and DINOv2 without registers.
    BicubicOffset,
    /// `F.interpolate(size=(gh, gw), mode="bicubic", antialias=True)`: DINOv2 with registers.
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
        let family = match self.family {
            Family::Dino => "DINO",
            Family::Dinov2 => "DINOv2",
        };
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
    fn named_configs_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(Arch::matching(&arch.config()), Some(arch));
        }
    }
}
