//! Plays a source on its own thread into a [`LatestSlot`]: files at their own frame rate (or as
//! fast as they decode), looping if asked, cameras as they deliver. Whoever takes frames gets the
//! newest one; frames it was too slow for are dropped and counted, never queued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::latest::{LatestSlot, SlotCounts};
use super::{Frame, SourceSpec, VideoError};

/// The longest the player sleeps before looking at its stop flag again.
const STOP_CHECK: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerOptions {
    /// Frames of files are put at the pace their durations say (real time), not as fast as they
    /// decode.
    pub paced: bool,
    /// A file starts again at its end.
    pub looping: bool,
}

type Outcome = Arc<Mutex<Option<Result<(), VideoError>>>>;

pub struct Player {
    slot: Arc<LatestSlot<Frame>>,
    stop: Arc<AtomicBool>,
    outcome: Outcome,
    thread: Option<JoinHandle<()>>,
}

impl Player {
    /// Opens `spec` on a new thread and plays it; `notify` is called after every frame and at the
    /// end (to wake a UI). Fails only when no thread can start.
    pub fn start(
        spec: SourceSpec,
        options: PlayerOptions,
        notify: impl Fn() + Send + 'static,
    ) -> std::io::Result<Player> {
        let slot = Arc::new(LatestSlot::default());
        let stop = Arc::new(AtomicBool::new(false));
        let outcome: Outcome = Arc::default();
        let thread = {
            let (slot, stop, outcome) = (slot.clone(), stop.clone(), outcome.clone());
            std::thread::Builder::new()
                .name("dinoscope-player".into())
                .spawn(move || {
                    let result = play(&spec, options, &slot, &stop, &notify);
                    *outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                    slot.close();
                    notify();
                })?
        };
        Ok(Player {
            slot,
            stop,
            outcome,
            thread: Some(thread),
        })
    }

    /// The slot frames arrive in, for a consumer on another thread.
    pub fn frames(&self) -> Arc<LatestSlot<Frame>> {
        self.slot.clone()
    }

    /// The newest frame not yet taken.
    pub fn take_frame(&self) -> Option<Frame> {
        self.slot.try_take()
    }

    /// Waits up to `timeout` for a frame (`None` also when the source has ended).
    pub fn wait_frame(&self, timeout: Duration) -> Option<Frame> {
        self.slot.take_timeout(timeout)
    }

    pub fn has_frame(&self) -> bool {
        self.slot.is_filled()
    }

    /// The source has ended (or failed) and its last frame was taken.
    pub fn is_finished(&self) -> bool {
        self.slot.is_closed() && !self.slot.is_filled()
    }

    /// Why the source stopped, once (`None` while it plays or after a normal end).
    pub fn take_error(&self) -> Option<VideoError> {
        let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        match outcome.take() {
            Some(Err(e)) => Some(e),
            other => {
                *outcome = other;
                None
            }
        }
    }

    pub fn counts(&self) -> SlotCounts {
        self.slot.counts()
    }

    /// Stops playing; the thread ends after the frame it is reading (not waited for: a camera
    /// may take its time to deliver it).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.slot.close();
        if let Some(thread) = self.thread.take()
            && thread.is_finished()
        {
            let _ = thread.join();
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.stop();
    }
}

fn play(
    spec: &SourceSpec,
    options: PlayerOptions,
    slot: &LatestSlot<Frame>,
    stop: &AtomicBool,
    notify: &dyn Fn(),
) -> Result<(), VideoError> {
    let start = Instant::now();
    // When the next frame is due, from the start, in source time.
    let mut due = Duration::ZERO;
    let mut index = 0u64;
    loop {
        let mut source = spec.open()?;
        let paced = options.paced && !source.is_live();
        let mut played = 0usize;
        while let Some(mut frame) = source.next_frame()? {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if paced {
                while let Some(wait) = due.checked_sub(start.elapsed()) {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::sleep(wait.min(STOP_CHECK));
                }
                due += frame.duration;
            }
            frame.index = index;
            index += 1;
            played += 1;
            if !slot.put(frame) {
                return Ok(());
            }
            notify();
        }
        if !options.looping || source.is_live() || played == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::SyntheticScene;

    fn scene(frames: usize, fps: f64) -> SourceSpec {
        SourceSpec::Synthetic(SyntheticScene {
            width: 16,
            height: 16,
            frames: Some(frames),
            fps,
            ..SyntheticScene::default()
        })
    }

    #[test]
    fn a_slow_consumer_gets_the_newest_frames_and_the_rest_are_dropped() {
        let options = PlayerOptions {
            paced: false,
            looping: false,
        };
        let player = Player::start(scene(300, 1000.0), options, || {}).unwrap();
        let mut seen = Vec::new();
        while let Some(frame) = player.wait_frame(Duration::from_secs(10)) {
            seen.push(frame.index);
            // A model slower than the source.
            std::thread::sleep(Duration::from_millis(4));
        }
        assert!(player.is_finished() && player.take_error().is_none());
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seen.last(), Some(&299));
        let counts = player.counts();
        assert_eq!(counts.put, 300);
        assert_eq!(counts.put, counts.taken + counts.dropped);
        assert!(counts.dropped > 0 && seen.len() < 300, "{counts:?}");
    }

    #[test]
    fn paced_playback_takes_the_source_time_and_loops() {
        let options = PlayerOptions {
            paced: true,
            looping: true,
        };
        let start = Instant::now();
        let mut player = Player::start(scene(5, 100.0), options, || {}).unwrap();
        let mut last = None;
        while last.is_none_or(|i| i < 12) {
            last = player.wait_frame(Duration::from_secs(10)).map(|f| f.index);
        }
        // Frame 12 is due 120 ms after the start.
        assert!(start.elapsed() >= Duration::from_millis(115));
        player.stop();
        let _ = player.take_frame();
        assert!(player.wait_frame(Duration::from_millis(50)).is_none());
        assert!(player.is_finished());
    }

    #[test]
    fn a_source_that_cannot_open_ends_with_its_error() {
        let spec = SourceSpec::Folder("/nonexistent/dinoscope-frames".into());
        let options = PlayerOptions {
            paced: false,
            looping: true,
        };
        let player = Player::start(spec, options, || {}).unwrap();
        assert!(player.wait_frame(Duration::from_secs(10)).is_none());
        let error = player.take_error().expect("the open error");
        assert!(error.to_string().contains("dinoscope-frames"), "{error}");
    }
}
