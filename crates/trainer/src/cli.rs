//! The `kindling` command line: its subcommands and flags.
//!
//! `train`'s flags mirror the sections of [`TrainConfig`]: each flag struct below is a section,
//! each field is named after the config field it sets, and the flags given are merged into the
//! config (defaults, then `--config FILE`, then flags) through their JSON form, so a new knob
//! is one config field plus one flag field, with no list to keep in step. timm's spellings are
//! accepted as aliases.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::Value;

use crate::config::{
    AugmentOn, DatasetKind, Engine, Freeze, ModelName, Optimizer, Schedule, TrainConfig,
};
use crate::device::parse_devices;

#[derive(Debug, Parser)]
#[command(name = "kindling", version, about = "Train image classifiers on burn")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Train an AlexNet (CIFAR, torchvision's or the 2012 paper's) on a dataset or an image
    /// folder and write a run directory.
    Train(Box<TrainArgs>),
    /// Print a torchinfo-like summary of a model: shapes, parameters, MACs, receptive fields.
    Summary {
        /// alexnet, alexnet-paper, alexnet-paper-ungrouped or cifar
        #[arg(long, default_value = "alexnet")]
        model: String,
        /// Input as CxHxW (default: the variant's nominal size, e.g. 3x224x224)
        #[arg(long)]
        input: Option<String>,
        /// Layer depth: 1 shows features / avgpool / classifier, 2 every layer
        #[arg(long, default_value_t = 2)]
        depth: usize,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Print the architecture as an arrow diagram instead of a table
        #[arg(long)]
        diagram: bool,
    },
    /// Save the first layer's filters as a PNG, and print what the layer does to its input.
    Filters {
        #[command(flatten)]
        source: ModelSource,
        #[arg(long, default_value = "filters.png")]
        out: PathBuf,
    },
    /// Save the activation maps of one layer for an image as a PNG.
    Activations {
        #[command(flatten)]
        source: ModelSource,
        /// A layer by torchvision name (`features.3`) or index
        #[arg(long, default_value = "features.1")]
        layer: String,
        /// A PNG or JPEG image, resized to the model's input size
        #[arg(long)]
        image: PathBuf,
        #[arg(long, default_value = "activations.png")]
        out: PathBuf,
    },
    /// Write a PNG of an image next to N augmented versions of it.
    Preview {
        /// A pipeline file (.toml or .json), e.g. crates/augment/pipelines/cifar.toml
        #[arg(long)]
        pipeline: PathBuf,
        /// A PNG or JPEG image
        #[arg(long)]
        image: PathBuf,
        #[arg(long, default_value = "preview.png")]
        out: PathBuf,
        #[arg(short, long, default_value_t = 8)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Write a PNG of the built-in dataset's first samples, one class per column.
    Dataset {
        #[arg(long, default_value = "dataset.png")]
        out: PathBuf,
        /// Rows of samples (each row shows the ten classes).
        #[arg(long, default_value_t = 4)]
        rows: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Evaluate a checkpoint on its run's validation data with the run's evaluation pipeline:
    /// loss, top-1, top-5, confusion matrix.
    Eval {
        /// A checkpoint, e.g. runs/X/checkpoints/best.ckpt
        #[arg(long)]
        checkpoint: PathBuf,
        /// flex (or cpu), wgpu, wgpu:cpu, wgpu:N or cuda:N
        #[arg(long, default_value = "flex")]
        device: String,
    },
    /// Print the most likely classes of images for a checkpoint's model.
    Predict {
        #[arg(long)]
        checkpoint: PathBuf,
        /// How many classes to print per image
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// flex (or cpu), wgpu, wgpu:cpu, wgpu:N or cuda:N
        #[arg(long, default_value = "flex")]
        device: String,
        /// PNG or JPEG images (any size; through the run's evaluation pipeline)
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Measure the seed's comparison tables on your data: augmentation techniques, or single
    /// rank vs threads vs processes.
    Compare {
        #[command(subcommand)]
        what: CompareCmd,
    },
    /// Start this machine's ranks of a multi-process run, as torchrun does: `kindling launch
    /// --nproc-per-node 2 -- train ARGS`. Every rank gets torchrun's environment (RANK,
    /// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and
    /// RAYON_NUM_THREADS = cores / ranks. Engines: tcp (any backend; the rendezvous and control
    /// plane, rank 0 as hub: fine for small models across machines), nccl (the GPU data path),
    /// mpi (the CPU data path; this launcher starts it on one machine, across machines use
    /// mpirun --hostfile). Slurm: `srun kindling train --engine tcp ...` needs no launcher.
    Launch(Box<LaunchArgs>),
    /// Check that a device computes a convolution and its gradients like the flex CPU reference.
    CheckDevice {
        /// flex, wgpu, wgpu:cpu, wgpu:N or cuda:N[,M...]
        #[arg(long, default_value = "flex")]
        device: String,
    },
    /// Images/s of a training step or of the batched augmentation on a device, on inputs made
    /// in memory (what a GPU check compares with PyTorch); prints `RESULT ...` lines.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

/// `kindling bench`'s two measurements.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Forward + backward (+ SGD) of a model on a fixed batch, after two warm-up steps.
    Step {
        #[arg(long, value_enum, default_value = "cifar")]
        model: ModelName,
        /// Batch sizes, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "64")]
        batch: Vec<usize>,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value = "flex")]
        device: String,
    },
    /// The seed's augmentation pipeline P1 (CIFAR, 32x32) or P2 (ImageNet, 500x375) on
    /// batches on the device.
    Augment {
        #[arg(long, value_enum, default_value = "p1")]
        pipeline: crate::bench::Pipeline,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        #[arg(long, default_value = "flex")]
        device: String,
    },
}

/// `kindling launch`: torchrun's flags (underscores accepted too).
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Ranks (processes) on this machine
    #[arg(long, alias = "nproc_per_node")]
    pub nproc_per_node: usize,
    /// Machines in the run
    #[arg(long, default_value_t = 1)]
    pub nnodes: usize,
    /// This machine's index, 0..nnodes (node 0 holds rank 0)
    #[arg(long, alias = "node_rank", default_value_t = 0)]
    pub node_rank: usize,
    /// Node 0's address, reachable from every machine
    #[arg(long, alias = "master_addr", default_value = "127.0.0.1")]
    pub master_addr: String,
    #[arg(long, alias = "master_port", default_value_t = 29500)]
    pub master_port: u16,
    /// tcp, nccl or mpi (added to the train command as --engine)
    #[arg(long, value_enum, default_value = "tcp")]
    pub engine: Engine,
    /// Where rank 0 listens (default: every interface at --master-port)
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<String>,
    /// What each rank runs: `train ARGS`
    #[arg(last = true, required = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// `kindling compare`'s two comparisons.
#[derive(Debug, Subcommand)]
pub enum CompareCmd {
    /// Train the same model on the same data once per augmentation arm (no augmentation, each
    /// technique alone, the full recipe) and seed; report accuracy (mean ± sd), the
    /// train-minus-validation gap and each arm's cost, in OUT/summary.md, CSV files and plots.
    Augment(Box<CompareAugmentArgs>),
    /// Train the same model and global batch (--batch-size) on 1 rank, on N threads of one
    /// process and on N processes (tcp, mpi); report images/s, scaling efficiency and the
    /// largest weight difference from the 1-rank run.
    Parallel(Box<CompareParallelArgs>),
}

/// The run every arm or shape of a comparison starts from, and where the comparison goes.
#[derive(Debug, Args)]
pub struct CompareBase {
    /// A TOML or JSON file with any config fields: the base run
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The comparison's folder (default: `compare/<unix time>`); running the same command
    /// with the same --out again continues an interrupted comparison
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print only the final table
    #[arg(long)]
    pub quiet: bool,
    /// Check the flags and arms and print what would run, without training
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub set: Overrides,
}

impl CompareBase {
    /// The base config: defaults, the `--config` file, then the flags (unresolved, so that
    /// each arm resolves its own pipelines).
    pub fn config(&self) -> Result<TrainConfig> {
        let config = merged(self.config.as_deref(), &self.set)?;
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct CompareAugmentArgs {
    #[command(flatten)]
    pub base: CompareBase,
    /// Runs per arm, with seeds --seed, --seed + 1, ...
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// An arm file replacing the default set (see crates/trainer/compare/augment.toml)
    #[arg(long, value_name = "FILE")]
    pub arms: Option<PathBuf>,
    /// Add an arm: a name and a training pipeline file (repeatable)
    #[arg(long = "arm", value_name = "NAME=FILE")]
    pub extra_arms: Vec<String>,
    /// Run only these arms (comma-separated names)
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// With several devices in --device: run different arms at once, one per device, instead
    /// of each run data-parallel over all of them
    #[arg(long)]
    pub side_by_side: bool,
}

#[derive(Debug, Args)]
pub struct CompareParallelArgs {
    #[command(flatten)]
    pub base: CompareBase,
    /// Ranks of the threads and processes shapes (--batch-size is split among them)
    #[arg(long, default_value_t = 2)]
    pub ranks: usize,
    /// Process engines to compare (default: tcp, and mpi when this kindling has it and
    /// mpirun is found)
    #[arg(long, value_enum, value_delimiter = ',')]
    pub engines: Vec<Engine>,
}

/// Which model `filters` and `activations` look at: a variant with optional torchvision
/// weights, or a trained run's checkpoint.
#[derive(Debug, Args)]
pub struct ModelSource {
    /// alexnet, alexnet-paper, alexnet-paper-ungrouped or cifar
    #[arg(long, default_value = "alexnet")]
    pub model: String,
    /// torchvision-format weights (.pth or .safetensors); default: random initialisation
    #[arg(long, conflicts_with = "checkpoint")]
    pub weights: Option<PathBuf>,
    /// A checkpoint of a run (runs/X/checkpoints/best.ckpt): the model that run trained
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

/// `kindling train`: defaults, overridden by `--config FILE`, overridden by flags.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A TOML or JSON file with any config fields (a run's config.json repeats that run).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to write the run (default: `runs/<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its checkpoints/last.ckpt, with its own config;
    /// --epochs extends it, --device / --workers / --dist-timeout-secs / --keep-checkpoints /
    /// --data-dir may change, any other flag is refused.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "config"])]
    pub resume: Option<PathBuf>,
    /// The training pipeline: a TOML or JSON file in kindling-augment's format (default:
    /// torchvision's reference recipe for the model's input size).
    #[arg(long, value_name = "FILE")]
    pub train_pipeline: Option<PathBuf>,
    /// The evaluation pipeline file (default: the images as they are at 32x32, Resize(256) +
    /// CenterCrop(224) for the 224 models).
    #[arg(long, value_name = "FILE")]
    pub eval_pipeline: Option<PathBuf>,
    /// Train without augmentation (training images go through the evaluation pipeline).
    #[arg(long)]
    pub no_augment: bool,
    /// With --dataset cifar10: download the official binary tarball first if the data is
    /// missing (MD5 checked, unpacked atomically)
    #[arg(long)]
    pub download: bool,
    /// Data-parallel ranks on this machine: with the threads engine, --device repeated this
    /// many times when it names one device; under mpi, `mpirun -n` sets it instead
    #[arg(long)]
    pub nproc_per_node: Option<usize>,
    /// Print only the final result.
    #[arg(long)]
    pub quiet: bool,
    /// Check the flags and print the resolved config as JSON, without training
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub set: Overrides,
}

/// The flags that set config fields, section by section (field names are the config's).
#[derive(Debug, Default, Args, Serialize)]
pub struct Overrides {
    /// Seeds the data order, the augmentation and the weights.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Epochs to train (with --resume: the new total)
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Per-epoch checkpoints kept besides last.ckpt and best.ckpt
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    #[command(flatten)]
    pub data: DataFlags,
    #[command(flatten)]
    pub model: ModelFlags,
    #[command(flatten)]
    pub optim: OptimFlags,
    #[command(flatten)]
    pub schedule: ScheduleFlags,
    #[command(flatten)]
    pub augment: AugmentFlags,
    #[command(flatten)]
    pub mix: MixFlags,
    #[command(flatten)]
    pub dist: DistFlags,
}

#[derive(Debug, Default, Args, Serialize)]
pub struct DataFlags {
    /// builtin, mnist, fashion-mnist, cifar10 or folder (--data-dir: one subfolder per class,
    /// or train/ and val/ with one subfolder per class each)
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Folder of the MNIST / Fashion-MNIST IDX files, of CIFAR-10 (default data/cifar10) or
    /// the image folder
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Training samples (default: the whole split; a seeded, class-balanced cut of a folder)
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Validation samples (default: the whole split; a tenth of a folder without val/)
    #[arg(long)]
    pub val_size: Option<usize>,
    /// Images per batch on each rank
    #[arg(long, short = 'b')]
    pub batch_size: Option<usize>,
    /// Threads decoding and augmenting images (default: the cores)
    #[arg(long, short = 'j')]
    pub workers: Option<usize>,
    /// Leave undecodable images out and list them in skipped_images.txt instead of failing
    #[arg(long, action = ArgAction::SetTrue)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skip_bad_images: bool,
}

#[derive(Debug, Default, Args, Serialize)]
pub struct ModelFlags {
    /// alexnet (torchvision, 224), alexnet-paper (2012 paper, 227) or cifar (32)
    #[arg(long = "model", value_enum)]
    pub name: Option<ModelName>,
    /// Square input side (default: the model's own)
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Classifier dropout (default: 0 for cifar, 0.5 for the others)
    #[arg(long, visible_alias = "drop")]
    pub dropout: Option<f64>,
    /// Start from torchvision weights (.pth or .safetensors); a classifier head for another
    /// class count is replaced
    #[arg(long, value_name = "FILE")]
    pub pretrained: Option<PathBuf>,
    /// Train only the classifier: `features`
    #[arg(long, value_enum)]
    pub freeze: Option<Freeze>,
}

#[derive(Debug, Default, Args, Serialize)]
pub struct OptimFlags {
    #[arg(long, visible_alias = "opt", value_enum)]
    pub optimizer: Option<Optimizer>,
    /// Peak learning rate (default: 0.02 for cifar, 0.001 for the 224 models)
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub momentum: Option<f64>,
    #[arg(long, visible_alias = "wd")]
    pub weight_decay: Option<f64>,
    /// Batches per optimizer step (gradient accumulation)
    #[arg(long)]
    pub accumulate: Option<usize>,
    /// Clip the L2 norm of all gradients together to this value (PyTorch clip_grad_norm_)
    #[arg(long, visible_alias = "clip-grad", value_name = "MAX_NORM")]
    pub clip_grad_norm: Option<f64>,
}

#[derive(Debug, Default, Args, Serialize)]
pub struct ScheduleFlags {
    #[arg(long = "schedule", visible_alias = "sched", value_enum)]
    pub kind: Option<Schedule>,
    /// Epochs of linear warmup (ignored by onecycle)
    #[arg(long, visible_alias = "warmup")]
    pub warmup_epochs: Option<usize>,
    /// step: epochs between decays
    #[arg(long, visible_alias = "decay-epochs")]
    pub step_size: Option<usize>,
    /// multistep: comma-separated epochs, e.g. 3,5
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<usize>>,
    /// step and multistep: the decay factor
    #[arg(long, visible_alias = "decay-rate")]
    pub gamma: Option<f64>,
}

#[derive(Debug, Default, Args, Serialize)]
pub struct AugmentFlags {
    /// Where to augment: cpu (loader threads) or device (on the batch tensor)
    #[arg(long = "augment-on")]
    pub on: Option<AugmentOn>,
}

#[derive(Debug, Default, Args, Serialize)]
pub struct MixFlags {
    /// MixUp with lambda ~ Beta(ALPHA, ALPHA) (torchvision's default alpha: 1)
    #[arg(long = "mixup", value_name = "ALPHA")]
    pub mixup_alpha: Option<f64>,
    /// CutMix with lambda ~ Beta(ALPHA, ALPHA)
    #[arg(long = "cutmix", value_name = "ALPHA")]
    pub cutmix_alpha: Option<f64>,
    /// Probability that a batch is mixed
    #[arg(long = "mix-prob", visible_alias = "mixup-prob")]
    pub prob: Option<f64>,
    /// With both --mixup and --cutmix: the probability of CutMix
    #[arg(long = "mix-switch-prob", visible_alias = "mixup-switch-prob")]
    pub switch_prob: Option<f64>,
    #[arg(long, visible_alias = "smoothing")]
    pub label_smoothing: Option<f32>,
}

#[derive(Debug, Default, Args, Serialize)]
pub struct DistFlags {
    /// flex (or cpu), wgpu, wgpu:cpu, wgpu:N or cuda:N; a comma-separated list (flex,flex or
    /// cuda:0,1) trains data-parallel, one rank per device, --batch-size per rank
    #[arg(long)]
    pub device: Option<String>,
    /// threads (one thread per device in this process), or one process per rank: mpi (started
    /// by mpirun), tcp or nccl (torchrun-style environment); `cargo xtask train
    /// --nproc-per-node N --engine E` starts the processes
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// Seconds a rank waits for the others in a collective before failing
    #[arg(long = "dist-timeout-secs")]
    pub timeout_secs: Option<u64>,
}

impl TrainArgs {
    /// The config of a new run: the defaults, the `--config` file, then the flags, checked and
    /// [resolved](TrainConfig::resolve).
    pub fn resolve(&self) -> Result<TrainConfig> {
        let mut config = merged(self.config.as_deref(), &self.set)?;
        if let Some(n) = self.nproc_per_node {
            config.dist.device = per_node_devices(&config, n)?;
        }
        if self.no_augment {
            config.augment.enabled = false;
            config.augment.train_pipeline = None;
        }
        for (path, slot, field) in [
            (
                &self.train_pipeline,
                &mut config.augment.train_pipeline,
                "--train-pipeline",
            ),
            (
                &self.eval_pipeline,
                &mut config.augment.eval_pipeline,
                "--eval-pipeline",
            ),
        ] {
            if let Some(path) = path {
                let pipeline = kindling_augment::Transform::from_path(path)
                    .with_context(|| format!("{field} {}", path.display()))?;
                *slot = Some(pipeline);
            }
        }
        config.validate()?;
        Ok(config.resolve())
    }

    /// The flags given, as a JSON object shaped like the config (absent flags are null).
    pub fn overrides(&self) -> Result<Value> {
        Ok(serde_json::to_value(&self.set)?)
    }

    /// The flags that change a run's meaning outside the config sections, which `--resume`
    /// refuses.
    pub fn resume_conflicts(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if self.train_pipeline.is_some() {
            given.push("--train-pipeline");
        }
        if self.eval_pipeline.is_some() {
            given.push("--eval-pipeline");
        }
        if self.no_augment {
            given.push("--no-augment");
        }
        if self.nproc_per_node.is_some() {
            given.push("--nproc-per-node");
        }
        if self.download {
            given.push("--download");
        }
        given
    }
}

/// The defaults, overridden by the `--config` file, overridden by the flags in `set`.
fn merged(config: Option<&std::path::Path>, set: &Overrides) -> Result<TrainConfig> {
    let base = match config {
        Some(path) => read_config(path)?,
        None => TrainConfig::default(),
    };
    let mut value = serde_json::to_value(&base)?;
    merge(&mut value, &serde_json::to_value(set)?);
    serde_json::from_value(value).context("the command-line flags")
}

/// `--nproc-per-node N` with the threads engine: the one device of `--device` N times.
fn per_node_devices(config: &TrainConfig, n: usize) -> Result<String> {
    if n == 0 {
        bail!("invalid --nproc-per-node 0: expected >= 1");
    }
    if config.dist.engine != Engine::Threads {
        bail!(
            "--nproc-per-node is for the threads engine; with one process per rank the \
             launcher (cargo xtask train, mpirun, torchrun) sets it"
        );
    }
    let device = &config.dist.device;
    let devices = parse_devices(device)?;
    match devices.len() {
        1 => Ok(vec![device.as_str(); n].join(",")),
        k if k == n => Ok(device.clone()),
        k => bail!(
            "--nproc-per-node {n} with --device {device} ({k} devices): give one device or {n}"
        ),
    }
}

/// Reads a TOML or JSON config file (by extension; TOML otherwise).
pub fn read_config(path: &std::path::Path) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("in {}", path.display()))
    } else {
        toml::from_str(&text).with_context(|| format!("in {}", path.display()))
    }
}

/// Writes the non-null values of `overrides` into `base`, recursing into objects.
pub fn merge(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match base.get_mut(key) {
                    Some(slot) if slot.is_object() && value.is_object() => merge(slot, value),
                    _ if value.is_null() => {}
                    _ if value
                        .as_object()
                        .is_some_and(|o| o.values().all(Value::is_null)) => {}
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, value) if !value.is_null() => *base = value.clone(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> TrainArgs {
        let cli = Cli::try_parse_from(["kindling", "train"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Cmd::Train(args) => *args,
            other => panic!("not train: {other:?}"),
        }
    }

    /// Every flag that sets a config field lands in that field: a flag named after no field
    /// would fail the config's `deny_unknown_fields` here.
    #[test]
    fn every_flag_sets_its_field() {
        let args = parse(&[
            "--seed",
            "7",
            "--epochs",
            "9",
            "--keep-checkpoints",
            "3",
            "--dataset",
            "folder",
            "--data-dir",
            "/d",
            "--train-size",
            "100",
            "--val-size",
            "20",
            "-b",
            "16",
            "-j",
            "3",
            "--skip-bad-images",
            "--model",
            "alexnet",
            "--input-size",
            "192",
            "--drop",
            "0.25",
            "--pretrained",
            "w.pth",
            "--freeze",
            "features",
            "--opt",
            "adamw",
            "--lr",
            "0.001",
            "--momentum",
            "0.8",
            "--wd",
            "0.01",
            "--accumulate",
            "2",
            "--clip-grad",
            "1.5",
            "--sched",
            "multistep",
            "--warmup-epochs",
            "2",
            "--step-size",
            "3",
            "--milestones",
            "4,6",
            "--gamma",
            "0.5",
            "--augment-on",
            "device",
            "--mixup",
            "0.2",
            "--cutmix",
            "1.0",
            "--mix-prob",
            "0.5",
            "--mix-switch-prob",
            "0.25",
            "--smoothing",
            "0.1",
            "--device",
            "cpu",
            "--engine",
            "threads",
            "--dist-timeout-secs",
            "60",
        ]);
        let c = args.resolve().expect("resolves");
        assert_eq!((c.seed, c.epochs, c.keep_checkpoints), (7, 9, 3));
        assert_eq!(c.data.dataset, DatasetKind::Folder);
        assert_eq!(c.data.data_dir.as_deref(), Some(std::path::Path::new("/d")));
        assert_eq!((c.data.train_size, c.data.val_size), (Some(100), Some(20)));
        assert_eq!((c.data.batch_size, c.data.workers), (16, Some(3)));
        assert!(c.data.skip_bad_images);
        assert_eq!(c.model.name, ModelName::Alexnet);
        assert_eq!(
            (c.model.input_size, c.model.dropout),
            (Some(192), Some(0.25))
        );
        assert_eq!(
            c.model.pretrained.as_deref(),
            Some(std::path::Path::new("w.pth"))
        );
        assert_eq!(c.model.freeze, Some(Freeze::Features));
        assert_eq!(c.optim.optimizer, Optimizer::Adamw);
        assert_eq!(
            (c.lr(), c.optim.momentum, c.optim.weight_decay),
            (0.001, 0.8, 0.01)
        );
        assert_eq!((c.optim.accumulate, c.optim.clip_grad_norm), (2, Some(1.5)));
        assert_eq!(c.schedule.kind, Schedule::Multistep);
        assert_eq!((c.schedule.warmup_epochs, c.schedule.step_size), (2, 3));
        assert_eq!(
            (c.schedule.milestones.clone(), c.schedule.gamma),
            (vec![4, 6], 0.5)
        );
        assert_eq!(c.augment.on, AugmentOn::Device);
        assert_eq!(
            (c.mix.mixup_alpha, c.mix.cutmix_alpha),
            (Some(0.2), Some(1.0))
        );
        assert_eq!(
            (c.mix.prob, c.mix.switch_prob, c.mix.label_smoothing),
            (0.5, 0.25, 0.1)
        );
        assert_eq!(c.dist.device, "cpu");
        assert_eq!((c.dist.engine, c.dist.timeout_secs), (Engine::Threads, 60));
        // The 192 crop reaches the default pipelines.
        let train = c.train_pipeline().to_json().expect("json");
        assert!(train.contains("\"size\": 192"), "{train}");
    }

    #[test]
    fn flags_override_the_config_file_and_keep_the_rest() {
        let dir = std::env::temp_dir().join(format!("kindling-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("run.toml");
        std::fs::write(&file, "epochs = 4\n[optim]\nlr = 0.05\nmomentum = 0.5\n").expect("write");
        let args = parse(&["--config", file.to_str().expect("utf-8"), "--lr", "0.1"]);
        let c = args.resolve().expect("resolves");
        assert_eq!((c.epochs, c.lr(), c.optim.momentum), (4, 0.1, 0.5));
        std::fs::write(&file, "[optim]\nlrate = 0.05\n").expect("write");
        let err = format!(
            "{:#}",
            parse(&["--config", file.to_str().expect("utf-8")])
                .resolve()
                .unwrap_err()
        );
        assert!(err.contains("lrate") && err.contains("run.toml"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn nproc_per_node_repeats_the_device() {
        let c = parse(&["--nproc-per-node", "2"])
            .resolve()
            .expect("resolves");
        assert_eq!(c.dist.device, "flex,flex");
        let err = parse(&["--nproc-per-node", "3", "--device", "flex,flex"])
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("give one device or 3"), "{err}");
    }

    #[test]
    fn merge_skips_absent_flags_and_recurses() {
        let mut base = serde_json::json!({"a": 1, "s": {"x": 1, "y": 2}});
        merge(
            &mut base,
            &serde_json::json!({"a": null, "s": {"x": 5, "y": null}}),
        );
        assert_eq!(base, serde_json::json!({"a": 1, "s": {"x": 5, "y": 2}}));
    }
}
