//! The `kindling` command line.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use kindling_dist::Communicator;
use kindling_trainer::checkpoint::Checkpoint;
use kindling_trainer::config::{DatasetKind, Engine, TrainConfig};
use kindling_trainer::device::{parse_devices, smoke_test};
use kindling_trainer::inspect;
use kindling_trainer::run::RunDir;
use kindling_trainer::train;

#[derive(Parser)]
#[command(name = "kindling", version, about = "Train image classifiers on burn")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a CIFAR AlexNet on the built-in dataset and write a run directory.
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
        #[arg(long, default_value = "alexnet")]
        model: String,
        /// torchvision-format weights (.pth or .safetensors); default: random initialisation
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long, default_value = "filters.png")]
        out: PathBuf,
    },
    /// Save the activation maps of one layer for an image as a PNG.
    Activations {
        #[arg(long, default_value = "alexnet")]
        model: String,
        /// torchvision-format weights (.pth or .safetensors); default: random initialisation
        #[arg(long)]
        weights: Option<PathBuf>,
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
    /// Evaluate a checkpoint on its run's validation data: loss, top-1, top-5, confusion matrix.
    Eval {
        /// A checkpoint, e.g. runs/X/checkpoints/best.ckpt
        #[arg(long)]
        checkpoint: PathBuf,
    },
    /// Print the most likely classes of images for a checkpoint's model.
    Predict {
        #[arg(long)]
        checkpoint: PathBuf,
        /// How many classes to print per image
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// PNG or JPEG images (any size; resized to 32x32)
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Check that a device computes a convolution and its gradients like the flex CPU reference.
    CheckDevice {
        /// flex, wgpu, wgpu:cpu, wgpu:N or cuda:N[,M...]
        #[arg(long, default_value = "flex")]
        device: String,
    },
}

/// Largest difference from flex accepted as "this device works": f32 conv sums of ~360 terms.
const TOLERANCE: f32 = 1e-3;

/// Flags override the config file, which overrides the defaults.
#[derive(Args)]
struct TrainArgs {
    /// A TOML or JSON file with any `TrainConfig` fields (a run's config.json repeats that run).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where to write the run (default: `runs/<unix time>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its checkpoints/last.ckpt (its own config; other
    /// flags are ignored).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "config"])]
    resume: Option<PathBuf>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, value_enum)]
    optimizer: Option<kindling_trainer::config::Optimizer>,
    /// Epochs of linear warmup (ignored by onecycle)
    #[arg(long)]
    warmup_epochs: Option<usize>,
    #[arg(long, value_enum)]
    schedule: Option<kindling_trainer::config::Schedule>,
    /// step: epochs between decays
    #[arg(long)]
    step_size: Option<usize>,
    /// multistep: comma-separated epochs, e.g. 3,5
    #[arg(long, value_delimiter = ',')]
    milestones: Option<Vec<usize>>,
    /// step and multistep: the decay factor
    #[arg(long)]
    gamma: Option<f64>,
    #[arg(long)]
    momentum: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    label_smoothing: Option<f32>,
    /// MixUp with lambda ~ Beta(ALPHA, ALPHA) (torchvision's default alpha: 1)
    #[arg(long, value_name = "ALPHA")]
    mixup: Option<f64>,
    /// CutMix with lambda ~ Beta(ALPHA, ALPHA)
    #[arg(long, value_name = "ALPHA")]
    cutmix: Option<f64>,
    /// Probability that a batch is mixed
    #[arg(long)]
    mix_prob: Option<f64>,
    /// With both --mixup and --cutmix: the probability of CutMix
    #[arg(long)]
    mix_switch_prob: Option<f64>,
    /// Batches per optimizer step (gradient accumulation)
    #[arg(long)]
    accumulate: Option<usize>,
    /// Clip the L2 norm of all gradients together to this value (PyTorch clip_grad_norm_)
    #[arg(long, value_name = "MAX_NORM")]
    clip_grad_norm: Option<f64>,
    /// Where to augment: cpu (loader thread) or device (on the batch tensor)
    #[arg(long)]
    augment_on: Option<kindling_trainer::config::AugmentOn>,
    #[arg(long)]
    dropout: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// builtin, mnist, fashion-mnist, cifar10 or folder (--data-dir: one subfolder per class)
    #[arg(long, value_enum)]
    dataset: Option<DatasetKind>,
    /// Folder of the MNIST / Fashion-MNIST IDX files (gzipped or not) or of CIFAR-10
    /// (default data/cifar10)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// With --dataset cifar10: download the official binary tarball first if the data is
    /// missing (MD5 checked, unpacked atomically)
    #[arg(long)]
    download: bool,
    #[arg(long)]
    train_size: Option<usize>,
    #[arg(long)]
    val_size: Option<usize>,
    /// flex, wgpu, wgpu:cpu, wgpu:N or cuda:N; a comma-separated list (flex,flex or
    /// cuda:0,1) trains data-parallel, one rank per device, --batch-size per rank
    #[arg(long)]
    device: Option<String>,
    /// Data-parallel ranks on this machine: with the threads engine, --device repeated this
    /// many times when it names one device; under mpi, `mpirun -n` sets it instead
    #[arg(long)]
    nproc_per_node: Option<usize>,
    /// threads (one thread per device in this process), or one process per rank: mpi (started
    /// by mpirun), tcp or nccl (torchrun-style environment); `cargo xtask train
    /// --nproc-per-node N --engine E` starts the processes
    #[arg(long, value_enum)]
    engine: Option<Engine>,
    /// Seconds a rank waits for the others in a collective before failing
    #[arg(long)]
    dist_timeout_secs: Option<u64>,
    /// Train without augmentation.
    #[arg(long)]
    no_augment: bool,
    /// Print only the final result.
    #[arg(long)]
    quiet: bool,
    /// Check the flags and print the resolved config as JSON, without training
    #[arg(long)]
    dry_run: bool,
}

impl TrainArgs {
    fn resolve(&self) -> Result<TrainConfig> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config {}", path.display()))?;
                if path.extension().is_some_and(|e| e == "json") {
                    serde_json::from_str(&text).with_context(|| format!("in {}", path.display()))?
                } else {
                    toml::from_str(&text).with_context(|| format!("in {}", path.display()))?
                }
            }
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = &self.$field { config.$field = v.clone(); })* };
        }
        set!(
            epochs,
            batch_size,
            lr,
            optimizer,
            warmup_epochs,
            schedule,
            step_size,
            milestones,
            gamma,
            momentum,
            weight_decay,
            label_smoothing,
            mix_prob,
            mix_switch_prob,
            accumulate,
            augment_on,
            dropout,
            seed,
            dataset,
            train_size,
            val_size,
            device,
            engine,
            dist_timeout_secs
        );
        if let Some(n) = self.nproc_per_node {
            if n == 0 {
                bail!("invalid --nproc-per-node 0: expected >= 1");
            }
            if config.engine != Engine::Threads {
                bail!(
                    "--nproc-per-node is for the threads engine; with one process per rank the \
                     launcher (cargo xtask train, mpirun, torchrun) sets it"
                );
            }
            let devices = parse_devices(&config.device)?;
            if devices.len() != 1 && devices.len() != n {
                bail!(
                    "--nproc-per-node {n} with --device {} ({} devices): give one device or {n}",
                    config.device,
                    devices.len()
                );
            }
            if devices.len() == 1 {
                config.device = vec![config.device.as_str(); n].join(",");
            }
        }
        if self.data_dir.is_some() {
            config.data_dir.clone_from(&self.data_dir);
        }
        if self.mixup.is_some() {
            config.mixup_alpha = self.mixup;
        }
        if self.cutmix.is_some() {
            config.cutmix_alpha = self.cutmix;
        }
        if self.clip_grad_norm.is_some() {
            config.clip_grad_norm = self.clip_grad_norm;
        }
        if self.no_augment {
            config.augment = false;
        }
        config.validate()?;
        Ok(config)
    }
}

fn save_png(picture: &image::RgbImage, path: &std::path::Path) -> Result<()> {
    let mut bytes = Vec::new();
    picture.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    kindling_trainer::run::write_atomic(path, &bytes)
}

/// Set by Ctrl-C; the training loop checkpoints and stops at the next optimizer step.
fn interrupt_flag() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        // A second Ctrl-C while the checkpoint is written exits at once, as shells expect.
        let _ = ctrlc::set_handler(|| {
            if FLAG.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!(
                "\ninterrupt: writing a checkpoint at the next step (Ctrl-C again to quit now)"
            );
        });
    });
    &FLAG
}

/// One rank of a multi-process run (engine mpi, tcp or nccl): rank 0 owns the run directory in
/// `out`; with `start`, the run resumes from that checkpoint (every rank reads it, so the run
/// directory must be visible to all of them).
fn train_process(
    config: &TrainConfig,
    out: &std::path::Path,
    quiet: bool,
    start: Option<Checkpoint>,
) -> Result<()> {
    let timeout = std::time::Duration::from_secs(config.dist_timeout_secs);
    let mut comm: Box<dyn Communicator> = match config.engine {
        Engine::Threads => bail!("the threads engine runs in one process"),
        Engine::Mpi => mpi_comm(timeout)?,
        Engine::Tcp => Box::new(kindling_dist::TcpComm::from_env(timeout)?),
        Engine::Nccl => nccl_comm(timeout)?,
    };
    let rank = comm.rank();
    let started = std::time::Instant::now();
    let train_here = |comm: &mut dyn Communicator| -> Result<Option<RunDir>> {
        let devices = parse_devices(&config.device)?;
        let device = &devices[comm.local_rank() % devices.len()];
        let mut run = match (&start, rank) {
            (_, 1..) => None,
            (None, 0) => Some(RunDir::create(out, config)?),
            (Some(c), 0) => {
                let mut run = RunDir::open(out)?;
                run.truncate_history(c.header.epoch)?;
                Some(run)
            }
        };
        let model = train::train_rank(
            config,
            run.as_mut(),
            quiet || rank != 0,
            start.as_ref(),
            None,
            Some(interrupt_flag()),
            device,
            Some(comm),
        )?;
        if let Some(run) = &run {
            train::save_model(&model, run)?;
        }
        Ok(run)
    };
    match train_here(comm.as_mut()) {
        Ok(Some(run)) => {
            let engine = format!("{:?}", config.engine).to_lowercase();
            let world = comm.world_size();
            report(&run, started, |epoch| {
                format!("trained {epoch} epochs on {world} ranks ({engine})")
            })
        }
        Ok(None) => Ok(()),
        Err(e) => {
            // The other ranks fail at their next collective instead of waiting for the timeout.
            comm.abort(&format!("rank {rank}: {e:#}"));
            Err(e)
        }
    }
}

/// Prints the last line of a run: `headline(last epoch)`, time, validation accuracy, where.
fn report(
    run: &RunDir,
    start: std::time::Instant,
    headline: impl Fn(usize) -> String,
) -> Result<()> {
    let last = run.history().last().context("no epoch ran")?;
    println!(
        "{} in {:.0}s: validation accuracy {:.1}%, run in {}",
        headline(last.epoch),
        start.elapsed().as_secs_f64(),
        last.val_acc * 100.0,
        run.path().display()
    );
    Ok(())
}

#[cfg(feature = "mpi")]
fn mpi_comm(timeout: std::time::Duration) -> Result<Box<dyn Communicator>> {
    Ok(Box::new(kindling_dist::MpiComm::init(timeout)?))
}

#[cfg(not(feature = "mpi"))]
fn mpi_comm(_timeout: std::time::Duration) -> Result<Box<dyn Communicator>> {
    bail!("engine mpi: this kindling was built without the `mpi` feature")
}

#[cfg(feature = "nccl")]
fn nccl_comm(timeout: std::time::Duration) -> Result<Box<dyn Communicator>> {
    Ok(Box::new(kindling_dist::NcclComm::from_env(timeout)?))
}

#[cfg(not(feature = "nccl"))]
fn nccl_comm(_timeout: std::time::Duration) -> Result<Box<dyn Communicator>> {
    bail!("engine nccl: this kindling was built without the `nccl` feature (which needs CUDA)")
}

fn main() -> Result<()> {
    match run_command() {
        Err(e) if e.is::<train::Interrupted>() => {
            eprintln!("{e}");
            std::process::exit(130);
        }
        other => other,
    }
}

fn run_command() -> Result<()> {
    match Cli::parse().command {
        Cmd::Train(args) if args.dry_run => {
            if args.resume.is_some() {
                println!(
                    "dry run: would resume {}",
                    args.resume.clone().unwrap_or_default().display()
                );
            } else {
                println!("{}", serde_json::to_string_pretty(&args.resolve()?)?);
            }
            Ok(())
        }
        Cmd::Train(args) if args.resume.is_some() => {
            let dir = args.resume.clone().unwrap_or_default();
            let last = kindling_trainer::checkpoint::last(&dir);
            let checkpoint = Checkpoint::load(&last)?;
            if checkpoint.header.config.engine != Engine::Threads {
                let config = checkpoint.header.config.clone();
                return train_process(&config, &dir, args.quiet, Some(checkpoint));
            }
            let mut run = RunDir::open(&dir)?;
            let start = std::time::Instant::now();
            let model =
                train::resume_from(&mut run, checkpoint, args.quiet, Some(interrupt_flag()))?;
            train::save_model(&model, &run)?;
            report(&run, start, |epoch| {
                format!("resumed and trained to epoch {epoch}")
            })
        }
        Cmd::Train(args) => {
            let config = args.resolve()?;
            if args.download {
                if config.dataset != DatasetKind::Cifar10 {
                    bail!("--download fetches CIFAR-10; add --dataset cifar10");
                }
                let dir = config.idx_dir().context("CIFAR-10 has a default folder")?;
                let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let folder = kindling_trainer::data::cifar::download(
                    kindling_trainer::data::cifar::URL,
                    &dir,
                    kindling_trainer::data::cifar::MD5,
                    progress && !args.quiet,
                )?;
                if !args.quiet {
                    println!("CIFAR-10 in {}", folder.display());
                }
            }
            let out = args.out.clone().unwrap_or_else(|| {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                PathBuf::from(format!("runs/{secs}"))
            });
            if config.engine != Engine::Threads {
                return train_process(&config, &out, args.quiet, None);
            }
            let mut run = RunDir::create(&out, &config)?;
            let start = std::time::Instant::now();
            let model = train::train_from(
                &config,
                &mut run,
                args.quiet,
                None,
                None,
                Some(interrupt_flag()),
            )?;
            train::save_model(&model, &run)?;
            report(&run, start, |epoch| format!("trained {epoch} epochs"))
        }
        Cmd::Summary {
            model,
            input,
            depth,
            json,
            diagram,
        } => {
            let net = inspect::model(&model, None)?;
            let shape = match input {
                Some(text) => inspect::input_shape(&text)?,
                None => inspect::default_input(&net),
            };
            let summary = net.summary(shape, depth)?;
            if json {
                println!("{}", summary.to_json());
            } else if diagram {
                println!("{}", summary.diagram());
            } else {
                println!("{summary}");
            }
            Ok(())
        }
        Cmd::Filters {
            model,
            weights,
            out,
        } => {
            let net = inspect::model(&model, weights.as_deref())?;
            let summary = net.summary(inspect::default_input(&net), 2)?;
            if let Some(first) = summary.layers.iter().find(|l| l.name == "features.0") {
                println!(
                    "{}",
                    inspect::describe_first_layer(first, summary.input_shape)
                );
            }
            save_png(&inspect::filters(&net)?, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Cmd::Activations {
            model,
            weights,
            layer,
            image,
            out,
        } => {
            let net = inspect::model(&model, weights.as_deref())?;
            let picture = image::open(&image)
                .with_context(|| format!("cannot read image {}", image.display()))?;
            save_png(&inspect::activations(&net, &layer, &picture)?, &out)?;
            println!("wrote {} ({layer} of {model})", out.display());
            Ok(())
        }
        Cmd::Preview {
            pipeline,
            image,
            out,
            n,
            seed,
        } => {
            let transform = kindling_augment::Transform::from_path(&pipeline)?;
            let picture = image::open(&image)
                .with_context(|| format!("cannot read image {}", image.display()))?
                .to_rgb8();
            save_png(&inspect::preview(&transform, &picture, n, seed)?, &out)?;
            println!("wrote {} (original, then {n} augmented)", out.display());
            Ok(())
        }
        Cmd::Eval { checkpoint } => {
            let c = Checkpoint::load(&checkpoint)?;
            let device = burn::tensor::Device::flex();
            let model = train::model_from_checkpoint(&c, &device)?;
            let (_, val) = train::datasets(&c.header.config)?;
            let e = train::evaluate(&model, &val, c.header.config.batch_size, &device)?;
            println!(
                "{} (epoch {}): {} validation images, loss {:.4}, top-1 {:.1}%, top-5 {:.1}%",
                checkpoint.display(),
                c.header.epoch,
                val.len(),
                e.loss,
                e.top1 * 100.0,
                e.top5 * 100.0
            );
            print!("{}", train::confusion_table(&val.classes(), &e.confusion));
            Ok(())
        }
        Cmd::Predict {
            checkpoint,
            top,
            images,
        } => {
            let c = Checkpoint::load(&checkpoint)?;
            let device = burn::tensor::Device::flex();
            let model = train::model_from_checkpoint(&c, &device)?;
            let classes = train::class_names(&c.header.config)?;
            for path in &images {
                let image = image::open(path)
                    .with_context(|| format!("cannot read image {}", path.display()))?;
                let ranked = train::predict(&model, &image, top, &device)?;
                let text: Vec<String> = ranked
                    .iter()
                    .map(|&(label, p)| format!("{} {:.1}%", classes[label], p * 100.0))
                    .collect();
                println!("{}: {}", path.display(), text.join(", "));
            }
            Ok(())
        }
        Cmd::Dataset { out, rows, seed } => {
            save_png(&inspect::dataset_grid(seed, rows)?, &out)?;
            println!(
                "wrote {} ({rows} rows of the classes {:?})",
                out.display(),
                kindling_trainer::data::synthetic::CLASSES
            );
            Ok(())
        }
        Cmd::CheckDevice { device } => {
            let mut failed = false;
            for (i, dev) in parse_devices(&device)?.iter().enumerate() {
                let report = smoke_test(dev);
                let ok = report.forward_max_abs <= TOLERANCE && report.grad_max_abs <= TOLERANCE;
                failed |= !ok;
                println!(
                    "{device}[{i}] {dev:?}: forward max |diff| {:.2e}, gradient max |diff| {:.2e}, {:.1} ms: {}",
                    report.forward_max_abs,
                    report.grad_max_abs,
                    report.elapsed.as_secs_f64() * 1e3,
                    if ok { "ok" } else { "MISMATCH" }
                );
            }
            if failed {
                bail!("device {device} disagrees with flex beyond {TOLERANCE}");
            }
            Ok(())
        }
    }
}
