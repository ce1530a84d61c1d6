//! `dinoscope token-norms`: the L2 norm of every patch token of a block's output (or of every
//! block), and for register models the attention that CLS and every patch pay to each register.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::ModelInput;
use crate::analysis::token_norms::{
    TokenNorms, all_token_norms, block_tokens, outliers, register_attention, suggested_threshold,
};
use crate::arrays::write_npy;

/// `--block N` or `--block all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockChoice {
    Index(usize),
    All,
}

impl std::str::FromStr for BlockChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(BlockChoice::All);
        }
        s.parse()
            .map(BlockChoice::Index)
            .map_err(|_| format!("expected a 0-based block index or `all`, got `{s}`"))
    }
}

#[derive(Args, Debug)]
pub struct TokenNormsArgs {
    #[command(flatten)]
    pub input: ModelInput,
    /// 0-based block, or `all` (default: the last block).
    #[arg(long)]
    pub block: Option<BlockChoice>,
    /// Norms of the block output's patch tokens (before the final norm): `[rows, cols]`, or
    /// `[blocks, rows, cols]` with `--block all` (float32 `.npy`).
    #[arg(long)]
    pub out: PathBuf,
    /// Register models: the attention CLS and every patch pay to each register at the block (the
    /// last one with `--block all`), mean over heads, `[1 + patches, registers]`, CLS first.
    #[arg(long)]
    pub registers_out: Option<PathBuf>,
}

/// One line per block on stderr: the outliers under the suggested threshold.
fn report(norms: &TokenNorms) {
    let threshold = suggested_threshold(&norms.patches);
    let count = outliers(&norms.patches, threshold)
        .iter()
        .filter(|o| **o)
        .count();
    let max = norms
        .patches
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    eprintln!(
        "block {}: {count} of {} patches above {threshold:.3} (median + 5.19 MAD), largest norm {max:.3}",
        norms.block,
        norms.patches.len()
    );
}

pub fn run(args: &TokenNormsArgs) -> Result<()> {
    let s = args.input.open()?;
    let vit = &s.model.vit;
    let config = &s.model.config;
    if args.registers_out.is_some() && config.registers == 0 {
        bail!(
            "--registers-out: the model has no register tokens (DINOv2 with registers, such as \
             dinov2_vits14_reg, has them)"
        );
    }
    let depth = config.depth;
    let (norms, registers) = match args.block.unwrap_or(BlockChoice::Index(depth - 1)) {
        BlockChoice::Index(block) if block >= depth => bail!(
            "--block {block} is out of range: the model has {depth} blocks (0..={})",
            depth - 1
        ),
        BlockChoice::Index(block) => {
            let tokens = block_tokens(vit, &s.image, block)?;
            (vec![tokens.norms], tokens.registers)
        }
        BlockChoice::All => {
            let all = all_token_norms(vit, &s.image)?;
            let registers = match &args.registers_out {
                Some(_) => Some(register_attention(vit, &s.image, depth - 1)?),
                None => None,
            };
            (all, registers)
        }
    };
    let Some(grid) = norms.first().map(|n| n.grid) else {
        bail!("the model has no blocks");
    };
    let mut shape = vec![grid.rows, grid.cols];
    if args.block == Some(BlockChoice::All) {
        shape.insert(0, norms.len());
    }
    let data: Vec<f32> = norms
        .iter()
        .flat_map(|n| n.patches.iter().copied())
        .collect();
    write_npy(&args.out, &shape, &data)?;
    norms.iter().for_each(report);
    eprintln!("wrote {} ({shape:?})", args.out.display());
    if let (Some(path), Some(attn)) = (&args.registers_out, registers) {
        let shape = [attn.queries(), attn.registers];
        write_npy(path, &shape, &attn.head_mean())?;
        eprintln!(
            "wrote {} ({shape:?}, block {}, mean over {} heads)",
            path.display(),
            attn.block,
            attn.heads
        );
    }
    Ok(())
}
