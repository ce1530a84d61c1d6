//! Train / test splits as scikit-learn's `train_test_split(..., test_size, random_state)` makes them
//! (`ShuffleSplit`: one NumPy permutation, the test indices first).

use super::numpy_random::RandomState;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SplitError {
    #[error("the test share must be between 0 and 1 (exclusive), got {0}")]
    Share(f64),
    #[error("{samples} samples cannot be split into {test} for testing and the rest for training")]
    TooFew { samples: usize, test: usize },
}

/// The split of `samples` items with a share `test_size` held out, shuffled by `seed`: the same
/// indices, in the same order, as `train_test_split(range(samples), test_size=test_size,
/// random_state=seed)`.
pub fn train_test_split(samples: usize, test_size: f64, seed: u32) -> Result<Split, SplitError> {
    if !(test_size > 0.0 && test_size < 1.0) {
        return Err(SplitError::Share(test_size));
    }
    // scikit-learn rounds the test count up and gives the rest to training.
    let test = (test_size * samples as f64).ceil() as usize;
    if test == 0 || test >= samples {
        return Err(SplitError::TooFew { samples, test });
    }
    let order = RandomState::new(seed).permutation(samples);
    Ok(Split {
        test: order[..test].to_vec(),
        train: order[test..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_count_is_rounded_up_and_every_index_used_once() {
        let split = train_test_split(10, 0.3, 42).unwrap();
        assert_eq!(split.test, [8, 1, 5]);
        assert_eq!(split.train, [0, 7, 2, 9, 4, 3, 6]);
        let mut all: Vec<usize> = split.train.iter().chain(&split.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn impossible_splits_are_errors() {
        assert_eq!(train_test_split(10, 1.0, 0), Err(SplitError::Share(1.0)));
        assert!(matches!(
            train_test_split(1, 0.3, 0),
            Err(SplitError::TooFew { .. })
        ));
    }
}
