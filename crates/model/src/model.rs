//! The AlexNet family: configuration, layer specifications and the burn module.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Linear, LinearConfig, LocalResponseNorm, LocalResponseNormConfig,
    PaddingConfig2d, Relu,
};
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::error::ModelError;

/// Which member of the AlexNet family a configuration builds.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Variant {
    /// AlexNet scaled down for 32x32 CIFAR images (3x3 convolutions, 2x2 pools, 1024-wide
    /// classifier); 7,506,762 parameters with 10 classes.
    Cifar,
    /// `torchvision.models.alexnet`: 64-192-384-256-256 convolutions, adaptive average pool to
    /// 6x6; 61,100,840 parameters with 1000 classes.
    Torchvision,
    /// The network of Krizhevsky et al. (2012): 96-256-384-384-256 convolutions with local
    /// response normalisation and, optionally, the two-GPU grouped convolutions; 227x227 input.
    Paper,
}

/// How fresh weights are drawn.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum WeightInit {
    /// PyTorch's default (`kaiming_uniform(a=sqrt(5))`, what torchvision's AlexNet uses): small
    /// weights, so an AlexNet without normalisation layers starts slowly.
    Torch,
    /// He initialisation: convolutions `kaiming_normal(mode="fan_out", nonlinearity="relu")` as
    /// torchvision's VGG and ResNet use it, linear layers `kaiming_normal(mode="fan_in",
    /// nonlinearity="relu")`, biases zero. Keeps activations from vanishing through the ReLU stack, so training starts
    /// learning within the first steps.
    Kaiming,
}

impl Variant {
    /// A human-readable name, used in error messages and summaries.
    pub fn title(&self) -> &'static str {
        match self {
            Variant::Cifar => "CIFAR AlexNet",
            Variant::Torchvision => "torchvision AlexNet",
            Variant::Paper => "AlexNet (2012 paper)",
        }
    }

    /// The square input size the variant is designed for.
    pub fn nominal_input(&self) -> usize {
        match self {
            Variant::Cifar => 32,
            Variant::Torchvision => 224,
            Variant::Paper => 227,
        }
    }
}

/// Configuration of an [`AlexNet`].
#[derive(Config, Debug)]
pub struct AlexNetConfig {
    /// Which member of the family to build.
    pub variant: Variant,
    /// Number of output classes (ImageNet's 1000 unless set; [`cifar`](Self::cifar) sets 10).
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Dropout probability of the two dropout layers in the classifier.
    #[config(default = 0.5)]
    pub dropout: f64,
    /// Paper variant only: split conv2, conv4 and conv5 into two groups as the original
    /// two-GPU network did. Ignored by the other variants.
    #[config(default = true)]
    pub grouped: bool,
    /// How fresh weights are drawn (loaded weights replace them).
    #[config(default = "WeightInit::Torch")]
    pub init: WeightInit,
}

impl AlexNetConfig {
    /// CIFAR AlexNet with 10 classes.
    pub fn cifar() -> Self {
        Self::new(Variant::Cifar).with_num_classes(10)
    }

    /// torchvision's AlexNet with 1000 classes.
    pub fn torchvision() -> Self {
        Self::new(Variant::Torchvision)
    }

    /// The 2012 paper's AlexNet with 1000 classes, grouped or not.
    pub fn paper(grouped: bool) -> Self {
        Self::new(Variant::Paper).with_grouped(grouped)
    }

    /// The layers of the network in execution order, named as torchvision names them.
    ///
    /// This is the single description the module, the summary and the weight loader are built
    /// from, so they cannot disagree about the architecture.
    pub fn layer_specs(&self) -> Vec<LayerSpec> {
        use LayerKind as K;
        let conv = |in_channels, out_channels, kernel, stride, padding, groups| K::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            groups,
        };
        let pool = |kernel, stride| K::MaxPool2d { kernel, stride };
        let lrn = K::LocalResponseNorm {
            size: 5,
            // PyTorch and burn divide alpha by the window size; the paper's 1e-4 is per element.
            alpha: 5e-4,
            beta: 0.75,
            k: 2.0,
        };
        let groups = if self.grouped { 2 } else { 1 };
        let (features, avgpool, flat, hidden) = match self.variant {
            Variant::Cifar => (
                vec![
                    conv(3, 64, 3, 1, 1, 1),
                    K::Relu,
                    pool(2, 2),
                    conv(64, 192, 3, 1, 1, 1),
                    K::Relu,
                    pool(2, 2),
                    conv(192, 384, 3, 1, 1, 1),
                    K::Relu,
                    conv(384, 256, 3, 1, 1, 1),
                    K::Relu,
                    conv(256, 256, 3, 1, 1, 1),
                    K::Relu,
                    pool(2, 2),
                ],
                false,
                256 * 4 * 4,
                1024,
            ),
            Variant::Torchvision => (
                vec![
                    conv(3, 64, 11, 4, 2, 1),
                    K::Relu,
                    pool(3, 2),
                    conv(64, 192, 5, 1, 2, 1),
                    K::Relu,
                    pool(3, 2),
                    conv(192, 384, 3, 1, 1, 1),
                    K::Relu,
                    conv(384, 256, 3, 1, 1, 1),
                    K::Relu,
                    conv(256, 256, 3, 1, 1, 1),
                    K::Relu,
                    pool(3, 2),
                ],
                true,
                256 * 6 * 6,
                4096,
            ),
            Variant::Paper => (
                vec![
                    conv(3, 96, 11, 4, 0, 1),
                    K::Relu,
                    lrn,
                    pool(3, 2),
                    conv(96, 256, 5, 1, 2, groups),
                    K::Relu,
                    lrn,
                    pool(3, 2),
                    conv(256, 384, 3, 1, 1, 1),
                    K::Relu,
                    conv(384, 384, 3, 1, 1, groups),
                    K::Relu,
                    conv(384, 256, 3, 1, 1, groups),
                    K::Relu,
                    pool(3, 2),
                ],
                false,
                256 * 6 * 6,
                4096,
            ),
        };
        let classifier = vec![
            K::Dropout { p: self.dropout },
            K::Linear {
                in_features: flat,
                out_features: hidden,
            },
            K::Relu,
            K::Dropout { p: self.dropout },
            K::Linear {
                in_features: hidden,
                out_features: hidden,
            },
            K::Relu,
            K::Linear {
                in_features: hidden,
                out_features: self.num_classes,
            },
        ];
        let mut specs: Vec<LayerSpec> = features
            .into_iter()
            .enumerate()
            .map(|(i, kind)| LayerSpec {
                name: format!("features.{i}"),
                kind,
            })
            .collect();
        if avgpool {
            specs.push(LayerSpec {
                name: "avgpool".into(),
                kind: K::AdaptiveAvgPool2d { output: 6 },
            });
        }
        specs.extend(
            classifier
                .into_iter()
                .enumerate()
                .map(|(i, kind)| LayerSpec {
                    name: format!("classifier.{i}"),
                    kind,
                }),
        );
        specs
    }

    /// Builds the network on `device` with burn's default initialisation.
    pub fn init(&self, device: &Device) -> AlexNet {
        let mut features = Vec::new();
        let mut avgpool = None;
        let mut classifier = Vec::new();
        for spec in self.layer_specs() {
            match spec.stage() {
                Stage::Features => {
                    features.push(FeatureLayer::from_kind(&spec.kind, self.init, device))
                }
                Stage::AvgPool => avgpool = Some(AdaptiveAvgPool2dConfig::new([6, 6]).init()),
                Stage::Classifier => {
                    classifier.push(ClassifierLayer::from_kind(&spec.kind, self.init, device))
                }
            }
        }
        AlexNet {
            features,
            avgpool,
            classifier,
            config: self.clone(),
        }
    }
}

/// What a layer computes, with the hyper-parameters that determine shapes, parameters and
/// MACs. Kernels, strides and paddings are square in the whole family.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum LayerKind {
    /// 2-D convolution (with bias).
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        groups: usize,
    },
    /// Rectified linear unit.
    Relu,
    /// Max pooling without padding.
    MaxPool2d { kernel: usize, stride: usize },
    /// Local response normalisation across channels, PyTorch's convention.
    LocalResponseNorm {
        size: usize,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    /// Adaptive average pooling to a square output.
    AdaptiveAvgPool2d { output: usize },
    /// Dropout.
    Dropout { p: f64 },
    /// Fully connected layer (with bias).
    Linear {
        in_features: usize,
        out_features: usize,
    },
}

impl LayerKind {
    /// The PyTorch class name of the layer.
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerKind::Conv2d { .. } => "Conv2d",
            LayerKind::Relu => "ReLU",
            LayerKind::MaxPool2d { .. } => "MaxPool2d",
            LayerKind::LocalResponseNorm { .. } => "LocalResponseNorm",
            LayerKind::AdaptiveAvgPool2d { .. } => "AdaptiveAvgPool2d",
            LayerKind::Dropout { .. } => "Dropout",
            LayerKind::Linear { .. } => "Linear",
        }
    }

    /// The hyper-parameters not covered by kernel/stride/padding, in a few words
    /// (`3→64`, `groups 2`, `p=0.5`).
    pub fn detail(&self) -> String {
        match *self {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                groups: 1,
                ..
            } => {
                format!("{in_channels}→{out_channels}")
            }
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                groups,
                ..
            } => {
                format!("{in_channels}→{out_channels}, groups {groups}")
            }
            LayerKind::Linear {
                in_features,
                out_features,
            } => format!("{in_features}→{out_features}"),
            LayerKind::LocalResponseNorm {
                size,
                alpha,
                beta,
                k,
            } => {
                format!("size {size}, α {alpha}, β {beta}, k {k}")
            }
            LayerKind::AdaptiveAvgPool2d { output } => format!("→{output}x{output}"),
            LayerKind::Dropout { p } => format!("p={p}"),
            LayerKind::Relu | LayerKind::MaxPool2d { .. } => String::new(),
        }
    }

    /// Parameter tensors in PyTorch's layout, as `(suffix, shape)`.
    pub fn torch_parameters(&self) -> Vec<(&'static str, Vec<usize>)> {
        match *self {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel,
                groups,
                ..
            } => vec![
                (
                    "weight",
                    vec![out_channels, in_channels / groups, kernel, kernel],
                ),
                ("bias", vec![out_channels]),
            ],
            LayerKind::Linear {
                in_features,
                out_features,
            } => vec![
                ("weight", vec![out_features, in_features]),
                ("bias", vec![out_features]),
            ],
            _ => Vec::new(),
        }
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.torch_parameters()
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum()
    }
}

/// One named layer of the network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSpec {
    /// torchvision's name: `features.3`, `avgpool`, `classifier.6`.
    pub name: String,
    /// What the layer computes.
    pub kind: LayerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Features,
    AvgPool,
    Classifier,
}

impl LayerSpec {
    pub(crate) fn stage(&self) -> Stage {
        if self.name.starts_with("features.") {
            Stage::Features
        } else if self.name == "avgpool" {
            Stage::AvgPool
        } else {
            Stage::Classifier
        }
    }
}

/// A layer of the convolutional part (`features`).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum FeatureLayer {
    /// Convolution.
    Conv2d(Conv2d),
    /// ReLU.
    Relu(Relu),
    /// Max pooling.
    MaxPool2d(MaxPool2d),
    /// Local response normalisation (paper variant).
    LocalResponseNorm(LocalResponseNorm),
}

impl FeatureLayer {
    fn from_kind(kind: &LayerKind, init: WeightInit, device: &Device) -> Self {
        match *kind {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                groups,
            } => {
                let mut config = Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
                    .with_stride([stride, stride])
                    .with_padding(PaddingConfig2d::Explicit(
                        padding, padding, padding, padding,
                    ))
                    .with_groups(groups);
                if init == WeightInit::Kaiming {
                    config = config.with_initializer(Initializer::KaimingNormal {
                        gain: std::f64::consts::SQRT_2,
                        fan_out_only: true,
                    });
                }
                let mut conv = config.init(device);
                if init == WeightInit::Kaiming {
                    conv.bias = conv.bias.map(zero_bias);
                }
                FeatureLayer::Conv2d(conv)
            }
            LayerKind::MaxPool2d { kernel, stride } => FeatureLayer::MaxPool2d(
                MaxPool2dConfig::new([kernel, kernel])
                    .with_strides([stride, stride])
                    .init(),
            ),
            LayerKind::LocalResponseNorm {
                size,
                alpha,
                beta,
                k,
            } => FeatureLayer::LocalResponseNorm(
                LocalResponseNormConfig::new(size)
                    .with_alpha(alpha)
                    .with_beta(beta)
                    .with_k(k)
                    .init(),
            ),
            // The specs put only these kinds in `features`.
            _ => FeatureLayer::Relu(Relu::new()),
        }
    }

    /// Applies the layer.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            FeatureLayer::Conv2d(conv) => conv.forward(x),
            FeatureLayer::Relu(relu) => relu.forward(x),
            FeatureLayer::MaxPool2d(pool) => pool.forward(x),
            FeatureLayer::LocalResponseNorm(lrn) => lrn.forward(x),
        }
    }
}

/// A bias set to zero that stays trainable: `zeros_like` alone gives a tensor that autodiff
/// does not track, so the bias would never get a gradient.
fn zero_bias(bias: Param<Tensor<1>>) -> Param<Tensor<1>> {
    bias.map(|t| {
        let trainable = t.is_require_grad();
        t.zeros_like().set_require_grad(trainable)
    })
}

/// A layer of the fully connected part (`classifier`).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ClassifierLayer {
    /// Dropout.
    Dropout(Dropout),
    /// Fully connected layer.
    Linear(Linear),
    /// ReLU.
    Relu(Relu),
}

impl ClassifierLayer {
    fn from_kind(kind: &LayerKind, init: WeightInit, device: &Device) -> Self {
        match *kind {
            LayerKind::Dropout { p } => ClassifierLayer::Dropout(DropoutConfig::new(p).init()),
            LayerKind::Linear {
                in_features,
                out_features,
            } => {
                let mut config = LinearConfig::new(in_features, out_features);
                if init == WeightInit::Kaiming {
                    config = config.with_initializer(Initializer::KaimingNormal {
                        gain: std::f64::consts::SQRT_2,
                        fan_out_only: false,
                    });
                }
                let mut linear = config.init(device);
                if init == WeightInit::Kaiming {
                    linear.bias = linear.bias.map(zero_bias);
                }
                ClassifierLayer::Linear(linear)
            }
            _ => ClassifierLayer::Relu(Relu::new()),
        }
    }

    /// Applies the layer.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            ClassifierLayer::Dropout(dropout) => dropout.forward(x),
            ClassifierLayer::Linear(linear) => linear.forward(x),
            ClassifierLayer::Relu(relu) => relu.forward(x),
        }
    }
}

/// AlexNet with torchvision's parameter names (`features.0.weight`, `classifier.6.bias`, ...).
///
/// Build it with [`AlexNetConfig::init`]. [`forward`](AlexNet::forward) maps
/// `[batch, 3, H, W]` images to `[batch, num_classes]` logits; the introspection methods run
/// parts of the network by layer name or index.
#[derive(Module, Debug)]
pub struct AlexNet {
    /// The convolutional part, indexed as torchvision's `features` `Sequential`.
    pub features: Vec<FeatureLayer>,
    /// torchvision's adaptive average pool (torchvision variant only).
    pub avgpool: Option<AdaptiveAvgPool2d>,
    /// The fully connected part, indexed as torchvision's `classifier` `Sequential`.
    pub classifier: Vec<ClassifierLayer>,
    #[module(skip)]
    config: AlexNetConfig,
}

/// The output of a layer: a feature map before the flatten, a matrix after it.
#[derive(Debug, Clone)]
pub enum Activation {
    /// `[batch, channels, height, width]`, from `features.*` and `avgpool`.
    Spatial(Tensor<4>),
    /// `[batch, features]`, from `classifier.*`.
    Flat(Tensor<2>),
}

impl Activation {
    /// The shape of the activation.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Activation::Spatial(t) => t.dims().to_vec(),
            Activation::Flat(t) => t.dims().to_vec(),
        }
    }

    /// The feature map, if this activation is one.
    pub fn spatial(self) -> Option<Tensor<4>> {
        match self {
            Activation::Spatial(t) => Some(t),
            Activation::Flat(_) => None,
        }
    }

    /// The activation as a `[batch, features]` matrix (feature maps are flattened).
    pub fn flat(self) -> Tensor<2> {
        match self {
            Activation::Spatial(t) => t.flatten(1, 3),
            Activation::Flat(t) => t,
        }
    }
}

/// A layer named by torchvision name (`"features.3"`) or by position in
/// [`AlexNet::layer_names`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerId {
    /// torchvision name.
    Name(String),
    /// Position in execution order.
    Index(usize),
}

impl From<&str> for LayerId {
    fn from(name: &str) -> Self {
        LayerId::Name(name.to_string())
    }
}

impl From<String> for LayerId {
    fn from(name: String) -> Self {
        LayerId::Name(name)
    }
}

impl From<usize> for LayerId {
    fn from(index: usize) -> Self {
        LayerId::Index(index)
    }
}

/// A borrowed layer of an [`AlexNet`].
#[derive(Debug, Clone, Copy)]
pub enum LayerRef<'a> {
    /// A layer of `features`.
    Feature(&'a FeatureLayer),
    /// The adaptive average pool.
    AvgPool(&'a AdaptiveAvgPool2d),
    /// A layer of `classifier`.
    Classifier(&'a ClassifierLayer),
}

/// Activations recorded by [`AlexNet::capture`].
#[derive(Debug, Clone)]
pub struct Captured {
    /// The logits of the full forward pass.
    pub logits: Tensor<2>,
    /// The requested layers' outputs, as `(name, activation)` in execution order.
    pub activations: Vec<(String, Activation)>,
}

impl Captured {
    /// The activation of the layer called `name`, if it was captured.
    pub fn get(&self, name: &str) -> Option<&Activation> {
        self.activations
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }
}

impl AlexNet {
    /// The configuration the network was built from.
    pub fn config(&self) -> &AlexNetConfig {
        &self.config
    }

    /// The variant of the network.
    pub fn variant(&self) -> Variant {
        self.config.variant
    }

    /// The layer descriptions in execution order (see [`AlexNetConfig::layer_specs`]).
    pub fn layer_specs(&self) -> Vec<LayerSpec> {
        self.config.layer_specs()
    }

    /// All layer names in execution order; a layer's index is its position here.
    pub fn layer_names(&self) -> Vec<String> {
        self.layer_specs().into_iter().map(|s| s.name).collect()
    }

    /// Resolves a name or index to `(index, spec)`.
    pub fn resolve(&self, id: impl Into<LayerId>) -> Result<(usize, LayerSpec), ModelError> {
        let specs = self.layer_specs();
        match id.into() {
            LayerId::Index(index) => match specs.get(index) {
                Some(spec) => Ok((index, spec.clone())),
                None => Err(ModelError::LayerIndexOutOfRange {
                    index,
                    count: specs.len(),
                    variant: self.variant(),
                }),
            },
            LayerId::Name(name) => specs
                .iter()
                .position(|s| s.name == name)
                .map(|i| (i, specs[i].clone()))
                .ok_or_else(|| ModelError::UnknownLayer {
                    name,
                    variant: self.variant(),
                    available: specs
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
        }
    }

    /// The layer with the given torchvision name or index.
    pub fn layer(&self, id: impl Into<LayerId>) -> Result<LayerRef<'_>, ModelError> {
        let (index, spec) = self.resolve(id)?;
        let missing = || ModelError::UnknownLayer {
            name: spec.name.clone(),
            variant: self.variant(),
            available: String::new(),
        };
        let n_features = self.features.len();
        match spec.stage() {
            Stage::Features => self
                .features
                .get(index)
                .map(LayerRef::Feature)
                .ok_or_else(missing),
            Stage::AvgPool => self
                .avgpool
                .as_ref()
                .map(LayerRef::AvgPool)
                .ok_or_else(missing),
            Stage::Classifier => {
                let offset = n_features + usize::from(self.avgpool.is_some());
                self.classifier
                    .get(index - offset)
                    .map(LayerRef::Classifier)
                    .ok_or_else(missing)
            }
        }
    }

    /// The weight of a convolution layer, in PyTorch's layout `[out, in/groups, kH, kW]`.
    pub fn conv_weight(&self, id: impl Into<LayerId>) -> Result<Tensor<4>, ModelError> {
        let (_, spec) = self.resolve(id)?;
        match self.layer(spec.name.as_str())? {
            LayerRef::Feature(FeatureLayer::Conv2d(conv)) => Ok(conv.weight.val()),
            _ => Err(ModelError::NotAConvolution {
                layer: spec.name,
                kind: spec.kind.type_name(),
            }),
        }
    }

    /// Checks that `[batch, channels, height, width]` can go through this network.
    pub fn check_input(&self, dims: [usize; 4]) -> Result<(), ModelError> {
        crate::summary::propagate(&self.config, dims).map(|_| ())
    }

    /// Logits for a `[batch, 3, H, W]` batch.
    ///
    /// # Panics
    /// burn panics if the input does not fit the network; [`try_forward`](Self::try_forward)
    /// checks first and returns a [`ModelError`] instead.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.features(x);
        let x = match &self.avgpool {
            Some(pool) => pool.forward(x),
            None => x,
        };
        self.classifier
            .iter()
            .fold(x.flatten(1, 3), |x, layer| layer.forward(x))
    }

    /// [`forward`](Self::forward) after checking the input shape.
    pub fn try_forward(&self, x: Tensor<4>) -> Result<Tensor<2>, ModelError> {
        self.check_input(x.dims())?;
        Ok(self.forward(x))
    }

    /// The output of the convolutional part (`model.features(x)` in PyTorch).
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        self.features.iter().fold(x, |x, layer| layer.forward(x))
    }

    /// Runs the network up to and including the given layer and returns its output.
    pub fn forward_until(
        &self,
        x: Tensor<4>,
        id: impl Into<LayerId>,
    ) -> Result<Activation, ModelError> {
        let (index, _) = self.resolve(id)?;
        let mut out = None;
        self.run(x, index, |i, _, act| {
            if i == index {
                out = Some(act.clone());
            }
        })?;
        out.ok_or(ModelError::LayerIndexOutOfRange {
            index,
            count: self.layer_names().len(),
            variant: self.variant(),
        })
    }

    /// One forward pass that also records the outputs of the chosen layers.
    pub fn capture<I, L>(&self, x: Tensor<4>, layers: I) -> Result<Captured, ModelError>
    where
        I: IntoIterator<Item = L>,
        L: Into<LayerId>,
    {
        let wanted = layers
            .into_iter()
            .map(|id| self.resolve(id).map(|(i, _)| i))
            .collect::<Result<Vec<_>, _>>()?;
        let last = self.layer_names().len().saturating_sub(1);
        let mut activations = Vec::new();
        let logits = self.run(x, last, |i, name, act| {
            if wanted.contains(&i) {
                activations.push((name.to_string(), act.clone()));
            }
        })?;
        Ok(Captured {
            logits: logits.flat(),
            activations,
        })
    }

    /// Runs layers `0..=until`, calling `observe(index, name, output)` after each.
    fn run(
        &self,
        x: Tensor<4>,
        until: usize,
        mut observe: impl FnMut(usize, &str, &Activation),
    ) -> Result<Activation, ModelError> {
        self.check_input(x.dims())?;
        let names = self.layer_names();
        let mut act = Activation::Spatial(x);
        let mut classifier = self.classifier.iter();
        let mut features = self.features.iter();
        for (i, name) in names.iter().enumerate().take(until + 1) {
            act = match act {
                Activation::Spatial(t) => {
                    if let Some(layer) = features.next() {
                        Activation::Spatial(layer.forward(t))
                    } else if name == "avgpool"
                        && let Some(pool) = &self.avgpool
                    {
                        Activation::Spatial(pool.forward(t))
                    } else {
                        Activation::Flat(self.classifier_step(&mut classifier, t.flatten(1, 3)))
                    }
                }
                Activation::Flat(t) => Activation::Flat(self.classifier_step(&mut classifier, t)),
            };
            observe(i, name, &act);
        }
        Ok(act)
    }

    fn classifier_step<'a>(
        &self,
        layers: &mut impl Iterator<Item = &'a ClassifierLayer>,
        x: Tensor<2>,
    ) -> Tensor<2> {
        match layers.next() {
            Some(layer) => layer.forward(x),
            None => x,
        }
    }
}
