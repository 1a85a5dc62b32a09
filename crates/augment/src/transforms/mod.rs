//! Random and deterministic transforms with torchvision's names, defaults and sampling rules,
//! composable into pipelines that serialise to JSON and TOML.
//!
//! Transforms act on a [`Sample`]: a u8 image before [`ToTensor`] and an f32 image after it,
//! as in torchvision. Each transform says which it accepts; the wrong one is an
//! [`AugmentError::UnsupportedInput`].
//!
//! Randomness comes only from the RNG passed in ([`Augment::apply`]), so with
//! [`sample_rng`](crate::sample_rng) a sample's output is a pure function of
//! `(seed, epoch, index)`. The parameters drawn can be recorded and replayed
//! ([`Augment::apply_recorded`], [`Augment::replay`]).

mod color;
mod compose;
mod geometric;
mod types;

use rand::Rng;
use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Deserializer, Serialize};

use crate::buffer::Image;
use crate::error::{AugmentError, Result};

pub use color::{ColorJitter, Normalize, RandomErasing, ToTensor};
pub(crate) use color::{ErasePlan, jitter, normal_noise};
pub use compose::{Compose, RandomApply, RandomChoice};
pub use geometric::{
    CenterCrop, RandomCrop, RandomHorizontalFlip, RandomResizedCrop, RandomRotation,
    RandomVerticalFlip, Resize,
};
pub use types::{EraseValue, Fill, MAX_SIDE, ParamRange, RandomKeyword, Size};

/// The data a transform works on: u8 before [`ToTensor`], f32 (`[0, 1]`, then normalised)
/// after it.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    U8(Image<u8>),
    F32(Image<f32>),
}

impl Sample {
    /// `[channels, height, width]`.
    pub fn shape(&self) -> [usize; 3] {
        match self {
            Sample::U8(img) => img.shape(),
            Sample::F32(img) => img.shape(),
        }
    }

    /// `"u8"` or `"f32"`.
    pub fn dtype(&self) -> &'static str {
        match self {
            Sample::U8(_) => "u8",
            Sample::F32(_) => "f32",
        }
    }

    /// The u8 image, or `UnsupportedInput` for f32.
    pub fn into_u8(self) -> Result<Image<u8>> {
        match self {
            Sample::U8(img) => Ok(img),
            Sample::F32(img) => Err(wrong_dtype("Sample::into_u8", &img.shape(), "u8", "f32")),
        }
    }

    /// The f32 image, or `UnsupportedInput` for u8.
    pub fn into_f32(self) -> Result<Image<f32>> {
        match self {
            Sample::F32(img) => Ok(img),
            Sample::U8(img) => Err(wrong_dtype("Sample::into_f32", &img.shape(), "f32", "u8")),
        }
    }
}

impl From<Image<u8>> for Sample {
    fn from(img: Image<u8>) -> Self {
        Sample::U8(img)
    }
}

impl From<Image<f32>> for Sample {
    fn from(img: Image<f32>) -> Self {
        Sample::F32(img)
    }
}

pub(crate) fn wrong_dtype(
    op: &'static str,
    shape: &[usize],
    wanted: &str,
    got: &str,
) -> AugmentError {
    let hint = if wanted == "f32" {
        " (put it after ToTensor)"
    } else {
        " (put it before ToTensor)"
    };
    AugmentError::unsupported(
        op,
        shape,
        format!("needs a {wanted} image, got {got}{hint}"),
    )
}

/// Applies the same generic expression to either variant of a [`Sample`], keeping the dtype.
macro_rules! map_sample {
    ($sample:expr, $img:ident => $body:expr) => {
        match $sample {
            Sample::U8($img) => Sample::U8($body),
            Sample::F32($img) => Sample::F32($body),
        }
    };
}
pub(crate) use map_sample;

/// The parameters one random transform drew, in the order the transforms ran.
///
/// [`Augment::apply_recorded`] returns them; [`Augment::replay`] re-applies them without an
/// RNG. Deterministic transforms (Resize, CenterCrop, Normalize, ToTensor, Compose) record
/// nothing. [`RandomApply`] records whether it ran, then (if it did) its transforms' params;
/// [`RandomChoice`] records the index it chose, then that transform's params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Applied {
    RandomCrop {
        top: usize,
        left: usize,
    },
    RandomHorizontalFlip {
        flip: bool,
    },
    RandomVerticalFlip {
        flip: bool,
    },
    /// `order` lists the adjustments as torchvision numbers them (0 brightness, 1 contrast,
    /// 2 saturation, 3 hue); a `None` factor is skipped.
    ColorJitter {
        order: [u8; 4],
        brightness: Option<f64>,
        contrast: Option<f64>,
        saturation: Option<f64>,
        hue: Option<f64>,
    },
    RandomResizedCrop {
        top: usize,
        left: usize,
        height: usize,
        width: usize,
    },
    RandomRotation {
        angle: f64,
    },
    /// `erase == false`: the image was left alone (not drawn with probability `p`, or no box
    /// fitted in 10 attempts). `noise_seed` seeds the normal noise of `value = "random"`.
    RandomErasing {
        erase: bool,
        top: usize,
        left: usize,
        height: usize,
        width: usize,
        noise_seed: Option<u64>,
    },
    RandomApply {
        apply: bool,
    },
    RandomChoice {
        index: usize,
    },
}

/// Where a transform gets its random parameters: an RNG (optionally recording what it drew)
/// or a list of recorded parameters. Made by the provided methods of [`Augment`].
pub struct Context<'a, R: ?Sized> {
    mode: Mode<'a, R>,
}

impl<R: ?Sized> std::fmt::Debug for Context<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mode {
            Mode::Draw { record, .. } => f
                .debug_struct("Context::Draw")
                .field("recording", &record.is_some())
                .finish(),
            Mode::Replay { params, next } => f
                .debug_struct("Context::Replay")
                .field("params", params)
                .field("next", next)
                .finish(),
        }
    }
}

enum Mode<'a, R: ?Sized> {
    Draw {
        rng: &'a mut R,
        record: Option<&'a mut Vec<Applied>>,
    },
    Replay {
        params: &'a [Applied],
        next: usize,
    },
}

impl<R: Rng + ?Sized> Context<'_, R> {
    /// The next parameters: drawn with `draw` (and recorded), or taken from the replay list.
    pub(crate) fn params(
        &mut self,
        draw: impl FnOnce(&mut R) -> Result<Applied>,
    ) -> Result<Applied> {
        match &mut self.mode {
            Mode::Draw { rng, record } => {
                let p = draw(rng)?;
                if let Some(record) = record {
                    record.push(p.clone());
                }
                Ok(p)
            }
            Mode::Replay { params, next } => {
                let p = params.get(*next).cloned().ok_or_else(|| {
                    AugmentError::mismatch("replayed parameter list", *next + 1, *next)
                })?;
                *next += 1;
                Ok(p)
            }
        }
    }
}

/// Where one sample of a batch gets its parameters on the tensor path: its own RNG (with a
/// record of what it drew) or a recorded list. The batched executor keeps one per sample and
/// lends it to the transforms' draw helpers one draw at a time, so each sample's RNG advances
/// exactly as it would on the CPU path.
#[derive(Debug)]
pub(crate) enum SampleSource {
    Draw {
        rng: Box<StdRng>,
        record: Vec<Applied>,
    },
    Replay {
        params: Vec<Applied>,
        next: usize,
    },
}

impl SampleSource {
    pub(crate) fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Context<'_, StdRng>) -> Result<T>,
    ) -> Result<T> {
        match self {
            SampleSource::Draw { rng, record } => f(&mut Context {
                mode: Mode::Draw {
                    rng,
                    record: Some(record),
                },
            }),
            SampleSource::Replay { params, next } => {
                let mut ctx = Context {
                    mode: Mode::Replay {
                        params,
                        next: *next,
                    },
                };
                let out = f(&mut ctx);
                if let Mode::Replay { next: n, .. } = ctx.mode {
                    *next = n;
                }
                out
            }
        }
    }

    /// The parameters drawn so far (or the replayed list), and an error if a replayed list
    /// was not used up.
    pub(crate) fn finish(self) -> Result<Vec<Applied>> {
        match self {
            SampleSource::Draw { record, .. } => Ok(record),
            SampleSource::Replay { params, next } if next == params.len() => Ok(params),
            SampleSource::Replay { params, next } => Err(AugmentError::mismatch(
                "replayed parameter list",
                next,
                params.len(),
            )),
        }
    }
}

/// The error for replayed parameters that belong to a different transform.
pub(crate) fn replay_mismatch(op: &'static str, got: &Applied) -> AugmentError {
    AugmentError::InvalidParameter {
        name: "replayed params",
        value: format!("{got:?}"),
        expected: format!("params recorded by {op}"),
    }
}

/// A uniform draw in `[lo, hi)` computed as torch's `uniform_` does: `lo + (hi - lo) * u`.
pub(crate) fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// A uniform integer in `0..n` (`n >= 1`), torch's `randint(0, n)`.
pub(crate) fn randint<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    if n <= 1 { 0 } else { rng.random_range(0..n) }
}

/// `true` with probability `p` (torch's `rand(1) < p`).
pub(crate) fn coin<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Python's `int(round(x))`: round half to even, then truncate to an integer (saturating;
/// negative and NaN give 0).
pub(crate) fn round_to_usize(x: f64) -> usize {
    x.round_ties_even() as usize
}

/// Something that transforms a [`Sample`], possibly at random: every transform, and
/// [`Transform`] itself.
///
/// Only [`validate`](Augment::validate) and [`run`](Augment::run) are implemented per
/// transform; use the provided methods. Every call validates the parameters first, so a
/// transform built with bad values gives an error, never a panic.
pub trait Augment {
    /// Checks every parameter (recursively for containers): NaN, negative sizes,
    /// probabilities outside `[0, 1]`, empty or reversed ranges give
    /// [`AugmentError::InvalidParameter`] naming the field, e.g. `RandomHorizontalFlip.p`.
    fn validate(&self) -> Result<()>;

    /// Applies the transform, taking its random parameters from `ctx`.
    #[doc(hidden)]
    fn run<R: Rng + ?Sized>(&self, sample: Sample, ctx: &mut Context<'_, R>) -> Result<Sample>;

    /// Applies the transform with parameters drawn from `rng`.
    fn apply<R: Rng + ?Sized>(&self, sample: impl Into<Sample>, rng: &mut R) -> Result<Sample> {
        let mut ctx = Context {
            mode: Mode::Draw { rng, record: None },
        };
        self.run(sample.into(), &mut ctx)
    }

    /// Applies the transform with the RNG of sample `index` in `epoch` of a run seeded with
    /// `seed` ([`sample_rng`](crate::sample_rng)): the result depends on nothing else.
    fn apply_seeded(
        &self,
        sample: impl Into<Sample>,
        seed: u64,
        epoch: u64,
        index: u64,
    ) -> Result<Sample> {
        self.apply(sample, &mut crate::seed::sample_rng(seed, epoch, index))
    }

    /// Like [`apply`](Augment::apply), also returning the parameters that were drawn.
    fn apply_recorded<R: Rng + ?Sized>(
        &self,
        sample: impl Into<Sample>,
        rng: &mut R,
    ) -> Result<(Sample, Vec<Applied>)> {
        let mut record = Vec::new();
        let mut ctx = Context {
            mode: Mode::Draw {
                rng,
                record: Some(&mut record),
            },
        };
        let out = self.run(sample.into(), &mut ctx)?;
        Ok((out, record))
    }

    /// Re-applies recorded parameters: the output equals that of the recorded call on the
    /// same input. Parameters of another pipeline, too few or too many, are an error.
    fn replay(&self, sample: impl Into<Sample>, params: &[Applied]) -> Result<Sample> {
        let mut ctx: Context<'_, StdRng> = Context {
            mode: Mode::Replay { params, next: 0 },
        };
        let out = self.run(sample.into(), &mut ctx)?;
        if let Mode::Replay { next, .. } = ctx.mode
            && next != params.len()
        {
            return Err(AugmentError::mismatch(
                "replayed parameter list",
                next,
                params.len(),
            ));
        }
        Ok(out)
    }
}

macro_rules! transform_enum {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Any transform: the unit of a pipeline description.
        ///
        /// Serialised internally tagged by the torchvision class name:
        /// `{"type": "RandomCrop", "size": 32, "padding": 4}`. Omitted fields take
        /// torchvision's defaults; unknown fields and unknown transform names are errors.
        /// Deserialising validates the parameters ([`Augment::validate`]).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", try_from = "RawTransform")]
        pub enum Transform {
            $($(#[$doc])* $name($name),)*
        }

        /// [`Transform`] as parsed, before validation.
        #[derive(Deserialize)]
        #[serde(tag = "type")]
        pub(crate) enum RawTransform {
            $($name($name),)*
        }

        impl RawTransform {
            pub(crate) fn unvalidated(self) -> Transform {
                match self {
                    $(RawTransform::$name(t) => Transform::$name(t),)*
                }
            }
        }

        impl Transform {
            /// The torchvision class name, as used in the `type` field.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Transform::$name(_) => stringify!($name),)*
                }
            }
        }

        impl Augment for Transform {
            fn validate(&self) -> Result<()> {
                match self {
                    $(Transform::$name(t) => t.validate(),)*
                }
            }

            fn run<R: Rng + ?Sized>(
                &self,
                sample: Sample,
                ctx: &mut Context<'_, R>,
            ) -> Result<Sample> {
                match self {
                    $(Transform::$name(t) => t.run(sample, ctx),)*
                }
            }
        }

        $(
            impl From<$name> for Transform {
                fn from(t: $name) -> Self {
                    Transform::$name(t)
                }
            }
        )*
    };
}

transform_enum! {
    Compose,
    RandomApply,
    RandomChoice,
    RandomCrop,
    RandomHorizontalFlip,
    RandomVerticalFlip,
    RandomResizedCrop,
    RandomRotation,
    Resize,
    CenterCrop,
    ColorJitter,
    RandomErasing,
    ToTensor,
    Normalize,
}

impl TryFrom<RawTransform> for Transform {
    type Error = AugmentError;
    fn try_from(raw: RawTransform) -> Result<Self> {
        let t = raw.unvalidated();
        t.validate()?;
        Ok(t)
    }
}

/// Deserialises nested transforms without validating them: the enclosing transform's
/// validation covers them, so that [`Transform::from_json`] reports a typed error.
pub(crate) fn de_children<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Transform>, D::Error> {
    Ok(Vec::<RawTransform>::deserialize(d)?
        .into_iter()
        .map(RawTransform::unvalidated)
        .collect())
}

impl Transform {
    /// Parses and validates a JSON pipeline description.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawTransform = serde_json::from_str(text).map_err(|e| AugmentError::Config {
            format: "JSON",
            message: e.to_string(),
        })?;
        raw.try_into()
    }

    /// Parses and validates a TOML pipeline description (the top level is the transform's
    /// table: `type = "Compose"` followed by `[[transforms]]` tables).
    pub fn from_toml(text: &str) -> Result<Self> {
        let raw: RawTransform = toml::from_str(text).map_err(|e| AugmentError::Config {
            format: "TOML",
            message: e.to_string(),
        })?;
        raw.try_into()
    }

    /// Reads a `.json` or `.toml` pipeline file (chosen by extension).
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| AugmentError::Config {
            format: "file",
            message: format!("{}: {e}", path.display()),
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::from_json(&text),
            Some("toml") => Self::from_toml(&text),
            _ => Err(AugmentError::Config {
                format: "file",
                message: format!("{}: extension must be .json or .toml", path.display()),
            }),
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| AugmentError::Config {
            format: "JSON",
            message: e.to_string(),
        })
    }

    /// TOML (fails only for values TOML cannot hold, such as a bare non-table top level).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| AugmentError::Config {
            format: "TOML",
            message: e.to_string(),
        })
    }
}

/// Checks that the sample has 3 channels: the RGB-only ops refuse gray and RGBA input.
pub(crate) fn require_rgb(op: &'static str, sample: &Sample) -> Result<()> {
    let shape = sample.shape();
    if shape[0] == 3 {
        Ok(())
    } else {
        Err(AugmentError::unsupported(
            op,
            &shape,
            format!(
                "needs 3 (RGB) channels, got {}; convert gray or RGBA input to RGB first",
                shape[0]
            ),
        ))
    }
}
