//! Parameter types of the transforms, serialised the way torchvision accepts them
//! (`size = 32` or `size = [32, 48]`, `padding = 4` or `[l, t, r, b]`, ...).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{AugmentError, Result};
use crate::functional::Padding;

/// Largest size or padding, in pixels, that the transforms accept: a guard against
/// allocating absurd images from a typo in a config file.
pub const MAX_SIDE: usize = 1 << 16;

/// A size as torchvision takes it: one integer or `[height, width]`.
///
/// The crops read `Single(n)` as `n x n`; [`Resize`](super::Resize) reads it as the length of
/// the shorter edge, keeping the aspect ratio (torchvision's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Size {
    Single(usize),
    Pair([usize; 2]),
}

impl Size {
    /// `[height, width]`, with `Single(n)` as a square.
    pub fn square_or_pair(self) -> [usize; 2] {
        match self {
            Size::Single(n) => [n, n],
            Size::Pair(hw) => hw,
        }
    }

    pub(crate) fn validate(self, name: &'static str) -> Result<()> {
        let [h, w] = self.square_or_pair();
        if (1..=MAX_SIDE).contains(&h) && (1..=MAX_SIDE).contains(&w) {
            Ok(())
        } else {
            Err(AugmentError::param(
                name,
                self,
                format!("sizes in [1, {MAX_SIDE}]"),
            ))
        }
    }
}

/// Reads an integer or a list of exactly `N` integers (`N` in `lens`), keeping the parser's
/// position in its error messages (an untagged enum would lose it).
struct IntOrList {
    expecting: &'static str,
    lens: &'static [usize],
}

enum IntsRepr {
    One(usize),
    Many(Vec<usize>),
}

impl<'de> serde::de::Visitor<'de> for IntOrList {
    type Value = IntsRepr;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<IntsRepr, E> {
        usize::try_from(v)
            .map(IntsRepr::One)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<IntsRepr, E> {
        usize::try_from(v)
            .map(IntsRepr::One)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<IntsRepr, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element::<usize>()? {
            v.push(x);
        }
        if self.lens.contains(&v.len()) {
            Ok(IntsRepr::Many(v))
        } else {
            Err(serde::de::Error::invalid_length(v.len(), &self))
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let visitor = IntOrList {
            expecting: "a size: a positive integer or [height, width]",
            lens: &[2],
        };
        Ok(match d.deserialize_any(visitor)? {
            IntsRepr::One(n) => Size::Single(n),
            IntsRepr::Many(v) => Size::Pair([v[0], v[1]]),
        })
    }
}

impl From<usize> for Size {
    fn from(n: usize) -> Self {
        Size::Single(n)
    }
}

impl From<[usize; 2]> for Size {
    fn from(hw: [usize; 2]) -> Self {
        Size::Pair(hw)
    }
}

/// A range parameter given either as one number or as `[min, max]`.
///
/// How a single number `x` expands depends on the parameter, as in torchvision:
/// brightness, contrast, saturation: `[max(0, 1 - x), 1 + x]`; hue: `[-x, x]`;
/// rotation degrees: `[-x, x]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a number or [min, max]")]
pub enum ParamRange {
    Single(f64),
    Range([f64; 2]),
}

impl Default for ParamRange {
    fn default() -> Self {
        ParamRange::Single(0.0)
    }
}

impl From<f64> for ParamRange {
    fn from(x: f64) -> Self {
        ParamRange::Single(x)
    }
}

impl From<[f64; 2]> for ParamRange {
    fn from(r: [f64; 2]) -> Self {
        ParamRange::Range(r)
    }
}

/// The fill value of padding or rotation: one number for every channel, or one per channel,
/// in the image's own units (0..=255 for u8, 0..=1 for f32).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a number or a list of numbers, one per channel")]
pub enum Fill {
    Single(f64),
    PerChannel(Vec<f64>),
}

impl Default for Fill {
    fn default() -> Self {
        Fill::Single(0.0)
    }
}

impl Fill {
    pub(crate) fn values(&self) -> Vec<f64> {
        match self {
            Fill::Single(v) => vec![*v],
            Fill::PerChannel(v) => v.clone(),
        }
    }

    pub(crate) fn validate(&self, name: &'static str) -> Result<()> {
        let v = self.values();
        if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
            return Err(AugmentError::param(
                name,
                self,
                "a finite number or a non-empty list of finite numbers",
            ));
        }
        Ok(())
    }
}

impl From<f64> for Fill {
    fn from(v: f64) -> Self {
        Fill::Single(v)
    }
}

impl From<Vec<f64>> for Fill {
    fn from(v: Vec<f64>) -> Self {
        Fill::PerChannel(v)
    }
}

impl<const N: usize> From<[f64; N]> for Fill {
    fn from(v: [f64; N]) -> Self {
        Fill::PerChannel(v.to_vec())
    }
}

/// The keyword `"random"` of [`EraseValue::Random`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RandomKeyword {
    #[serde(rename = "random")]
    Random,
}

/// What [`RandomErasing`](super::RandomErasing) writes into the erased box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a number, a list of numbers (one per channel) or \"random\""
)]
pub enum EraseValue {
    /// The same value in every channel.
    Single(f64),
    /// One value per channel (or a list of one value).
    PerChannel(Vec<f64>),
    /// Standard normal noise per component (torchvision's `value="random"`).
    Random(RandomKeyword),
}

impl Default for EraseValue {
    fn default() -> Self {
        EraseValue::Single(0.0)
    }
}

impl From<f64> for EraseValue {
    fn from(v: f64) -> Self {
        EraseValue::Single(v)
    }
}

impl From<Vec<f64>> for EraseValue {
    fn from(v: Vec<f64>) -> Self {
        EraseValue::PerChannel(v)
    }
}

impl<const N: usize> From<[f64; N]> for EraseValue {
    fn from(v: [f64; N]) -> Self {
        EraseValue::PerChannel(v.to_vec())
    }
}

impl From<usize> for Padding {
    fn from(p: usize) -> Self {
        Padding::uniform(p)
    }
}

impl From<[usize; 2]> for Padding {
    /// torchvision's two-element padding: `[left/right, top/bottom]`.
    fn from([lr, tb]: [usize; 2]) -> Self {
        Padding {
            left: lr,
            top: tb,
            right: lr,
            bottom: tb,
        }
    }
}

impl From<[usize; 4]> for Padding {
    /// torchvision's four-element padding: `[left, top, right, bottom]`.
    fn from([left, top, right, bottom]: [usize; 4]) -> Self {
        Padding {
            left,
            top,
            right,
            bottom,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum PaddingRepr {
    Single(usize),
    Pair([usize; 2]),
    Quad([usize; 4]),
}

impl Serialize for Padding {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let Padding {
            left,
            top,
            right,
            bottom,
        } = *self;
        let repr = if left == top && top == right && right == bottom {
            PaddingRepr::Single(left)
        } else if left == right && top == bottom {
            PaddingRepr::Pair([left, top])
        } else {
            PaddingRepr::Quad([left, top, right, bottom])
        };
        repr.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Padding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let visitor = IntOrList {
            expecting: "padding: an integer, [left/right, top/bottom] or [left, top, right, bottom]",
            lens: &[2, 4],
        };
        Ok(match d.deserialize_any(visitor)? {
            IntsRepr::One(p) => p.into(),
            IntsRepr::Many(v) if v.len() == 2 => [v[0], v[1]].into(),
            IntsRepr::Many(v) => [v[0], v[1], v[2], v[3]].into(),
        })
    }
}

/// Checks a `[min, max]` range: finite, `min <= max`, both within `[lo, hi]` (either may be
/// infinite), and, when `positive`, both strictly above zero.
pub(crate) fn check_span(
    name: &'static str,
    [a, b]: [f64; 2],
    lo: f64,
    hi: f64,
    positive: bool,
) -> Result<()> {
    let ok =
        a.is_finite() && b.is_finite() && a <= b && a >= lo && b <= hi && (!positive || a > 0.0);
    if ok {
        Ok(())
    } else {
        let open_lo = positive || lo.is_infinite();
        let lower = format!("{}{lo}", if open_lo { "(" } else { "[" });
        let upper = format!("{hi}{}", if hi.is_infinite() { ")" } else { "]" });
        Err(AugmentError::param(
            name,
            [a, b],
            format!("[min, max] with min <= max, both finite and in {lower}, {upper}"),
        ))
    }
}

/// Checks that a number is finite and at least 0.
pub(crate) fn check_non_negative(name: &'static str, x: f64) -> Result<()> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(AugmentError::param(name, x, "a finite number >= 0"))
    }
}
