//! Errors returned by the augmentation ops.

use std::fmt;

/// Everything that can go wrong in this crate, grouped by whose fault it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugmentError {
    /// A parameter is out of its allowed range (or NaN).
    #[error("invalid parameter `{name}` = {value}: expected {expected}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        expected: String,
    },
    /// The image itself cannot be processed by this op (e.g. wrong channel count).
    #[error("{op}: unsupported input of shape {shape:?}: {reason}")]
    UnsupportedInput {
        op: &'static str,
        shape: Vec<usize>,
        reason: String,
    },
    /// A pipeline description (JSON or TOML) could not be parsed: unknown transform name,
    /// unknown field, wrong type. Out-of-range values are [`AugmentError::InvalidParameter`].
    #[error("cannot parse {format} pipeline: {message}")]
    Config {
        format: &'static str,
        message: String,
    },
    /// An encoded image (PNG, JPEG) could not be decoded.
    #[error("cannot decode image of item {index}: {message}")]
    Decode { index: u64, message: String },
    /// Two sizes that must agree do not (buffer vs shape, batch vs labels, ...).
    #[error("size mismatch in {what}: expected {expected}, got {actual}")]
    SizeMismatch {
        what: String,
        expected: usize,
        actual: usize,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, AugmentError>;

impl AugmentError {
    pub(crate) fn param(
        name: &'static str,
        value: impl fmt::Debug,
        expected: impl Into<String>,
    ) -> Self {
        Self::InvalidParameter {
            name,
            value: format!("{value:?}"),
            expected: expected.into(),
        }
    }

    pub(crate) fn unsupported(
        op: &'static str,
        shape: &[usize],
        reason: impl Into<String>,
    ) -> Self {
        Self::UnsupportedInput {
            op,
            shape: shape.to_vec(),
            reason: reason.into(),
        }
    }

    pub(crate) fn mismatch(what: impl Into<String>, expected: usize, actual: usize) -> Self {
        Self::SizeMismatch {
            what: what.into(),
            expected,
            actual,
        }
    }
}

/// Checks that a float parameter is finite and within `[lo, hi]`.
pub(crate) fn check_range(name: &'static str, value: f64, lo: f64, hi: f64) -> Result<()> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(AugmentError::param(
            name,
            value,
            format!("a finite number in [{lo}, {hi}]"),
        ))
    }
}
