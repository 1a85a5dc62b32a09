//! The built-in dataset: procedural 32x32 RGB images of ten classes, generated from a seed.
//!
//! It needs no download, so `cargo xtask train` works offline. Each class is a shape or a texture
//! drawn with a random colour on a random, noisy background, at a random position and scale, so a
//! model has to learn shape rather than colour or position: augmentation (crops, flips, colour
//! jitter) helps, and a small AlexNet still passes 90% accuracy in a few epochs.

use kindling_augment::Image;

/// The side of every generated image.
pub const SIZE: usize = 32;

/// Class names, indexed by label.
pub const CLASSES: [&str; 10] = [
    "disc",
    "square",
    "triangle",
    "ring",
    "plus",
    "horizontal-stripes",
    "vertical-stripes",
    "diagonal-stripes",
    "checkerboard",
    "x",
];

/// A deterministic dataset of `len` samples: sample `i` depends only on `(seed, i)`.
#[derive(Debug, Clone, Copy)]
pub struct Synthetic {
    seed: u64,
    len: usize,
}

impl Synthetic {
    pub fn new(seed: u64, len: usize) -> Self {
        Self { seed, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The image and label of sample `index`; labels cycle through the classes so every class has
    /// the same count (within one).
    pub fn get(&self, index: usize) -> (Image<u8>, usize) {
        let label = index % CLASSES.len();
        let mut rng = SplitMix(self.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        (draw(label, &mut rng), label)
    }
}

/// SplitMix64: tiny, fast and good enough for procedural pictures; keeps sample generation
/// independent of any global or backend RNG.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}

fn draw(label: usize, rng: &mut SplitMix) -> Image<u8> {
    let (bg, fg) = colours(rng);
    let noise = rng.range(4.0, 24.0);
    let cx = rng.range(11.0, 21.0);
    let cy = rng.range(11.0, 21.0);
    let r = rng.range(6.0, 10.5);
    let period = rng.range(3.0, 6.0);
    let phase = rng.range(0.0, period);
    let inside = |x: f32, y: f32| -> bool {
        let (dx, dy) = (x - cx, y - cy);
        // Textures fill a square patch; shapes are drawn around the same centre.
        let in_patch = dx.abs() <= r && dy.abs() <= r;
        let stripe = |t: f32| (t + phase).rem_euclid(period) < period / 2.0;
        match label {
            0 => dx * dx + dy * dy <= r * r,
            1 => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
            2 => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.6,
            3 => {
                let d = (dx * dx + dy * dy).sqrt();
                d <= r && d >= r * 0.55
            }
            4 => (dx.abs() <= r * 0.3 && dy.abs() <= r) || (dy.abs() <= r * 0.3 && dx.abs() <= r),
            5 => in_patch && stripe(y),
            6 => in_patch && stripe(x),
            7 => in_patch && stripe((x + y) * std::f32::consts::FRAC_1_SQRT_2),
            8 => in_patch && (stripe(x) ^ stripe(y)),
            _ => {
                let band = r * 0.28;
                dx.abs() <= r
                    && dy.abs() <= r
                    && ((dx - dy).abs() <= band || (dx + dy).abs() <= band)
            }
        }
    };
    let plane = SIZE * SIZE;
    let mut data = vec![0u8; 3 * plane];
    for y in 0..SIZE {
        for x in 0..SIZE {
            let colour = if inside(x as f32 + 0.5, y as f32 + 0.5) {
                fg
            } else {
                bg
            };
            for (c, &value) in colour.iter().enumerate() {
                let v = value + rng.range(-noise, noise);
                data[c * plane + y * SIZE + x] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    Image::from_chw(data, 3, SIZE, SIZE).expect("3x32x32 buffer has the right length")
}

/// A background and a foreground colour far enough apart to be seen through the noise.
fn colours(rng: &mut SplitMix) -> ([f32; 3], [f32; 3]) {
    loop {
        let bg = [
            rng.range(0.0, 255.0),
            rng.range(0.0, 255.0),
            rng.range(0.0, 255.0),
        ];
        let fg = [
            rng.range(0.0, 255.0),
            rng.range(0.0, 255.0),
            rng.range(0.0, 255.0),
        ];
        let distance: f32 = bg.iter().zip(&fg).map(|(a, b)| (a - b).abs()).sum();
        if distance > 180.0 {
            return (bg, fg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_deterministic_and_seed_dependent() {
        let a = Synthetic::new(7, 100);
        assert_eq!(a.get(42), a.get(42));
        assert_ne!(a.get(42).0, Synthetic::new(8, 100).get(42).0);
        assert_ne!(a.get(42).0, a.get(52).0, "same class, other sample");
    }

    #[test]
    fn classes_are_balanced() {
        let data = Synthetic::new(0, 1000);
        let mut counts = [0usize; 10];
        for i in 0..data.len() {
            counts[data.get(i).1] += 1;
        }
        assert_eq!(counts, [100; 10]);
    }

    #[test]
    fn foreground_covers_part_of_every_image() {
        // A shape that falls outside the picture would make its label unlearnable.
        let data = Synthetic::new(3, 200);
        for i in 0..data.len() {
            let (img, label) = data.get(i);
            let spread = img
                .as_slice()
                .chunks(SIZE * SIZE)
                .map(|plane| {
                    let mean = plane.iter().map(|&v| v as f32).sum::<f32>() / plane.len() as f32;
                    plane
                        .iter()
                        .filter(|&&v| (v as f32 - mean).abs() > 30.0)
                        .count()
                })
                .max()
                .unwrap_or(0);
            assert!(
                spread > 20,
                "sample {i} (class {}) looks blank",
                CLASSES[label]
            );
        }
    }
}
