//! Stable Diffusion downloads from the SD model picker: a catalogue model
//! ([`crate::model::sd::catalog`]) fetched into the Hugging Face cache on its own thread by
//! [`SdCatalogEntry::download`] (resumable from the `.incomplete` parts, hash-checked), run as a
//! task with progress and Cancel like the checkpoint downloads; the finished snapshot becomes the
//! SD model of every view that asked for it, and the pickers list the cache again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::notifications::AppError;
use super::state::ViewTab;
use super::tasks::{Event, TaskContext, TaskId, Tasks};
use crate::model::download::DownloadSettings;
use crate::model::download::hub::{RepoProgress, endpoint_from, hub_cache_dir};
use crate::model::sd::{SdCatalogEntry, SdDownloadError};

/// The key of an SD download task: the catalogue entry.
#[derive(Clone, Copy, Debug)]
pub struct SdDownloadTask(pub &'static SdCatalogEntry);

/// A finished download, sent back as an [`Event::Output`].
pub struct SdDownloaded {
    pub entry: &'static SdCatalogEntry,
    /// `snapshots/<commit>` in the cache: the folder to open.
    pub snapshot: PathBuf,
}

/// Where SD models are listed from and downloaded into, the downloads' threads, and the
/// snapshots waiting for the views that asked for them.
pub struct SdHub {
    /// The Hugging Face cache (`None`: no folder could be found).
    cache: Option<PathBuf>,
    /// The hub's base URL.
    endpoint: String,
    /// Changes when the cache's folder or contents change: the pickers list it again.
    generation: u64,
    /// Download threads by catalogue id, kept after a cancel until the thread has stopped, so that
    /// no second download writes the same part meanwhile.
    threads: HashMap<&'static str, JoinHandle<()>>,
    /// The views waiting for a download, by catalogue id.
    asked: Vec<(&'static str, ViewTab)>,
    /// Downloaded snapshots not yet taken by the picker of the view that asked.
    chosen: HashMap<ViewTab, PathBuf>,
}

impl SdHub {
    /// The cache and the hub as `huggingface_hub` finds them (`HF_HUB_CACHE`, `HF_ENDPOINT`, ...).
    pub fn from_env() -> SdHub {
        SdHub::new(
            hub_cache_dir(),
            endpoint_from(|name| std::env::var_os(name)),
        )
    }

    pub fn new(cache: Option<PathBuf>, endpoint: String) -> SdHub {
        SdHub {
            cache,
            endpoint,
            generation: 0,
            threads: HashMap::new(),
            asked: Vec::new(),
            chosen: HashMap::new(),
        }
    }

    pub fn cache(&self) -> Option<&Path> {
        self.cache.as_deref()
    }

    /// Another cache or hub (the pickers list the new cache).
    pub fn set(&mut self, cache: Option<PathBuf>, endpoint: String) {
        self.cache = cache;
        self.endpoint = endpoint;
        self.generation += 1;
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A cancelled download of `id` whose thread has not stopped yet.
    pub fn stopping(&self, id: &str, tasks: &Tasks) -> bool {
        self.threads.get(id).is_some_and(|t| !t.is_finished()) && downloading(tasks, id).is_none()
    }

    /// Downloads `entry` on its own thread (unless it is under way); its snapshot then becomes the
    /// SD model of `owner`. Nothing happens while a cancelled download of it is still stopping
    /// (the picker offers none then).
    pub fn start(
        &mut self,
        entry: &'static SdCatalogEntry,
        owner: ViewTab,
        tasks: &mut Tasks,
    ) -> Result<(), AppError> {
        if self.stopping(entry.id, tasks) {
            return Ok(());
        }
        if !self.asked.contains(&(entry.id, owner.clone())) {
            self.asked.push((entry.id, owner));
        }
        if downloading(tasks, entry.id).is_some() {
            return Ok(());
        }
        let Some(cache) = self.cache.clone() else {
            self.dropped(entry.id);
            return Err(SdDownloadError::NoCache {
                repo_id: entry.repo_id.into(),
            }
            .into());
        };
        let label = format!("Downloading {}", entry.title);
        let task = tasks.start(SdDownloadTask(entry), label, Some(0.0));
        let endpoint = self.endpoint.clone();
        let (id, events) = (task.task, task.events.clone());
        let what = format!("starting the download of {}", entry.repo_id);
        let spawned = std::thread::Builder::new()
            .name("dinoscope-sd-download".into())
            .spawn(move || {
                match fetch(entry, &endpoint, &cache, &task) {
                    Ok(Some(snapshot)) => task.events.output(SdDownloaded { entry, snapshot }),
                    Ok(None) => {}
                    Err(e) => task.events.send(Event::Failed {
                        task: task.task,
                        error: e.into(),
                    }),
                }
                task.events.send(Event::Finished { task: task.task });
            });
        match spawned {
            Ok(thread) => {
                self.threads.insert(entry.id, thread);
            }
            Err(e) => events.not_started(id, &what, &e),
        }
        Ok(())
    }

    /// The download of `entry` finished: the views that asked get its snapshot.
    pub fn finished(&mut self, entry: &SdCatalogEntry, snapshot: &Path) {
        self.generation += 1;
        let (done, waiting) = std::mem::take(&mut self.asked)
            .into_iter()
            .partition(|(id, _)| *id == entry.id);
        self.asked = waiting;
        for (_, owner) in done {
            self.chosen.insert(owner, snapshot.to_path_buf());
        }
    }

    /// The download of `id` failed or was cancelled: no view waits for it any more.
    pub fn dropped(&mut self, id: &str) {
        self.asked.retain(|(asked, _)| *asked != id);
    }

    /// The snapshot downloaded for `owner`, once.
    pub fn take_chosen(&mut self, owner: &ViewTab) -> Option<PathBuf> {
        self.chosen.remove(owner)
    }
}

/// The task downloading the catalogue model `id`, if one is under way.
pub fn downloading(tasks: &Tasks, id: &str) -> Option<TaskId> {
    tasks
        .running::<SdDownloadTask>()
        .find(|(_, key)| key.0.id == id)
        .map(|(task, _)| task)
}

/// Runs the download (on its thread); `None` when cancelled, the parts kept for a retry.
fn fetch(
    entry: &SdCatalogEntry,
    endpoint: &str,
    cache: &Path,
    task: &TaskContext,
) -> Result<Option<PathBuf>, SdDownloadError> {
    let mut last = Instant::now() - Duration::from_secs(1);
    let mut report = |p: RepoProgress| {
        if task.is_cancelled() {
            return false;
        }
        let file_done = p.file.total.is_some_and(|t| p.file.received >= t);
        if file_done || last.elapsed() >= Duration::from_millis(100) {
            last = Instant::now();
            let fraction = (p.total > 0).then(|| p.received as f32 / p.total as f32);
            task.report(progress_label(entry.title, &p), fraction);
        }
        true
    };
    match entry.download(endpoint, cache, &DownloadSettings::default(), &mut report) {
        Ok((done, _)) => Ok(Some(done.snapshot)),
        Err(e) if e.is_cancelled() => Ok(None),
        Err(e) => Err(e),
    }
}

/// "Downloading Stable Diffusion 1.5: file 3 of 11, 1200 of 2134 MB".
pub fn progress_label(title: &str, p: &RepoProgress) -> String {
    // A tenth of a MB for small downloads, so that the count visibly moves.
    let digits = if p.total < 10_000_000 { 1 } else { 0 };
    let mb = |bytes: u64| bytes as f64 / 1e6;
    format!(
        "Downloading {title}: file {} of {}, {:.*} of {:.*} MB",
        p.index + 1,
        p.files,
        digits,
        mb(p.received),
        digits,
        mb(p.total)
    )
}

/// "about 2.1 GB" for a catalogue entry's download.
pub fn download_size(entry: &SdCatalogEntry) -> String {
    format!("about {:.1} GB", entry.download_mb / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::download::DownloadProgress;
    use crate::model::sd::SD_CATALOG;

    #[test]
    fn progress_names_the_file_and_the_megabytes() {
        let p = RepoProgress {
            index: 2,
            files: 11,
            path: "unet/diffusion_pytorch_model.fp16.safetensors",
            file: DownloadProgress {
                received: 5,
                total: Some(10),
            },
            received: 1_200_400_000,
            total: 2_134_000_000,
        };
        assert_eq!(
            progress_label("SD", &p),
            "Downloading SD: file 3 of 11, 1200 of 2134 MB"
        );
        let small = RepoProgress {
            received: 250_000,
            total: 9_960_000,
            ..p
        };
        assert_eq!(
            progress_label("SD", &small),
            "Downloading SD: file 3 of 11, 0.2 of 10.0 MB"
        );
        assert_eq!(download_size(&SD_CATALOG[0]), "about 2.1 GB");
    }

    #[test]
    fn a_finished_download_goes_to_every_view_that_asked_once() {
        let mut hub = SdHub::new(None, "http://127.0.0.1:9".into());
        let mut tasks = Tasks::new(eframe::egui::Context::default());
        let (sd15, sd21) = (&SD_CATALOG[0], &SD_CATALOG[1]);
        // No cache: an error naming the repository, and nobody waits.
        let err = hub
            .start(sd15, ViewTab::CORRESPONDENCE, &mut tasks)
            .unwrap_err();
        assert!(err.to_string().contains(sd15.repo_id), "{err}");
        assert!(tasks.is_empty());
        hub.finished(sd15, Path::new("/nowhere"));
        assert_eq!(hub.take_chosen(&ViewTab::CORRESPONDENCE), None);

        hub.asked = vec![
            (sd15.id, ViewTab::CORRESPONDENCE),
            (sd15.id, ViewTab::PCA),
            (sd21.id, ViewTab::COSEG),
        ];
        let generation = hub.generation();
        hub.finished(sd15, Path::new("/snap"));
        assert!(hub.generation() > generation, "the pickers list again");
        for view in [ViewTab::CORRESPONDENCE, ViewTab::PCA] {
            assert_eq!(hub.take_chosen(&view), Some(PathBuf::from("/snap")));
            assert_eq!(hub.take_chosen(&view), None);
        }
        hub.dropped(sd21.id);
        hub.finished(sd21, Path::new("/other"));
        assert_eq!(hub.take_chosen(&ViewTab::COSEG), None);
    }
}
