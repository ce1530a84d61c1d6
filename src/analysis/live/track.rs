//! Following a clicked point through the frames after it: the descriptors of the frame it was
//! clicked on are kept, and each later frame is searched for the point with the correspondence
//! library's point query (cosine, best patch), always against that first frame, so errors do not
//! accumulate from frame to frame as they would matching each frame to the one before.

use std::collections::VecDeque;

use crate::analysis::correspond::{ImageDescriptors, query_point};

/// Positions kept per track (older ones leave the trail).
pub const TRAIL_LENGTH: usize = 64;

/// One followed point; positions are original-frame pixel-index coordinates `(x, y)`.
#[derive(Clone, Debug)]
pub struct Track {
    reference: ImageDescriptors,
    point: (f64, f64),
    trail: VecDeque<(f64, f64)>,
    /// Cosine of the last match.
    pub score: f32,
}

impl Track {
    /// A track of `point` on the frame whose descriptors are `reference`.
    pub fn start(reference: ImageDescriptors, point: (f64, f64)) -> Track {
        Track {
            reference,
            point,
            trail: VecDeque::from([point]),
            score: 1.0,
        }
    }

    /// Finds the point in `frame` and adds it to the trail; returns where it is.
    pub fn follow(&mut self, frame: &ImageDescriptors) -> (f64, f64) {
        let query = query_point(&self.reference, self.point, &[frame]);
        let (at, score) = query
            .matches
            .first()
            .map_or((self.point, 0.0), |m| (m.best_pixel, m.best_score));
        if self.trail.len() == TRAIL_LENGTH {
            self.trail.pop_front();
        }
        self.trail.push_back(at);
        self.score = score;
        at
    }

    /// Oldest first; the last is where the point is now.
    pub fn trail(&self) -> impl ExactSizeIterator<Item = (f64, f64)> + '_ {
        self.trail.iter().copied()
    }

    pub fn current(&self) -> (f64, f64) {
        self.trail.back().copied().unwrap_or(self.point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::coords::PixelMap;
    use crate::analysis::features::FeatureMap;
    use crate::analysis::similarity::Score;
    use crate::model::Grid;

    /// A 6x8 grid whose descriptors are one-hot by world cell, seen shifted by `shift` cells.
    fn shifted(shift: usize) -> ImageDescriptors {
        let grid = Grid {
            rows: 6,
            cols: 8,
            patch: 8,
            stride: 8,
        };
        let dim = 64;
        let mut data = vec![0f32; grid.len() * dim];
        for i in 0..grid.len() {
            let (r, c) = (i / 8, i % 8);
            let world = r * 8 + (c + 8 - shift) % 8;
            data[i * dim + world] = 1.0;
        }
        let map = FeatureMap {
            grid,
            dim,
            data,
            image_size: (64, 48),
        };
        ImageDescriptors::new(&map, PixelMap::identity(grid), Score::Cosine)
    }

    #[test]
    fn a_point_follows_the_shift_and_the_trail_is_bounded() {
        let mut track = Track::start(shifted(0), (11.5, 19.5));
        assert_eq!(track.follow(&shifted(2)), (27.5, 19.5));
        assert_eq!(track.score, 1.0);
        assert_eq!(track.current(), (27.5, 19.5));
        for _ in 0..2 * TRAIL_LENGTH {
            track.follow(&shifted(1));
        }
        assert_eq!(track.trail().len(), TRAIL_LENGTH);
        assert_eq!(track.current(), (19.5, 19.5));
    }
}
