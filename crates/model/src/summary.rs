//! torchinfo-style summaries, computed from the layer specifications without running the
//! network, so that a wrong input size is reported before any tensor is allocated.

use std::fmt;

use serde::Serialize;

use crate::error::ModelError;
use crate::model::{AlexNet, AlexNetConfig, ClassifierLayer, FeatureLayer, LayerKind, LayerRef};

/// Receptive field of a layer's output unit, along one axis (kernels are square).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReceptiveField {
    /// Input pixels one output unit sees.
    pub size: usize,
    /// Input pixels between neighbouring output units (the product of strides).
    pub jump: usize,
    /// Centre of the first output unit's field, in input pixels (the first pixel's centre is
    /// 0.5; negative values reach into the padding).
    pub start: f64,
}

/// One row of a [`ModelSummary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSummary {
    /// Position in execution order (`None` for the aggregated rows of depth 1).
    pub index: Option<usize>,
    /// torchvision name (`features.0`), or the container name at depth 1.
    pub name: String,
    /// PyTorch class name (`Conv2d`), `Sequential` at depth 1.
    pub kind: String,
    /// Channels, groups and other hyper-parameters (`3→64`, `p=0.5`).
    pub detail: String,
    /// Kernel size, for convolutions and pools.
    pub kernel: Option<usize>,
    /// Stride, for convolutions and pools.
    pub stride: Option<usize>,
    /// Padding, for convolutions and pools.
    pub padding: Option<usize>,
    /// Output shape for the summary's batch size.
    pub output_shape: Vec<usize>,
    /// Number of parameters.
    pub params: usize,
    /// Whether the parameters receive gradients (false for layers without parameters).
    pub trainable: bool,
    /// Multiply-accumulates per image (convolutions and linear layers; bias adds not counted).
    pub macs: u64,
    /// Receptive field on the input image; `None` after the flatten, where every unit sees it
    /// all.
    pub receptive_field: Option<ReceptiveField>,
}

/// A torchinfo-like description of an [`AlexNet`] for one input shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    /// Human-readable variant name.
    pub variant: String,
    /// `[batch, channels, height, width]`.
    pub input_shape: [usize; 4],
    /// Depth the rows were produced at (0: totals only, 1: containers, 2+: every layer).
    pub depth: usize,
    /// The rows.
    pub layers: Vec<LayerSummary>,
    /// All parameters.
    pub total_params: usize,
    /// Parameters that receive gradients.
    pub trainable_params: usize,
    /// Multiply-accumulates per image.
    pub total_macs: u64,
    /// Size of the parameters as f32, in MB (10^6 bytes, as torchinfo).
    pub params_mb: f64,
    /// Size of the input batch as f32, in MB.
    pub input_mb: f64,
    /// Size of all layer outputs of one forward pass over the batch as f32, in MB.
    pub activations_mb: f64,
}

/// Per-layer data from propagating an input shape through the specs.
#[derive(Debug, Clone)]
pub(crate) struct Propagated {
    pub name: String,
    pub kind: LayerKind,
    pub output: Vec<usize>,
    pub macs: u64,
    pub receptive_field: Option<ReceptiveField>,
}

enum Failure {
    Channels,
    TooSmall {
        layer: String,
        kind: &'static str,
        kernel: usize,
        at: [usize; 2],
    },
    Mismatch {
        layer: String,
        got: usize,
        shape: String,
        expected: usize,
    },
}

fn propagate_raw(config: &AlexNetConfig, input: [usize; 4]) -> Result<Vec<Propagated>, Failure> {
    let [batch, channels, height, width] = input;
    let first_in = config.layer_specs().iter().find_map(|s| match s.kind {
        LayerKind::Conv2d { in_channels, .. } => Some(in_channels),
        _ => None,
    });
    if Some(channels) != first_in {
        return Err(Failure::Channels);
    }
    let mut shape = vec![batch, channels, height, width];
    let mut rf = Some(ReceptiveField {
        size: 1,
        jump: 1,
        start: 0.5,
    });
    let mut out = Vec::new();
    for spec in config.layer_specs() {
        let mut macs = 0u64;
        let window = |shape: &[usize], kernel: usize, stride: usize, padding: usize| {
            let (h, w) = (shape[2] + 2 * padding, shape[3] + 2 * padding);
            if h < kernel || w < kernel {
                return Err(Failure::TooSmall {
                    layer: spec.name.clone(),
                    kind: spec.kind.type_name(),
                    kernel,
                    at: [shape[2], shape[3]],
                });
            }
            Ok([(h - kernel) / stride + 1, (w - kernel) / stride + 1])
        };
        let grow = |rf: Option<ReceptiveField>, kernel: usize, stride: usize, padding: usize| {
            rf.map(|r| ReceptiveField {
                size: r.size + (kernel - 1) * r.jump,
                jump: r.jump * stride,
                start: r.start + ((kernel as f64 - 1.0) / 2.0 - padding as f64) * r.jump as f64,
            })
        };
        match spec.kind {
            LayerKind::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                ..
            } => {
                let [h, w] = window(&shape, kernel, stride, padding)?;
                macs = (out_channels * h * w * (shape[1] / groups) * kernel * kernel) as u64;
                shape = vec![batch, out_channels, h, w];
                rf = grow(rf, kernel, stride, padding);
            }
            LayerKind::MaxPool2d { kernel, stride } => {
                let [h, w] = window(&shape, kernel, stride, 0)?;
                shape = vec![batch, shape[1], h, w];
                rf = grow(rf, kernel, stride, 0);
            }
            LayerKind::AdaptiveAvgPool2d { output } => {
                let h = shape[2];
                if h == 0 || shape[3] == 0 {
                    return Err(Failure::TooSmall {
                        layer: spec.name.clone(),
                        kind: spec.kind.type_name(),
                        kernel: 1,
                        at: [shape[2], shape[3]],
                    });
                }
                // Exact when the input is a multiple of the output (6x6 at 224x224); otherwise
                // PyTorch's windows vary in size and this is the largest of them.
                let stride = (h / output).max(1);
                let kernel = h.div_ceil(output).max(1) + usize::from(h % output != 0 && h > output);
                if h != output {
                    rf = grow(rf, kernel.min(h), stride, 0);
                }
                shape = vec![batch, shape[1], output, output];
            }
            LayerKind::Linear {
                in_features,
                out_features,
            } => {
                let got: usize = shape[1..].iter().product();
                if got != in_features {
                    return Err(Failure::Mismatch {
                        layer: spec.name.clone(),
                        got,
                        shape: format!("{:?}", &shape[1..]),
                        expected: in_features,
                    });
                }
                macs = (in_features * out_features) as u64;
                shape = vec![batch, out_features];
                rf = None;
            }
            LayerKind::Dropout { .. } | LayerKind::Relu | LayerKind::LocalResponseNorm { .. } => {
                if spec.name.starts_with("classifier.") && shape.len() == 4 {
                    shape = vec![batch, shape[1..].iter().product()];
                    rf = None;
                }
            }
        }
        out.push(Propagated {
            name: spec.name,
            kind: spec.kind,
            output: shape.clone(),
            macs,
            receptive_field: rf,
        });
    }
    Ok(out)
}

/// The square input sizes up to four times the nominal size that the network accepts, as a
/// phrase for error messages.
fn accepted_sizes(config: &AlexNetConfig) -> String {
    let nominal = config.variant.nominal_input();
    let ok: Vec<usize> = (1..=4 * nominal)
        .filter(|&s| propagate_raw(config, [1, 3, s, s]).is_ok())
        .collect();
    let (Some(&lo), Some(&hi)) = (ok.first(), ok.last()) else {
        return format!("{nominal}x{nominal} input");
    };
    let contiguous = hi - lo + 1 == ok.len();
    if lo == hi {
        format!("{lo}x{lo} input")
    } else if contiguous && hi == 4 * nominal {
        format!("at least {lo}x{lo} input (designed for {nominal}x{nominal})")
    } else if contiguous {
        format!("input from {lo}x{lo} to {hi}x{hi} (designed for {nominal}x{nominal})")
    } else {
        format!("{nominal}x{nominal} input")
    }
}

/// Propagates `input` through the specs, or explains why it cannot go through.
pub(crate) fn propagate(
    config: &AlexNetConfig,
    input: [usize; 4],
) -> Result<Vec<Propagated>, ModelError> {
    let variant = config.variant;
    let [_, channels, height, width] = input;
    propagate_raw(config, input).map_err(|failure| match failure {
        Failure::Channels => ModelError::WrongChannels {
            got: channels,
            expected: 3,
            variant,
        },
        Failure::TooSmall {
            layer,
            kind,
            kernel,
            at,
        } => ModelError::InputTooSmall {
            height,
            width,
            variant,
            layer,
            kind,
            kernel,
            at_height: at[0],
            at_width: at[1],
            needed: accepted_sizes(config),
        },
        Failure::Mismatch {
            layer,
            got,
            shape,
            expected,
        } => ModelError::InputSizeMismatch {
            height,
            width,
            variant,
            layer,
            got,
            shape,
            expected,
            needed: accepted_sizes(config),
        },
    })
}

fn geometry(kind: &LayerKind) -> (Option<usize>, Option<usize>, Option<usize>) {
    match *kind {
        LayerKind::Conv2d {
            kernel,
            stride,
            padding,
            ..
        } => (Some(kernel), Some(stride), Some(padding)),
        LayerKind::MaxPool2d { kernel, stride } => (Some(kernel), Some(stride), Some(0)),
        _ => (None, None, None),
    }
}

fn layer_trainable(layer: LayerRef<'_>) -> bool {
    let weight_trainable = |t: &burn::tensor::Tensor<4>| {
        // On a plain device nothing records gradients, so "frozen" has no meaning there:
        // report what the parameters would do once the module is trained.
        !t.device().is_autodiff() || t.is_require_grad()
    };
    match layer {
        LayerRef::Feature(FeatureLayer::Conv2d(conv)) => weight_trainable(&conv.weight.val()),
        LayerRef::Classifier(ClassifierLayer::Linear(linear)) => {
            let w = linear.weight.val();
            !w.device().is_autodiff() || w.is_require_grad()
        }
        _ => false,
    }
}

impl AlexNet {
    /// A torchinfo-like summary for an input of shape `[batch, channels, height, width]`,
    /// with one row per layer (`depth >= 2`), per container (`depth == 1`) or none (`0`).
    pub fn summary(&self, input: [usize; 4], depth: usize) -> Result<ModelSummary, ModelError> {
        let rows = propagate(self.config(), input)?;
        let mut layers = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            let (kernel, stride, padding) = geometry(&row.kind);
            let params = row.kind.num_params();
            let trainable = params > 0 && self.layer(index).map(layer_trainable).unwrap_or(false);
            layers.push(LayerSummary {
                index: Some(index),
                name: row.name.clone(),
                kind: row.kind.type_name().to_string(),
                detail: row.kind.detail(),
                kernel,
                stride,
                padding,
                output_shape: row.output.clone(),
                params,
                trainable,
                macs: row.macs,
                receptive_field: row.receptive_field,
            });
        }
        let total_params = layers.iter().map(|l| l.params).sum();
        let trainable_params = layers
            .iter()
            .filter(|l| l.trainable)
            .map(|l| l.params)
            .sum();
        let total_macs = layers.iter().map(|l| l.macs).sum();
        let mb = |elements: usize| elements as f64 * 4.0 / 1e6;
        let activations: usize = layers
            .iter()
            .map(|l| l.output_shape.iter().product::<usize>())
            .sum();
        let layers = match depth {
            0 => Vec::new(),
            1 => group(&layers),
            _ => layers,
        };
        Ok(ModelSummary {
            variant: self.variant().title().to_string(),
            input_shape: input,
            depth,
            layers,
            total_params,
            trainable_params,
            total_macs,
            params_mb: mb(total_params),
            input_mb: mb(input.iter().product()),
            activations_mb: mb(activations),
        })
    }
}

/// Collapses per-layer rows into one row per top-level container (`features`, `avgpool`,
/// `classifier`).
fn group(layers: &[LayerSummary]) -> Vec<LayerSummary> {
    let mut out: Vec<LayerSummary> = Vec::new();
    for layer in layers {
        let container = layer
            .name
            .split('.')
            .next()
            .unwrap_or(&layer.name)
            .to_string();
        let is_leaf = container == layer.name;
        match out.last_mut() {
            Some(last) if last.name == container => {
                last.output_shape = layer.output_shape.clone();
                last.params += layer.params;
                last.trainable |= layer.trainable;
                last.macs += layer.macs;
                last.receptive_field = layer.receptive_field;
            }
            _ => out.push(LayerSummary {
                index: if is_leaf { layer.index } else { None },
                name: container,
                kind: if is_leaf {
                    layer.kind.clone()
                } else {
                    "Sequential".into()
                },
                detail: if is_leaf {
                    layer.detail.clone()
                } else {
                    String::new()
                },
                kernel: None,
                stride: None,
                padding: None,
                ..layer.clone()
            }),
        }
    }
    out
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape_str(shape: &[usize]) -> String {
    format!("{shape:?}")
}

impl ModelSummary {
    /// The summary as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A text diagram of the network: one arrow per layer with its output shape.
    pub fn diagram(&self) -> String {
        let mut out = format!("{}\ninput {}\n", self.variant, shape_str(&self.input_shape));
        for layer in &self.layers {
            let geometry = match (layer.kernel, layer.stride, layer.padding) {
                (Some(k), Some(s), Some(p)) => format!(" {k}x{k}/{s} pad {p}"),
                _ => String::new(),
            };
            let detail = if layer.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", layer.detail)
            };
            out.push_str(&format!(
                "  -> {} {}{}{} -> {}\n",
                layer.name,
                layer.kind,
                detail,
                geometry,
                shape_str(&layer.output_shape)
            ));
        }
        if let Some(last) = self.layers.last() {
            out.push_str(&format!("output {}\n", shape_str(&last.output_shape)));
        }
        out
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = [
            "#",
            "Layer",
            "Type",
            "Details",
            "K/S/P",
            "Output shape",
            "Params",
            "Train",
            "MACs",
            "RF size/jump/start",
        ];
        let rows: Vec<[String; 10]> = self
            .layers
            .iter()
            .map(|l| {
                [
                    l.index.map(|i| i.to_string()).unwrap_or_default(),
                    l.name.clone(),
                    l.kind.clone(),
                    l.detail.clone(),
                    match (l.kernel, l.stride, l.padding) {
                        (Some(k), Some(s), Some(p)) => format!("{k}/{s}/{p}"),
                        _ => "-".into(),
                    },
                    shape_str(&l.output_shape),
                    thousands(l.params as u64),
                    if l.params == 0 {
                        "-".into()
                    } else if l.trainable {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    thousands(l.macs),
                    l.receptive_field
                        .map(|r| format!("{}/{}/{}", r.size, r.jump, r.start))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                // Numbers read best right-aligned.
                if matches!(i, 0 | 6 | 8) {
                    text.push_str(&format!("{cell:>w$}"));
                } else {
                    text.push_str(&format!("{cell:<w$}"));
                }
            }
            writeln!(f, "{}", text.trim_end())
        };
        writeln!(
            f,
            "{} — input {}",
            self.variant,
            shape_str(&self.input_shape)
        )?;
        writeln!(f, "{}", "=".repeat(total))?;
        line(f, &header.map(String::from)[..])?;
        writeln!(f, "{}", "-".repeat(total))?;
        for row in &rows {
            line(f, &row[..])?;
        }
        writeln!(f, "{}", "=".repeat(total))?;
        writeln!(f, "Total params: {}", thousands(self.total_params as u64))?;
        writeln!(
            f,
            "Trainable params: {}",
            thousands(self.trainable_params as u64)
        )?;
        writeln!(
            f,
            "Non-trainable params: {}",
            thousands((self.total_params - self.trainable_params) as u64)
        )?;
        writeln!(f, "Total MACs per image: {}", thousands(self.total_macs))?;
        writeln!(f, "Input size (MB): {:.2}", self.input_mb)?;
        writeln!(f, "Activations size (MB): {:.2}", self.activations_mb)?;
        writeln!(f, "Params size (MB): {:.2}", self.params_mb)?;
        write!(f, "{}", "=".repeat(total))
    }
}
