//! `dinoscope download`: official checkpoints by catalogue id, or any URL, into the checkpoint
//! folder, resumable and SHA-256-verified (`model::download`), with a progress bar.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::model::download::{
    DownloadProgress, OFFICIAL, checkpoint_dir, download, file_name_from_url, official,
    recorded_hash,
};

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Catalogue ids of official checkpoints (see `--list`), e.g. `dino_vits8 dinov2_vits14`.
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
}

/// One file to fetch.
struct Wanted {
    url: String,
    file_name: String,
    sha256: Option<String>,
}

pub fn run(args: &DownloadArgs) -> Result<()> {
    let dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => checkpoint_dir().context(
            "no checkpoint folder: set DINOSCOPE_CACHE, XDG_CACHE_HOME or HOME, or pass --cache-dir",
        )?,
    };
    if args.list {
        print_catalogue(&dir);
        return Ok(());
    }
    let wanted = wanted(args)?;
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

fn wanted(args: &DownloadArgs) -> Result<Vec<Wanted>> {
    if let Some(url) = &args.url {
        let file_name = file_name_from_url(url)
            .with_context(|| format!("{url}: the URL names no file to store the download as"))?;
        return Ok(vec![Wanted {
            url: url.clone(),
            file_name,
            sha256: args.sha256.clone(),
        }]);
    }
    if args.names.is_empty() {
        bail!("name a checkpoint (see `dinoscope download --list`) or give --url");
    }
    if args.sha256.is_some() && args.names.len() > 1 {
        bail!("--sha256 checks one file; name one checkpoint with it");
    }
    args.names
        .iter()
        .map(|name| {
            let Some(c) = official(name) else {
                let ids: Vec<&str> = OFFICIAL.iter().map(|c| c.id).collect();
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
