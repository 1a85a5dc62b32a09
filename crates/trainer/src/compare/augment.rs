//! `kindling compare augment`: the same model trained on the same data once per arm
//! (augmentation technique) and seed, each run a normal run directory; then per arm the final
//! and best validation accuracy, the train-minus-validation gap and what the augmentation costs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kindling_augment::transforms::{Compose, Resize};
use kindling_augment::{Augment, Sample, Transform};
use serde::{Deserialize, Serialize};

use super::arms::Arm;
use super::stats::Spread;
use crate::checkpoint::{self, Checkpoint};
use crate::config::TrainConfig;
use crate::data::{self, Dataset};
use crate::device::parse_devices;
use crate::run::RunDir;

/// Training images timed through an arm's pipeline to measure its cost.
const COST_SAMPLES: usize = 256;

/// What `kindling compare augment` runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The run config every arm starts from (its seed is the first seed).
    pub base: TrainConfig,
    pub arms: Vec<Arm>,
    pub seeds: usize,
    /// Prepend `Resize([side, side])` to every arm's pipeline (the default arms, written for
    /// fixed-size 32x32 data, on an image folder).
    pub fit_images: bool,
    /// Run arms side by side, one per device of the base config's `dist.device`, instead of
    /// each run data-parallel over all of them.
    pub side_by_side: bool,
}

/// The figures of one finished run (one arm, one seed), saved as `compare.json` in its
/// directory so that a repeated compare reads them instead of computing them again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFigures {
    pub final_val_acc: f64,
    pub best_val_acc: f64,
    /// Top-1 on training images through the evaluation pipeline (no augmentation), as many as
    /// the validation set has: the model's fit to the data it saw.
    pub train_acc: f64,
    /// Per epoch.
    pub val_acc: Vec<f64>,
    pub train_loss: Vec<f64>,
    pub val_loss: Vec<f64>,
    /// Training images/s over the run (all ranks).
    pub train_images_per_sec: f64,
    /// The arm's training pipeline alone on one core, images/s.
    pub augment_images_per_sec: f64,
}

impl RunFigures {
    /// Train-minus-validation accuracy: how much the model overfits.
    pub fn gap(&self) -> f64 {
        self.train_acc - self.final_val_acc
    }
}

/// One run of the comparison: its figures, or why it failed.
#[derive(Debug)]
pub struct RunOutcome {
    pub arm: String,
    pub seed: u64,
    pub dir: PathBuf,
    pub figures: Result<RunFigures, String>,
}

/// The config of `arm` at `seed`: the base with the arm's pipeline and mix settings, resolved.
pub fn arm_config(plan: &Plan, arm: &Arm, seed: u64) -> Result<TrainConfig> {
    let mut config = plan.base.clone();
    config.seed = seed;
    config.mix.mixup_alpha = None;
    config.mix.cutmix_alpha = None;
    let mut mix = serde_json::to_value(&config.mix)?;
    crate::cli::merge(&mut mix, &arm.mix);
    config.mix = serde_json::from_value(mix)
        .with_context(|| format!("the `mix` settings of arm {}", arm.name))?;
    match &arm.pipeline {
        Some(pipeline) => {
            config.augment.enabled = true;
            config.augment.train_pipeline = Some(if plan.fit_images {
                let side = plan.base.input_size();
                Compose::new([Resize::new([side, side]).into(), pipeline.clone()]).into()
            } else {
                pipeline.clone()
            });
        }
        None => {
            config.augment.enabled = false;
            config.augment.train_pipeline = None;
        }
    }
    Ok(config.resolve())
}

/// Runs every arm and seed not yet finished in `out/runs/ARM/seedS` (finished ones are read
/// back, interrupted ones resume), one after another or side by side. A failing run is
/// recorded and the others go on; an interrupt (Ctrl-C, SIGTERM) stops the comparison, and
/// running the same command again continues it.
pub fn run_all(
    plan: &Plan,
    out: &Path,
    interrupt: &AtomicBool,
    progress: &(dyn Fn(&RunOutcome) + Sync),
) -> Result<Vec<RunOutcome>> {
    let mut jobs = Vec::new();
    for arm in &plan.arms {
        for i in 0..plan.seeds {
            let seed = plan.base.seed + i as u64;
            let dir = out.join("runs").join(&arm.name).join(format!("seed{seed}"));
            jobs.push((arm, seed, dir, arm_config(plan, arm, seed)));
        }
    }
    let devices = parse_devices(&plan.base.dist.device)?;
    let lanes: Vec<Option<String>> = if plan.side_by_side && devices.len() > 1 {
        plan.base
            .dist
            .device
            .split(',')
            .map(|d| Some(d.trim().to_string()))
            .collect()
    } else {
        vec![None]
    };
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let results = Mutex::new(Vec::new());
    let stopped = Mutex::new(None);
    let (queue, results_ref, stopped_ref) = (&queue, &results, &stopped);
    let lane_count = lanes.len();
    std::thread::scope(|scope| {
        for lane in &lanes {
            scope.spawn(move || {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some((index, (arm, seed, dir, config))) = next else {
                        return;
                    };
                    let ran = config.and_then(|mut config| {
                        let trainer = match lane {
                            Some(device) => {
                                config.dist.device = device.clone();
                                Trainer::Process { lanes: lane_count }
                            }
                            None => Trainer::InProcess,
                        };
                        run_one(&config, &dir, trainer, interrupt)
                    });
                    match ran {
                        Err(e) if e.is::<crate::train::Interrupted>() => {
                            if let Ok(mut s) = stopped_ref.lock() {
                                s.get_or_insert(e);
                            }
                            return;
                        }
                        figures => {
                            let outcome = RunOutcome {
                                arm: arm.name.clone(),
                                seed,
                                dir,
                                figures: figures.map_err(|e| format!("{e:#}")),
                            };
                            progress(&outcome);
                            if let Ok(mut r) = results_ref.lock() {
                                r.push((index, outcome));
                            }
                        }
                    }
                    if stopped_ref.lock().map(|s| s.is_some()).unwrap_or(true) {
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = stopped.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a comparison lane panicked"))?;
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, outcome)| outcome).collect())
}

/// Where a run trains: in this process, or (side by side) in a `kindling train` process of
/// its own, since the backend's RNG is process-wide and two runs drawing from it at once
/// would not repeat.
#[derive(Debug, Clone, Copy)]
enum Trainer {
    InProcess,
    Process { lanes: usize },
}

/// Trains (or resumes, or reads back) one run and measures its figures.
fn run_one(
    config: &TrainConfig,
    dir: &Path,
    trainer: Trainer,
    interrupt: &AtomicBool,
) -> Result<RunFigures> {
    let figures_file = dir.join("compare.json");
    if figures_file.exists() {
        let bytes = std::fs::read(&figures_file)?;
        return serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a run's figures", figures_file.display()));
    }
    let last = checkpoint::last(dir);
    if last.exists() {
        let checkpoint = Checkpoint::load(&last)?;
        let changed = checkpoint
            .header
            .config
            .differences(config, &crate::config::RESUMABLE);
        if !changed.is_empty() {
            bail!(
                "{} holds a run of another configuration ({}); remove it or compare into \
                 another --out",
                dir.display(),
                changed.join(", ")
            );
        }
        let done = RunDir::open(dir)?.history().len() >= config.epochs
            && dir.join("model.safetensors").exists();
        if !done {
            match trainer {
                Trainer::InProcess => {
                    crate::launch::start_resume(dir, checkpoint, config, true, interrupt)?;
                }
                Trainer::Process { lanes } => {
                    let args = [
                        "train".into(),
                        "--resume".into(),
                        dir.as_os_str().to_owned(),
                        "--device".into(),
                        config.dist.device.clone().into(),
                    ];
                    train_process(&args, dir, lanes, interrupt)?;
                }
            }
        }
    } else if dir.join("config.json").exists() {
        bail!(
            "{} holds a run that never reached a checkpoint; remove it to run this arm again",
            dir.display()
        );
    } else {
        match trainer {
            Trainer::InProcess => {
                crate::launch::start_new(config, dir, true, interrupt)?;
            }
            Trainer::Process { lanes } => {
                let parent = dir.parent().context("a run has a parent folder")?;
                std::fs::create_dir_all(parent)?;
                let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("run");
                let config_file = parent.join(format!("{name}.config.json"));
                crate::run::write_atomic(&config_file, &serde_json::to_vec_pretty(config)?)?;
                let args = [
                    "train".into(),
                    "--config".into(),
                    config_file.into_os_string(),
                    "--out".into(),
                    dir.as_os_str().to_owned(),
                ];
                train_process(&args, dir, lanes, interrupt)?;
            }
        }
    }
    let figures = measure(config, dir)?;
    crate::run::write_atomic(&figures_file, &serde_json::to_vec_pretty(&figures)?)?;
    Ok(figures)
}

/// `kindling train ARGS --quiet` in a process of its own, with this machine's cores shared
/// among `lanes` such processes; its output goes to `dir`'s `train.log`.
fn train_process(
    args: &[std::ffi::OsString],
    dir: &Path,
    lanes: usize,
    interrupt: &AtomicBool,
) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the kindling binary")?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads =
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| (cores / lanes).max(1).to_string());
    let out = std::process::Command::new(exe)
        .args(args)
        .arg("--quiet")
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .context("cannot start kindling train")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The log beside the run, which must exist after a failure too.
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::write(
            dir.join("train.log"),
            [&out.stdout[..], &out.stderr[..]].concat(),
        );
    }
    if out.status.success() {
        return Ok(());
    }
    if interrupt.load(std::sync::atomic::Ordering::SeqCst) {
        // The signal reached the child too: it checkpointed where its checkpoint says.
        let header = Checkpoint::load(&checkpoint::last(dir)).map(|c| c.header);
        let (epoch, batches) = match &header {
            Ok(h) => match &h.partial {
                Some(p) => (h.epoch + 1, p.batches_done),
                None => (h.epoch, 0),
            },
            Err(_) => (0, 0),
        };
        return Err(crate::train::Interrupted {
            epoch,
            batches,
            dir: dir.to_path_buf(),
            first: None,
        }
        .into());
    }
    let why = stderr
        .lines()
        .filter(|l| l.starts_with("error") || l.contains("caused by"))
        .collect::<Vec<_>>()
        .join(" ");
    bail!("kindling train failed ({}): {why}", out.status)
}

/// The figures of the finished run in `dir`.
fn measure(config: &TrainConfig, dir: &Path) -> Result<RunFigures> {
    let run = RunDir::open(dir)?;
    let history = run.history();
    let last = history
        .last()
        .with_context(|| format!("{} recorded no epoch", dir.display()))?;
    let per = |f: fn(&crate::run::EpochMetrics) -> f64| history.iter().map(f).collect::<Vec<_>>();
    let checkpoint = Checkpoint::load(&checkpoint::last(dir))?;
    let device = parse_devices(&config.dist.device)?.remove(0);
    let model = crate::model::from_checkpoint(&checkpoint, &device)?;
    let (train, val) = data::splits(config)?;
    let n = val.len().min(train.len());
    // Spread over the whole training split (its first samples may be ordered by class).
    let indices: Vec<usize> = (0..n).map(|i| i * train.len() / n).collect();
    let fit = crate::eval::evaluate_samples(
        &model,
        &train,
        &indices,
        &config.eval_pipeline(),
        config.data.batch_size,
        config.data.skip_bad_images,
        &device,
    )?;
    let train_seconds: f64 = history.iter().map(|m| 1.0 / m.images_per_sec).sum();
    Ok(RunFigures {
        final_val_acc: last.val_acc,
        best_val_acc: per(|m| m.val_acc).into_iter().fold(0.0, f64::max),
        train_acc: fit.top1,
        val_acc: per(|m| m.val_acc),
        train_loss: per(|m| m.train_loss),
        val_loss: per(|m| m.val_loss),
        // The harmonic mean of the epochs' rates: every epoch trains as many images.
        train_images_per_sec: history.len() as f64 / train_seconds,
        augment_images_per_sec: pipeline_rate(&config.train_pipeline(), &train)?,
    })
}

/// Images/s of `pipeline` on one core over the first training images.
fn pipeline_rate(pipeline: &Transform, data: &Dataset) -> Result<f64> {
    let n = data.len().min(COST_SAMPLES);
    let images: Vec<_> = (0..n)
        .map(|i| data.get(i).map(|(image, _)| image))
        .collect::<Result<_>>()?;
    let start = Instant::now();
    for (i, image) in images.into_iter().enumerate() {
        let mut rng = kindling_augment::sample_rng(0, 0, i as u64);
        let out = pipeline
            .apply(Sample::U8(image), &mut rng)
            .with_context(|| format!("the training pipeline on {}", data.describe(i)))?;
        std::hint::black_box(out);
    }
    Ok(n as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// One arm's figures over its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmSummary {
    pub arm: String,
    pub runs: usize,
    /// The failed runs' seeds and errors.
    pub failed: Vec<(u64, String)>,
    pub final_acc: Option<Spread>,
    pub best_acc: Option<Spread>,
    pub gap: Option<Spread>,
    pub train_images_per_sec: Option<Spread>,
    pub augment_images_per_sec: Option<Spread>,
    /// Per epoch: validation accuracy, training loss, validation loss.
    pub val_acc_curve: Vec<Spread>,
    pub train_loss_curve: Vec<Spread>,
    pub val_loss_curve: Vec<Spread>,
}

impl ArmSummary {
    /// The arm's pipeline time per image on one core over the training time per image.
    pub fn augment_share(&self) -> Option<f64> {
        let train = self.train_images_per_sec?.mean;
        let augment = self.augment_images_per_sec?.mean;
        Some(train / augment)
    }
}

/// Groups the outcomes by arm, in the arms' order.
pub fn summarise(arms: &[String], outcomes: &[RunOutcome]) -> Vec<ArmSummary> {
    arms.iter()
        .map(|arm| {
            let mine: Vec<&RunOutcome> = outcomes.iter().filter(|o| &o.arm == arm).collect();
            let ok: Vec<&RunFigures> = mine
                .iter()
                .filter_map(|o| o.figures.as_ref().ok())
                .collect();
            let spread = |f: &dyn Fn(&RunFigures) -> f64| {
                Spread::of(&ok.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let curve = |f: &dyn Fn(&RunFigures) -> &Vec<f64>| {
                super::stats::per_epoch(&ok.iter().map(|r| f(r).clone()).collect::<Vec<_>>())
            };
            ArmSummary {
                arm: arm.clone(),
                runs: mine.len(),
                failed: mine
                    .iter()
                    .filter_map(|o| o.figures.as_ref().err().map(|e| (o.seed, e.clone())))
                    .collect(),
                final_acc: spread(&|r| r.final_val_acc),
                best_acc: spread(&|r| r.best_val_acc),
                gap: spread(&|r| r.gap()),
                train_images_per_sec: spread(&|r| r.train_images_per_sec),
                augment_images_per_sec: spread(&|r| r.augment_images_per_sec),
                val_acc_curve: curve(&|r| &r.val_acc),
                train_loss_curve: curve(&|r| &r.train_loss),
                val_loss_curve: curve(&|r| &r.val_loss),
            }
        })
        .collect()
}

/// Checks the plan before anything trains: seeds, arm names and the base config. An arm whose
/// own pipeline or settings fail is reported as a failed arm; the others still run.
pub fn preflight(plan: &Plan) -> Result<()> {
    if plan.seeds == 0 {
        bail!("invalid --seeds 0: expected >= 1");
    }
    super::arms::check_names(&plan.arms)?;
    plan.base.clone().resolve().validate()?;
    Ok(())
}
