//! Pausing, resuming and stopping a training run from another thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a paused run looks at its control again.
const PAUSE_POLL: Duration = Duration::from_millis(20);

/// A shared handle on a run: clone it, give one copy to [`super::run::train_with`] and keep the other.
/// The run looks at it between iterations, so a pause or stop takes effect after the iteration under way.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    paused: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

impl RunControl {
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Ends the run after the iteration under way; the run saves its checkpoints before it returns.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Blocks while paused; returns `true` when the run should go on, `false` when it was stopped.
    pub fn wait_while_paused(&self) -> bool {
        while self.is_paused() && !self.is_stopped() {
            std::thread::sleep(PAUSE_POLL);
        }
        !self.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_ends_a_pause() {
        let control = RunControl::default();
        assert!(control.wait_while_paused());
        control.pause();
        let other = control.clone();
        let waiter = std::thread::spawn(move || other.wait_while_paused());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!waiter.is_finished(), "a paused run waits");
        control.stop();
        assert_eq!(waiter.join().ok(), Some(false));
    }

    #[test]
    fn resuming_lets_the_run_go_on() {
        let control = RunControl::default();
        control.pause();
        let other = control.clone();
        let waiter = std::thread::spawn(move || other.wait_while_paused());
        std::thread::sleep(Duration::from_millis(40));
        control.resume();
        assert_eq!(waiter.join().ok(), Some(true));
        assert!(!control.is_paused() && !control.is_stopped());
    }
}
