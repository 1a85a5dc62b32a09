//! Typed errors of the crate.

use std::fmt;
use std::path::PathBuf;

use crate::model::Variant;

/// Something about a layer reference or an input that the network cannot handle.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The input's channel count is not the network's.
    #[error("input has {got} channels, but {title} takes {expected}-channel (RGB) images", title = .variant.title())]
    WrongChannels {
        got: usize,
        expected: usize,
        variant: Variant,
    },
    /// The feature map becomes smaller than a kernel somewhere in the network.
    #[error(
        "input {height}x{width} is too small for {title}: {layer} ({kind}, kernel {kernel}) \
         gets a {at_height}x{at_width} feature map; {title} needs {needed}",
        title = .variant.title()
    )]
    InputTooSmall {
        height: usize,
        width: usize,
        variant: Variant,
        layer: String,
        kind: &'static str,
        kernel: usize,
        at_height: usize,
        at_width: usize,
        needed: String,
    },
    /// The flattened feature map does not have the size the first linear layer takes.
    #[error(
        "input {height}x{width} gives {got} features ({shape}) at {layer}, which takes {expected}; \
         {title} needs {needed}",
        title = .variant.title()
    )]
    InputSizeMismatch {
        height: usize,
        width: usize,
        variant: Variant,
        layer: String,
        got: usize,
        shape: String,
        expected: usize,
        needed: String,
    },
    /// No layer has this name.
    #[error("{title} has no layer named {name:?}; its layers are: {available}", title = .variant.title())]
    UnknownLayer {
        name: String,
        variant: Variant,
        available: String,
    },
    /// A layer index past the last layer.
    #[error(
        "layer index {index} is out of range: {title} has {count} layers (0..={last})",
        title = .variant.title(),
        last = .count.saturating_sub(1)
    )]
    LayerIndexOutOfRange {
        index: usize,
        count: usize,
        variant: Variant,
    },
    /// An operation that needs convolution weights was pointed at another kind of layer.
    #[error("{layer} is a {kind}, not a Conv2d: it has no filters")]
    NotAConvolution { layer: String, kind: &'static str },
    /// Filters can be drawn as colour images only when they have three input channels.
    #[error(
        "{layer} has {channels} input channels per filter; only 3-channel (RGB) filters can be drawn in colour"
    )]
    NotRgbFilters { layer: String, channels: usize },
    /// An activation picture was asked for a layer whose output is not a feature map.
    #[error(
        "{layer} outputs a {shape} matrix, not a feature map; pick a features.* or avgpool layer"
    )]
    NotSpatial { layer: String, shape: String },
    /// A batch index past the batch.
    #[error("sample {index} is out of range for a batch of {batch}")]
    SampleOutOfRange { index: usize, batch: usize },
}

/// The on-disk formats weights are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// `torch.save` file (`.pth`, `.pt`).
    Pytorch,
    /// safetensors file.
    Safetensors,
    /// burn's burnpack record: Kindling's own checkpoints.
    Burnpack,
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightFormat::Pytorch => "PyTorch",
            WeightFormat::Safetensors => "safetensors",
            WeightFormat::Burnpack => "burnpack",
        })
    }
}

/// A state dict whose keys or shapes do not fit the network; every problem is listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDictMismatch {
    /// The network's variant.
    pub variant: String,
    /// Parameters the network has and the file lacks.
    pub missing: Vec<String>,
    /// Tensors in the file that the network has no parameter for.
    pub unexpected: Vec<String>,
    /// `(key, expected shape, found shape)`, shapes in PyTorch's layout.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Other per-tensor failures (wrong dtype, unreadable data).
    pub other: Vec<String>,
}

impl StateDictMismatch {
    pub(crate) fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.other.is_empty()
    }
}

impl fmt::Display for StateDictMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state dict does not fit {}:", self.variant)?;
        if !self.missing.is_empty() {
            write!(f, "\n  missing keys: {}", self.missing.join(", "))?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "\n  unexpected keys: {}", self.unexpected.join(", "))?;
        }
        for (key, expected, found) in &self.mismatched {
            write!(
                f,
                "\n  shape mismatch for {key}: expected {expected:?}, found {found:?}"
            )?;
        }
        for other in &self.other {
            write!(f, "\n  {other}")?;
        }
        Ok(())
    }
}

/// Failure to read, apply or write weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file's extension names no format this crate reads.
    #[error("cannot tell the weight format of {path}: expected .pth, .pt, .safetensors or .bpk")]
    UnknownFormat { path: PathBuf },
    /// The data is not a valid file of the given format.
    #[error("corrupt {format} data from {origin}: {message}")]
    Corrupt {
        format: WeightFormat,
        origin: String,
        message: String,
    },
    /// Missing, unexpected or mis-shaped tensors, all of them.
    #[error("{0}")]
    StateDict(StateDictMismatch),
    /// Writing weights failed.
    #[error("cannot write {format} weights: {message}")]
    Write {
        format: WeightFormat,
        message: String,
    },
}
