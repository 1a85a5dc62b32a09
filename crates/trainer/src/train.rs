//! The training loop of one rank: a [`Trainer`] holds the model, the optimizer, the data and
//! the position of a run, and trains it an [`epoch`](Trainer::epoch) at a time, one optimizer
//! [`step`](Trainer::step) per `accumulate` batches; rank 0 validates, records and checkpoints.
//! Starting ranks (threads or processes) and opening runs is `launch`'s job.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use kindling_augment::Transform;
use kindling_augment::batched::{AugmentBatcher, AugmentedBatch, BatchMix, soft_cross_entropy};
use kindling_dist::{Communicator, Ddp, DdpConfig, ReduceOp};
use kindling_model::AlexNet;

use crate::checkpoint::{self, Checkpoint, Partial};
use crate::config::{Optimizer, RESUMABLE, TrainConfig};
use crate::data::Dataset;
use crate::data::loader::{Loader, Plan, default_workers};
use crate::eval::{confusion_table, evaluate, scalar};
use crate::preflight::{Prepared, prepare};
use crate::run::{EpochMetrics, RunDir};

/// The error a run returns when `interrupt` was set (Ctrl-C, SIGTERM): it wrote `last.ckpt` at
/// the last optimizer step first.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}interrupted in epoch {epoch} after {batches} batches; {}",
    first.map(Stopper::describe).unwrap_or_default(),
    continue_with(dir)
)]
pub struct Interrupted {
    pub epoch: usize,
    pub batches: usize,
    pub dir: std::path::PathBuf,
    /// In a run of several ranks, the lowest rank that was asked to stop.
    pub first: Option<Stopper>,
}

impl Interrupted {
    /// The exit status the stopping signal calls for (128 + its number), on every rank.
    pub fn exit_code(&self) -> Option<u8> {
        self.first
            .and_then(|s| s.signal)
            .and_then(|s| u8::try_from(128 + s).ok())
    }
}

/// Where the checkpoint is; ranks other than 0 have no run directory.
fn continue_with(dir: &std::path::Path) -> String {
    if dir.as_os_str().is_empty() {
        "rank 0 wrote the checkpoint".into()
    } else {
        format!(
            "checkpoint written, continue with --resume {}",
            dir.display()
        )
    }
}

/// A rank that was asked to stop, and by which signal when it was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopper {
    pub rank: usize,
    pub signal: Option<i32>,
}

impl Stopper {
    fn describe(self) -> String {
        match self.signal {
            Some(s) => format!("rank {} received {}: ", self.rank, crate::signal::name(s)),
            None => format!("rank {} was asked to stop: ", self.rank),
        }
    }
}

/// One rank's share of a run: a fresh or resumed model, its optimizer, its data and where the
/// run stands.
pub struct Trainer<'c> {
    config: TrainConfig,
    device: Device,
    /// Always `Some` between calls: the optimizer takes the model by value.
    model: Option<AlexNet>,
    optimizer: ModuleOptimizer,
    ddp: Option<Ddp<&'c mut dyn Communicator>>,
    world: usize,
    rank: usize,
    train_set: Dataset,
    val_set: Dataset,
    batcher: Arc<AugmentBatcher>,
    eval_pipeline: Transform,
    steps_per_epoch: usize,
    /// Optimizer steps taken (drives the learning-rate schedule).
    step: usize,
    /// The epoch the next [`epoch`](Self::epoch) call trains (0-based).
    next_epoch: usize,
    best: f64,
    /// Where an interrupted epoch stopped, consumed by the next epoch.
    partial: Option<Partial>,
    /// Images `--skip-bad-images` left out so far.
    skipped: BTreeSet<String>,
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("step", &self.step)
            .field("next_epoch", &self.next_epoch)
            .finish_non_exhaustive()
    }
}

/// What one batch measured.
struct BatchStats {
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

impl<'c> Trainer<'c> {
    /// A rank of the run `config` describes on `device` (made autodiff here), one of a
    /// data-parallel group when `comm` is given (gradients averaged by [`Ddp`], data sharded by
    /// the sampler), continuing from `start` if given. `run` is rank 0's run directory (its
    /// history gives the best accuracy so far). Every check of the data, the pipelines and the
    /// model happens here, before the first step.
    pub fn new(
        config: &TrainConfig,
        device: &Device,
        comm: Option<&'c mut dyn Communicator>,
        start: Option<&Checkpoint>,
        run: Option<&RunDir>,
    ) -> Result<Self> {
        config.validate()?;
        let config = config.clone().resolve();
        let device = device.clone().autodiff();
        let (world, rank) = comm.as_ref().map_or((1, 0), |c| (c.world_size(), c.rank()));
        let mut ddp = comm
            .map(|c| Ddp::new(c, DdpConfig::default()))
            .transpose()?;

        let Prepared {
            train_set,
            val_set,
            train_pipeline,
            eval_pipeline,
            num_classes,
        } = prepare(&config)?;
        let mut model = crate::model::build(&config, num_classes, &device)?;
        let mut optimizer = new_optimizer(&config);

        let (step, next_epoch, best, partial) = match start {
            None => (0, 0, f64::NEG_INFINITY, None),
            Some(c) => {
                let changed = c
                    .header
                    .config
                    .clone()
                    .resolve()
                    .differences(&config, &RESUMABLE);
                if !changed.is_empty() {
                    bail!(
                        "the checkpoint was written by a run with other settings: {} (only {} \
                         may change when resuming)",
                        changed.join(", "),
                        RESUMABLE.join(", ")
                    );
                }
                model = model
                    .load_checkpoint_bytes(&c.model)
                    .context("the checkpoint's model does not fit this run's model")?;
                optimizer = optimizer
                    .from_bytes(burn::tensor::Bytes::from_bytes_vec(c.optimizer.clone()))
                    .context("cannot read the checkpoint's optimizer state")?;
                let best = run.map_or(f64::NEG_INFINITY, best_accuracy);
                (
                    c.header.step,
                    c.header.epoch,
                    best,
                    c.header.partial.clone(),
                )
            }
        };
        if let Some(ddp) = ddp.as_mut() {
            // Every rank built (and maybe loaded) the same model; rank 0's values win.
            model = ddp.prepare(model)?;
        }
        if let Some(run) = run {
            std::fs::create_dir_all(checkpoint::dir(run.path()))?;
        }
        let batcher = Arc::new(
            AugmentBatcher::new(train_pipeline, config.augment.on, num_classes, config.seed)
                .with_mix(BatchMix {
                    mixup_alpha: config.mix.mixup_alpha,
                    cutmix_alpha: config.mix.cutmix_alpha,
                    prob: config.mix.prob,
                    switch_prob: config.mix.switch_prob,
                    label_smoothing: f64::from(config.mix.label_smoothing),
                }),
        );
        let steps_per_epoch = config.steps_per_epoch(train_set.len(), world);
        if steps_per_epoch == 0 {
            bail!(
                "{world} ranks leave {} training samples per rank, fewer than batch_size * \
                 accumulate = {}",
                train_set.len().div_ceil(world),
                config.data.batch_size * config.optim.accumulate
            );
        }
        Ok(Self {
            config,
            device,
            model: Some(model),
            optimizer,
            ddp,
            world,
            rank,
            train_set,
            val_set,
            batcher,
            eval_pipeline,
            steps_per_epoch,
            step,
            next_epoch,
            best,
            partial,
            skipped: BTreeSet::new(),
        })
    }

    /// The epoch the next [`epoch`](Self::epoch) call trains (0-based).
    pub fn next_epoch(&self) -> usize {
        self.next_epoch
    }

    pub fn model(&self) -> &AlexNet {
        self.model
            .as_ref()
            .expect("the model is back after every call")
    }

    pub fn into_model(self) -> AlexNet {
        self.model.expect("the model is back after every call")
    }

    /// Trains the next epoch; rank 0 (the one given `run`) then validates, records the epoch
    /// and checkpoints. Stops at the next optimizer step once `interrupt` is set, with an
    /// [`Interrupted`] error after writing `last.ckpt`.
    pub fn epoch(
        &mut self,
        run: Option<&mut RunDir>,
        quiet: bool,
        interrupt: Option<&AtomicBool>,
    ) -> Result<()> {
        let epoch = self.next_epoch;
        let config = &self.config;
        // Dropout's draws depend only on (seed, epoch), so a resumed run repeats them.
        self.device.seed(kindling_augment::sample_seed(
            config.seed,
            epoch as u64,
            u64::MAX,
        ));
        let start = Instant::now();
        let resumed = self.partial.take().unwrap_or(Partial {
            batches_done: 0,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
        });
        let (mut loss_sum, mut correct, mut seen) =
            (resumed.loss_sum, resumed.correct, resumed.seen);
        let mut lr = config.lr_at(self.step, self.steps_per_epoch);
        let accumulate = config.optim.accumulate;
        let bar = progress_bar(
            self.steps_per_epoch * accumulate,
            epoch,
            config.epochs,
            quiet,
        );
        self.batcher.set_epoch(epoch as u64);
        let mut accumulator = GradientsAccumulator::new();
        let mut pending = 0;
        let plan = Plan {
            seed: config.seed,
            epoch,
            skip: resumed.batches_done,
            batches: self.steps_per_epoch * accumulate,
            batch_size: config.data.batch_size,
            world: self.world,
            rank: self.rank,
            workers: config.data.workers.unwrap_or_else(|| {
                // Thread ranks share this process's cores.
                let ranks_here = match config.dist.engine {
                    crate::config::Engine::Threads => self.world,
                    _ => 1,
                };
                (default_workers() / ranks_here).max(1)
            }),
            skip_bad_images: config.data.skip_bad_images,
        };
        let loader = Loader::spawn(
            self.train_set.clone(),
            Arc::clone(&self.batcher),
            plan,
            &self.device,
        )?;
        for (k, loaded) in loader.enumerate() {
            let batches_done = resumed.batches_done + k + 1;
            let loaded = loaded?;
            self.skipped.extend(loaded.skipped);
            let Some(batch) = loaded.batch else {
                bail!(
                    "every image of batch {batches_done} of epoch {} was unreadable (see \
                     skipped_images.txt)",
                    epoch + 1
                );
            };
            let stats = self.accumulate(batch, &mut accumulator, epoch)?;
            loss_sum += stats.loss_sum;
            correct += stats.correct;
            seen += stats.seen;
            pending += 1;
            if pending == accumulate {
                lr = self.config.lr_at(self.step, self.steps_per_epoch);
                self.step(lr, accumulator.grads())?;
                pending = 0;
            }
            if pending == 0
                && let Some(first) = self.stopper(interrupt)?
            {
                bar.finish_and_clear();
                let partial = Partial {
                    batches_done,
                    loss_sum,
                    correct,
                    seen,
                };
                return self.interrupt(run, epoch, partial, first);
            }
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4} acc {:5.1}% {:.0} img/s",
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64,
                seen as f64 / start.elapsed().as_secs_f64()
            ));
        }
        bar.finish_and_clear();
        self.next_epoch = epoch + 1;
        let train_time = start.elapsed().as_secs_f64();
        // Training figures over all ranks; only rank 0 validates, records and checkpoints.
        let [loss_sum, correct, seen] =
            self.sum_across([loss_sum as f32, correct as f32, seen as f32])?;
        let (loss_sum, correct, seen) = (f64::from(loss_sum), correct as usize, seen as usize);
        let Some(run) = run else {
            return Ok(());
        };
        let trained = BatchStats {
            loss_sum,
            correct,
            seen,
        };
        self.validate_and_record(run, epoch, lr, trained, train_time, quiet)
    }

    /// Rank 0's end of an epoch: validation, the epoch's line in the run's history, its
    /// checkpoints, and after the last epoch the confusion matrix.
    fn validate_and_record(
        &mut self,
        run: &mut RunDir,
        epoch: usize,
        lr: f64,
        trained: BatchStats,
        train_time: f64,
        quiet: bool,
    ) -> Result<()> {
        let eval = evaluate(
            self.model(),
            &self.val_set,
            &self.eval_pipeline,
            self.config.data.batch_size,
            self.config.data.skip_bad_images,
            &self.device,
        )?;
        self.skipped.extend(eval.skipped.iter().cloned());
        let seen = trained.seen as f64;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            step: self.step,
            lr,
            train_loss: trained.loss_sum / seen,
            train_acc: trained.correct as f64 / seen,
            val_loss: eval.loss,
            val_acc: eval.top1,
            val_top5: eval.top5,
            images_per_sec: seen / train_time,
        };
        run.record(&metrics)?;
        if !self.skipped.is_empty() {
            run.write_skipped(&self.skipped)?;
        }
        self.save_epoch(run, eval.top1)?;
        if !quiet {
            println!("{metrics}");
        }
        if epoch + 1 == self.config.epochs {
            let classes = self.val_set.classes();
            run.write_confusion(&classes, &eval.confusion)?;
            if !quiet {
                println!("{}", confusion_table(&classes, &eval.confusion));
            }
        }
        Ok(())
    }

    /// Forward and backward of one batch, its gradients added to `accumulator`.
    fn accumulate(
        &mut self,
        batch: AugmentedBatch,
        accumulator: &mut GradientsAccumulator<AlexNet>,
        epoch: usize,
    ) -> Result<BatchStats> {
        let AugmentedBatch {
            images,
            targets,
            labels,
        } = batch;
        let model = self.model();
        let n = labels.dims()[0];
        let logits = model.forward(images);
        // Soft targets: one-hot, smoothed or mixed; equal to the usual cross-entropy on plain
        // one-hot targets.
        let loss = soft_cross_entropy(logits.clone(), targets)?;
        let correct = count_correct(logits, labels);
        let loss_value = scalar(loss.clone());
        if !loss_value.is_finite() {
            bail!(
                "the loss diverged to {loss_value} at epoch {}, step {}; lower --lr",
                epoch + 1,
                self.step
            );
        }
        // Accumulated gradients of the mean loss over `accumulate` equal batches are the
        // gradients of the mean over the effective batch.
        let loss = loss.div_scalar(self.config.optim.accumulate as f32);
        accumulator.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
        Ok(BatchStats {
            loss_sum: loss_value * n as f64,
            correct,
            seen: n,
        })
    }

    /// One optimizer step at learning rate `lr` with `grads`: averaged across ranks, clipped,
    /// applied.
    pub fn step(&mut self, lr: f64, grads: GradientsParams) -> Result<()> {
        let model = self
            .model
            .take()
            .expect("the model is back after every call");
        let grads = match self.ddp.as_mut() {
            Some(ddp) => ddp.sync(&model, grads),
            None => Ok(grads),
        };
        let grads = match grads {
            Ok(g) => g,
            Err(e) => {
                self.model = Some(model);
                return Err(e.into());
            }
        };
        // After the average across ranks, as PyTorch clips after DDP's backward.
        let grads = match self.config.optim.clip_grad_norm {
            Some(max_norm) => clip_grad_norm(&model, grads, max_norm).0,
            None => grads,
        };
        self.model = Some(self.optimizer.step(lr, model, grads));
        self.step += 1;
        Ok(())
    }

    /// Writes `last.ckpt` inside epoch `epoch` (rank 0) and returns [`Interrupted`].
    fn interrupt(
        &mut self,
        run: Option<&mut RunDir>,
        epoch: usize,
        partial: Partial,
        first: Stopper,
    ) -> Result<()> {
        let [loss_sum, correct, seen] = self.sum_across([
            partial.loss_sum as f32,
            partial.correct as f32,
            partial.seen as f32,
        ])?;
        let interrupted = Interrupted {
            epoch: epoch + 1,
            batches: partial.batches_done,
            dir: run
                .as_deref()
                .map_or_else(Default::default, |r| r.path().to_path_buf()),
            first: (self.world > 1).then_some(first),
        };
        let Some(run) = run else {
            return Err(interrupted.into());
        };
        // The accuracy of the last completed epoch (JSON has no -inf for "none").
        let last_acc = run.history().last().map_or(0.0, |m| m.val_acc);
        let mut c = self.checkpoint(epoch, last_acc)?;
        c.header.partial = Some(Partial {
            batches_done: partial.batches_done,
            loss_sum: f64::from(loss_sum),
            correct: correct as usize,
            seen: seen as usize,
        });
        c.save(&checkpoint::last(run.path()))?;
        Err(interrupted.into())
    }

    /// The run's state after `epoch` completed epochs.
    fn checkpoint(&self, epoch: usize, val_acc: f64) -> Result<Checkpoint> {
        Ok(Checkpoint::new(
            epoch,
            self.step,
            val_acc,
            &self.config,
            self.model().checkpoint_bytes()?,
            self.optimizer
                .into_bytes()
                .map_err(|e| anyhow::anyhow!("cannot serialise the optimizer state: {e:?}"))?
                .to_vec(),
        ))
    }

    /// Writes the epoch's checkpoint, `last.ckpt` and, on a new best validation accuracy,
    /// `best.ckpt`.
    fn save_epoch(&mut self, run: &RunDir, val_acc: f64) -> Result<()> {
        let c = self.checkpoint(self.next_epoch, val_acc)?;
        let is_best = val_acc > self.best;
        if is_best {
            self.best = val_acc;
        }
        checkpoint::save_epoch(run.path(), &c, self.config.keep_checkpoints, is_best)
    }

    /// Element-wise sums of `values` over the ranks (the values themselves on a single rank).
    /// Whether any rank was asked to stop, and which was the lowest: every rank says so at
    /// every optimizer step, so all stop at the same step and can name the rank that went
    /// first. A signal travels as its number; a flag set without one as -1.
    fn stopper(&mut self, interrupt: Option<&AtomicBool>) -> Result<Option<Stopper>> {
        let mut says = vec![0.0f32; self.world];
        if interrupt.is_some_and(|f| f.load(Ordering::Relaxed)) {
            says[self.rank] = crate::signal::received().map_or(-1.0, |s| s as f32);
        }
        if let Some(ddp) = self.ddp.as_mut() {
            ddp.comm().all_reduce(&mut says, ReduceOp::Sum)?;
        }
        Ok(says.iter().position(|&s| s != 0.0).map(|rank| Stopper {
            rank,
            signal: (says[rank] > 0.0).then_some(says[rank] as i32),
        }))
    }

    fn sum_across<const N: usize>(&mut self, mut values: [f32; N]) -> Result<[f32; N]> {
        if let Some(ddp) = self.ddp.as_mut() {
            ddp.comm().all_reduce(&mut values, ReduceOp::Sum)?;
        }
        Ok(values)
    }
}

/// One rank's share of a run, from `start` if given, for `stop_after` epochs of this session
/// if given (else to the end of the config): see [`Trainer`].
#[allow(clippy::too_many_arguments)]
pub fn train_rank(
    config: &TrainConfig,
    mut run: Option<&mut RunDir>,
    quiet: bool,
    start: Option<&Checkpoint>,
    stop_after: Option<usize>,
    interrupt: Option<&AtomicBool>,
    device: &Device,
    comm: Option<&mut dyn Communicator>,
) -> Result<AlexNet> {
    let mut trainer = Trainer::new(config, device, comm, start, run.as_deref())?;
    let first = trainer.next_epoch();
    let last = stop_after.map_or(config.epochs, |n| (first + n).min(config.epochs));
    for _ in first..last {
        trainer.epoch(run.as_deref_mut(), quiet, interrupt)?;
    }
    Ok(trainer.into_model())
}

fn new_optimizer(config: &TrainConfig) -> ModuleOptimizer {
    let o = &config.optim;
    match o.optimizer {
        Optimizer::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig {
                momentum: o.momentum,
                // PyTorch's default; burn's MomentumConfig defaults to 0.1.
                dampening: 0.0,
                nesterov: o.nesterov,
            }))
            .with_weight_decay(Some(WeightDecayConfig {
                penalty: o.weight_decay as f32,
            }))
            .init(),
        Optimizer::Adamw => AdamWConfig::new()
            .with_weight_decay(o.weight_decay as f32)
            .init(),
    }
}

/// PyTorch's `clip_grad_norm_`: when the L2 norm of all gradients together exceeds `max_norm`,
/// scales every gradient by `max_norm / (norm + 1e-6)`. Returns the gradients and their norm
/// before clipping.
pub fn clip_grad_norm<M: Module>(
    model: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    struct SquaredNorm<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredNorm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.powf_scalar(2.0).sum();
                self.sum = Some(match self.sum.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut norm = SquaredNorm {
        grads: &grads,
        sum: None,
    };
    model.visit(&mut norm);
    // One read back to the host for the whole model.
    let total = norm.sum.map_or(0.0, |s| scalar(s).sqrt());
    if total > max_norm {
        model.visit(&mut Scale {
            grads: &mut grads,
            factor: max_norm / (total + 1e-6),
        });
    }
    (grads, total)
}

/// The best validation accuracy recorded so far in a run.
fn best_accuracy(run: &RunDir) -> f64 {
    run.history()
        .iter()
        .map(|m| m.val_acc)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// A progress bar on an interactive terminal; hidden otherwise, where the per-epoch lines are
/// the log.
fn progress_bar(steps: usize, epoch: usize, epochs: usize, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
    bar
}

fn count_correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let predicted = logits.argmax(1).flatten::<1>(0, 1);
    scalar(predicted.equal(labels).int().sum().float()) as usize
}

/// Writes the trained weights as `model.safetensors` (torchvision key names) in the run
/// directory, atomically.
pub fn save_model(model: &AlexNet, run: &RunDir) -> Result<()> {
    let bytes = model.to_torchvision_safetensors()?;
    crate::run::write_atomic(&run.path().join("model.safetensors"), &bytes)
}
