//! What the live view reports of itself: frames shown per second over the last frames, and the
//! model time of the last frame.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Frames the rate is measured over.
const WINDOW: usize = 30;

#[derive(Default)]
pub struct FpsMeter {
    shown: VecDeque<Instant>,
    /// The model time of the last frame.
    pub model_time: Duration,
}

impl FpsMeter {
    /// A frame was shown at `at`, its analysis took `model_time`.
    pub fn tick(&mut self, at: Instant, model_time: Duration) {
        if self.shown.len() == WINDOW {
            self.shown.pop_front();
        }
        self.shown.push_back(at);
        self.model_time = model_time;
    }

    /// Frames per second over the window (`None` before two frames).
    pub fn fps(&self) -> Option<f64> {
        let (first, last) = (self.shown.front()?, self.shown.back()?);
        let span = last.duration_since(*first).as_secs_f64();
        (self.shown.len() > 1 && span > 0.0).then(|| (self.shown.len() - 1) as f64 / span)
    }

    pub fn reset(&mut self) {
        self.shown.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_intervals_over_the_window() {
        let mut meter = FpsMeter::default();
        let start = Instant::now();
        assert_eq!(meter.fps(), None);
        for i in 0..5 {
            meter.tick(start + Duration::from_millis(100 * i), Duration::ZERO);
        }
        assert!((meter.fps().unwrap() - 10.0).abs() < 1e-9);
        for i in 5..100 {
            meter.tick(start + Duration::from_millis(50 * i), Duration::ZERO);
        }
        assert!(
            (meter.fps().unwrap() - 20.0).abs() < 1e-9,
            "only the last frames count"
        );
        meter.reset();
        assert_eq!(meter.fps(), None);
    }
}
