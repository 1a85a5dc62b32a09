//! Pixel-moving ops that never interpolate: pad, crop, flips, erase.

use crate::buffer::{Image, Pixel};
use crate::error::{AugmentError, Result};

/// How [`pad`] fills the border (torchvision's `padding_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// The `fill` value of [`pad`].
    Constant,
    /// Repeat the edge pixel.
    Edge,
    /// Mirror without repeating the edge pixel (numpy `reflect`): `c b | a b c | b a`.
    Reflect,
    /// Mirror repeating the edge pixel (numpy `symmetric`): `b a | a b c | c b`.
    Symmetric,
}

/// Padding widths in pixels, in torchvision's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Padding {
    pub left: usize,
    pub top: usize,
    pub right: usize,
    pub bottom: usize,
}

impl Padding {
    /// The same width on all four sides (torchvision's `padding=[p]`).
    pub fn uniform(p: usize) -> Self {
        Self {
            left: p,
            top: p,
            right: p,
            bottom: p,
        }
    }
}

/// Maps an out-of-range coordinate `i` (relative to an axis of length `n`) into `0..n`.
pub(crate) fn source_index(i: isize, n: usize, mode: PaddingMode) -> Option<usize> {
    let n = n as isize;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    let j = match mode {
        PaddingMode::Constant => return None,
        PaddingMode::Edge => i.clamp(0, n - 1),
        PaddingMode::Reflect if n == 1 => 0,
        PaddingMode::Reflect => {
            let m = i.rem_euclid(2 * (n - 1));
            if m >= n { 2 * (n - 1) - m } else { m }
        }
        PaddingMode::Symmetric => {
            let m = i.rem_euclid(2 * n);
            if m >= n { 2 * n - 1 - m } else { m }
        }
    };
    Some(j as usize)
}

/// Pads the image; `fill` (one value, or one per channel) is used only by [`PaddingMode::Constant`].
pub fn pad<T: Pixel>(
    img: &Image<T>,
    padding: Padding,
    mode: PaddingMode,
    fill: &[T],
) -> Result<Image<T>> {
    let fill = per_channel("fill", fill, img.channels(), T::default())?;
    let [c, h, w] = img.shape();
    let grow = |side: usize, a: usize, b: usize| {
        side.checked_add(a)
            .and_then(|n| n.checked_add(b))
            .ok_or_else(|| {
                AugmentError::param("padding", padding, "a padded size that fits in usize")
            })
    };
    let shape = [
        c,
        grow(h, padding.top, padding.bottom)?,
        grow(w, padding.left, padding.right)?,
    ];
    Image::from_fn(shape, |ch, y, x| {
        let sy = source_index(y as isize - padding.top as isize, h, mode);
        let sx = source_index(x as isize - padding.left as isize, w, mode);
        match (sy, sx) {
            (Some(sy), Some(sx)) => img.get(ch, sy, sx),
            _ => fill[ch],
        }
    })
}

/// Expands a value list of length 1 or `channels` to one value per channel (empty = `default`).
pub(crate) fn per_channel<T: Copy + std::fmt::Debug>(
    name: &'static str,
    values: &[T],
    channels: usize,
    default: T,
) -> Result<Vec<T>> {
    match values.len() {
        0 => Ok(vec![default; channels]),
        1 => Ok(vec![values[0]; channels]),
        n if n == channels => Ok(values.to_vec()),
        _ => Err(AugmentError::param(
            name,
            values,
            format!("1 or {channels} values"),
        )),
    }
}

/// Checks that the box `top..top+height`, `left..left+width` is non-empty and inside the image.
pub(crate) fn check_box<T: Pixel>(
    op: &'static str,
    img: &Image<T>,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
) -> Result<()> {
    if height == 0 || width == 0 {
        return Err(AugmentError::param(
            "height/width",
            (height, width),
            "both at least 1",
        ));
    }
    let inside = top.checked_add(height).is_some_and(|b| b <= img.height())
        && left.checked_add(width).is_some_and(|r| r <= img.width());
    if !inside {
        return Err(AugmentError::unsupported(
            op,
            &img.shape(),
            format!(
                "box top={top} left={left} height={height} width={width} is not inside the image"
            ),
        ));
    }
    Ok(())
}

/// The region `top..top+height`, `left..left+width`. Unlike torchvision, a box that leaves the
/// image is an error rather than zero-padded: pad explicitly if that is wanted.
pub fn crop<T: Pixel>(
    img: &Image<T>,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
) -> Result<Image<T>> {
    check_box("crop", img, top, left, height, width)?;
    Image::from_fn([img.channels(), height, width], |c, y, x| {
        img.get(c, top + y, left + x)
    })
}

/// The central `height x width` region. The offset is rounded half to even, like torchvision's
/// `int(round((h - height) / 2.0))` (Python's `round`). A crop larger than the image is an
/// error (torchvision would zero-pad).
pub fn center_crop<T: Pixel>(img: &Image<T>, height: usize, width: usize) -> Result<Image<T>> {
    if height > img.height() || width > img.width() {
        return Err(AugmentError::unsupported(
            "center_crop",
            &img.shape(),
            format!("crop {height}x{width} is larger than the image"),
        ));
    }
    let offset =
        |outer: usize, inner: usize| ((outer - inner) as f64 / 2.0).round_ties_even() as usize;
    crop(
        img,
        offset(img.height(), height),
        offset(img.width(), width),
        height,
        width,
    )
}

/// Mirrors left to right.
pub fn horizontal_flip<T: Pixel>(img: &Image<T>) -> Image<T> {
    let mut out = img.clone();
    horizontal_flip_in_place(&mut out);
    out
}

/// Mirrors left to right in place.
pub fn horizontal_flip_in_place<T: Pixel>(img: &mut Image<T>) {
    let w = img.width();
    img.as_mut_slice()
        .chunks_exact_mut(w)
        .for_each(<[T]>::reverse);
}

/// Mirrors top to bottom.
pub fn vertical_flip<T: Pixel>(img: &Image<T>) -> Image<T> {
    let [c, h, w] = img.shape();
    let mut data = Vec::with_capacity(c * h * w);
    for plane in img.as_slice().chunks_exact(h * w) {
        for row in plane.chunks_exact(w).rev() {
            data.extend_from_slice(row);
        }
    }
    Image::from_vec_unchecked(data, c, h, w)
}

/// Sets the box `i..i+h` (rows), `j..j+w` (columns) to `value` (one value or one per channel).
pub fn erase<T: Pixel>(
    img: &Image<T>,
    i: usize,
    j: usize,
    h: usize,
    w: usize,
    value: &[T],
) -> Result<Image<T>> {
    let mut out = img.clone();
    erase_in_place(&mut out, i, j, h, w, value)?;
    Ok(out)
}

/// In-place [`erase`].
pub fn erase_in_place<T: Pixel>(
    img: &mut Image<T>,
    i: usize,
    j: usize,
    h: usize,
    w: usize,
    value: &[T],
) -> Result<()> {
    check_box("erase", img, i, j, h, w)?;
    let value = per_channel("value", value, img.channels(), T::default())?;
    let [_, height, width] = img.shape();
    for (plane, &v) in img
        .as_mut_slice()
        .chunks_exact_mut(height * width)
        .zip(&value)
    {
        for row in plane.chunks_exact_mut(width).skip(i).take(h) {
            row[j..j + w].fill(v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Image<u8> {
        Image::from_chw((0..2 * 3 * 5).collect(), 2, 3, 5).expect("valid")
    }

    #[test]
    fn flips_are_involutions() {
        let img = ramp();
        assert_eq!(horizontal_flip(&horizontal_flip(&img)), img);
        assert_eq!(vertical_flip(&vertical_flip(&img)), img);
        assert_eq!(horizontal_flip(&img).get(1, 2, 0), img.get(1, 2, 4));
        assert_eq!(vertical_flip(&img).get(1, 0, 3), img.get(1, 2, 3));
    }

    #[test]
    fn pad_then_crop_back_is_identity() {
        let img = ramp();
        for mode in [
            PaddingMode::Constant,
            PaddingMode::Edge,
            PaddingMode::Reflect,
            PaddingMode::Symmetric,
        ] {
            let p = Padding {
                left: 1,
                top: 2,
                right: 3,
                bottom: 1,
            };
            let padded = pad(&img, p, mode, &[7]).expect("pad");
            assert_eq!(padded.shape(), [2, 6, 9]);
            assert_eq!(crop(&padded, 2, 1, 3, 5).expect("crop"), img);
        }
    }

    #[test]
    fn padding_modes_follow_numpy() {
        let row = Image::<u8>::from_chw(vec![1, 2, 3], 1, 1, 3).expect("valid");
        let p = Padding {
            left: 2,
            top: 0,
            right: 2,
            bottom: 0,
        };
        let run = |mode| pad(&row, p, mode, &[9]).expect("pad").into_vec();
        assert_eq!(run(PaddingMode::Constant), [9, 9, 1, 2, 3, 9, 9]);
        assert_eq!(run(PaddingMode::Edge), [1, 1, 1, 2, 3, 3, 3]);
        assert_eq!(run(PaddingMode::Reflect), [3, 2, 1, 2, 3, 2, 1]);
        assert_eq!(run(PaddingMode::Symmetric), [2, 1, 1, 2, 3, 3, 2]);
    }

    #[test]
    fn rejects_bad_boxes_and_fills() {
        let img = ramp();
        assert!(crop(&img, 1, 0, 3, 5).is_err());
        assert!(crop(&img, 0, 0, 0, 5).is_err());
        assert!(crop(&img, usize::MAX, 0, 1, 1).is_err());
        assert!(erase(&img, 0, 4, 1, 2, &[0]).is_err());
        assert!(pad(&img, Padding::uniform(1), PaddingMode::Constant, &[1, 2, 3]).is_err());
        assert!(center_crop(&img, 4, 1).is_err());
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        let img = ramp();
        // (5 - 2) / 2 = 1.5 rounds to 2, as Python's round does.
        assert_eq!(
            center_crop(&img, 3, 2).expect("crop"),
            crop(&img, 0, 2, 3, 2).expect("crop")
        );
    }
}
