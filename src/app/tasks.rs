//! The task layer the whole app shares: task ids, cancellation, progress, the events background
//! threads send back, the registry of tasks in progress (what the status bar shows), and one-shot
//! background work as promises. It imports no view and not the worker, so all of them import it.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use eframe::egui;
use poll_promise::Promise;

use super::notifications::AppError;
use crate::panics;

pub type TaskId = u64;

/// Identifies one image of the gallery for the lifetime of the app.
pub type ImageId = u64;

/// A flag the UI raises to cancel one task; the thread doing it checks it between steps and
/// drops the results of cancelled tasks.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A result for whichever part of the app asked for it: each part takes the types it owns (a
/// view its job results, the gallery its decoded images) and leaves the others.
pub type Output = Box<dyn Any + Send>;

pub enum Event {
    /// The compute device the worker chose.
    Backend(String),
    Progress {
        task: TaskId,
        label: String,
        fraction: Option<f32>,
    },
    Finished {
        task: TaskId,
    },
    Failed {
        task: TaskId,
        error: AppError,
    },
    /// A note for the user (e.g. the default weights could not be read, so random ones are used).
    Note(String),
    /// An error outside any task (e.g. on the point-query thread).
    Error(AppError),
    Output(Output),
}

/// Sends an event and wakes the UI.
#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Event>,
    ctx: egui::Context,
}

impl EventSender {
    pub fn send(&self, event: Event) {
        // The receiver only goes away when the app closes; nothing to do then.
        let _ = self.tx.send(event);
        self.ctx.request_repaint();
    }

    pub fn output(&self, output: impl Any + Send) {
        self.send(Event::Output(Box::new(output)));
    }

    /// The thread of a task could not start: the task failed (`what`: e.g. "starting the export").
    pub fn not_started(&self, task: TaskId, what: &str, error: &std::io::Error) {
        self.send(Event::Failed {
            task,
            error: AppError::Compute {
                what: what.into(),
                detail: error.to_string(),
            },
        });
        self.send(Event::Finished { task });
    }
}

/// One task as its thread sees it: reports progress, tells whether it was cancelled.
#[derive(Clone)]
pub struct TaskContext {
    pub task: TaskId,
    pub token: CancelToken,
    pub events: EventSender,
}

impl TaskContext {
    pub fn progress(&self, label: String) {
        self.report(label, None);
    }

    pub fn report(&self, label: String, fraction: Option<f32>) {
        self.events.send(Event::Progress {
            task: self.task,
            label,
            fraction,
        });
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// A task in progress, as the status bar shows it.
pub struct Task {
    pub label: String,
    pub fraction: Option<f32>,
    token: CancelToken,
    /// What the task is, in a type of the part of the app that started it.
    key: Box<dyn Any>,
}

/// The tasks in progress and the channel their events come back on.
pub struct Tasks {
    tasks: BTreeMap<TaskId, Task>,
    next: TaskId,
    events: Receiver<Event>,
    sender: EventSender,
}

impl Tasks {
    pub fn new(ctx: egui::Context) -> Tasks {
        let (tx, events) = channel();
        Tasks {
            tasks: BTreeMap::new(),
            next: 0,
            events,
            sender: EventSender { tx, ctx },
        }
    }

    pub fn sender(&self) -> EventSender {
        self.sender.clone()
    }

    /// Registers a task; `key` says what it is, in a type of the part that starts it (only that
    /// part reads it back, through [`Self::running`] or when the task is dropped).
    pub fn start(
        &mut self,
        key: impl Any,
        label: impl Into<String>,
        fraction: Option<f32>,
    ) -> TaskContext {
        self.next += 1;
        let token = CancelToken::default();
        self.tasks.insert(
            self.next,
            Task {
                label: label.into(),
                fraction,
                token: token.clone(),
                key: Box::new(key),
            },
        );
        TaskContext {
            task: self.next,
            token,
            events: self.sender(),
        }
    }

    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    pub fn progress(&mut self, task: TaskId, label: String, fraction: Option<f32>) {
        if let Some(t) = self.tasks.get_mut(&task) {
            t.label = label;
            if fraction.is_some() {
                t.fraction = fraction;
            }
        }
    }

    /// Forgets a finished task.
    pub fn finished(&mut self, task: TaskId) {
        self.tasks.remove(&task);
    }

    /// Raises a task's cancel flag and forgets it; returns what it was.
    pub fn cancel(&mut self, task: TaskId) -> Option<Box<dyn Any>> {
        let t = self.tasks.remove(&task)?;
        t.token.cancel();
        Some(t.key)
    }

    /// A task under way.
    pub fn get(&self, task: TaskId) -> Option<&Task> {
        self.tasks.get(&task)
    }

    /// What a task is.
    pub fn key(&self, task: TaskId) -> Option<&dyn Any> {
        self.tasks.get(&task).map(|t| t.key.as_ref())
    }

    /// The tasks whose key is a `K`.
    pub fn running<K: 'static>(&self) -> impl Iterator<Item = (TaskId, &K)> {
        self.tasks
            .iter()
            .filter_map(|(id, t)| t.key.downcast_ref::<K>().map(|k| (*id, k)))
    }

    /// Cancels the tasks whose key is a `K` other than `key` (work for settings no longer shown);
    /// tells whether one for `key` is still under way.
    pub fn cancel_others<K: PartialEq + 'static>(&mut self, key: &K) -> bool {
        let running: Vec<(TaskId, bool)> =
            self.running::<K>().map(|(id, k)| (id, k == key)).collect();
        for (id, _) in running.iter().filter(|(_, current)| !current) {
            self.cancel(*id);
        }
        running.iter().any(|(_, current)| *current)
    }

    /// Some task with a key of type `K` is under way.
    pub fn any<K: 'static>(&self) -> bool {
        self.running::<K>().next().is_some()
    }

    /// What each task under way is doing now.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.tasks.values().map(|t| t.label.as_str())
    }

    pub fn ids(&self) -> Vec<TaskId> {
        self.tasks.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// The oldest task under way.
    pub fn first(&self) -> Option<&Task> {
        self.tasks.values().next()
    }
}

/// Runs `work` on a new thread named `name` and wakes the UI when it is done. The promise always
/// gets a value: a panic becomes an error naming `what`. Fails only when no thread can start.
pub fn spawn_promise<T: Send + 'static>(
    name: &str,
    what: &str,
    ctx: &egui::Context,
    work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<Promise<Result<T, AppError>>, AppError> {
    let (sender, promise) = Promise::new();
    let (ctx, what_owned) = (ctx.clone(), what.to_string());
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|payload| {
                Err(AppError::Compute {
                    what: what_owned,
                    detail: panics::message(payload.as_ref()),
                })
            });
            sender.send(result);
            ctx.request_repaint();
        })
        .map_err(|e| AppError::Compute {
            what: format!("starting {what}"),
            detail: e.to_string(),
        })?;
    Ok(promise)
}

/// Takes a promise's value once it is ready, leaving `None`.
pub fn take_ready<T: Send + 'static>(slot: &mut Option<Promise<T>>) -> Option<T> {
    let promise = slot.take()?;
    match promise.try_take() {
        Ok(value) => Some(value),
        Err(pending) => {
            *slot = Some(pending);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_promise_is_an_error_naming_the_work() {
        let ctx = egui::Context::default();
        let mut slot = Some(
            spawn_promise("test", "the test work", &ctx, || -> Result<(), AppError> {
                panic!("boom")
            })
            .unwrap(),
        );
        let result = loop {
            if let Some(r) = take_ready(&mut slot) {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let text = result.unwrap_err().to_string();
        assert!(
            text.contains("the test work") && text.contains("boom"),
            "{text}"
        );
    }

    #[test]
    fn tasks_are_found_by_the_type_of_their_key() {
        let mut tasks = Tasks::new(egui::Context::default());
        let a = tasks.start(7u32, "a", None);
        tasks.start("other", "b", None);
        assert_eq!(tasks.running::<u32>().collect::<Vec<_>>(), [(a.task, &7)]);
        let key = tasks.cancel(a.task).unwrap();
        assert!(a.is_cancelled());
        assert_eq!(key.downcast_ref::<u32>(), Some(&7));
        assert!(!tasks.any::<u32>() && tasks.len() == 1);
    }

    #[test]
    fn cancel_others_keeps_only_the_task_for_the_key_asked() {
        let mut tasks = Tasks::new(egui::Context::default());
        let stale = tasks.start(1u32, "stale", None);
        let current = tasks.start(2u32, "current", None);
        let other_kind = tasks.start("x", "other kind", None);
        assert!(tasks.cancel_others(&2u32));
        assert!(stale.is_cancelled());
        assert!(!current.is_cancelled() && !other_kind.is_cancelled());
        assert!(!tasks.cancel_others(&3u32));
        assert!(current.is_cancelled() && !other_kind.is_cancelled());
    }
}
