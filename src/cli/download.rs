//! `dinoscope download`: official checkpoints by catalogue id, or any URL, into the checkpoint
//! folder, resumable and SHA-256-verified (`model::download`), with a progress bar; Stable
//! Diffusion models into the Hugging Face cache (`model::download::hub`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::model::download::hub::{RepoProgress, Verification, endpoint_from, hub_cache_dir};
use crate::model::download::{
    DownloadProgress, DownloadSettings, OFFICIAL, checkpoint_dir, download, file_name_from_url,
    official, recorded_hash,
};
use crate::model::sd::{SD_CATALOG, SdCatalogEntry, resolve_sd_model, sd_catalog_entry};

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Catalogue ids of official checkpoints (see `--list`), e.g. `dino_vits8 dinov2_vits14`, or
    /// of Stable Diffusion models (`sd15`, `sd21`, `sd21_base`).
    pub names: Vec<String>,
    /// Print the catalogue (id, size, title, URL; `*` marks checkpoints already downloaded).
    #[arg(long)]
    pub list: bool,
    /// Download this URL instead (stored under the last segment of its path).
    #[arg(long, conflicts_with = "names")]
    pub url: Option<String>,
    /// Expected SHA-256 (64 hex digits) of the one file downloaded; a mismatch deletes it.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Checkpoint folder (default: `$DINOSCOPE_CACHE`, else `$XDG_CACHE_HOME/dinoscope/checkpoints`,
    /// else `~/.cache/dinoscope/checkpoints`).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Hugging Face hub cache for the SD models (default: `$HF_HUB_CACHE`, else `$HF_HOME/hub`,
    /// else `~/.cache/huggingface/hub`); the hub itself is `$HF_ENDPOINT`, else huggingface.co.
    #[arg(long)]
    pub hf_cache: Option<PathBuf>,
}

/// One file to fetch.
struct Wanted {
    url: String,
    file_name: String,
    sha256: Option<String>,
}

pub fn run(args: &DownloadArgs) -> Result<()> {
    let (sd, names): (Vec<&String>, Vec<&String>) = args
        .names
        .iter()
        .partition(|n| sd_catalog_entry(n).is_some());
    if !sd.is_empty() {
        if args.sha256.is_some() {
            bail!("--sha256 checks one file; SD models are checked against the hub's hashes");
        }
        let cache = hf_cache(args)?;
        for name in &sd {
            if let Some(entry) = sd_catalog_entry(name) {
                fetch_sd(entry, &cache)?;
            }
        }
        if names.is_empty() && args.url.is_none() && !args.list {
            return Ok(());
        }
    }
    let dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => checkpoint_dir().context(
            "no checkpoint folder: set DINOSCOPE_CACHE, XDG_CACHE_HOME or HOME, or pass --cache-dir",
        )?,
    };
    if args.list {
        print_catalogue(&dir);
        print_sd_catalogue(args);
        return Ok(());
    }
    let wanted = wanted(args, &names)?;
    for want in &wanted {
        fetch(want, &dir.join(&want.file_name))?;
    }
    Ok(())
}

fn print_catalogue(dir: &Path) {
    println!("checkpoint folder: {}", dir.display());
    for c in &OFFICIAL {
        let here = if recorded_hash(&dir.join(c.file_name())).is_some() {
            "*"
        } else {
            " "
        };
        println!(
            "{here} {:<22} {:>7.0} MB  {:<28} {}",
            c.id, c.size_mb, c.title, c.url
        );
    }
}

fn hf_cache(args: &DownloadArgs) -> Result<PathBuf> {
    args.hf_cache.clone().or_else(hub_cache_dir).context(
        "no Hugging Face cache folder: set HF_HUB_CACHE, HF_HOME or HOME, or pass --hf-cache",
    )
}

fn print_sd_catalogue(args: &DownloadArgs) {
    let cache = args.hf_cache.clone().or_else(hub_cache_dir);
    match &cache {
        Some(dir) => println!("Stable Diffusion (Hugging Face cache: {}):", dir.display()),
        None => println!("Stable Diffusion (no Hugging Face cache folder):"),
    }
    for e in &SD_CATALOG {
        let here = cache
            .as_deref()
            .is_some_and(|c| resolve_sd_model(e.repo_id, Some(c)).is_ok());
        println!(
            "{} {:<22} {:>7.0} MB  {:<28} {}",
            if here { "*" } else { " " },
            e.id,
            e.download_mb,
            e.title,
            e.repo_id
        );
    }
}

fn fetch_sd(entry: &SdCatalogEntry, cache: &Path) -> Result<()> {
    let endpoint = endpoint_from(|name| std::env::var_os(name));
    let bar = progress_bar(entry.id);
    let mut report = |p: RepoProgress| {
        bar.set_length(p.total);
        bar.set_position(p.received);
        bar.set_message(format!(
            "{} {}/{} {}",
            entry.id,
            p.index + 1,
            p.files,
            p.path
        ));
        true
    };
    let result = entry.download(&endpoint, cache, &DownloadSettings::default(), &mut report);
    bar.finish_and_clear();
    let (done, folder) = result?;
    for file in &done.files {
        let how = match file.verification {
            Verification::PinnedSha256 => "SHA-256 pinned in the catalogue",
            Verification::ServerSha256 => "SHA-256 from the hub",
            Verification::ServerGitSha1 => "git SHA-1 from the hub",
            Verification::Unverified => "UNVERIFIED (the server listed no hash)",
        };
        let state = if file.reused {
            ", already in the cache".to_string()
        } else if file.resumed_from > 0 {
            format!(", resumed from byte {}", file.resumed_from)
        } else {
            String::new()
        };
        println!("  {}: {} bytes, {how}{state}", file.path, file.bytes);
    }
    for path in &done.absent {
        println!("  {path}: not in the repository (optional)");
    }
    if done.copied {
        println!("  (the file system refused links: the snapshot holds copies of the blobs)");
    }
    if folder.version != entry.version {
        eprintln!(
            "warning: {} is {}, the catalogue expected {}",
            entry.repo_id, folder.version, entry.version
        );
    }
    println!(
        "{} ({}) at commit {}: {}",
        entry.repo_id,
        folder.version,
        done.commit,
        done.snapshot.display()
    );
    Ok(())
}

fn wanted(args: &DownloadArgs, names: &[&String]) -> Result<Vec<Wanted>> {
    if let Some(url) = &args.url {
        let file_name = file_name_from_url(url)
            .with_context(|| format!("{url}: the URL names no file to store the download as"))?;
        return Ok(vec![Wanted {
            url: url.clone(),
            file_name,
            sha256: args.sha256.clone(),
        }]);
    }
    if names.is_empty() {
        bail!("name a checkpoint (see `dinoscope download --list`) or give --url");
    }
    if args.sha256.is_some() && names.len() > 1 {
        bail!("--sha256 checks one file; name one checkpoint with it");
    }
    names
        .iter()
        .map(|name| {
            let Some(c) = official(name) else {
                let ids: Vec<&str> = OFFICIAL
                    .iter()
                    .map(|c| c.id)
                    .chain(SD_CATALOG.iter().map(|e| e.id))
                    .collect();
                bail!("unknown checkpoint `{name}`; known: {}", ids.join(", "));
            };
            Ok(Wanted {
                url: c.url.to_string(),
                file_name: c.file_name().to_string(),
                sha256: args.sha256.clone().or_else(|| c.sha256.map(str::to_string)),
            })
        })
        .collect()
}

fn fetch(want: &Wanted, dest: &Path) -> Result<()> {
    if let Some(hash) = recorded_hash(dest)
        && want
            .sha256
            .as_ref()
            .is_none_or(|h| h.eq_ignore_ascii_case(&hash))
    {
        println!("{} already downloaded (SHA-256 {hash})", dest.display());
        return Ok(());
    }
    let bar = progress_bar(&want.file_name);
    let mut report = |p: DownloadProgress| {
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.received);
        true
    };
    let result = download(&want.url, dest, want.sha256.as_deref(), &mut report);
    bar.finish_and_clear();
    let done = result.with_context(|| format!("{}: download failed", dest.display()))?;
    let resumed = if done.resumed_from > 0 {
        format!(", resumed from byte {}", done.resumed_from)
    } else {
        String::new()
    };
    println!(
        "{}: {} bytes, SHA-256 {}{}{resumed}",
        done.path.display(),
        done.bytes,
        done.sha256,
        if want.sha256.is_some() {
            " (verified)"
        } else {
            ""
        },
    );
    Ok(())
}

fn progress_bar(name: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}
