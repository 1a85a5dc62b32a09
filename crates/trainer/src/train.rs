//! The training loop: the built-in dataset, the CIFAR augmentation pipeline (on loader threads
//! or on the device) with optional MixUp/CutMix, a CIFAR AlexNet, SGD or AdamW with a warmup and
//! a schedule, gradient accumulation, validation (top-1, top-5) every epoch and a confusion
//! matrix at the end.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use kindling_augment::batched::{
    AugmentBatcher, AugmentedBatch, BatchMix, ImageSource, LabeledImage, soft_cross_entropy,
};
use kindling_augment::transforms::{Normalize, ToTensor};
use kindling_augment::{Augment, Compose, Sample, Transform, batch_to_tensor};
use kindling_dist::{
    Communicator, Ddp, DdpConfig, DistError, DistributedSampler, LocalGroup, RankError, ReduceOp,
};
use kindling_model::{AlexNet, AlexNetConfig, WeightInit};

use crate::checkpoint::{self, Checkpoint, Partial};
use crate::config::{DatasetKind, Engine};
use crate::config::{Optimizer, TrainConfig};
use crate::data::Dataset;
use crate::data::cifar::Cifar10;
use crate::data::idx::{IdxDataset, IdxKind, Split};
use crate::data::synthetic::{CLASSES, Synthetic};
use crate::run::{EpochMetrics, RunDir};

/// Trains a model as `config` says, writing the run into `run`; returns the final model.
pub fn train(config: &TrainConfig, run: &mut RunDir, quiet: bool) -> Result<AlexNet> {
    train_from(config, run, quiet, None, None, None)
}

/// Continues the run in `run` from its `checkpoints/last.ckpt` to the end of its config. The
/// data order, augmentation, learning rate and dropout draws (the device RNG is reseeded from
/// the seed and the epoch at every epoch) repeat the uninterrupted run, and so do the final
/// weights (tested bit for bit; mid-epoch, dropout's draws restart at the epoch's seed).
pub fn resume(run: &mut RunDir, quiet: bool, interrupt: Option<&AtomicBool>) -> Result<AlexNet> {
    let checkpoint = Checkpoint::load(&checkpoint::last(run.path()))?;
    resume_from(run, checkpoint, quiet, interrupt)
}

/// [`resume`] from its `last.ckpt`, already loaded.
pub fn resume_from(
    run: &mut RunDir,
    checkpoint: Checkpoint,
    quiet: bool,
    interrupt: Option<&AtomicBool>,
) -> Result<AlexNet> {
    let config = checkpoint.header.config.clone();
    run.truncate_history(checkpoint.header.epoch)?;
    train_from(&config, run, quiet, Some(checkpoint), None, interrupt)
}

/// The error a run returns when `interrupt` was set (Ctrl-C): it wrote `last.ckpt` at the
/// last optimizer step first.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted in epoch {epoch} after {batches} batches; checkpoint written, continue with --resume {}",
    dir.display()
)]
pub struct Interrupted {
    pub epoch: usize,
    pub batches: usize,
    pub dir: std::path::PathBuf,
}

/// [`train`] from an optional checkpoint (which may stop inside an epoch), stopping after
/// `stop_after` epochs of this session if given, and at the next optimizer step once
/// `interrupt` is set (Ctrl-C), with an [`Interrupted`] error after writing `last.ckpt`.
/// Resuming inside an epoch skips the batches already trained (with dropout on, its draws
/// restart at the epoch's seed, so they differ from the uninterrupted run's).
pub fn train_from(
    config: &TrainConfig,
    run: &mut RunDir,
    quiet: bool,
    start: Option<Checkpoint>,
    stop_after: Option<usize>,
    interrupt: Option<&AtomicBool>,
) -> Result<AlexNet> {
    config.validate()?;
    if config.engine != Engine::Threads {
        let engine = format!("{:?}", config.engine).to_lowercase();
        bail!(
            "engine {engine} runs one process per rank: start the run with \
             cargo xtask train --nproc-per-node N --engine {engine}"
        );
    }
    let devices = crate::device::parse_devices(&config.device)?;
    if let [device] = devices.as_slice() {
        return train_rank(
            config,
            Some(run),
            quiet,
            start.as_ref(),
            stop_after,
            interrupt,
            device,
            None,
        );
    }
    // Data-parallel on the devices of this process: one thread (rank) per device.
    let timeout = Duration::from_secs(config.dist_timeout_secs);
    let run = Mutex::new(Some(run));
    let outcomes = LocalGroup::run(&devices, timeout, |comm, device| {
        let rank = comm.rank();
        let run = if rank == 0 {
            run.lock().ok().and_then(|mut r| r.take())
        } else {
            None
        };
        train_rank(
            config,
            run,
            quiet || rank != 0,
            start.as_ref(),
            stop_after,
            interrupt,
            device,
            Some(comm),
        )
    })?;
    rank_zero_result(outcomes)
}

/// Rank 0's model, or the error that started a failure: a rank's own error rather than the
/// "peer failed" the others saw because of it.
fn rank_zero_result(outcomes: Vec<Result<AlexNet, RankError<anyhow::Error>>>) -> Result<AlexNet> {
    let mut errors = Vec::new();
    for (rank, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(model) if rank == 0 => return Ok(model),
            Ok(_) => {}
            Err(RankError::Failed(e)) => errors.push(e),
            Err(RankError::Panicked(msg)) => {
                errors.push(anyhow::anyhow!("rank {rank} panicked: {msg}"));
            }
        }
    }
    let is_echo = |e: &anyhow::Error| {
        matches!(
            e.downcast_ref::<DistError>(),
            Some(DistError::PeerFailed { .. } | DistError::Closed(_))
        )
    };
    let first = errors.iter().position(|e| !is_echo(e)).unwrap_or(0);
    match errors.into_iter().nth(first) {
        Some(e) => Err(e),
        None => bail!("rank 0 returned no model"),
    }
}

/// One rank's share of a run: [`train_from`] for one device, or one rank of a data-parallel
/// group when `comm` is given (gradients averaged across ranks by [`Ddp`], the data sharded by
/// a [`DistributedSampler`]). Only rank 0 gets the run directory: it validates, records and
/// checkpoints; the others train.
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
    config.validate()?;
    let device = device.clone().autodiff();
    let (world, rank) = comm.as_ref().map_or((1, 0), |c| (c.world_size(), c.rank()));
    let mut ddp = comm
        .map(|c| Ddp::new(c, DdpConfig::default()))
        .transpose()?;

    let (train_set, val_set) = datasets(config)?;
    let num_classes = train_set.classes().len();
    let mut model = {
        // flex's RNG is process-global: ranks on threads of one process take turns, so each
        // draws the weights a single-device run would.
        static INIT: Mutex<()> = Mutex::new(());
        let _turn = INIT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        device.seed(config.seed);
        let model = AlexNetConfig::cifar()
            .with_num_classes(num_classes)
            .with_dropout(config.dropout)
            // PyTorch's default init leaves this normalisation-free network stuck near chance
            // for hundreds of steps; He init starts learning at once.
            .with_init(WeightInit::Kaiming)
            .init(&device);
        // burn draws a parameter's initial values when it is first read: read them all now,
        // from this seed, before anything else draws (the per-epoch reseed, another rank).
        model.visit(&mut Materialize);
        model
    };
    let mut optimizer = match config.optimizer {
        Optimizer::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig {
                momentum: config.momentum,
                // PyTorch's default; burn's MomentumConfig defaults to 0.1.
                dampening: 0.0,
                nesterov: config.nesterov,
            }))
            .with_weight_decay(Some(WeightDecayConfig {
                penalty: config.weight_decay as f32,
            }))
            .init(),
        Optimizer::Adamw => AdamWConfig::new()
            .with_weight_decay(config.weight_decay as f32)
            .init(),
    };

    let (first_epoch, mut step, mut best) = match start {
        None => (0, 0, f64::NEG_INFINITY),
        Some(c) => {
            if c.header.config != *config {
                bail!("the checkpoint was written by a run with another config");
            }
            model = model
                .load_checkpoint_bytes(&c.model)
                .context("the checkpoint's model does not fit this run's model")?;
            optimizer = optimizer
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(c.optimizer.clone()))
                .context("cannot read the checkpoint's optimizer state")?;
            let best = run.as_deref().map_or(f64::NEG_INFINITY, best_accuracy);
            (c.header.epoch, c.header.step, best)
        }
    };
    if let Some(ddp) = ddp.as_mut() {
        // Every rank built (and maybe loaded) the same model; rank 0's values win.
        model = ddp.prepare(model)?;
    }
    let mut partial = start.and_then(|c| c.header.partial.clone());
    if let Some(run) = run.as_deref() {
        std::fs::create_dir_all(checkpoint::dir(run.path()))?;
    }
    let batcher = Arc::new(training_batcher(config, num_classes));
    let steps_per_epoch = config.steps_per_epoch_on(world);
    if steps_per_epoch == 0 {
        bail!(
            "{world} ranks leave {} training samples per rank, fewer than batch_size * \
             accumulate = {}",
            config.train_size.div_ceil(world),
            config.batch_size * config.accumulate
        );
    }
    let last_epoch = stop_after.map_or(config.epochs, |n| (first_epoch + n).min(config.epochs));
    for epoch in first_epoch..last_epoch {
        // Dropout's draws depend only on (seed, epoch), so a resumed run repeats them.
        device.seed(kindling_augment::sample_seed(
            config.seed,
            epoch as u64,
            u64::MAX,
        ));
        let start = Instant::now();
        let resumed = partial.take().unwrap_or(Partial {
            batches_done: 0,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
        });
        let (mut loss_sum, mut correct, mut seen) =
            (resumed.loss_sum, resumed.correct, resumed.seen);
        let mut lr = config.lr_at(step, steps_per_epoch);
        let bar = progress_bar(
            steps_per_epoch * config.accumulate,
            epoch,
            config.epochs,
            quiet,
        );
        batcher.set_epoch(epoch as u64);
        let mut accumulator = GradientsAccumulator::new();
        let mut pending = 0;
        let loader = Loader::spawn(
            train_set.clone(),
            Arc::clone(&batcher),
            config,
            (epoch, resumed.batches_done),
            (world, rank),
            &device,
        )?;
        for (k, batch) in loader.enumerate() {
            let batches_done = resumed.batches_done + k + 1;
            let AugmentedBatch {
                images,
                targets,
                labels,
            } = batch?;
            let n = labels.dims()[0];
            let logits = model.forward(images);
            // Soft targets: one-hot, smoothed or mixed; equal to the usual cross-entropy on
            // plain one-hot targets.
            let loss = soft_cross_entropy(logits.clone(), targets)?;
            correct += count_correct(logits, labels);
            seen += n;
            let loss_value = scalar(loss.clone());
            if !loss_value.is_finite() {
                bail!(
                    "the loss diverged to {loss_value} at epoch {epoch}, step {step}; lower --lr"
                );
            }
            loss_sum += loss_value * n as f64;
            // Accumulated gradients of the mean loss over `accumulate` equal batches are the
            // gradients of the mean over the effective batch.
            let loss = loss.div_scalar(config.accumulate as f32);
            accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
            pending += 1;
            if pending == config.accumulate {
                lr = config.lr_at(step, steps_per_epoch);
                let grads = accumulator.grads();
                let grads = match ddp.as_mut() {
                    Some(ddp) => ddp.sync(&model, grads)?,
                    None => grads,
                };
                // After the average across ranks, as PyTorch clips after DDP's backward.
                let grads = match config.clip_grad_norm {
                    Some(max_norm) => clip_grad_norm(&model, grads, max_norm).0,
                    None => grads,
                };
                model = optimizer.step(lr, model, grads);
                pending = 0;
                step += 1;
            }
            // Every rank stops at the same step when any rank saw Ctrl-C.
            let stop = pending == 0
                && sum_across(
                    &mut ddp,
                    [f32::from(
                        interrupt.is_some_and(|f| f.load(Ordering::Relaxed)),
                    )],
                )?[0]
                    > 0.0;
            if stop {
                let [loss_sum, correct, seen] =
                    sum_across(&mut ddp, [loss_sum as f32, correct as f32, seen as f32])?;
                bar.finish_and_clear();
                let interrupted = Interrupted {
                    epoch: epoch + 1,
                    batches: batches_done,
                    dir: run
                        .as_deref()
                        .map_or_else(Default::default, |r| r.path().to_path_buf()),
                };
                let Some(run) = run.as_deref_mut() else {
                    return Err(interrupted.into());
                };
                // The accuracy of the last completed epoch (JSON has no -inf for "none").
                let last_acc = run.history().last().map_or(0.0, |m| m.val_acc);
                let mut c = Checkpoint::new(
                    epoch,
                    step,
                    last_acc,
                    config,
                    model.checkpoint_bytes()?,
                    optimizer
                        .into_bytes()
                        .map_err(|e| anyhow::anyhow!("cannot serialise the optimizer: {e:?}"))?
                        .to_vec(),
                );
                c.header.partial = Some(Partial {
                    batches_done,
                    loss_sum: f64::from(loss_sum),
                    correct: correct as usize,
                    seen: seen as usize,
                });
                c.save(&checkpoint::last(run.path()))?;
                return Err(interrupted.into());
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
        let train_time = start.elapsed().as_secs_f64();
        // Training figures over all ranks; only rank 0 validates, records and checkpoints.
        let [loss_sum, correct, seen] =
            sum_across(&mut ddp, [loss_sum as f32, correct as f32, seen as f32])?;
        let (loss_sum, correct, seen) = (f64::from(loss_sum), correct as usize, seen as usize);
        let Some(run) = run.as_deref_mut() else {
            continue;
        };
        let eval = evaluate(&model, &val_set, config.batch_size, &device)?;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            val_loss: eval.loss,
            val_acc: eval.top1,
            val_top5: eval.top5,
            images_per_sec: seen as f64 / train_time,
        };
        run.record(&metrics)?;
        save_checkpoints(
            config,
            run,
            &model,
            &optimizer,
            epoch + 1,
            step,
            eval.top1,
            &mut best,
        )?;
        if !quiet {
            println!("{metrics}");
        }
        if epoch + 1 == config.epochs {
            let classes = val_set.classes();
            run.write_confusion(&classes, &eval.confusion)?;
            if !quiet {
                println!("{}", confusion_table(&classes, &eval.confusion));
            }
        }
    }
    Ok(model)
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

/// Reads every parameter once, which makes burn draw lazily initialised values.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Element-wise sums of `values` over the ranks (the values themselves on a single rank).
fn sum_across<const N: usize>(
    ddp: &mut Option<Ddp<&mut dyn Communicator>>,
    mut values: [f32; N],
) -> Result<[f32; N]> {
    if let Some(ddp) = ddp {
        ddp.comm().all_reduce(&mut values, ReduceOp::Sum)?;
    }
    Ok(values)
}

/// The model a checkpoint holds, built from its run's config, on `device`.
pub fn model_from_checkpoint(c: &Checkpoint, device: &Device) -> Result<AlexNet> {
    AlexNetConfig::cifar()
        .with_num_classes(class_names(&c.header.config)?.len())
        .with_dropout(c.header.config.dropout)
        .init(device)
        .load_checkpoint_bytes(&c.model)
        .context("the checkpoint does not hold a model of this run's kind")
}

/// The top `k` classes of an image for a model: `(label, probability)`, most likely first.
/// The image is converted to RGB, resized to 32x32 (bilinear, antialiased) and normalised as
/// in training; gray input (MNIST) becomes three equal channels like the training data.
pub fn predict(
    model: &AlexNet,
    image: &image::DynamicImage,
    k: usize,
    device: &Device,
) -> Result<Vec<(usize, f32)>> {
    let rgb = image.to_rgb8();
    let img = kindling_augment::Image::try_from(&rgb)?;
    let img = kindling_augment::functional::resize(
        &img,
        [32, 32],
        kindling_augment::functional::Interpolation::Bilinear,
        true,
    )?;
    let x = plain_pipeline()
        .apply(Sample::U8(img), &mut kindling_augment::sample_rng(0, 0, 0))?
        .into_f32()?;
    let logits = model.valid().forward(batch_to_tensor(&[x], device)?);
    let probs: Vec<f32> = burn::tensor::activation::softmax(logits, 1)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read the prediction: {e:?}"))?;
    let mut ranked: Vec<(usize, f32)> = probs.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    Ok(ranked)
}

/// Writes `last.ckpt`, `epoch-N.ckpt` (pruning old ones) and, on a new best validation
/// accuracy, `best.ckpt`.
#[allow(clippy::too_many_arguments)]
fn save_checkpoints(
    config: &TrainConfig,
    run: &RunDir,
    model: &AlexNet,
    optimizer: &ModuleOptimizer,
    epoch: usize,
    step: usize,
    val_acc: f64,
    best: &mut f64,
) -> Result<()> {
    let c = Checkpoint::new(
        epoch,
        step,
        val_acc,
        config,
        model.checkpoint_bytes()?,
        optimizer
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialise the optimizer state: {e:?}"))?
            .to_vec(),
    );
    let path = run.path();
    let epoch_file = checkpoint::of_epoch(path, epoch);
    c.save(&epoch_file)?;
    if val_acc > *best {
        *best = val_acc;
        checkpoint::link(&epoch_file, &checkpoint::best(path))?;
    }
    // Last, so that `last.ckpt` never points past the files written before it.
    checkpoint::link(&epoch_file, &checkpoint::last(path))?;
    checkpoint::prune(path, epoch, config.keep_checkpoints)
}

/// The best validation accuracy recorded so far in a run.
fn best_accuracy(run: &RunDir) -> f64 {
    run.history()
        .iter()
        .map(|m| m.val_acc)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// The batcher of a run: the CIFAR pipeline (or just ToTensor + Normalize), on the CPU or the
/// device, with MixUp/CutMix and label smoothing as configured.
fn training_batcher(config: &TrainConfig, num_classes: usize) -> AugmentBatcher {
    let pipeline: Transform = if config.augment {
        kindling_augment::pipelines::cifar().into()
    } else {
        plain_pipeline().into()
    };
    AugmentBatcher::new(pipeline, config.augment_on, num_classes, config.seed).with_mix(BatchMix {
        mixup_alpha: config.mixup_alpha,
        cutmix_alpha: config.cutmix_alpha,
        prob: config.mix_prob,
        switch_prob: config.mix_switch_prob,
        label_smoothing: f64::from(config.label_smoothing),
    })
}

/// What validation uses: the image as it is, scaled and normalised like the training input.
fn plain_pipeline() -> Compose {
    Compose::new([ToTensor.into(), Normalize::new([0.5; 3], [0.5; 3]).into()])
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

/// The built-in validation split: generated with another seed, so validation images are never
/// training images.
pub fn validation_set(config: &TrainConfig) -> Synthetic {
    Synthetic::new(config.seed.wrapping_add(0x5eed), config.val_size)
}

/// The training and validation data of a run: the built-in dataset, or the first `train_size`
/// samples of an IDX training split and the first `val_size` of its test split.
pub fn datasets(config: &TrainConfig) -> Result<(Dataset, Dataset)> {
    let kind = match config.dataset {
        DatasetKind::Builtin => {
            return Ok((
                Dataset::Synthetic(Synthetic::new(config.seed, config.train_size)),
                Dataset::Synthetic(validation_set(config)),
            ));
        }
        DatasetKind::Mnist => IdxKind::Mnist,
        DatasetKind::FashionMnist => IdxKind::FashionMnist,
        DatasetKind::Folder => return folder_datasets(config),
        DatasetKind::Cifar10 => {
            let dir = config.idx_dir().context("CIFAR-10 has a default folder")?;
            let load = |split, size: usize| -> Result<Dataset> {
                let d = Cifar10::load(&dir, split, Some(size))?;
                if d.len() < size {
                    bail!(
                        "{}: {split:?} split has {} samples, fewer than the {size} asked for",
                        dir.display(),
                        d.len()
                    );
                }
                Ok(Dataset::Cifar10(Arc::new(d)))
            };
            return Ok((
                load(Split::Train, config.train_size)?,
                load(Split::Test, config.val_size)?,
            ));
        }
    };
    let dir = config
        .idx_dir()
        .context("--data-dir is needed for mnist: the folder of its IDX files")?;
    let load = |split, size: usize| -> Result<Dataset> {
        let d = IdxDataset::load(&dir, kind, split, Some(size))?;
        if d.len() < size {
            bail!(
                "{}: {:?} split has {} samples, fewer than the {size} asked for",
                dir.display(),
                split,
                d.len()
            );
        }
        Ok(Dataset::Idx(Arc::new(d)))
    };
    Ok((
        load(Split::Train, config.train_size)?,
        load(Split::Test, config.val_size)?,
    ))
}

/// An image folder's training and validation sets: `train/` and `val/` inside `data_dir` when
/// both exist (each limited to its first `train_size` / `val_size` files), else `val_size`
/// images drawn by the seed for validation and up to `train_size` of the rest for training.
fn folder_datasets(config: &TrainConfig) -> Result<(Dataset, Dataset)> {
    use crate::data::folder::ImageFolder;
    let dir = config
        .data_dir
        .clone()
        .context("--data-dir is needed for --dataset folder: one subfolder of images per class")?;
    let (train, val) = if dir.join("train").is_dir() && dir.join("val").is_dir() {
        let train = ImageFolder::scan(&dir.join("train"))?;
        let val = ImageFolder::scan(&dir.join("val"))?;
        if val.classes() != train.classes() {
            bail!(
                "{} and {} have different class folders: {:?} vs {:?}",
                train.root().display(),
                val.root().display(),
                train.classes(),
                val.classes()
            );
        }
        let first = |d: &ImageFolder, n: usize| d.select(&(0..d.len().min(n)).collect::<Vec<_>>());
        (
            first(&train, config.train_size),
            first(&val, config.val_size),
        )
    } else {
        let all = ImageFolder::scan(&dir)?;
        if all.len() <= config.val_size {
            bail!(
                "{} has {} images, not more than val_size = {}: nothing left to train on",
                dir.display(),
                all.len(),
                config.val_size
            );
        }
        let mut order = DistributedSampler::new(all.len(), 1, 0)?.with_seed(config.seed);
        order.set_epoch(u64::MAX); // a split that no epoch's shuffle repeats
        let order = order.indices();
        let (val, train) = order.split_at(config.val_size);
        let train = &train[..train.len().min(config.train_size)];
        (all.select(train), all.select(val))
    };
    if train.len() < config.batch_size * config.accumulate {
        bail!(
            "{}: {} training images, fewer than batch_size * accumulate = {}",
            dir.display(),
            train.len(),
            config.batch_size * config.accumulate
        );
    }
    Ok((
        Dataset::Folder(Arc::new(train)),
        Dataset::Folder(Arc::new(val)),
    ))
}

/// The class names of a run's dataset, indexed by label (an image folder's are its
/// subfolders).
pub fn class_names(config: &TrainConfig) -> Result<Vec<String>> {
    let fixed = |names: [&str; 10]| names.iter().map(|c| c.to_string()).collect();
    Ok(match config.dataset {
        DatasetKind::Builtin => fixed(CLASSES),
        DatasetKind::Mnist => fixed(IdxKind::Mnist.classes()),
        DatasetKind::FashionMnist => fixed(IdxKind::FashionMnist.classes()),
        DatasetKind::Cifar10 => fixed(crate::data::cifar::CLASSES),
        DatasetKind::Folder => {
            let dir = config
                .data_dir
                .clone()
                .context("a folder run has a data_dir")?;
            let train = dir.join("train");
            let root = if train.is_dir() && dir.join("val").is_dir() {
                train
            } else {
                dir
            };
            crate::data::folder::class_names(&root)?
        }
    })
}

/// What [`evaluate`] measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    /// Top-1 and top-5 accuracy in `[0, 1]`.
    pub top1: f64,
    pub top5: f64,
    /// `confusion[true class][predicted class]` counts.
    pub confusion: Vec<Vec<usize>>,
}

/// Loss, top-1 and top-5 accuracy and the confusion matrix of `model` over `data`, without
/// dropout or gradients.
pub fn evaluate(
    model: &AlexNet,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation> {
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let pipeline = plain_pipeline();
    let classes = data.classes().len();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let (mut loss_sum, mut top1, mut top5) = (0.0f64, 0usize, 0usize);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size) {
        let mut images = Vec::with_capacity(chunk.len());
        let mut labels = Vec::with_capacity(chunk.len());
        for &index in chunk {
            let (image, label) = data.get(index)?;
            images.push(
                pipeline
                    .apply(
                        Sample::U8(image),
                        &mut kindling_augment::sample_rng(0, 0, 0),
                    )?
                    .into_f32()?,
            );
            labels.push(label);
        }
        let x = batch_to_tensor(&images, device)?;
        let y = labels_tensor(&labels, device);
        let logits = model.forward(x);
        loss_sum += scalar(loss_fn.forward(logits.clone(), y)) * labels.len() as f64;
        let scores: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read logits: {e:?}"))?;
        for (row, &label) in scores.chunks_exact(classes).zip(&labels) {
            // Rank of the true class: how many classes score higher.
            let rank = row.iter().filter(|&&s| s > row[label]).count();
            top1 += usize::from(rank == 0);
            top5 += usize::from(rank < 5);
            let predicted = (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            confusion[label][predicted] += 1;
        }
    }
    let n = data.len() as f64;
    Ok(Evaluation {
        loss: loss_sum / n,
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        confusion,
    })
}

/// The confusion matrix as a text table, true classes down, predictions across (column
/// headers are the first five letters of each class).
pub fn confusion_table(classes: &[String], confusion: &[Vec<usize>]) -> String {
    let width = classes.iter().map(|c| c.len()).max().unwrap_or(0).max(12);
    let mut out = format!("{:>width$} |", "true \\ pred");
    for c in classes {
        out.push_str(&format!(" {:>5.5}", c));
    }
    out.push('\n');
    for (c, row) in classes.iter().zip(confusion) {
        out.push_str(&format!("{c:>width$} |"));
        for v in row {
            out.push_str(&format!(" {v:>5}"));
        }
        out.push('\n');
    }
    out
}

/// Prepares the batches of one epoch on a worker thread, two batches ahead of the model, so the
/// training step does not wait for decoding and augmentation.
struct Loader {
    receiver: mpsc::IntoIter<Result<AugmentedBatch>>,
}

impl Loader {
    /// The batches of `epoch` for `rank` of `world`, skipping the first `skip`.
    fn spawn(
        data: Dataset,
        batcher: Arc<AugmentBatcher>,
        config: &TrainConfig,
        (epoch, skip): (usize, usize),
        (world, rank): (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(2);
        // The same seeded shuffle on every rank, each taking every `world`-th sample of it:
        // batch b of the ranks together is batch b of one rank with `world` times the size.
        let mut sampler = DistributedSampler::new(data.len(), world, rank)?.with_seed(config.seed);
        sampler.set_epoch(epoch as u64);
        let order = sampler.indices();
        let batch_size = config.batch_size;
        // drop_last at the effective batch: every optimizer step sees `accumulate` full batches.
        let batches = config.steps_per_epoch_on(world) * config.accumulate;
        let device = device.clone();
        std::thread::spawn(move || {
            for chunk in order.chunks_exact(batch_size).take(batches).skip(skip) {
                let items: Result<Vec<LabeledImage>> = chunk
                    .iter()
                    .map(|&index| {
                        let (image, label) = data.get(index)?;
                        Ok(LabeledImage {
                            image: ImageSource::Pixels(image),
                            label,
                            index: index as u64,
                        })
                    })
                    .collect();
                let batch = items.and_then(|items| {
                    batcher
                        .try_batch(items, &device)
                        .with_context(|| format!("preparing a batch of epoch {epoch}"))
                });
                if sender.send(batch).is_err() {
                    break; // the training loop stopped early
                }
            }
        });
        Ok(Self {
            receiver: receiver.into_iter(),
        })
    }
}

impl Iterator for Loader {
    type Item = Result<AugmentedBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.next()
    }
}

fn labels_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(data, [labels.len()]), device)
}

fn count_correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let predicted = logits.argmax(1).flatten::<1>(0, 1);
    scalar(predicted.equal(labels).int().sum().float()) as usize
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}

/// Writes the trained weights as `model.safetensors` (torchvision key names) in the run
/// directory, atomically.
pub fn save_model(model: &AlexNet, run: &RunDir) -> Result<()> {
    let bytes = model.to_torchvision_safetensors()?;
    crate::run::write_atomic(&run.path().join("model.safetensors"), &bytes)
}
