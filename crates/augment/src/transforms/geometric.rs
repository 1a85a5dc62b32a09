//! Geometric transforms: crops, flips, resize, rotation.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::types::{Fill, MAX_SIDE, ParamRange, Size, check_non_negative, check_span};
use super::{
    Applied, Augment, Context, Sample, coin, map_sample, randint, replay_mismatch, round_to_usize,
    uniform,
};
use crate::buffer::{Image, Pixel};
use crate::error::{AugmentError, Result, check_range};
use crate::functional::{self as f, CropBox, Interpolation, Padding, PaddingMode};

fn half() -> f64 {
    0.5
}
fn yes() -> bool {
    true
}
fn bilinear() -> Interpolation {
    Interpolation::Bilinear
}
fn nearest() -> Interpolation {
    Interpolation::Nearest
}
fn constant() -> PaddingMode {
    PaddingMode::Constant
}

fn fill_values<T: Pixel>(fill: &[f64]) -> Vec<T> {
    fill.iter().map(|&v| T::from_f32_trunc(v as f32)).collect()
}

fn check_padding(name: &'static str, p: Option<Padding>) -> Result<()> {
    if let Some(p) = p
        && [p.left, p.top, p.right, p.bottom]
            .iter()
            .any(|&v| v > MAX_SIDE)
    {
        return Err(AugmentError::param(
            name,
            p,
            format!("widths in [0, {MAX_SIDE}]"),
        ));
    }
    Ok(())
}

/// Crops a random `size` region, after optional padding (torchvision `RandomCrop`).
///
/// Defaults: `padding = None`, `pad_if_needed = false`, `fill = 0`,
/// `padding_mode = "constant"`. A crop larger than the (padded) image is an
/// `UnsupportedInput` error unless `pad_if_needed`, which pads both sides of a short axis by
/// the missing amount, as torchvision does. Accepts u8 and f32, any channel count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomCrop {
    pub size: Size,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<Padding>,
    #[serde(default)]
    pub pad_if_needed: bool,
    #[serde(default)]
    pub fill: Fill,
    #[serde(default = "constant")]
    pub padding_mode: PaddingMode,
}

impl RandomCrop {
    pub fn new(size: impl Into<Size>) -> Self {
        Self {
            size: size.into(),
            padding: None,
            pad_if_needed: false,
            fill: Fill::default(),
            padding_mode: PaddingMode::Constant,
        }
    }
    /// An integer (all sides), `[left/right, top/bottom]` or `[left, top, right, bottom]`.
    pub fn padding(mut self, padding: impl Into<Padding>) -> Self {
        self.padding = Some(padding.into());
        self
    }
    pub fn pad_if_needed(mut self, yes: bool) -> Self {
        self.pad_if_needed = yes;
        self
    }
    pub fn fill(mut self, fill: impl Into<Fill>) -> Self {
        self.fill = fill.into();
        self
    }
    pub fn padding_mode(mut self, mode: PaddingMode) -> Self {
        self.padding_mode = mode;
        self
    }

    /// The padding actually applied (after `pad_if_needed`) and the crop size `[th, tw]` for
    /// an input of `shape`; an error if the crop does not fit. Assumes `validate` passed.
    pub(crate) fn layout(&self, shape: [usize; 3]) -> Result<(Padding, [usize; 2])> {
        let [th, tw] = self.size.square_or_pair();
        let [_, h, w] = shape;
        let mut pad = self.padding.unwrap_or_default();
        let mut ph = h + pad.top + pad.bottom;
        let mut pw = w + pad.left + pad.right;
        if self.pad_if_needed {
            // torchvision v2: pad both sides of a short axis by the whole difference.
            if pw < tw {
                let d = tw - pw;
                pad.left += d;
                pad.right += d;
                pw += 2 * d;
            }
            if ph < th {
                let d = th - ph;
                pad.top += d;
                pad.bottom += d;
                ph += 2 * d;
            }
        }
        if ph < th || pw < tw {
            return Err(AugmentError::unsupported(
                "RandomCrop",
                &shape,
                format!(
                    "crop {th}x{tw} is larger than the padded image {ph}x{pw}; \
                     set pad_if_needed or a larger padding"
                ),
            ));
        }
        Ok((pad, [th, tw]))
    }

    /// Draws (or replays) the crop position `(top, left)` in the padded image.
    pub(crate) fn next_params<R: Rng + ?Sized>(
        &self,
        ctx: &mut Context<'_, R>,
        shape: [usize; 3],
        pad: Padding,
        [th, tw]: [usize; 2],
    ) -> Result<(usize, usize)> {
        let ph = shape[1] + pad.top + pad.bottom;
        let pw = shape[2] + pad.left + pad.right;
        let p = ctx.params(|rng| {
            let top = randint(rng, ph - th + 1);
            let left = randint(rng, pw - tw + 1);
            Ok(Applied::RandomCrop { top, left })
        })?;
        let Applied::RandomCrop { top, left } = p else {
            return Err(replay_mismatch("RandomCrop", &p));
        };
        Ok((top, left))
    }
}

fn pad_and_crop<T: Pixel>(
    img: &Image<T>,
    padding: Padding,
    mode: PaddingMode,
    fill: &[f64],
    crop: CropBox,
) -> Result<Image<T>> {
    let padded;
    let src = if padding == Padding::default() {
        img
    } else {
        padded = f::pad(img, padding, mode, &fill_values::<T>(fill))?;
        &padded
    };
    f::crop(src, crop.top, crop.left, crop.height, crop.width)
}

impl Augment for RandomCrop {
    fn validate(&self) -> Result<()> {
        self.size.validate("RandomCrop.size")?;
        check_padding("RandomCrop.padding", self.padding)?;
        self.fill.validate("RandomCrop.fill")
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        let (pad, [th, tw]) = self.layout(sample.shape())?;
        let (top, left) = self.next_params(ctx, sample.shape(), pad, [th, tw])?;
        let crop = CropBox {
            top,
            left,
            height: th,
            width: tw,
        };
        let fill = self.fill.values();
        Ok(map_sample!(sample, img => pad_and_crop(&img, pad, self.padding_mode, &fill, crop)?))
    }
}

/// Mirrors left to right with probability `p` (default 0.5). Any dtype and channel count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomHorizontalFlip {
    #[serde(default = "half")]
    pub p: f64,
}

impl RandomHorizontalFlip {
    pub fn new(p: f64) -> Self {
        Self { p }
    }
}

impl RandomHorizontalFlip {
    /// Draws (or replays) whether to flip.
    pub(crate) fn next_flip<R: Rng + ?Sized>(&self, ctx: &mut Context<'_, R>) -> Result<bool> {
        let p = ctx.params(|rng| {
            Ok(Applied::RandomHorizontalFlip {
                flip: coin(rng, self.p),
            })
        })?;
        let Applied::RandomHorizontalFlip { flip } = p else {
            return Err(replay_mismatch("RandomHorizontalFlip", &p));
        };
        Ok(flip)
    }
}

impl Default for RandomHorizontalFlip {
    fn default() -> Self {
        Self { p: 0.5 }
    }
}

impl Augment for RandomHorizontalFlip {
    fn validate(&self) -> Result<()> {
        check_range("RandomHorizontalFlip.p", self.p, 0.0, 1.0)
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        if !self.next_flip(ctx)? {
            return Ok(sample);
        }
        Ok(map_sample!(sample, img => {
            let mut img = img;
            f::horizontal_flip_in_place(&mut img);
            img
        }))
    }
}

/// Mirrors top to bottom with probability `p` (default 0.5). Any dtype and channel count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomVerticalFlip {
    #[serde(default = "half")]
    pub p: f64,
}

impl RandomVerticalFlip {
    pub fn new(p: f64) -> Self {
        Self { p }
    }
}

impl RandomVerticalFlip {
    /// Draws (or replays) whether to flip.
    pub(crate) fn next_flip<R: Rng + ?Sized>(&self, ctx: &mut Context<'_, R>) -> Result<bool> {
        let p = ctx.params(|rng| {
            Ok(Applied::RandomVerticalFlip {
                flip: coin(rng, self.p),
            })
        })?;
        let Applied::RandomVerticalFlip { flip } = p else {
            return Err(replay_mismatch("RandomVerticalFlip", &p));
        };
        Ok(flip)
    }
}

impl Default for RandomVerticalFlip {
    fn default() -> Self {
        Self { p: 0.5 }
    }
}

impl Augment for RandomVerticalFlip {
    fn validate(&self) -> Result<()> {
        check_range("RandomVerticalFlip.p", self.p, 0.0, 1.0)
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        if !self.next_flip(ctx)? {
            return Ok(sample);
        }
        Ok(map_sample!(sample, img => f::vertical_flip(&img)))
    }
}

/// Crops a random region of random area and aspect ratio and resizes it to `size`
/// (torchvision `RandomResizedCrop`, the Inception crop).
///
/// Defaults: `scale = [0.08, 1.0]`, `ratio = [3/4, 4/3]` (sampled log-uniformly),
/// `interpolation = "bilinear"`, `antialias = true`. After 10 failed attempts it falls back to
/// the central crop clamped to `ratio`, exactly as torchvision's `get_params`. Any dtype and
/// channel count; always returns `size`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCrop {
    pub size: Size,
    #[serde(default = "default_rrc_scale")]
    pub scale: [f64; 2],
    #[serde(default = "default_rrc_ratio")]
    pub ratio: [f64; 2],
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
    #[serde(default = "yes")]
    pub antialias: bool,
}

fn default_rrc_scale() -> [f64; 2] {
    [0.08, 1.0]
}
fn default_rrc_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

impl RandomResizedCrop {
    pub fn new(size: impl Into<Size>) -> Self {
        Self {
            size: size.into(),
            scale: default_rrc_scale(),
            ratio: default_rrc_ratio(),
            interpolation: Interpolation::Bilinear,
            antialias: true,
        }
    }
    pub fn scale(mut self, scale: [f64; 2]) -> Self {
        self.scale = scale;
        self
    }
    pub fn ratio(mut self, ratio: [f64; 2]) -> Self {
        self.ratio = ratio;
        self
    }
    pub fn interpolation(mut self, interpolation: Interpolation) -> Self {
        self.interpolation = interpolation;
        self
    }
    pub fn antialias(mut self, antialias: bool) -> Self {
        self.antialias = antialias;
        self
    }

    /// Draws (or replays) the crop box for an input of `shape`.
    pub(crate) fn next_box<R: Rng + ?Sized>(
        &self,
        ctx: &mut Context<'_, R>,
        shape: [usize; 3],
    ) -> Result<CropBox> {
        let [_, h, w] = shape;
        let p = ctx.params(|rng| {
            let b = self.get_params(rng, h, w);
            Ok(Applied::RandomResizedCrop {
                top: b.top,
                left: b.left,
                height: b.height,
                width: b.width,
            })
        })?;
        let Applied::RandomResizedCrop {
            top,
            left,
            height,
            width,
        } = p
        else {
            return Err(replay_mismatch("RandomResizedCrop", &p));
        };
        Ok(CropBox {
            top,
            left,
            height,
            width,
        })
    }

    /// torchvision's `RandomResizedCrop.get_params` for an `h x w` image.
    fn get_params<R: Rng + ?Sized>(&self, rng: &mut R, h: usize, w: usize) -> CropBox {
        let area = (h * w) as f64;
        let log_ratio = [self.ratio[0].ln(), self.ratio[1].ln()];
        for _ in 0..10 {
            let target_area = area * uniform(rng, self.scale[0], self.scale[1]);
            let aspect = uniform(rng, log_ratio[0], log_ratio[1]).exp();
            let cw = round_to_usize((target_area * aspect).sqrt());
            let ch = round_to_usize((target_area / aspect).sqrt());
            if 0 < cw && cw <= w && 0 < ch && ch <= h {
                let top = randint(rng, h - ch + 1);
                let left = randint(rng, w - cw + 1);
                return CropBox {
                    top,
                    left,
                    height: ch,
                    width: cw,
                };
            }
        }
        // Fallback to the central crop. The clamp to at least 1 pixel is ours: torchvision
        // would produce an empty crop (and fail) for e.g. a 1-pixel-wide image and ratio >= 2.
        let in_ratio = w as f64 / h as f64;
        let (ch, cw) = if in_ratio < self.ratio[0] {
            (round_to_usize(w as f64 / self.ratio[0]).clamp(1, h), w)
        } else if in_ratio > self.ratio[1] {
            (h, round_to_usize(h as f64 * self.ratio[1]).clamp(1, w))
        } else {
            (h, w)
        };
        CropBox {
            top: (h - ch) / 2,
            left: (w - cw) / 2,
            height: ch,
            width: cw,
        }
    }
}

impl Augment for RandomResizedCrop {
    fn validate(&self) -> Result<()> {
        self.size.validate("RandomResizedCrop.size")?;
        check_span(
            "RandomResizedCrop.scale",
            self.scale,
            0.0,
            f64::INFINITY,
            true,
        )?;
        check_span(
            "RandomResizedCrop.ratio",
            self.ratio,
            0.0,
            f64::INFINITY,
            true,
        )
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        let b = self.next_box(ctx, sample.shape())?;
        let size = self.size.square_or_pair();
        Ok(map_sample!(sample, img =>
            f::resized_crop(&img, b, size, self.interpolation, self.antialias)?))
    }
}

/// Rotates by an angle drawn uniformly from `degrees` (torchvision `RandomRotation`).
///
/// `degrees = d` means `[-d, d]`. Defaults: `interpolation = "nearest"`, `expand = false`,
/// `center = None` (the image centre; otherwise `[x, y]` in pixels), `fill = 0`. Any dtype and
/// channel count; the shape is kept unless `expand`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomRotation {
    pub degrees: ParamRange,
    #[serde(default = "nearest")]
    pub interpolation: Interpolation,
    #[serde(default)]
    pub expand: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<[f64; 2]>,
    #[serde(default)]
    pub fill: Fill,
}

impl RandomRotation {
    pub fn new(degrees: impl Into<ParamRange>) -> Self {
        Self {
            degrees: degrees.into(),
            interpolation: Interpolation::Nearest,
            expand: false,
            center: None,
            fill: Fill::default(),
        }
    }
    pub fn interpolation(mut self, interpolation: Interpolation) -> Self {
        self.interpolation = interpolation;
        self
    }
    pub fn expand(mut self, expand: bool) -> Self {
        self.expand = expand;
        self
    }
    pub fn center(mut self, center: [f64; 2]) -> Self {
        self.center = Some(center);
        self
    }
    pub fn fill(mut self, fill: impl Into<Fill>) -> Self {
        self.fill = fill.into();
        self
    }

    /// Draws (or replays) the angle in degrees.
    pub(crate) fn next_angle<R: Rng + ?Sized>(&self, ctx: &mut Context<'_, R>) -> Result<f64> {
        let [lo, hi] = self.range();
        let p = ctx.params(|rng| {
            Ok(Applied::RandomRotation {
                angle: uniform(rng, lo, hi),
            })
        })?;
        let Applied::RandomRotation { angle } = p else {
            return Err(replay_mismatch("RandomRotation", &p));
        };
        Ok(angle)
    }

    /// `[min, max]` in degrees.
    pub fn range(&self) -> [f64; 2] {
        match self.degrees {
            ParamRange::Single(d) => [-d, d],
            ParamRange::Range(r) => r,
        }
    }
}

impl Augment for RandomRotation {
    fn validate(&self) -> Result<()> {
        if let ParamRange::Single(d) = self.degrees {
            check_non_negative("RandomRotation.degrees", d)?;
        }
        check_span(
            "RandomRotation.degrees",
            self.range(),
            f64::NEG_INFINITY,
            f64::INFINITY,
            false,
        )?;
        if let Some(c) = self.center
            && !c.iter().all(|v| v.is_finite())
        {
            return Err(AugmentError::param(
                "RandomRotation.center",
                c,
                "finite [x, y]",
            ));
        }
        self.fill.validate("RandomRotation.fill")
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        let angle = self.next_angle(ctx)?;
        let fill: Vec<f32> = self.fill.values().iter().map(|&v| v as f32).collect();
        Ok(map_sample!(sample, img => f::rotate(
            &img,
            angle,
            self.interpolation,
            self.expand,
            self.center,
            Some(&fill),
        )?))
    }
}

/// Resizes to `size` (torchvision `Resize`).
///
/// `size = n` scales the shorter edge to `n` keeping the aspect ratio (the longer edge is
/// `int(n * long / short)`, capped by `max_size` if set); `size = [h, w]` resizes exactly.
/// Defaults: `interpolation = "bilinear"`, `max_size = None`, `antialias = true`. Outputs
/// larger than [`MAX_SIDE`] are an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resize {
    pub size: Size,
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<usize>,
    #[serde(default = "yes")]
    pub antialias: bool,
}

impl Resize {
    pub fn new(size: impl Into<Size>) -> Self {
        Self {
            size: size.into(),
            interpolation: Interpolation::Bilinear,
            max_size: None,
            antialias: true,
        }
    }
    pub fn interpolation(mut self, interpolation: Interpolation) -> Self {
        self.interpolation = interpolation;
        self
    }
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = Some(max_size);
        self
    }
    pub fn antialias(mut self, antialias: bool) -> Self {
        self.antialias = antialias;
        self
    }

    /// The `[height, width]` an `h x w` image is resized to (torchvision's
    /// `_compute_resized_output_size`).
    pub fn output_size(&self, h: usize, w: usize) -> [usize; 2] {
        match self.size {
            Size::Pair(hw) => hw,
            Size::Single(n) => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                let mut new_short = n;
                let mut new_long = (n as f64 * long as f64 / short as f64) as usize;
                if let Some(m) = self.max_size
                    && new_long > m
                {
                    new_short = (m as f64 * new_short as f64 / new_long as f64) as usize;
                    new_long = m;
                }
                if w <= h {
                    [new_long, new_short]
                } else {
                    [new_short, new_long]
                }
            }
        }
    }
}

impl Augment for Resize {
    fn validate(&self) -> Result<()> {
        self.size.validate("Resize.size")?;
        match (self.size, self.max_size) {
            (_, None) => Ok(()),
            (Size::Single(n), Some(m)) if m > n => Ok(()),
            (Size::Single(n), Some(m)) => Err(AugmentError::param(
                "Resize.max_size",
                m,
                format!("greater than size = {n}"),
            )),
            (Size::Pair(_), Some(m)) => Err(AugmentError::param(
                "Resize.max_size",
                m,
                "unset when size is [height, width]",
            )),
        }
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, _ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        let [_, h, w] = sample.shape();
        let out = self.output_size(h, w);
        if out.iter().any(|&s| s > MAX_SIDE) {
            return Err(AugmentError::unsupported(
                "Resize",
                &sample.shape(),
                format!("output size {out:?} exceeds {MAX_SIDE}"),
            ));
        }
        Ok(map_sample!(sample, img =>
            f::resize(&img, out, self.interpolation, self.antialias)?))
    }
}

/// Crops the central `size` region (torchvision `CenterCrop`). A crop larger than the image
/// is an `UnsupportedInput` error (torchvision zero-pads instead). Any dtype and channel count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterCrop {
    pub size: Size,
}

impl CenterCrop {
    pub fn new(size: impl Into<Size>) -> Self {
        Self { size: size.into() }
    }
}

impl Augment for CenterCrop {
    fn validate(&self) -> Result<()> {
        self.size.validate("CenterCrop.size")
    }

    fn run<R: Rng + ?Sized>(&self, sample: Sample, _ctx: &mut Context<'_, R>) -> Result<Sample> {
        self.validate()?;
        let [h, w] = self.size.square_or_pair();
        Ok(map_sample!(sample, img => f::center_crop(&img, h, w)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn rrc_fallback_is_central_and_clamped_to_ratio() {
        // scale > 1 never fits, so every call takes the fallback.
        let t = RandomResizedCrop::new(8).scale([2.0, 3.0]);
        let mut rng = StdRng::seed_from_u64(0);
        // Wide image: in_ratio 4 > 4/3, so h stays and w = round(10 * 4/3) = 13.
        let b = t.get_params(&mut rng, 10, 40);
        assert_eq!((b.top, b.left, b.height, b.width), (0, 13, 10, 13));
        // Tall image: in_ratio 0.25 < 3/4, so w stays and h = round(10 / 0.75) = 13.
        let b = t.get_params(&mut rng, 40, 10);
        assert_eq!((b.top, b.left, b.height, b.width), (13, 0, 13, 10));
        let b = t.get_params(&mut rng, 10, 12);
        assert_eq!((b.top, b.left, b.height, b.width), (0, 0, 10, 12));
    }

    #[test]
    fn resize_shorter_edge() {
        let r = Resize::new(32);
        assert_eq!(r.output_size(64, 48), [42, 32]);
        assert_eq!(r.output_size(48, 64), [32, 42]);
        assert_eq!(Resize::new(32).max_size(40).output_size(32, 64), [20, 40]);
        assert_eq!(Resize::new([5, 7]).output_size(100, 3), [5, 7]);
    }
}
