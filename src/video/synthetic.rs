//! A synthetic scene that needs no file: a seeded textured world with a few discs, seen through a
//! window that slides by a fixed shift per frame, so the true motion of every point is known
//! (a point at `p` in frame 0 is at `p + i * shift` in frame `i`). A zero shift is a static scene.

use std::time::Duration;

use image::{Rgb, RgbImage};

use super::{Frame, FrameSource, VideoError, frame_duration};

#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticScene {
    pub width: u32,
    pub height: u32,
    /// Frames in all; `None` never ends.
    pub frames: Option<usize>,
    /// Pixels the scene content moves right and down per frame.
    pub shift: (i32, i32),
    pub fps: f64,
    pub seed: u64,
}

impl Default for SyntheticScene {
    fn default() -> Self {
        SyntheticScene {
            width: 320,
            height: 240,
            frames: None,
            shift: (2, 1),
            fps: 30.0,
            seed: 0,
        }
    }
}

impl SyntheticScene {
    pub fn source(&self) -> SyntheticSource {
        SyntheticSource {
            scene: self.clone(),
            next: 0,
        }
    }

    /// Frame `index`: pixel `(x, y)` shows the world at `(x, y) - index * shift`.
    pub fn frame(&self, index: u64) -> RgbImage {
        let (dx, dy) = (
            self.shift.0 as i64 * index as i64,
            self.shift.1 as i64 * index as i64,
        );
        RgbImage::from_fn(self.width, self.height, |x, y| {
            Rgb(world(x as i64 - dx, y as i64 - dy, self.seed))
        })
    }

    fn duration(&self) -> Duration {
        frame_duration(self.fps)
    }
}

pub struct SyntheticSource {
    scene: SyntheticScene,
    next: u64,
}

impl FrameSource for SyntheticSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        if self.scene.frames.is_some_and(|n| self.next >= n as u64) {
            return Ok(None);
        }
        let index = self.next;
        self.next += 1;
        Ok(Some(Frame {
            index,
            image: self.scene.frame(index),
            duration: self.scene.duration(),
        }))
    }

    fn frame_count(&self) -> Option<usize> {
        self.scene.frames
    }
}

fn hash(x: i64, y: i64, seed: u64, octave: u64) -> u64 {
    let mut z = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ seed.wrapping_mul(0x1656_67B1_9E37_79F9)
        ^ octave;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Value noise: hashed lattice values every `cell` pixels, interpolated bilinearly; one value per
/// channel in `[0, 1]`.
fn noise(x: i64, y: i64, cell: i64, seed: u64, octave: u64) -> [f32; 3] {
    let (cx, cy) = (x.div_euclid(cell), y.div_euclid(cell));
    let (fx, fy) = (
        x.rem_euclid(cell) as f32 / cell as f32,
        y.rem_euclid(cell) as f32 / cell as f32,
    );
    let corner = |i: i64, j: i64| hash(cx + i, cy + j, seed, octave);
    let mut out = [0f32; 3];
    for (c, value) in out.iter_mut().enumerate() {
        let v = |h: u64| ((h >> (16 * c)) & 0xFFFF) as f32 / 65535.0;
        let top = v(corner(0, 0)) * (1.0 - fx) + v(corner(1, 0)) * fx;
        let bottom = v(corner(0, 1)) * (1.0 - fx) + v(corner(1, 1)) * fx;
        *value = top * (1.0 - fy) + bottom * fy;
    }
    out
}

/// Disc centres in the world, on a 96-pixel lattice, one disc per lattice cell.
fn disc(x: i64, y: i64, seed: u64) -> Option<[f32; 3]> {
    const CELL: i64 = 96;
    let (cx, cy) = (x.div_euclid(CELL), y.div_euclid(CELL));
    let h = hash(cx, cy, seed, 99);
    let centre = (
        cx * CELL + 24 + (h & 47) as i64,
        cy * CELL + 24 + ((h >> 8) & 47) as i64,
    );
    let radius = 10 + ((h >> 16) % 14) as i64;
    let (ex, ey) = (x - centre.0, y - centre.1);
    (ex * ex + ey * ey <= radius * radius).then(|| {
        let hue = ((h >> 24) % 3) as usize;
        let mut c = [0.15f32; 3];
        c[hue] = 0.95;
        c
    })
}

/// The world's colour at `(x, y)`: two octaves of value noise with discs on top.
fn world(x: i64, y: i64, seed: u64) -> [u8; 3] {
    let coarse = noise(x, y, 24, seed, 1);
    let fine = noise(x, y, 6, seed, 2);
    let base: [f32; 3] = std::array::from_fn(|c| 0.7 * coarse[c] + 0.3 * fine[c]);
    let color = disc(x, y, seed).unwrap_or(base);
    color.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_in_order_and_end_after_the_count() {
        let scene = SyntheticScene {
            frames: Some(3),
            ..SyntheticScene::default()
        };
        let mut source = scene.source();
        assert_eq!(source.frame_count(), Some(3));
        let indices: Vec<u64> = std::iter::from_fn(|| source.next_frame().unwrap())
            .map(|f| f.index)
            .collect();
        assert_eq!(indices, vec![0, 1, 2]);
    }

    #[test]
    fn content_moves_by_the_shift_per_frame() {
        let scene = SyntheticScene {
            width: 64,
            height: 48,
            shift: (5, -3),
            ..SyntheticScene::default()
        };
        let (a, b) = (scene.frame(0), scene.frame(2));
        for (x, y) in [(3u32, 20u32), (30, 30), (50, 10)] {
            assert_eq!(a.get_pixel(x, y), b.get_pixel(x + 10, y - 6));
        }
        assert_ne!(a, b);
        let still = SyntheticScene {
            shift: (0, 0),
            ..scene
        };
        assert_eq!(still.frame(0), still.frame(7));
    }
}
