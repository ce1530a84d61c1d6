//! Progress reporting and cancellation for long analyses (co-segmentation, pair selection...).

/// Raised when the caller's progress callback asks to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Called between steps with the share done (0..=1) and what runs next; returning `false`
/// cancels the analysis, which then returns [`Cancelled`].
pub type Progress<'a> = dyn FnMut(f32, &str) -> bool + 'a;

/// Reports a step and turns a "stop" answer into [`Cancelled`].
pub fn report(progress: &mut Progress<'_>, done: f32, what: &str) -> Result<(), Cancelled> {
    if progress(done.clamp(0.0, 1.0), what) {
        Ok(())
    } else {
        Err(Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_false_answer_cancels() {
        let mut calls = Vec::new();
        let mut keep_going = |done: f32, what: &str| {
            calls.push((done, what.to_string()));
            done < 0.5
        };
        assert_eq!(report(&mut keep_going, 0.25, "a"), Ok(()));
        assert_eq!(report(&mut keep_going, 2.0, "b"), Err(Cancelled));
        assert_eq!(calls, vec![(0.25, "a".into()), (1.0, "b".into())]);
    }
}
