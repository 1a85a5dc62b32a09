//! A raw image buffer in channel-planar (CHW) layout.

use crate::error::{AugmentError, Result};

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for f32 {}
}

/// A pixel component type: `u8` (0..=255) or `f32` (0.0..=1.0), as in torchvision.
///
/// The two types differ in how a float result is stored back, which is where torchvision's
/// u8 and float paths differ numerically.
pub trait Pixel:
    sealed::Sealed + Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static
{
    /// The value of full intensity: 255 for u8, 1.0 for f32.
    const MAX: f32;
    /// Whether this is a float type (torchvision's `is_floating_point()`).
    const IS_FLOAT: bool;
    /// The raw value as f32 (no rescaling).
    fn to_f32(self) -> f32;
    /// Stores a float result of a colour op; u8 truncates toward zero (torch's `.to(uint8)`).
    fn from_f32_trunc(v: f32) -> Self;
    /// Stores a float result of a geometric op; u8 rounds half to even (torch's `round_()`).
    fn from_f32_round(v: f32) -> Self;
    /// The value on the `[0, 1]` scale (u8: `x * (1/255)`, torchvision's `to_dtype(scale=True)`).
    fn to_unit(self) -> f32;
    /// From the `[0, 1]` scale (u8: `trunc(x * 255.999)`, torchvision's `to_dtype(scale=True)`).
    fn from_unit(v: f32) -> Self;
}

impl Pixel for u8 {
    const MAX: f32 = 255.0;
    const IS_FLOAT: bool = false;
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
    fn from_f32_trunc(v: f32) -> Self {
        // `as` truncates toward zero and saturates (NaN -> 0).
        v as u8
    }
    fn from_f32_round(v: f32) -> Self {
        v.round_ties_even() as u8
    }
    fn to_unit(self) -> f32 {
        // Multiplying by the f32 reciprocal is what torch does; `x / 255.0` differs by one ulp
        // on about half of the values.
        const SCALE: f32 = 1.0 / 255.0;
        f32::from(self) * SCALE
    }
    fn from_unit(v: f32) -> Self {
        // Truncation with a multiplier just under 256: 1.0 maps to 255 and all 256 bins have
        // equal width.
        const SCALE: f32 = 255.0 + 1.0 - 1e-3;
        (v * SCALE) as u8
    }
}

impl Pixel for f32 {
    const MAX: f32 = 1.0;
    const IS_FLOAT: bool = true;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32_trunc(v: f32) -> Self {
        v
    }
    fn from_f32_round(v: f32) -> Self {
        v
    }
    fn to_unit(self) -> f32 {
        self
    }
    fn from_unit(v: f32) -> Self {
        v
    }
}

/// An image stored channel-planar: `data[(c * height + y) * width + x]`.
///
/// All dimensions are at least 1 and `data.len() == channels * height * width`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image<T> {
    data: Vec<T>,
    channels: usize,
    height: usize,
    width: usize,
}

impl<T: Pixel> Image<T> {
    /// Wraps a CHW buffer.
    pub fn from_chw(data: Vec<T>, channels: usize, height: usize, width: usize) -> Result<Self> {
        check_dims(channels, height, width)?;
        let expected = channels * height * width;
        if data.len() != expected {
            return Err(AugmentError::mismatch(
                "CHW buffer length",
                expected,
                data.len(),
            ));
        }
        Ok(Self {
            data,
            channels,
            height,
            width,
        })
    }

    /// Converts an interleaved HWC buffer.
    pub fn from_hwc(data: &[T], height: usize, width: usize, channels: usize) -> Result<Self> {
        check_dims(channels, height, width)?;
        let expected = channels * height * width;
        if data.len() != expected {
            return Err(AugmentError::mismatch(
                "HWC buffer length",
                expected,
                data.len(),
            ));
        }
        let plane = height * width;
        let mut out = vec![T::default(); expected];
        for (p, px) in data.chunks_exact(channels).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                out[c * plane + p] = v;
            }
        }
        Ok(Self {
            data: out,
            channels,
            height,
            width,
        })
    }

    /// A new image with every component set to `value`.
    pub fn filled(value: T, channels: usize, height: usize, width: usize) -> Result<Self> {
        check_dims(channels, height, width)?;
        Ok(Self {
            data: vec![value; channels * height * width],
            channels,
            height,
            width,
        })
    }

    /// The interleaved HWC copy of the data.
    pub fn to_hwc(&self) -> Vec<T> {
        let plane = self.height * self.width;
        let mut out = Vec::with_capacity(self.data.len());
        for p in 0..plane {
            out.extend((0..self.channels).map(|c| self.data[c * plane + p]));
        }
        out
    }

    pub fn channels(&self) -> usize {
        self.channels
    }
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn width(&self) -> usize {
        self.width
    }
    /// `[channels, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }
    /// The CHW data.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
    /// One channel plane, `height * width` values.
    pub fn plane(&self, c: usize) -> &[T] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }
    /// The component at channel `c`, row `y`, column `x`.
    pub fn get(&self, c: usize, y: usize, x: usize) -> T {
        self.data[(c * self.height + y) * self.width + x]
    }

    /// Builds an image of the given shape from a function of (c, y, x).
    pub(crate) fn from_fn(
        shape: [usize; 3],
        mut f: impl FnMut(usize, usize, usize) -> T,
    ) -> Result<Self> {
        let [channels, height, width] = shape;
        check_dims(channels, height, width)?;
        let mut data = Vec::with_capacity(channels * height * width);
        for c in 0..channels {
            for y in 0..height {
                for x in 0..width {
                    data.push(f(c, y, x));
                }
            }
        }
        Ok(Self {
            data,
            channels,
            height,
            width,
        })
    }

    /// Wraps a buffer whose shape the caller has already validated.
    pub(crate) fn from_vec_unchecked(
        data: Vec<T>,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Self {
        debug_assert_eq!(data.len(), channels * height * width);
        Self {
            data,
            channels,
            height,
            width,
        }
    }

    /// Applies `f` to every component, keeping the shape.
    pub(crate) fn map<U: Pixel>(&self, f: impl FnMut(T) -> U) -> Image<U> {
        Image {
            data: self.data.iter().copied().map(f).collect(),
            channels: self.channels,
            height: self.height,
            width: self.width,
        }
    }
}

fn check_dims(channels: usize, height: usize, width: usize) -> Result<()> {
    if channels == 0 || height == 0 || width == 0 {
        return Err(AugmentError::unsupported(
            "Image",
            &[channels, height, width],
            "every dimension must be at least 1",
        ));
    }
    if channels
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
        .is_none()
    {
        return Err(AugmentError::unsupported(
            "Image",
            &[channels, height, width],
            "channels * height * width overflows usize",
        ));
    }
    Ok(())
}

impl TryFrom<&image::RgbImage> for Image<u8> {
    type Error = AugmentError;
    fn try_from(img: &image::RgbImage) -> Result<Self> {
        let (w, h) = img.dimensions();
        Self::from_hwc(img.as_raw(), h as usize, w as usize, 3)
    }
}

impl Image<u8> {
    /// Converts a 3-channel image to `image::RgbImage`.
    pub fn to_rgb_image(&self) -> Result<image::RgbImage> {
        if self.channels != 3 {
            return Err(AugmentError::unsupported(
                "to_rgb_image",
                &self.shape(),
                "needs 3 channels",
            ));
        }
        let too_big =
            || AugmentError::unsupported("to_rgb_image", &self.shape(), "dimensions exceed u32");
        let w = u32::try_from(self.width).map_err(|_| too_big())?;
        let h = u32::try_from(self.height).map_err(|_| too_big())?;
        image::RgbImage::from_raw(w, h, self.to_hwc()).ok_or_else(too_big)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_size_and_bad_length() {
        assert!(Image::<u8>::from_chw(vec![], 3, 0, 4).is_err());
        assert!(matches!(
            Image::<u8>::from_chw(vec![0; 11], 3, 2, 2),
            Err(AugmentError::SizeMismatch {
                expected: 12,
                actual: 11,
                ..
            })
        ));
        assert!(Image::<f32>::from_hwc(&[0.0; 5], 1, 2, 3).is_err());
    }

    #[test]
    fn hwc_round_trip() {
        let hwc: Vec<u8> = (0..24).collect();
        let img = Image::from_hwc(&hwc, 2, 4, 3).expect("valid");
        assert_eq!(img.get(1, 0, 0), 1);
        assert_eq!(img.get(0, 0, 1), 3);
        assert_eq!(img.to_hwc(), hwc);
        let rgb = img.to_rgb_image().expect("3 channels");
        assert_eq!(Image::try_from(&rgb).expect("non-empty"), img);
    }
}
