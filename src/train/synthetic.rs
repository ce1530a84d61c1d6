//! Synthetic scenes for training and testing without a data set: one object of a known shape class on a
//! textured background, with its ground-truth mask. Deterministic per `(seed, index)`.

use image::{GrayImage, Luma, Rgb, RgbImage};

use crate::rng::Rng;

/// The object classes; the label is the index in [`Shape::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Ring,
    Cross,
}

impl Shape {
    pub const ALL: [Shape; 5] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Ring,
        Shape::Cross,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Ring => "ring",
            Shape::Cross => "cross",
        }
    }

    /// Whether the point `(u, v)` (object frame: centre at 0, radius 1) is inside the shape.
    pub fn contains(self, u: f64, v: f64) -> bool {
        let r2 = u * u + v * v;
        match self {
            Shape::Circle => r2 <= 1.0,
            Shape::Square => u.abs().max(v.abs()) <= 0.8,
            Shape::Triangle => {
                // Equilateral, vertices on the unit circle at 90, 210 and 330 degrees.
                let half = 3f64.sqrt() / 2.0;
                v >= -0.5 && (v - 1.0) <= -(u / half) * 1.5 && (v - 1.0) <= (u / half) * 1.5
            }
            Shape::Ring => (0.3..=1.0).contains(&r2),
            Shape::Cross => {
                (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0)
            }
        }
    }
}

/// One generated scene.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub image: RgbImage,
    /// 255 on the object's pixels, 0 elsewhere.
    pub mask: GrayImage,
    /// Index in [`Shape::ALL`].
    pub label: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Image side in pixels.
    pub size: u32,
    /// Scenes per epoch.
    pub images: usize,
    /// Object radius as a share of the side, drawn uniformly in this range.
    pub object_scale: (f64, f64),
    /// Colour contrast of the background texture relative to the object's (1: as strong; 0: flat), so the
    /// object can be made the most salient thing in the scene.
    pub background_contrast: f64,
    /// Contrast between the two colours of the object's texture (1: as drawn; 0: a flat object), so
    /// texture can be taken away as a cue.
    pub object_contrast: f64,
    /// The object's rotation is drawn from this share of a full turn (1: any angle; 0: upright), so
    /// orientation can be taken away as a cue that views of one scene share.
    pub rotation: f64,
    /// How far colours spread from a fixed scheme (light object on a dark background): 1 for random
    /// colours, 0 for the same two grey levels in every scene, so the object's shape is the only thing
    /// that tells scenes apart.
    pub colour_variety: f64,
    /// Colour saturation of every texture (1: random colours; 0: grey levels only), so colour can be
    /// taken away as a cue and shape has to carry the scene's identity.
    pub saturation: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            size: 96,
            images: 1024,
            object_scale: (0.15, 0.4),
            background_contrast: 1.0,
            object_contrast: 1.0,
            rotation: 1.0,
            colour_variety: 1.0,
            saturation: 1.0,
        }
    }
}

fn colour(rng: &mut Rng) -> [f64; 3] {
    [rng.uniform(), rng.uniform(), rng.uniform()].map(|c| c * 255.0)
}

/// A two-colour texture: flat, stripes at an angle, checkerboard or smooth noise-like waves.
#[derive(Clone, Debug)]
struct Texture {
    kind: usize,
    a: [f64; 3],
    b: [f64; 3],
    angle: f64,
    period: f64,
    phase: f64,
}

impl Texture {
    fn random(rng: &mut Rng, size: f64) -> Self {
        Texture {
            kind: rng.below(4),
            a: colour(rng),
            b: colour(rng),
            angle: rng.range(0.0, std::f64::consts::PI),
            period: rng.range(0.04, 0.2) * size,
            phase: rng.range(0.0, std::f64::consts::TAU),
        }
    }

    /// Moves both colours towards `anchor` (`variety` 0: both become `anchor`).
    fn vary(&mut self, variety: f64, anchor: f64) {
        let v = variety.clamp(0.0, 1.0);
        for c in [&mut self.a, &mut self.b] {
            *c = c.map(|x| anchor + v * (x - anchor));
        }
    }

    /// Moves both colours towards their grey level.
    fn desaturate(&mut self, saturation: f64) {
        let s = saturation.clamp(0.0, 1.0);
        for c in [&mut self.a, &mut self.b] {
            let grey = (c[0] + c[1] + c[2]) / 3.0;
            *c = c.map(|v| grey + s * (v - grey));
        }
    }

    /// Moves the second colour towards the first (`contrast` 0: a flat texture).
    fn fade(&mut self, contrast: f64) {
        let contrast = contrast.clamp(0.0, 1.0);
        self.b = [0, 1, 2].map(|i| self.a[i] + contrast * (self.b[i] - self.a[i]));
    }

    fn at(&self, x: f64, y: f64) -> [f64; 3] {
        let (s, c) = self.angle.sin_cos();
        let along = x * c + y * s;
        let across = -x * s + y * c;
        let t = match self.kind {
            0 => 0.0,
            1 => {
                if (along / self.period).floor() as i64 % 2 == 0 {
                    0.0
                } else {
                    1.0
                }
            }
            2 => {
                let cell =
                    (along / self.period).floor() as i64 + (across / self.period).floor() as i64;
                if cell.rem_euclid(2) == 0 { 0.0 } else { 1.0 }
            }
            _ => {
                let w =
                    (along / self.period + self.phase).sin() * (across / self.period * 0.7).cos();
                0.5 + 0.5 * w
            }
        };
        [0, 1, 2].map(|i| self.a[i] + t * (self.b[i] - self.a[i]))
    }
}

fn pixel(c: [f64; 3]) -> Rgb<u8> {
    Rgb(c.map(|v| v.round().clamp(0.0, 255.0) as u8))
}

/// The scene generator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyntheticScenes {
    pub config: SyntheticConfig,
    pub seed: u64,
}

const PURPOSE: u64 = 0x5C3E;
/// Grey levels of the fixed scheme that `colour_variety` moves colours towards.
const OBJECT_ANCHOR: f64 = 200.0;
const BACKGROUND_ANCHOR: f64 = 55.0;

impl SyntheticScenes {
    pub fn new(config: SyntheticConfig, seed: u64) -> Self {
        SyntheticScenes { config, seed }
    }

    pub fn classes(&self) -> usize {
        Shape::ALL.len()
    }

    fn background(&self, rng: &mut Rng) -> Texture {
        let mut texture = Texture::random(rng, self.config.size.max(1) as f64);
        texture.vary(self.config.colour_variety, BACKGROUND_ANCHOR);
        texture.desaturate(self.config.saturation);
        texture.fade(self.config.background_contrast);
        texture
    }

    /// Scene number `index` (any `u64`; the same index always gives the same scene).
    pub fn scene(&self, index: u64) -> Scene {
        let mut rng = Rng::derive(self.seed, &[PURPOSE, index]);
        let size = self.config.size.max(1);
        let side = size as f64;
        let background = self.background(&mut rng);
        let label = rng.below(Shape::ALL.len());
        let shape = Shape::ALL[label];
        let (lo, hi) = self.config.object_scale;
        let radius = (rng.range(lo, hi.max(lo)) * side).max(1.0);
        let cx = rng.range(radius.min(side / 2.0), (side - radius).max(side / 2.0));
        let cy = rng.range(radius.min(side / 2.0), (side - radius).max(side / 2.0));
        let rotation = rng.range(0.0, std::f64::consts::TAU) * self.config.rotation.clamp(0.0, 1.0);
        let mut fill = Texture::random(&mut rng, radius * 2.0);
        if fill.kind == 3 {
            fill.kind = 1; // objects are flat, striped or checkered
        }
        fill.vary(self.config.colour_variety, OBJECT_ANCHOR);
        fill.desaturate(self.config.saturation);
        fill.fade(self.config.object_contrast);
        let (sin, cos) = rotation.sin_cos();
        let mut image = RgbImage::new(size, size);
        let mut mask = GrayImage::new(size, size);
        for y in 0..size {
            for x in 0..size {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let (dx, dy) = ((px - cx) / radius, (py - cy) / radius);
                let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
                if shape.contains(u, v) {
                    image.put_pixel(x, y, pixel(fill.at(px - cx, py - cy)));
                    mask.put_pixel(x, y, Luma([255]));
                } else {
                    image.put_pixel(x, y, pixel(background.at(px, py)));
                }
            }
        }
        Scene { image, mask, label }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_deterministic_with_labels_in_range() {
        let scenes = SyntheticScenes::new(
            SyntheticConfig {
                size: 48,
                ..Default::default()
            },
            5,
        );
        let mut seen = [false; 5];
        for i in 0..40 {
            let s = scenes.scene(i);
            assert!(s.label < scenes.classes());
            seen[s.label] = true;
            assert_eq!(s, scenes.scene(i));
            assert_eq!(s.image.dimensions(), (48, 48));
            let area = s.mask.pixels().filter(|p| p.0[0] == 255).count();
            assert!(area > 10 && area < 48 * 48, "scene {i}: {area}");
        }
        assert!(seen.iter().all(|&s| s), "every class appears: {seen:?}");
        assert_ne!(
            scenes.scene(0).image,
            SyntheticScenes::new(scenes.config.clone(), 6)
                .scene(0)
                .image
        );
    }

    #[test]
    fn the_mask_is_exactly_where_the_shape_was_drawn() {
        // Same scene drawn without the object: pixels that differ must all be in the mask.
        let scenes = SyntheticScenes::new(
            SyntheticConfig {
                size: 40,
                ..Default::default()
            },
            9,
        );
        for i in 0..20 {
            let s = scenes.scene(i);
            let mut rng = Rng::derive(scenes.seed, &[PURPOSE, i]);
            let background = scenes.background(&mut rng);
            for (x, y, p) in s.image.enumerate_pixels() {
                let bg = pixel(background.at(x as f64 + 0.5, y as f64 + 0.5));
                if s.mask.get_pixel(x, y).0[0] == 0 {
                    assert_eq!(*p, bg, "scene {i} ({x},{y}) outside the mask changed");
                }
            }
        }
    }

    #[test]
    fn zero_background_contrast_gives_a_flat_background() {
        let scenes = SyntheticScenes::new(
            SyntheticConfig {
                size: 32,
                background_contrast: 0.0,
                ..Default::default()
            },
            4,
        );
        for i in 0..10 {
            let s = scenes.scene(i);
            let outside: Vec<_> = s
                .image
                .enumerate_pixels()
                .filter(|(x, y, _)| s.mask.get_pixel(*x, *y).0[0] == 0)
                .map(|(_, _, p)| *p)
                .collect();
            assert!(outside.iter().all(|p| *p == outside[0]), "scene {i}");
        }
    }

    #[test]
    fn zero_object_contrast_gives_flat_objects_on_unchanged_backgrounds() {
        let flat = SyntheticConfig {
            size: 32,
            object_contrast: 0.0,
            ..Default::default()
        };
        let scenes = SyntheticScenes::new(flat.clone(), 4);
        let textured = SyntheticScenes::new(
            SyntheticConfig {
                object_contrast: 1.0,
                ..flat
            },
            4,
        );
        let mut textured_objects = 0;
        for i in 0..20 {
            let (s, t) = (scenes.scene(i), textured.scene(i));
            assert_eq!((s.label, &s.mask), (t.label, &t.mask), "scene {i}");
            let colours = |scene: &Scene, inside: bool| {
                let mut c: Vec<_> = scene
                    .image
                    .enumerate_pixels()
                    .filter(|(x, y, _)| (scene.mask.get_pixel(*x, *y).0[0] == 255) == inside)
                    .map(|(_, _, p)| p.0)
                    .collect();
                c.sort_unstable();
                c.dedup();
                c
            };
            assert_eq!(colours(&s, true).len(), 1, "scene {i}: flat object");
            assert_eq!(colours(&s, false), colours(&t, false), "scene {i}");
            textured_objects += usize::from(colours(&t, true).len() > 1);
        }
        assert!(textured_objects > 5, "{textured_objects}");
    }

    #[test]
    fn zero_colour_variety_gives_the_same_two_grey_levels_in_every_scene() {
        let fixed = SyntheticConfig {
            size: 32,
            colour_variety: 0.0,
            ..Default::default()
        };
        let scenes = SyntheticScenes::new(fixed.clone(), 3);
        let partly = SyntheticScenes::new(
            SyntheticConfig {
                colour_variety: 0.5,
                ..fixed
            },
            3,
        );
        let mut partly_differs = false;
        for i in 0..20 {
            let s = scenes.scene(i);
            for (x, y, p) in s.image.enumerate_pixels() {
                let grey = if s.mask.get_pixel(x, y).0[0] == 255 {
                    200
                } else {
                    55
                };
                assert_eq!(p.0, [grey; 3], "scene {i} ({x},{y})");
            }
            let p = partly.scene(i);
            assert_eq!((p.label, &p.mask), (s.label, &s.mask), "scene {i}");
            partly_differs |= p.image != s.image;
        }
        assert!(partly_differs);
    }

    #[test]
    fn zero_rotation_draws_upright_objects() {
        let upright = SyntheticScenes::new(
            SyntheticConfig {
                size: 48,
                rotation: 0.0,
                colour_variety: 0.0,
                object_scale: (0.3, 0.4),
                ..Default::default()
            },
            1,
        );
        let mut seen = 0;
        for i in 0..30 {
            let s = upright.scene(i);
            if Shape::ALL[s.label] != Shape::Square {
                continue;
            }
            seen += 1;
            // An upright square's mask is an axis-aligned rectangle: every row it touches is full.
            let rows: Vec<usize> = (0..48)
                .map(|y| {
                    (0..48)
                        .filter(|&x| s.mask.get_pixel(x, y).0[0] == 255)
                        .count()
                })
                .filter(|&n| n > 0)
                .collect();
            assert!(rows.iter().all(|&n| n == rows[0]), "scene {i}: {rows:?}");
        }
        assert!(seen > 2, "{seen}");
    }

    #[test]
    fn zero_saturation_gives_grey_scenes() {
        let scenes = SyntheticScenes::new(
            SyntheticConfig {
                size: 24,
                saturation: 0.0,
                ..Default::default()
            },
            2,
        );
        for i in 0..10 {
            let s = scenes.scene(i);
            // Rounding of the grey level may differ by one between channels.
            assert!(
                s.image.pixels().all(|p| {
                    let [r, g, b] = p.0.map(i32::from);
                    (r - g).abs() <= 1 && (g - b).abs() <= 1
                }),
                "scene {i}"
            );
            assert_eq!(
                s.label,
                SyntheticScenes::new(Default::default(), 2).scene(i).label
            );
        }
    }

    #[test]
    fn shapes_have_the_expected_geometry() {
        assert!(Shape::Ring.contains(0.8, 0.0) && !Shape::Ring.contains(0.1, 0.1));
        assert!(Shape::Cross.contains(0.9, 0.0) && !Shape::Cross.contains(0.7, 0.7));
        assert!(Shape::Triangle.contains(0.0, 0.0) && Shape::Triangle.contains(0.0, 0.95));
        assert!(!Shape::Triangle.contains(0.8, 0.8) && !Shape::Triangle.contains(0.0, -0.6));
        assert!(Shape::Square.contains(0.75, -0.75) && !Shape::Circle.contains(0.75, -0.75));
    }
}
