//! Colour transforms, dtype conversion, normalisation and random erasing.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::types::{EraseValue, ParamRange, check_non_negative, check_span};
use super::{
    Applied, Augment, Context, Sample, coin, map_sample, randint, replay_mismatch, require_rgb,
    round_to_usize, uniform, wrong_dtype,
};
use crate::buffer::{Image, Pixel};
use crate::error::{AugmentError, Result, check_range};
use crate::functional as f;

/// Randomly changes brightness, contrast, saturation and hue (torchvision `ColorJitter`).
///
/// Each factor is one number `x` or a range `[min, max]`: brightness, contrast and saturation
/// `x` mean a factor drawn uniformly from `[max(0, 1 - x), 1 + x]`; hue `x` (at most 0.5)
/// means a shift drawn from `[-x, x]`. All default to 0 (disabled). The enabled adjustments
/// run in a random order, as in torchvision.
///
/// Needs 3 (RGB) channels: gray or RGBA input is an `UnsupportedInput` error (torchvision
/// would silently skip saturation and hue on gray images). Works on u8 and f32.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColorJitter {
    pub brightness: ParamRange,
    pub contrast: ParamRange,
    pub saturation: ParamRange,
    pub hue: ParamRange,
}

impl ColorJitter {
    /// All four adjustments disabled; enable them with the builder methods.
    pub fn new() -> Self {
        Self::default()
    }
    pub fn brightness(mut self, b: impl Into<ParamRange>) -> Self {
        self.brightness = b.into();
        self
    }
    pub fn contrast(mut self, c: impl Into<ParamRange>) -> Self {
        self.contrast = c.into();
        self
    }
    pub fn saturation(mut self, s: impl Into<ParamRange>) -> Self {
        self.saturation = s.into();
        self
    }
    pub fn hue(mut self, h: impl Into<ParamRange>) -> Self {
        self.hue = h.into();
        self
    }

    /// The ranges factors are drawn from, `None` for a disabled adjustment (torchvision's
    /// `_check_input`), in the order brightness, contrast, saturation, hue. Assumes
    /// [`validate`](Augment::validate) passed.
    pub fn ranges(&self) -> [Option<[f64; 2]>; 4] {
        let factor = |r: ParamRange| match r {
            ParamRange::Single(x) => [(1.0 - x).max(0.0), 1.0 + x],
            ParamRange::Range(r) => r,
        };
        let shift = |r: ParamRange| match r {
            ParamRange::Single(x) => [-x, x],
            ParamRange::Range(r) => r,
        };
        let off = |r: [f64; 2], center: f64| (r[0] != center || r[1] != center).then_some(r);
        [
            off(factor(self.brightness), 1.0),
            off(factor(self.contrast), 1.0),
            off(factor(self.saturation), 1.0),
            off(shift(self.hue), 0.0),
        ]
    }
}

impl ColorJitter {
    /// Draws (or replays) the order and the factors (brightness, contrast, saturation, hue).
    pub(crate) fn next_params<R: Rng + ?Sized>(
        &self,
        ctx: &mut Context<'_, R>,
    ) -> Result<([u8; 4], [Option<f64>; 4])> {
        let ranges = self.ranges();
        let p = ctx.params(|rng| {
            let mut order = [0u8, 1, 2, 3];
            order.shuffle(rng);
            let [brightness, contrast, saturation, hue] =
                ranges.map(|r| r.map(|[lo, hi]| uniform(rng, lo, hi)));
            Ok(Applied::ColorJitter {
                order,
                brightness,
                contrast,
                saturation,
                hue,
            })
        })?;
        let Applied::ColorJitter {
            order,
            brightness,
            contrast,
            saturation,
            hue,
        } = p
        else {
            return Err(replay_mismatch("ColorJitter", &p));
        };
        let mut sorted = order;
        sorted.sort_unstable();
        if sorted != [0, 1, 2, 3] {
            return Err(AugmentError::param(
                "ColorJitter order",
                order,
                "a permutation of [0, 1, 2, 3]",
            ));
        }
        Ok((order, [brightness, contrast, saturation, hue]))
    }
}

fn check_factor(name: &'static str, r: ParamRange) -> Result<()> {
    match r {
        ParamRange::Single(x) => check_non_negative(name, x),
        ParamRange::Range(r) => check_span(name, r, 0.0, f64::INFINITY, false),
    }
}

/// Applies the colour adjustments in the drawn `order`; shared with the fused path's fallback.
pub(crate) fn jitter<T: Pixel>(
    img: Image<T>,
    order: [u8; 4],
    factors: [Option<f64>; 4],
) -> Result<Image<T>> {
    let mut img = img;
    for id in order {
        let Some(x) = factors[usize::from(id)] else {
            continue;
        };
        img = match id {
            0 => f::adjust_brightness(&img, x)?,
            1 => f::adjust_contrast(&img, x)?,
            2 => f::adjust_saturation(&img, x)?,
            _ => f::adjust_hue(&img, x)?,
        };
    }
    Ok(img)
}

impl Augment for ColorJitter {
    fn validate(&self) -> Result<()> {
        check_factor("ColorJitter.brightness", self.brightness)?;
        check_factor("ColorJitter.contrast", self.contrast)?;
        check_factor("ColorJitter.saturation", self.saturation)?;
        match self.hue {
            ParamRange::Single(x) => check_range("ColorJitter.hue", x, 0.0, 0.5),
            ParamRange::Range(r) => check_span("ColorJitter.hue", r, -0.5, 0.5, false),
        }
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        require_rgb("ColorJitter", &sample)?;
        let (order, factors) = self.next_params(ctx)?;
        Ok(map_sample!(sample, img => jitter(img, order, factors)?))
    }
}

/// Converts a u8 image to f32 in `[0, 1]` (torchvision `ToTensor`, or `ToImage` +
/// `ToDtype(float32, scale=True)`). f32 input is an error (a second `ToTensor`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToTensor;

impl Augment for ToTensor {
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, _ctx: &mut Context<'_, R>) -> Result<Sample> {
        match sample {
            Sample::U8(img) => Ok(Sample::F32(f::to_f32(&img))),
            Sample::F32(img) => Err(wrong_dtype("ToTensor", &img.shape(), "u8", "f32")),
        }
    }
}

/// `(x - mean[c]) / std[c]` on f32 input (torchvision `Normalize`); u8 input is an error.
/// `mean` and `std` need one value per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Normalize {
    pub fn new(mean: impl Into<Vec<f64>>, std: impl Into<Vec<f64>>) -> Self {
        Self {
            mean: mean.into(),
            std: std.into(),
        }
    }
}

impl Augment for Normalize {
    fn validate(&self) -> Result<()> {
        if self.mean.is_empty() || self.mean.iter().any(|m| !m.is_finite()) {
            return Err(AugmentError::param(
                "Normalize.mean",
                &self.mean,
                "a non-empty list of finite numbers",
            ));
        }
        if self.std.len() != self.mean.len() || self.std.iter().any(|s| !s.is_finite() || *s == 0.0)
        {
            return Err(AugmentError::param(
                "Normalize.std",
                &self.std,
                format!(
                    "{} finite non-zero numbers (one per mean value)",
                    self.mean.len()
                ),
            ));
        }
        Ok(())
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, _ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        let img = match sample {
            Sample::F32(img) => img,
            Sample::U8(img) => return Err(wrong_dtype("Normalize", &img.shape(), "f32", "u8")),
        };
        let mean: Vec<f32> = self.mean.iter().map(|&m| m as f32).collect();
        let std: Vec<f32> = self.std.iter().map(|&s| s as f32).collect();
        Ok(Sample::F32(f::normalize(&img, &mean, &std)?))
    }
}

/// Erases a random box with probability `p` (torchvision `RandomErasing`, Zhong et al.).
///
/// Defaults: `p = 0.5`, `scale = [0.02, 0.33]` (of the area), `ratio = [0.3, 3.3]`
/// (log-uniform), `value = 0`. `value` may be one number, one per channel, or `"random"` for
/// standard normal noise. Works on f32 input (after [`ToTensor`]), like torchvision; u8 input
/// is an error. If no box fits in 10 attempts the image is returned unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomErasing {
    pub p: f64,
    pub scale: [f64; 2],
    pub ratio: [f64; 2],
    pub value: EraseValue,
}

impl Default for RandomErasing {
    fn default() -> Self {
        Self {
            p: 0.5,
            scale: [0.02, 0.33],
            ratio: [0.3, 3.3],
            value: EraseValue::default(),
        }
    }
}

impl RandomErasing {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn p(mut self, p: f64) -> Self {
        self.p = p;
        self
    }
    pub fn scale(mut self, scale: [f64; 2]) -> Self {
        self.scale = scale;
        self
    }
    pub fn ratio(mut self, ratio: [f64; 2]) -> Self {
        self.ratio = ratio;
        self
    }
    pub fn value(mut self, value: impl Into<EraseValue>) -> Self {
        self.value = value.into();
        self
    }

    /// torchvision's `RandomErasing.get_params` (after the `p` draw).
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R, h: usize, w: usize) -> Applied {
        let area = (h * w) as f64;
        let log_ratio = [self.ratio[0].ln(), self.ratio[1].ln()];
        for _ in 0..10 {
            let erase_area = area * uniform(rng, self.scale[0], self.scale[1]);
            let aspect = uniform(rng, log_ratio[0], log_ratio[1]).exp();
            let eh = round_to_usize((erase_area * aspect).sqrt());
            let ew = round_to_usize((erase_area / aspect).sqrt());
            if !(eh < h && ew < w) {
                continue;
            }
            let noise_seed = matches!(self.value, EraseValue::Random(_)).then(|| rng.next_u64());
            let top = randint(rng, h - eh + 1);
            let left = randint(rng, w - ew + 1);
            return Applied::RandomErasing {
                erase: true,
                top,
                left,
                height: eh,
                width: ew,
                noise_seed,
            };
        }
        NOT_ERASED
    }
}

/// What RandomErasing records when it leaves the image alone.
const NOT_ERASED: Applied = Applied::RandomErasing {
    erase: false,
    top: 0,
    left: 0,
    height: 0,
    width: 0,
    noise_seed: None,
};

/// A box RandomErasing drew (or replayed) to erase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ErasePlan {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
    pub noise_seed: Option<u64>,
}

impl RandomErasing {
    /// Draws (or replays) the box for an `h x w` image; `None` leaves the image alone (not
    /// drawn with probability `p`, no box fitted, or an empty box, as in torchvision). A
    /// replayed box without the noise seed that `value = "random"` needs is an error.
    pub(crate) fn next_params<R: Rng + ?Sized>(
        &self,
        ctx: &mut Context<'_, R>,
        h: usize,
        w: usize,
    ) -> Result<Option<ErasePlan>> {
        let p = ctx.params(|rng| {
            Ok(if coin(rng, self.p) {
                self.draw(rng, h, w)
            } else {
                NOT_ERASED
            })
        })?;
        let Applied::RandomErasing {
            erase,
            top,
            left,
            height,
            width,
            noise_seed,
        } = p
        else {
            return Err(replay_mismatch("RandomErasing", &p));
        };
        if !erase || height == 0 || width == 0 {
            return Ok(None);
        }
        if matches!(self.value, EraseValue::Random(_)) && noise_seed.is_none() {
            return Err(AugmentError::param(
                "replayed params",
                p,
                "a noise_seed for value = \"random\"",
            ));
        }
        Ok(Some(ErasePlan {
            top,
            left,
            height,
            width,
            noise_seed,
        }))
    }
}

/// Standard normal samples (Box-Muller) from a dedicated RNG.
pub(crate) fn normal_noise(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
            let u2 = rng.random::<f64>();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

impl Augment for RandomErasing {
    fn validate(&self) -> Result<()> {
        check_range("RandomErasing.p", self.p, 0.0, 1.0)?;
        check_span("RandomErasing.scale", self.scale, 0.0, 1.0, false)?;
        check_span("RandomErasing.ratio", self.ratio, 0.0, f64::INFINITY, true)?;
        let bad = match &self.value {
            EraseValue::Single(v) => !v.is_finite(),
            EraseValue::PerChannel(v) => v.is_empty() || v.iter().any(|x| !x.is_finite()),
            EraseValue::Random(_) => false,
        };
        if bad {
            return Err(AugmentError::param(
                "RandomErasing.value",
                &self.value,
                "a finite number, a non-empty list of finite numbers, or \"random\"",
            ));
        }
        Ok(())
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        let mut img = match sample {
            Sample::F32(img) => img,
            Sample::U8(img) => {
                return Err(wrong_dtype("RandomErasing", &img.shape(), "f32", "u8"));
            }
        };
        let [c, h, w] = img.shape();
        if let EraseValue::PerChannel(v) = &self.value
            && v.len() != 1
            && v.len() != c
        {
            return Err(AugmentError::mismatch(
                "RandomErasing.value entries per channel",
                c,
                v.len(),
            ));
        }
        let Some(ErasePlan {
            top,
            left,
            height,
            width,
            noise_seed,
        }) = self.next_params(ctx, h, w)?
        else {
            return Ok(Sample::F32(img));
        };
        match (&self.value, noise_seed) {
            (EraseValue::Random(_), Some(seed)) => {
                f::erase_in_place(&mut img, top, left, height, width, &[0.0])?;
                let noise = normal_noise(seed, c * height * width);
                let data = img.as_mut_slice();
                for (k, &z) in noise.iter().enumerate() {
                    let (ch, rest) = (k / (height * width), k % (height * width));
                    let (y, x) = (rest / width, rest % width);
                    data[(ch * h + top + y) * w + left + x] = z;
                }
            }
            (EraseValue::Random(_), None) => {
                // next_params rejects a replayed random erase without its noise seed.
                return Err(AugmentError::param(
                    "replayed params",
                    "noise_seed = None",
                    "a noise_seed for value = \"random\"",
                ));
            }
            (EraseValue::Single(v), _) => {
                f::erase_in_place(&mut img, top, left, height, width, &[*v as f32])?;
            }
            (EraseValue::PerChannel(v), _) => {
                let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                f::erase_in_place(&mut img, top, left, height, width, &v)?;
            }
        }
        Ok(Sample::F32(img))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_ranges_follow_torchvision() {
        let j = ColorJitter::new().brightness(0.2).contrast(1.5).hue(0.1);
        assert_eq!(
            j.ranges(),
            [Some([0.8, 1.2]), Some([0.0, 2.5]), None, Some([-0.1, 0.1])]
        );
        assert_eq!(ColorJitter::new().saturation([1.0, 1.0]).ranges()[2], None);
    }

    #[test]
    fn noise_is_roughly_standard_normal() {
        let z = normal_noise(7, 20_000);
        let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / z.len() as f64;
        let var = z
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / z.len() as f64;
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
