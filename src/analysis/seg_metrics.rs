//! Scores of (part) co-segmentations against ground-truth masks: the Jaccard index (foreground
//! IoU) and precision (pixel accuracy) that co-segmentation papers report, and the mean IoU of
//! parts. Part labels found without supervision carry no names, so predicted parts are matched
//! one-to-one to ground-truth parts (Hungarian assignment maximising the summed IoU over the whole
//! set) before the IoUs are averaged; background always matches background. Labels the ground
//! truth never uses are left out of the mean.

/// Foreground IoU of two masks; 1 when both are empty.
pub fn jaccard(predicted: &[bool], truth: &[bool]) -> f64 {
    let both = predicted
        .iter()
        .zip(truth)
        .filter(|&(&p, &t)| p && t)
        .count();
    let either = predicted
        .iter()
        .zip(truth)
        .filter(|&(&p, &t)| p || t)
        .count();
    if either == 0 {
        1.0
    } else {
        both as f64 / either as f64
    }
}

/// Share of pixels where the masks agree.
pub fn precision(predicted: &[bool], truth: &[bool]) -> f64 {
    let n = predicted.len().min(truth.len());
    if n == 0 {
        return 1.0;
    }
    predicted.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / n as f64
}

/// Pixel counts of (predicted label, true label) pairs, label 0 being background in both.
#[derive(Clone, Debug, Default)]
pub struct Confusion {
    /// `counts[p][t]`.
    counts: Vec<Vec<u64>>,
}

/// The matched mean IoU of parts.
#[derive(Clone, Debug, PartialEq)]
pub struct PartScore {
    /// Mean over the true labels present in the ground truth (background included) of their IoU
    /// with the predicted label matched to them (0 when none is).
    pub mean_iou: f64,
    /// IoU per true label, background first; `None` for a label the ground truth never uses.
    pub per_label: Vec<Option<f64>>,
    /// The predicted label matched to each true label (`None`: unmatched).
    pub matched: Vec<Option<usize>>,
}

impl Confusion {
    /// Adds one image's label maps (same length).
    pub fn add(&mut self, predicted: &[u8], truth: &[u8]) {
        let max_p = predicted.iter().copied().max().map_or(0, usize::from);
        let max_t = truth.iter().copied().max().map_or(0, usize::from);
        if self.counts.len() <= max_p {
            self.counts.resize(max_p + 1, Vec::new());
        }
        let width = self.true_labels().max(max_t + 1);
        for row in &mut self.counts {
            row.resize(width, 0);
        }
        for (&p, &t) in predicted.iter().zip(truth) {
            self.counts[usize::from(p)][usize::from(t)] += 1;
        }
    }

    fn true_labels(&self) -> usize {
        self.counts.first().map_or(0, Vec::len)
    }

    fn iou(&self, p: usize, t: usize) -> f64 {
        let both = self.counts[p][t];
        let predicted: u64 = self.counts[p].iter().sum();
        let truth: u64 = self.counts.iter().map(|row| row[t]).sum();
        let union = predicted + truth - both;
        if union == 0 {
            0.0
        } else {
            both as f64 / union as f64
        }
    }

    /// Matches predicted parts to true parts and averages the IoUs.
    pub fn score(&self) -> PartScore {
        let (np, nt) = (self.counts.len(), self.true_labels());
        if nt == 0 {
            return PartScore {
                mean_iou: 1.0,
                per_label: Vec::new(),
                matched: Vec::new(),
            };
        }
        let mut matched = vec![None; nt];
        if np > 0 {
            matched[0] = Some(0);
        }
        // Parts 1.. of both sides, matched by the Hungarian method on negated IoU.
        let (rows, cols) = (np.saturating_sub(1), nt - 1);
        if rows > 0 && cols > 0 {
            let n = rows.max(cols);
            let cost: Vec<Vec<f64>> = (0..n)
                .map(|r| {
                    (0..n)
                        .map(|c| {
                            if r < rows && c < cols {
                                -self.iou(r + 1, c + 1)
                            } else {
                                0.0
                            }
                        })
                        .collect()
                })
                .collect();
            for (r, c) in hungarian(&cost).into_iter().enumerate() {
                if r < rows && c < cols {
                    matched[c + 1] = Some(r + 1);
                }
            }
        }
        let per_label: Vec<Option<f64>> = (0..nt)
            .map(|t| {
                let present = self.counts.iter().any(|row| row[t] > 0);
                present.then(|| matched[t].map_or(0.0, |p| self.iou(p, t)))
            })
            .collect();
        let present: Vec<f64> = per_label.iter().flatten().copied().collect();
        PartScore {
            mean_iou: if present.is_empty() {
                1.0
            } else {
                present.iter().sum::<f64>() / present.len() as f64
            },
            per_label,
            matched,
        }
    }
}

/// Minimum-cost perfect matching of a square cost matrix (Kuhn-Munkres with potentials,
/// O(n^3)); returns the column of each row.
pub fn hungarian(cost: &[Vec<f64>]) -> Vec<usize> {
    let n = cost.len();
    // 1-based arrays with column 0 as the virtual start.
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; n + 1];
    let mut row_of = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0;
        let mut min_to = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=n {
                if used[j] {
                    continue;
                }
                let reduced = cost[i0 - 1][j - 1] - u[i0] - v[j];
                if reduced < min_to[j] {
                    min_to[j] = reduced;
                    way[j] = j0;
                }
                if min_to[j] < delta {
                    delta = min_to[j];
                    j1 = j;
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_to[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut column = vec![0usize; n];
    for j in 1..=n {
        if row_of[j] > 0 {
            column[row_of[j] - 1] = j - 1;
        }
    }
    column
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaccard_and_precision_of_small_masks() {
        let p = [true, true, false, false];
        let t = [true, false, true, false];
        assert!((jaccard(&p, &t) - 1.0 / 3.0).abs() < 1e-12);
        assert!((precision(&p, &t) - 0.5).abs() < 1e-12);
        assert_eq!(jaccard(&[false; 3], &[false; 3]), 1.0);
    }

    #[test]
    fn hungarian_finds_the_cheapest_matching() {
        let cost = vec![
            vec![4.0, 1.0, 3.0],
            vec![2.0, 0.0, 5.0],
            vec![3.0, 2.0, 2.0],
        ];
        let columns = hungarian(&cost);
        let total: f64 = columns.iter().enumerate().map(|(r, &c)| cost[r][c]).sum();
        // Brute force over the 6 permutations.
        let perms = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let best = perms
            .iter()
            .map(|p| (0..3).map(|r| cost[r][p[r]]).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(total, best);
    }

    #[test]
    fn swapped_part_names_still_score_one() {
        let truth = [0u8, 1, 1, 2, 2, 0];
        let predicted = [0u8, 2, 2, 1, 1, 0];
        let mut confusion = Confusion::default();
        confusion.add(&predicted, &truth);
        let score = confusion.score();
        assert_eq!(score.mean_iou, 1.0);
        assert_eq!(score.matched, vec![Some(0), Some(2), Some(1)]);
        // One predicted part for two true parts: the other true part scores 0.
        let mut confusion = Confusion::default();
        confusion.add(&[0, 1, 1, 1, 1, 0], &truth);
        let score = confusion.score();
        assert_eq!(score.per_label[0], Some(1.0));
        let parts: Vec<f64> = score.per_label[1..].iter().flatten().copied().collect();
        assert!(parts.contains(&0.5) && parts.contains(&0.0), "{parts:?}");
        assert!((score.mean_iou - 0.5).abs() < 1e-12);
        // No background anywhere: it is left out of the mean rather than scored 0.
        let mut confusion = Confusion::default();
        confusion.add(&[2, 2, 1], &[1, 1, 2]);
        let score = confusion.score();
        assert_eq!(score.per_label[0], None);
        assert_eq!(score.mean_iou, 1.0);
    }
}
