//! `dinoscope sd-models`: the Stable Diffusion models in the Hugging Face cache and in the given
//! folders, with their version, size and what is missing.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::model::download::hub::hub_cache_dir;
use crate::model::sd::{FoundSdModel, find_in_hub_cache};

#[derive(Args, Debug)]
pub struct SdModelsArgs {
    /// Diffusers folders to check besides the Hugging Face cache.
    pub folders: Vec<PathBuf>,
    /// Hugging Face hub cache (default: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`).
    #[arg(long)]
    pub hf_cache: Option<PathBuf>,
}

pub fn run(args: &SdModelsArgs) -> Result<()> {
    match args.hf_cache.clone().or_else(hub_cache_dir) {
        Some(cache) => {
            println!("Hugging Face cache: {}", cache.display());
            let listing = find_in_hub_cache(&cache);
            for model in &listing.models {
                print_model(model);
            }
            for (id, problem) in &listing.problems {
                println!("  ! {id}: {problem}");
            }
            if listing.models.is_empty() {
                println!("  no SD model (`dinoscope download --list` shows the downloadable ones)");
            }
        }
        None => println!("no Hugging Face cache folder (set HF_HUB_CACHE, HF_HOME or HOME)"),
    }
    let mut failed = 0;
    for dir in &args.folders {
        match FoundSdModel::open_dir(dir) {
            Ok(model) => print_model(&model),
            Err(e) => {
                println!("  ! {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of the given folders is no usable SD model");
    }
    Ok(())
}

fn print_model(model: &FoundSdModel) {
    let revision = model
        .revision
        .as_deref()
        .map(|r| format!("@{}", r.get(..10).unwrap_or(r)))
        .unwrap_or_default();
    let mark = if model.current { "*" } else { " " };
    let folder = &model.folder;
    let precision = if folder.unet.fp16 { "fp16" } else { "fp32" };
    let prompts = if folder.has_prompts() {
        "prompts"
    } else {
        "no prompts"
    };
    println!(
        "{mark} {}{revision}  {}  {:.0} MB  {precision}  {prompts}",
        model.id,
        folder.version,
        model.bytes as f64 / 1e6,
    );
    println!("    {}", folder.root.display());
    for note in &folder.absent {
        println!("    {note}");
    }
}
