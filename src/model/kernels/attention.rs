//! Multi-head self-attention straight from the packed `qkv` projection, forward and backward.
//!
//! Row `t` of a sequence holds `[q | k | v]`, each `heads x head_dim` (timm's `qkv` layout). Heads
//! are read in place through strides, so there is no split into `[B, heads, T, head_dim]` tensors
//! and no merge back: the output is written as `[B, T, heads * head_dim]` and the gradient as
//! `[B, T, 3 * heads * head_dim]`. Queries are taken in blocks of at most [`QUERY_BLOCK`] rows, so
//! no `T x T` matrix is formed (a block's scores are `QUERY_BLOCK x T`), and the backward pass
//! recomputes the probabilities (as flash attention does) instead of keeping them. The forward pass
//! runs (sequence, head, query block) tasks in parallel, the backward pass sequences.

use std::cell::Cell;

use rayon::prelude::*;

use super::vector_math::{dispatched, exp, max, sum};
use crate::linalg::{View, gemm_block};

/// Query rows per block of scores.
const QUERY_BLOCK: usize = 256;

/// `batch` sequences of `tokens` rows, `heads` heads of `head_dim` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed {
    pub batch: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl Packed {
    /// `heads * head_dim`.
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// `1 / sqrt(head_dim)`, computed as burn's attention does.
    fn scale(&self) -> f32 {
        (self.head_dim as f64).powf(-0.5) as f32
    }

    /// Rows `start..start + count` of q, k or v (`part` 0, 1, 2) of head `h`, from the rows of one
    /// sequence.
    fn part<'a>(
        &self,
        rows: &'a [f32],
        part: usize,
        h: usize,
        start: usize,
        count: usize,
    ) -> View<'a, f32> {
        let offset = start * 3 * self.width() + part * self.width() + h * self.head_dim;
        View::strided(&rows[offset..], count, self.head_dim, 3 * self.width(), 1)
            .expect("a head of a packed sequence lies inside the sequence")
    }

    /// The query blocks of a sequence: `(first row, rows)`.
    fn query_blocks(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let tokens = self.tokens;
        (0..tokens)
            .step_by(QUERY_BLOCK)
            .map(move |start| (start, QUERY_BLOCK.min(tokens - start)))
    }

    fn scratch_len(&self) -> usize {
        QUERY_BLOCK.min(self.tokens) * self.tokens
    }

    fn scratch(&self) -> Vec<f32> {
        vec![0.0; self.scratch_len()]
    }

    /// A `rows x tokens` block of scores.
    fn block<'a>(&self, values: &'a [f32], rows: usize) -> View<'a, f32> {
        View::strided(values, rows, self.tokens, self.tokens, 1)
            .expect("a block of scores fits its scratch buffer")
    }
}

/// `row <- softmax(row)`.
#[inline(always)]
fn softmax_row_loop(row: &mut [f32]) {
    let top = max(row);
    for v in row.iter_mut() {
        *v = exp(*v - top);
    }
    let total = sum(row);
    for v in row.iter_mut() {
        *v /= total;
    }
}

dispatched!(softmax_row(row: &mut [f32]) => softmax_row_loop);

/// Row-wise softmax of a row-major matrix with `cols` columns, in place.
fn softmax_rows(values: &mut [f32], cols: usize) {
    for row in values.chunks_exact_mut(cols) {
        softmax_row(row);
    }
}

/// `grad <- scale * p * (grad - sum_j p grad)` row by row: the gradient through a softmax.
fn softmax_backward_rows(probs: &[f32], grad: &mut [f32], cols: usize, scale: f32) {
    for (p, g) in probs.chunks_exact(cols).zip(grad.chunks_exact_mut(cols)) {
        let dot: f32 = p.iter().zip(g.iter()).map(|(p, g)| p * g).sum();
        for (p, g) in p.iter().zip(g.iter_mut()) {
            *g = scale * p * (*g - dot);
        }
    }
}

/// `probs = softmax(q kᵀ * scale)` for query rows `start..start + count` of head `h`; returns the
/// `count x tokens` part of `probs` it wrote.
fn block_probs<'a>(
    shape: &Packed,
    rows: &[f32],
    h: usize,
    (start, count): (usize, usize),
    probs: &'a mut [f32],
) -> &'a mut [f32] {
    let t = shape.tokens;
    let probs = &mut probs[..count * t];
    let q = shape.part(rows, 0, h, start, count);
    let k = shape.part(rows, 1, h, 0, t);
    gemm_block(probs, t, false, 1.0, shape.scale(), q, k.t());
    softmax_rows(probs, t);
    probs
}

/// Largest scores buffer (values) a thread keeps between forward passes: 4 MiB, a query block
/// of sequences up to 4,096 tokens (DINOv2-B/14 at 840 px has 3,601). Longer sequences allocate
/// per task: their attention dwarfs the allocation, and idle threads holding more memory showed
/// in the app's memory budget.
const KEPT_SCRATCH: usize = 1 << 20;

thread_local! {
    static SCORES_SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on this thread's scores buffer of `len` values (contents unspecified: every use
/// overwrites it). Reused rather than allocated per task: a fresh zeroed buffer per task cost
/// its zeroing or page faults on every call.
fn with_scores_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut scores = SCORES_SCRATCH.take();
    if scores.len() < len {
        scores.resize(len, 0.0);
    }
    let result = f(&mut scores[..len]);
    if scores.len() <= KEPT_SCRATCH {
        SCORES_SCRATCH.set(scores);
    }
    result
}

/// One piece of forward work: a block of query rows of one head of one sequence.
#[derive(Clone, Copy)]
struct Task {
    sequence: usize,
    head: usize,
    start: usize,
    count: usize,
}

/// `count x head_dim` output rows of one task, row-major.
fn forward_task(shape: &Packed, rows: &[f32], task: Task, probs: &mut [f32]) -> Vec<f32> {
    let (t, hd) = (shape.tokens, shape.head_dim);
    let p = block_probs(shape, rows, task.head, (task.start, task.count), probs);
    let p = shape.block(p, task.count);
    let v = shape.part(rows, 2, task.head, 0, t);
    let mut out = vec![0.0; task.count * hd];
    gemm_block(&mut out, hd, false, 1.0, 1.0, p, v);
    out
}

fn backward_sequence(
    shape: &Packed,
    rows: &[f32],
    grad: &[f32],
    grad_rows: &mut [f32],
    scratch: &mut (Vec<f32>, Vec<f32>),
) {
    let (probs, grad_probs) = scratch;
    let (width, hd, t) = (shape.width(), shape.head_dim, shape.tokens);
    // `grad_rows` starts at zero: dK and dV accumulate over the query blocks.
    for h in 0..shape.heads {
        let (k, v) = (shape.part(rows, 1, h, 0, t), shape.part(rows, 2, h, 0, t));
        for (start, count) in shape.query_blocks() {
            let p = block_probs(shape, rows, h, (start, count), probs);
            let q = shape.part(rows, 0, h, start, count);
            let grad_out = View::strided(&grad[start * width + h * hd..], count, hd, width, 1)
                .expect("a head of the output gradient lies inside the sequence");
            // dV += Pᵀ dO, dP = dO Vᵀ.
            gemm_block(
                &mut grad_rows[2 * width + h * hd..],
                3 * width,
                true,
                1.0,
                1.0,
                shape.block(p, count).t(),
                grad_out,
            );
            let grad_p = &mut grad_probs[..count * t];
            gemm_block(grad_p, t, false, 1.0, 1.0, grad_out, v.t());
            // dS (scaled), then dQ = dS K and dK += dSᵀ Q.
            softmax_backward_rows(p, grad_p, t, shape.scale());
            let grad_scores = shape.block(grad_p, count);
            gemm_block(
                &mut grad_rows[start * 3 * width + h * hd..],
                3 * width,
                false,
                1.0,
                1.0,
                grad_scores,
                k,
            );
            gemm_block(
                &mut grad_rows[width + h * hd..],
                3 * width,
                true,
                1.0,
                1.0,
                grad_scores.t(),
                q,
            );
        }
    }
}

fn check_input(shape: &Packed, qkv: &[f32]) {
    assert_eq!(
        qkv.len(),
        shape.batch * shape.tokens * 3 * shape.width(),
        "attention: packed qkv size for {shape:?}"
    );
}

/// `softmax(q kᵀ / sqrt(head_dim)) v` per head; `qkv` is `[batch, tokens, 3 * width]`, the result
/// `[batch, tokens, width]`.
pub fn forward(shape: Packed, qkv: &[f32]) -> Vec<f32> {
    check_input(&shape, qkv);
    let (t, width) = (shape.tokens, shape.width());
    let mut out = vec![0.0; shape.batch * t * width];
    if t == 0 || width == 0 {
        return out;
    }
    // Every (sequence, head, query block) is independent, so a single image keeps all cores busy;
    // each task runs its products single-threaded, so results do not depend on the thread count.
    // Ordered by sequence, query block, then head: the heads of one block are adjacent.
    let tasks: Vec<Task> = (0..shape.batch)
        .flat_map(|sequence| {
            shape.query_blocks().flat_map(move |(start, count)| {
                (0..shape.heads).map(move |head| Task {
                    sequence,
                    head,
                    start,
                    count,
                })
            })
        })
        .collect();
    let pieces: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&task| {
            with_scores_scratch(shape.scratch_len(), |probs| {
                let rows = &qkv[task.sequence * t * 3 * width..][..t * 3 * width];
                forward_task(&shape, rows, task, probs)
            })
        })
        .collect();
    // Each (sequence, query block) owns whole output rows, which its heads' pieces fill; the
    // blocks are filled in parallel (copied serially, this was a serial section of the forward).
    let mut blocks = Vec::with_capacity(tasks.len() / shape.heads);
    let mut rest = out.as_mut_slice();
    for task in tasks.iter().step_by(shape.heads) {
        let (block, tail) = rest.split_at_mut(task.count * width);
        blocks.push(block);
        rest = tail;
    }
    let hd = shape.head_dim;
    blocks
        .into_par_iter()
        .zip(pieces.par_chunks(shape.heads))
        .for_each(|(block, heads)| {
            for (head, piece) in heads.iter().enumerate() {
                for (row, values) in block.chunks_exact_mut(width).zip(piece.chunks_exact(hd)) {
                    row[head * hd..][..hd].copy_from_slice(values);
                }
            }
        });
    out
}

/// The gradient with respect to `qkv` (`[batch, tokens, 3 * width]`) of [`forward`], given the
/// gradient `grad` (`[batch, tokens, width]`) of its output.
pub fn backward(shape: Packed, qkv: &[f32], grad: &[f32]) -> Vec<f32> {
    check_input(&shape, qkv);
    let (t, width) = (shape.tokens, shape.width());
    assert_eq!(
        grad.len(),
        shape.batch * t * width,
        "attention: output gradient size"
    );
    let mut grad_qkv = vec![0.0; qkv.len()];
    if t == 0 || width == 0 {
        return grad_qkv;
    }
    grad_qkv
        .par_chunks_mut(t * 3 * width)
        .zip(
            qkv.par_chunks(t * 3 * width)
                .zip(grad.par_chunks(t * width)),
        )
        .for_each_init(
            || (shape.scratch(), shape.scratch()),
            |scratch, (grad_rows, (rows, grad))| {
                backward_sequence(&shape, rows, grad, grad_rows, scratch)
            },
        );
    grad_qkv
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention of one head in f64, straight from the definition.
    fn reference(shape: &Packed, qkv: &[f32]) -> Vec<f64> {
        let (t, w, hd) = (shape.tokens, shape.width(), shape.head_dim);
        let at = |b: usize, i: usize, part: usize, h: usize, d: usize| {
            qkv[(b * t + i) * 3 * w + part * w + h * hd + d] as f64
        };
        let mut out = vec![0.0; shape.batch * t * w];
        for b in 0..shape.batch {
            for h in 0..shape.heads {
                for i in 0..t {
                    let scores: Vec<f64> = (0..t)
                        .map(|j| {
                            (0..hd)
                                .map(|d| at(b, i, 0, h, d) * at(b, j, 1, h, d))
                                .sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..hd {
                        out[(b * t + i) * w + h * hd + d] =
                            (0..t).map(|j| e[j] / sum * at(b, j, 2, h, d)).sum();
                    }
                }
            }
        }
        out
    }

    /// `sum(out * weights)`: a scalar loss whose gradient with respect to the output is `weights`.
    fn weighted_sum(out: &[f64], weights: &[f32]) -> f64 {
        out.iter().zip(weights).map(|(o, w)| o * *w as f64).sum()
    }

    /// Every `every`-th entry of `grad` against central differences of `loss` around `qkv`.
    fn assert_matches_finite_differences(
        grad: &[f32],
        qkv: &[f32],
        loss: impl Fn(&[f32]) -> f64,
        every: usize,
    ) {
        let step = 1e-2f32;
        for i in (0..qkv.len()).step_by(every) {
            let (mut up, mut down) = (qkv.to_vec(), qkv.to_vec());
            up[i] += step;
            down[i] -= step;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * step as f64);
            assert!(
                (grad[i] as f64 - numeric).abs() < 2e-3,
                "d/dqkv[{i}]: {} vs {numeric}",
                grad[i]
            );
        }
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        super::super::test_values(len, seed, -2.0)
    }

    const SHAPE: Packed = Packed {
        batch: 3,
        tokens: 7,
        heads: 2,
        head_dim: 5,
    };

    #[test]
    fn forward_matches_the_definition() {
        let qkv = values(SHAPE.batch * SHAPE.tokens * 3 * SHAPE.width(), 1);
        let got = forward(SHAPE, &qkv);
        for (g, w) in got.iter().zip(reference(&SHAPE, &qkv)) {
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // d/dqkv of sum(out * weights), against central differences of the f64 reference.
        let n = SHAPE.batch * SHAPE.tokens * 3 * SHAPE.width();
        let qkv = values(n, 2);
        let weights = values(SHAPE.batch * SHAPE.tokens * SHAPE.width(), 3);
        let got = backward(SHAPE, &qkv, &weights);
        let loss = |x: &[f32]| weighted_sum(&reference(&SHAPE, x), &weights);
        assert_matches_finite_differences(&got, &qkv, loss, 7);
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let shape = Packed {
            batch: 2,
            tokens: 2 * QUERY_BLOCK + 9,
            heads: 3,
            head_dim: 8,
        };
        let qkv = values(shape.batch * shape.tokens * 3 * shape.width(), 6);
        let grad = values(shape.batch * shape.tokens * shape.width(), 7);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| (forward(shape, &qkv), backward(shape, &qkv, &grad)))
        };
        let one = run(1);
        for threads in [2, 3, 5] {
            assert!(run(threads) == one, "{threads} threads differ from one");
        }
    }

    #[test]
    fn sequences_longer_than_a_query_block_match_the_definition() {
        // Several sequences and heads, so every output row gathers pieces of several tasks.
        let shape = Packed {
            batch: 2,
            tokens: QUERY_BLOCK + 37,
            heads: 2,
            head_dim: 4,
        };
        let qkv = values(shape.batch * shape.tokens * 3 * shape.width(), 4);
        let got = forward(shape, &qkv);
        for (g, w) in got.iter().zip(reference(&shape, &qkv)) {
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
        // Gradients accumulated over several query blocks, against finite differences on a sample.
        let weights = values(shape.batch * shape.tokens * shape.width(), 5);
        let grad = backward(shape, &qkv, &weights);
        let loss = |x: &[f32]| weighted_sum(&reference(&shape, x), &weights);
        assert_matches_finite_differences(&grad, &qkv, loss, 97);
    }

    #[test]
    fn empty_problems_give_empty_results() {
        let shape = Packed { tokens: 0, ..SHAPE };
        assert!(forward(shape, &[]).is_empty());
        assert!(backward(shape, &[], &[]).is_empty());
    }
}
