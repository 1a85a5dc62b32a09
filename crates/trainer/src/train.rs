//! The training loop: the built-in dataset, the CIFAR augmentation pipeline, a CIFAR AlexNet,
//! SGD with momentum and a warmup + cosine schedule, validation every epoch.

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use kindling_augment::{Augment, Compose, Image, Sample, batch_to_tensor, functional as f};
use kindling_dist::DistributedSampler;
use kindling_model::{AlexNet, AlexNetConfig, WeightInit};

use crate::config::{Optimizer, TrainConfig};
use crate::data::synthetic::{CLASSES, Synthetic};
use crate::run::{EpochMetrics, RunDir};

/// Trains a model as `config` says, writing the run into `run`; returns the final model.
pub fn train(config: &TrainConfig, run: &mut RunDir, quiet: bool) -> Result<AlexNet> {
    config.validate()?;
    let devices = crate::device::parse_devices(&config.device)?;
    if devices.len() != 1 {
        bail!("training on several devices needs kindling-dist, which is not written yet");
    }
    let device = devices[0].clone().autodiff();
    device.seed(config.seed);

    let train_set = Synthetic::new(config.seed, config.train_size);
    let val_set = validation_set(config);
    let mut model = AlexNetConfig::cifar()
        .with_num_classes(CLASSES.len())
        .with_dropout(config.dropout)
        // PyTorch's default init leaves this normalisation-free network stuck near chance for
        // hundreds of steps; He init starts learning at once.
        .with_init(WeightInit::Kaiming)
        .init(&device);
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
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((config.label_smoothing > 0.0).then_some(config.label_smoothing))
        .init(&device);

    let steps_per_epoch = config.train_size / config.batch_size;
    let mut step = 0;
    for epoch in 0..config.epochs {
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = 0.0;
        let bar = progress_bar(steps_per_epoch, epoch, config.epochs, quiet);
        for batch in Loader::spawn(train_set, config, epoch)? {
            let (images, labels) = batch?;
            lr = config.lr_at(step, steps_per_epoch);
            let x = batch_to_tensor(&images, &device)?;
            let y = labels_tensor(&labels, &device);
            let logits = model.forward(x);
            let loss = loss_fn.forward(logits.clone(), y.clone());
            correct += count_correct(logits, y);
            seen += labels.len();
            let loss_value = scalar(loss.clone());
            if !loss_value.is_finite() {
                bail!(
                    "the loss diverged to {loss_value} at epoch {epoch}, step {step}; lower --lr"
                );
            }
            loss_sum += loss_value * labels.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
            step += 1;
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
        let (val_loss, val_acc) = evaluate(&model, &val_set, config.batch_size, &device)?;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen as f64,
            train_acc: correct as f64 / seen as f64,
            val_loss,
            val_acc,
            images_per_sec: seen as f64 / train_time,
        };
        run.record(&metrics)?;
        if !quiet {
            println!("{metrics}");
        }
    }
    Ok(model)
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

/// The validation split: generated with another seed, so validation images are never training
/// images.
pub fn validation_set(config: &TrainConfig) -> Synthetic {
    Synthetic::new(config.seed.wrapping_add(0x5eed), config.val_size)
}

/// Loss and top-1 accuracy of `model` over `data`, without dropout or gradients.
pub fn evaluate(
    model: &AlexNet,
    data: &Synthetic,
    batch_size: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size) {
        let (images, labels) = load(data, chunk, None)?;
        let x = batch_to_tensor(&images, device)?;
        let y = labels_tensor(&labels, device);
        let logits = model.forward(x);
        loss_sum += scalar(loss_fn.forward(logits.clone(), y.clone())) * labels.len() as f64;
        correct += count_correct(logits, y);
    }
    Ok((
        loss_sum / data.len() as f64,
        correct as f64 / data.len() as f64,
    ))
}

type Batch = (Vec<Image<f32>>, Vec<usize>);

/// Prepares the batches of one epoch on a worker thread, two batches ahead of the model, so the
/// training step does not wait for decoding and augmentation.
struct Loader {
    receiver: mpsc::IntoIter<Result<Batch>>,
}

impl Loader {
    fn spawn(data: Synthetic, config: &TrainConfig, epoch: usize) -> Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(2);
        // One rank of one: the same seeded shuffle a multi-rank run will shard.
        let mut sampler = DistributedSampler::new(data.len(), 1, 0)?.with_seed(config.seed);
        sampler.set_epoch(epoch as u64);
        let order = sampler.indices();
        let batch_size = config.batch_size;
        let augment = config
            .augment
            .then(|| (kindling_augment::pipelines::cifar(), config.seed, epoch));
        std::thread::spawn(move || {
            // drop_last, as PyTorch's DataLoader(drop_last=True): every step sees a full batch.
            for chunk in order.chunks_exact(batch_size) {
                if sender.send(load(&data, chunk, augment.as_ref())).is_err() {
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
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.next()
    }
}

/// Loads and converts samples; with `augment = Some((pipeline, seed, epoch))` each sample is
/// augmented with an RNG derived from (seed, epoch, index), so results do not depend on thread
/// timing.
fn load(
    data: &Synthetic,
    indices: &[usize],
    augment: Option<&(Compose, u64, usize)>,
) -> Result<Batch> {
    let mut images = Vec::with_capacity(indices.len());
    let mut labels = Vec::with_capacity(indices.len());
    for &index in indices {
        let (image, label) = data.get(index);
        let image = match augment {
            Some((pipeline, seed, epoch)) => {
                let mut rng = kindling_augment::sample_rng(*seed, *epoch as u64, index as u64);
                pipeline
                    .apply(Sample::U8(image), &mut rng)
                    .with_context(|| format!("augmenting sample {index}"))?
                    .into_f32()?
            }
            None => f::normalize(&f::to_f32(&image), &[0.5; 3], &[0.5; 3])?,
        };
        images.push(image);
        labels.push(label);
    }
    Ok((images, labels))
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
