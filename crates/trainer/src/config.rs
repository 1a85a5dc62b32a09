//! The run configuration: every knob of a training run in one nested struct, saved in the run
//! directory so that a run can be repeated from that file.
//!
//! Each knob lives in exactly one section (`data`, `model`, `optim`, `schedule`, `augment`,
//! `mix`, `dist`); the command line's flags are named after the fields they set (see `cli.rs`),
//! and [`TrainConfig::resolve`] fills what depends on other knobs (the default pipelines, the
//! dropout of a variant) so that `config.json` states the whole run.

use std::path::PathBuf;

use kindling_augment::Transform;
use serde::{Deserialize, Serialize};

use crate::recipes;

/// A configuration value outside its accepted range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid {field} = {value}: expected {expected}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// The optimizers the trainer offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Adamw,
}

/// How the learning rate changes over the run (after the linear warmup, except `onecycle`,
/// which has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Cosine decay to zero (PyTorch `CosineAnnealingLR` with `eta_min = 0`).
    Cosine,
    /// `lr * gamma^(epoch / step_size)` (PyTorch `StepLR`).
    Step,
    /// `lr * gamma^(milestones passed)` (PyTorch `MultiStepLR`).
    Multistep,
    /// PyTorch `OneCycleLR` defaults: cosine from `lr / 25` up to `lr` over the first 30% of
    /// the steps, then cosine down to `lr / 25 / 1e4`.
    Onecycle,
    Constant,
}

/// Which data a run trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// The procedural built-in dataset (offline, no files).
    Builtin,
    /// MNIST IDX files in `data_dir`.
    Mnist,
    /// Fashion-MNIST IDX files in `data_dir` (default: Debian's
    /// `/usr/share/datasets/fashion-mnist`, package `dataset-fashion-mnist`).
    FashionMnist,
    /// CIFAR-10's binary files in `data_dir/cifar-10-batches-bin` (default `data_dir`:
    /// `data/cifar10`); `--download` fetches them.
    Cifar10,
    /// An image folder in `data_dir`: one subfolder per class of PNG/JPEG files (torchvision's
    /// `ImageFolder`), either with `train/` and `val/` inside or split by the seed.
    Folder,
}

/// The AlexNet variants a run can train, by the names `kindling summary` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelName {
    /// torchvision's AlexNet (224x224 input, adaptive pool).
    Alexnet,
    /// The 2012 paper's network (227x227 input, grouped convolutions, LRN).
    AlexnetPaper,
    /// AlexNet for 32x32 images.
    Cifar,
}

impl ModelName {
    /// The model crate's configuration of this variant with `num_classes` outputs.
    pub fn config(self, num_classes: usize) -> kindling_model::AlexNetConfig {
        let config = match self {
            ModelName::Alexnet => kindling_model::AlexNetConfig::torchvision(),
            ModelName::AlexnetPaper => kindling_model::AlexNetConfig::paper(true),
            ModelName::Cifar => kindling_model::AlexNetConfig::cifar(),
        };
        config.with_num_classes(num_classes)
    }

    /// The square input side the variant is designed for.
    pub fn nominal_input(self) -> usize {
        self.config(1).variant.nominal_input()
    }
}

/// Parameters a fine-tuning run leaves untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Freeze {
    /// The convolutional part (`features.*`): only the classifier trains.
    Features,
}

/// How the ranks of a data-parallel run talk to each other (see `kindling-dist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// One thread per device of `device` in this process (any backends, mixed allowed).
    Threads,
    /// One process per rank, started by `mpirun` (Open MPI); each process takes the device of
    /// its local rank from `device`. Needs the `mpi` feature.
    Mpi,
    /// One process per rank from a torchrun-style environment (`RANK`, `WORLD_SIZE`,
    /// `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), over TCP: any backend, any machines.
    Tcp,
    /// Like `tcp`, with gradients all-reduced by NCCL between CUDA GPUs. Needs the `nccl`
    /// feature (and so a CUDA build).
    Nccl,
}

/// Where the training images are augmented (see `kindling_augment::batched`).
pub use kindling_augment::batched::AugmentOn;

/// The data: which dataset, how much of it, how it is batched and loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// The folder of the data (IDX files, CIFAR-10, an image folder).
    pub data_dir: Option<PathBuf>,
    /// Samples used for training and for validation: the whole splits unless set (the built-in
    /// dataset, which has no fixed size, makes 3,000 and 500). IDX and CIFAR-10 take the first
    /// samples of a split; image folders a seeded shuffle, so every class is represented.
    pub train_size: Option<usize>,
    pub val_size: Option<usize>,
    /// Images per batch on each rank.
    pub batch_size: usize,
    /// Loader threads decoding and augmenting images (default: the machine's cores).
    pub workers: Option<usize>,
    /// Count and list undecodable images in `skipped_images.txt` instead of failing.
    pub skip_bad_images: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Builtin,
            data_dir: None,
            train_size: None,
            val_size: None,
            batch_size: 32,
            workers: None,
            skip_bad_images: false,
        }
    }
}

/// The network: which variant, its input, dropout and starting weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub name: ModelName,
    /// The square input side (default: the variant's own, 32, 224 or 227).
    pub input_size: Option<usize>,
    /// Dropout of the classifier (default: 0 for `cifar`, torchvision's 0.5 for the others).
    pub dropout: Option<f64>,
    /// torchvision-format weights (`.pth`, `.safetensors`) to start from; the classifier's
    /// last layer is replaced when the class count differs.
    pub pretrained: Option<PathBuf>,
    pub freeze: Option<Freeze>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: ModelName::Cifar,
            input_size: None,
            dropout: None,
            pretrained: None,
            freeze: None,
        }
    }
}

/// The optimizer and what shapes its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// `sgd` (PyTorch semantics: momentum, dampening 0, optional Nesterov, L2 weight decay) or
    /// `adamw` (decoupled weight decay).
    pub optimizer: Optimizer,
    /// Peak learning rate (default: 0.02 for `cifar`, measured on the built-in data; 0.001 for
    /// the 224 models, torchvision's 0.01 at batch 256 scaled down to batches of 16-32, which
    /// this network without normalisation layers needs to not diverge).
    pub lr: Option<f64>,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    /// Batches per optimizer step (gradient accumulation): the effective batch is
    /// `batch_size * accumulate`.
    pub accumulate: usize,
    /// Clip the L2 norm of all gradients together to this value (PyTorch `clip_grad_norm_`);
    /// off if unset.
    pub clip_grad_norm: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            optimizer: Optimizer::Sgd,
            lr: None,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: true,
            accumulate: 1,
            clip_grad_norm: None,
        }
    }
}

/// The learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub kind: Schedule,
    pub warmup_epochs: usize,
    /// `step`: epochs between decays.
    pub step_size: usize,
    /// `multistep`: the epochs at which the rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    /// `step` and `multistep`: the decay factor.
    pub gamma: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: Schedule::Cosine,
            warmup_epochs: 1,
            step_size: 2,
            milestones: Vec::new(),
            gamma: 0.1,
        }
    }
}

/// The augmentation pipelines and where they run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Off: training images go through the evaluation pipeline.
    pub enabled: bool,
    /// `cpu`: per image on loader threads; `device`: on the batch tensor on the training
    /// device.
    pub on: AugmentOn,
    /// The training pipeline (default: torchvision's reference recipe for the input size).
    pub train_pipeline: Option<Transform>,
    /// The evaluation pipeline (default: `Resize` + `CenterCrop` for 224-class inputs).
    pub eval_pipeline: Option<Transform>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            on: AugmentOn::Cpu,
            train_pipeline: None,
            eval_pipeline: None,
        }
    }
}

/// MixUp, CutMix and label smoothing: the soft targets of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixConfig {
    /// MixUp with `lambda ~ Beta(alpha, alpha)` (torchvision's default alpha is 1); off if unset.
    pub mixup_alpha: Option<f64>,
    /// CutMix with `lambda ~ Beta(alpha, alpha)`; off if unset.
    pub cutmix_alpha: Option<f64>,
    /// Probability that a batch is mixed at all.
    pub prob: f64,
    /// With both MixUp and CutMix on: the probability of CutMix for a mixed batch.
    pub switch_prob: f64,
    pub label_smoothing: f32,
}

impl Default for MixConfig {
    fn default() -> Self {
        Self {
            mixup_alpha: None,
            cutmix_alpha: None,
            prob: 1.0,
            switch_prob: 0.5,
            label_smoothing: 0.0,
        }
    }
}

/// Where the run computes and how its ranks talk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistConfig {
    /// `flex` (or `cpu`), `wgpu`, `wgpu:cpu`, `cuda:0`, ...; a comma-separated list
    /// (`flex,flex`, `cuda:0,1`) trains data-parallel, one rank per device. `batch_size` is
    /// per rank.
    pub device: String,
    /// `threads` (the devices of `device` in this process), or one process per rank: `mpi`,
    /// `tcp`, `nccl`.
    pub engine: Engine,
    /// Seconds a rank waits for the others in a collective before failing.
    pub timeout_secs: u64,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self {
            device: "flex".into(),
            engine: Engine::Threads,
            timeout_secs: 300,
        }
    }
}

/// Everything that decides a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seeds the dataset, the shuffling, the augmentation and the weight initialisation.
    pub seed: u64,
    pub epochs: usize,
    /// Per-epoch checkpoints kept besides `last.ckpt` and `best.ckpt`.
    pub keep_checkpoints: usize,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    pub augment: AugmentConfig,
    pub mix: MixConfig,
    pub dist: DistConfig,
}

impl Default for TrainConfig {
    /// A run of about 5 minutes on two CPU cores (flex) that reached 94.2% validation accuracy
    /// on the built-in dataset (seed 0): a CIFAR AlexNet with He initialisation, SGD with
    /// Nesterov momentum, batch 32.
    fn default() -> Self {
        Self {
            seed: 0,
            epochs: 6,
            keep_checkpoints: 2,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            optim: OptimConfig::default(),
            schedule: ScheduleConfig::default(),
            augment: AugmentConfig::default(),
            mix: MixConfig::default(),
            dist: DistConfig::default(),
        }
    }
}

/// The size of the built-in dataset's splits when none is given.
pub const BUILTIN_SIZES: (usize, usize) = (3000, 500);

/// The settings a resumed run may change: how long it runs and where, not what it computes.
pub const RESUMABLE: [&str; 6] = [
    "epochs",
    "keep_checkpoints",
    "data.workers",
    "dist.device",
    "dist.timeout_secs",
    "data.data_dir",
];

impl TrainConfig {
    /// The input side of the model.
    pub fn input_size(&self) -> usize {
        self.model
            .input_size
            .unwrap_or_else(|| self.model.name.nominal_input())
    }

    /// The classifier's dropout.
    pub fn dropout(&self) -> f64 {
        self.model.dropout.unwrap_or(match self.model.name {
            ModelName::Cifar => 0.0,
            ModelName::Alexnet | ModelName::AlexnetPaper => 0.5,
        })
    }

    /// The peak learning rate.
    pub fn lr(&self) -> f64 {
        self.optim.lr.unwrap_or(match self.model.name {
            ModelName::Cifar => 0.02,
            ModelName::Alexnet | ModelName::AlexnetPaper => 0.001,
        })
    }

    /// The config with everything that depends on other knobs filled in: the default
    /// pipelines, the input size, the dropout and the learning rate. Resolving a resolved config changes
    /// nothing.
    pub fn resolve(mut self) -> Self {
        self.model.dropout = Some(self.dropout());
        self.optim.lr = Some(self.lr());
        self.model.input_size = Some(self.input_size());
        let side = self.input_size();
        // Image folders hold images of any size: the small-input recipes first resize them.
        let folder = self.data.dataset == DatasetKind::Folder;
        let eval = self
            .augment
            .eval_pipeline
            .take()
            .unwrap_or_else(|| recipes::eval(side, folder));
        let train = self.augment.train_pipeline.take().unwrap_or_else(|| {
            if self.augment.enabled {
                recipes::train(side, folder)
            } else {
                eval.clone()
            }
        });
        self.augment.train_pipeline = Some(train);
        self.augment.eval_pipeline = Some(eval);
        self
    }

    /// The training pipeline ([`resolve`](Self::resolve)d if unset).
    pub fn train_pipeline(&self) -> Transform {
        match &self.augment.train_pipeline {
            Some(p) => p.clone(),
            None => self.clone().resolve().train_pipeline(),
        }
    }

    /// The evaluation pipeline ([`resolve`](Self::resolve)d if unset).
    pub fn eval_pipeline(&self) -> Transform {
        match &self.augment.eval_pipeline {
            Some(p) => p.clone(),
            None => self.clone().resolve().eval_pipeline(),
        }
    }

    /// The fields whose values differ between `self` and `other`, by dotted path
    /// (`optim.lr`), except those in `ignore`.
    pub fn differences(&self, other: &TrainConfig, ignore: &[&str]) -> Vec<String> {
        let (a, b) = (
            serde_json::to_value(self).unwrap_or_default(),
            serde_json::to_value(other).unwrap_or_default(),
        );
        let mut out = Vec::new();
        diff_values("", &a, &b, &mut out);
        out.retain(|path| !ignore.contains(&path.as_str()));
        out
    }

    /// Checks every field; the error names the field and its accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(
            ok: bool,
            field: &'static str,
            value: impl ToString,
            expected: &'static str,
        ) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError {
                    field,
                    value: value.to_string(),
                    expected,
                })
            }
        }
        let (d, o, s, m) = (&self.data, &self.optim, &self.schedule, &self.mix);
        check(self.epochs >= 1, "epochs", self.epochs, ">= 1")?;
        check(d.batch_size >= 1, "data.batch_size", d.batch_size, ">= 1")?;
        check(
            self.lr().is_finite() && self.lr() > 0.0,
            "optim.lr",
            self.lr(),
            "a finite number > 0",
        )?;
        check(
            s.warmup_epochs < self.epochs,
            "schedule.warmup_epochs",
            s.warmup_epochs,
            "< epochs (for a 1-epoch run, add --warmup-epochs 0)",
        )?;
        check(
            (0.0..1.0).contains(&o.momentum),
            "optim.momentum",
            o.momentum,
            "[0, 1)",
        )?;
        check(
            o.weight_decay.is_finite() && o.weight_decay >= 0.0,
            "optim.weight_decay",
            o.weight_decay,
            "a finite number >= 0",
        )?;
        check(
            (0.0..1.0).contains(&m.label_smoothing),
            "mix.label_smoothing",
            m.label_smoothing,
            "[0, 1)",
        )?;
        check(
            (0.0..1.0).contains(&self.dropout()),
            "model.dropout",
            self.dropout(),
            "[0, 1)",
        )?;
        check(
            (16..=1024).contains(&self.input_size()),
            "model.input_size",
            self.input_size(),
            "16 to 1024 pixels",
        )?;
        if let Some(n) = d.train_size {
            check(
                n >= d.batch_size * o.accumulate,
                "data.train_size",
                n,
                ">= batch_size * accumulate",
            )?;
        }
        if let Some(n) = d.val_size {
            check(n >= 1, "data.val_size", n, ">= 1")?;
        }
        if let Some(n) = d.workers {
            check((1..=1024).contains(&n), "data.workers", n, "1 to 1024")?;
        }
        check(s.step_size >= 1, "schedule.step_size", s.step_size, ">= 1")?;
        check(
            s.gamma.is_finite() && s.gamma > 0.0 && s.gamma <= 1.0,
            "schedule.gamma",
            s.gamma,
            "(0, 1]",
        )?;
        check(
            s.milestones.windows(2).all(|w| w[0] < w[1]),
            "schedule.milestones",
            format!("{:?}", s.milestones),
            "strictly increasing epochs",
        )?;
        check(
            s.kind != Schedule::Multistep || !s.milestones.is_empty(),
            "schedule.milestones",
            "[]",
            "at least one epoch for the multistep schedule",
        )?;
        for (field, alpha) in [
            ("mix.mixup_alpha", m.mixup_alpha),
            ("mix.cutmix_alpha", m.cutmix_alpha),
        ] {
            if let Some(a) = alpha {
                check(a.is_finite() && a > 0.0, field, a, "a finite number > 0")?;
            }
        }
        check((0.0..=1.0).contains(&m.prob), "mix.prob", m.prob, "[0, 1]")?;
        check(
            (0.0..=1.0).contains(&m.switch_prob),
            "mix.switch_prob",
            m.switch_prob,
            "[0, 1]",
        )?;
        check(o.accumulate >= 1, "optim.accumulate", o.accumulate, ">= 1")?;
        if let Some(c) = o.clip_grad_norm {
            check(
                c.is_finite() && c > 0.0,
                "optim.clip_grad_norm",
                c,
                "a finite number > 0",
            )?;
        }
        check(
            (1..=86_400).contains(&self.dist.timeout_secs),
            "dist.timeout_secs",
            self.dist.timeout_secs,
            "1 to 86400 seconds",
        )?;
        Ok(())
    }

    /// The data folder: `data_dir`, or the dataset's default (Debian's Fashion-MNIST folder,
    /// `data/cifar10`); MNIST and image folders have none.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.data
            .data_dir
            .clone()
            .or_else(|| match self.data.dataset {
                DatasetKind::FashionMnist => Some("/usr/share/datasets/fashion-mnist".into()),
                DatasetKind::Cifar10 => Some("data/cifar10".into()),
                DatasetKind::Builtin | DatasetKind::Mnist | DatasetKind::Folder => None,
            })
    }

    /// Optimizer steps per epoch on `world` ranks over `train_len` training samples, each rank
    /// reading its shard of `ceil(train_len / world)` samples (the distributed sampler pads
    /// with repeats): full batches only (drop_last), grouped by `accumulate`.
    pub fn steps_per_epoch(&self, train_len: usize, world: usize) -> usize {
        train_len.div_ceil(world.max(1)) / self.data.batch_size / self.optim.accumulate
    }

    /// Learning rate at optimizer step `step`: a linear warmup over `warmup_epochs`, then the
    /// schedule (`onecycle` replaces both with its own shape).
    pub fn lr_at(&self, step: usize, steps_per_epoch: usize) -> f64 {
        use std::f64::consts::PI;
        let (lr, s) = (self.lr(), &self.schedule);
        let total = (self.epochs * steps_per_epoch).max(1);
        let cos = |from: f64, to: f64, t: f64| to + 0.5 * (from - to) * (1.0 + (PI * t).cos());
        if s.kind == Schedule::Onecycle {
            // PyTorch OneCycleLR: pct_start 0.3, div_factor 25, final_div_factor 1e4.
            let (start, end) = (lr / 25.0, lr / 25.0 / 1e4);
            let up = (0.3 * total as f64 - 1.0).max(1.0);
            let t = step as f64;
            return if t <= up {
                cos(start, lr, t / up)
            } else {
                cos(lr, end, (t - up) / (total as f64 - 1.0 - up).max(1.0))
            };
        }
        let warmup = s.warmup_epochs * steps_per_epoch;
        if step < warmup {
            return lr * (step + 1) as f64 / warmup as f64;
        }
        let epoch = step / steps_per_epoch.max(1);
        match s.kind {
            Schedule::Cosine => {
                let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
                cos(lr, 0.0, progress)
            }
            Schedule::Step => lr * s.gamma.powi((epoch / s.step_size) as i32),
            Schedule::Multistep => {
                let passed = s.milestones.iter().filter(|&&m| epoch >= m).count();
                lr * s.gamma.powi(passed as i32)
            }
            Schedule::Constant | Schedule::Onecycle => lr,
        }
    }
}

fn diff_values(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let null = Value::Null;
                diff_values(
                    &sub,
                    x.get(key).unwrap_or(&null),
                    y.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips() {
        let config = TrainConfig::default().resolve();
        config.validate().expect("the default run is valid");
        let json = serde_json::to_string(&config).expect("serialises");
        assert_eq!(
            serde_json::from_str::<TrainConfig>(&json).expect("parses"),
            config
        );
        assert_eq!(config.clone().resolve(), config, "resolving is idempotent");
    }

    #[test]
    fn default_pipelines_follow_the_reference_recipes() {
        let cifar = TrainConfig::default().resolve();
        assert_eq!(
            cifar.train_pipeline(),
            Transform::from(kindling_augment::pipelines::cifar())
        );
        let imagenet = TrainConfig {
            model: ModelConfig {
                name: ModelName::Alexnet,
                ..ModelConfig::default()
            },
            ..TrainConfig::default()
        }
        .resolve();
        assert_eq!(
            imagenet.train_pipeline(),
            Transform::from(kindling_augment::pipelines::imagenet())
        );
        let eval = imagenet.eval_pipeline().to_json().expect("json");
        assert!(
            eval.contains("\"size\": 256") && eval.contains("CenterCrop"),
            "{eval}"
        );
        assert_eq!(imagenet.dropout(), 0.5);
        assert_eq!((imagenet.lr(), cifar.lr()), (0.001, 0.02));
        assert_eq!(cifar.dropout(), 0.0);
        // Without augmentation, training sees the evaluation pipeline.
        let plain = TrainConfig {
            augment: AugmentConfig {
                enabled: false,
                ..AugmentConfig::default()
            },
            ..TrainConfig::default()
        }
        .resolve();
        assert_eq!(plain.train_pipeline(), plain.eval_pipeline());
    }

    #[test]
    fn differences_name_the_dotted_fields() {
        let a = TrainConfig::default();
        let mut b = a.clone();
        b.optim.lr = Some(0.5);
        b.epochs = 9;
        b.data.workers = Some(3);
        assert_eq!(a.differences(&b, &RESUMABLE), vec!["optim.lr".to_string()]);
        assert!(a.differences(&a, &[]).is_empty());
    }

    #[test]
    fn bad_values_name_the_field_and_range() {
        let mut config = TrainConfig::default();
        config.optim.momentum = 1.5;
        let err = config.validate().unwrap_err();
        assert_eq!(err.field, "optim.momentum");
        assert_eq!(
            err.to_string(),
            "invalid optim.momentum = 1.5: expected [0, 1)"
        );
        let mut config = TrainConfig::default();
        config.optim.lr = Some(f64::NAN);
        assert_eq!(config.validate().unwrap_err().field, "optim.lr");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<TrainConfig>(r#"{"epoch": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `epoch`"), "{err}");
        let err = serde_json::from_str::<TrainConfig>(r#"{"optim": {"lrate": 3}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `lrate`"), "{err}");
    }

    fn with_schedule(kind: Schedule) -> TrainConfig {
        let mut config = TrainConfig {
            epochs: 6,
            ..TrainConfig::default()
        };
        config.schedule.warmup_epochs = 0;
        config.schedule.kind = kind;
        config.schedule.gamma = 0.5;
        config.optim.lr = Some(0.1);
        config
    }

    #[test]
    fn step_multistep_and_onecycle_follow_pytorch() {
        let steps = 10;
        let mut step = with_schedule(Schedule::Step);
        step.schedule.step_size = 2;
        assert_eq!(step.lr_at(19, steps), 0.1);
        assert_eq!(step.lr_at(20, steps), 0.05);
        assert_eq!(step.lr_at(59, steps), 0.025);
        let mut multi = with_schedule(Schedule::Multistep);
        multi.schedule.milestones = vec![1, 4];
        assert_eq!(multi.lr_at(9, steps), 0.1);
        assert_eq!(multi.lr_at(10, steps), 0.05);
        assert_eq!(multi.lr_at(45, steps), 0.025);
        // OneCycleLR over 60 steps: 0.004 at step 0, the peak at step 17 (0.3 * 60 - 1), then
        // down to 0.004 / 1e4 at the last step.
        let one = with_schedule(Schedule::Onecycle);
        assert!((one.lr_at(0, steps) - 0.004).abs() < 1e-12);
        assert!((one.lr_at(17, steps) - 0.1).abs() < 1e-12);
        assert!((one.lr_at(59, steps) - 4e-7).abs() < 1e-12);
        assert!(one.lr_at(30, steps) < 0.1 && one.lr_at(30, steps) > 4e-7);
    }

    #[test]
    fn mixing_and_accumulation_are_validated() {
        let mut bad = TrainConfig::default();
        bad.mix.mixup_alpha = Some(0.0);
        assert_eq!(bad.validate().unwrap_err().field, "mix.mixup_alpha");
        let mut bad = TrainConfig::default();
        bad.optim.accumulate = 0;
        assert_eq!(bad.validate().unwrap_err().field, "optim.accumulate");
        let bad = with_schedule(Schedule::Multistep);
        assert_eq!(bad.validate().unwrap_err().field, "schedule.milestones");
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let mut config = TrainConfig {
            epochs: 4,
            ..TrainConfig::default()
        };
        config.optim.lr = Some(0.1);
        let steps = 10;
        assert!((config.lr_at(0, steps) - 0.01).abs() < 1e-12);
        assert!((config.lr_at(9, steps) - 0.1).abs() < 1e-12);
        assert!((config.lr_at(10, steps) - 0.1).abs() < 1e-12);
        assert!(config.lr_at(25, steps) < 0.1 && config.lr_at(25, steps) > 0.0);
        assert!(config.lr_at(39, steps) < 0.001);
    }
}
