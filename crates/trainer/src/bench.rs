//! `kindling bench`: images/s of a training step and of the batched augmentation on any device,
//! the figures a GPU check compares with PyTorch in the same run. The inputs are made here
//! (deterministic pixels, no files), so the binary alone can measure a machine.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kindling_augment::batched::{DeviceBatch, Kernels, augment_batch_with};
use kindling_augment::{Image, Transform, pipelines};
use kindling_model::WeightInit;

use crate::config::ModelName;

/// Images/s of one training step after two warm-up steps, timed over `steps`.
#[derive(Debug, Clone, Copy)]
pub struct StepFigures {
    /// Forward, loss and backward, the loss read back (so the device finished).
    pub forward_backward: f64,
    /// The same plus the SGD step (momentum 0.9, Nesterov).
    pub with_optimizer: f64,
}

/// The training step of `model` with `classes` outputs at its nominal input size, on a fixed
/// batch of `batch` images on `device`.
pub fn training_step(
    model: ModelName,
    classes: usize,
    batch: usize,
    steps: usize,
    device: &Device,
) -> Result<StepFigures> {
    anyhow::ensure!(
        batch > 0 && steps > 0 && classes > 0,
        "batch, steps and classes must be positive"
    );
    let device = device.clone().autodiff();
    device.seed(0);
    let side = model.nominal_input();
    let mut net = model
        .config(classes)
        .with_init(WeightInit::Kaiming)
        .init(&device);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: true,
        }))
        .init();
    let x = Tensor::<4>::from_data(
        TensorData::new(pixels(batch * 3 * side * side), [batch, 3, side, side]),
        &device,
    );
    let labels: Vec<i64> = (0..batch).map(|i| (i % classes) as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
    let (mut fb, mut opt) = (0.0, 0.0);
    for step in 0..steps + 2 {
        let start = Instant::now();
        let loss = loss_fn.forward(net.forward(x.clone()), y.clone());
        let grads = loss.backward();
        // Reading the loss waits for the device.
        let _ = loss.into_data();
        let grads = GradientsParams::from_grads(grads, &net);
        let backward = start.elapsed().as_secs_f64();
        net = optim.step(0.01, net, grads);
        device
            .sync()
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .context("the device failed during the step")?;
        if step >= 2 {
            fb += backward;
            opt += start.elapsed().as_secs_f64();
        }
    }
    let images = (steps * batch) as f64;
    Ok(StepFigures {
        forward_backward: images / fb,
        with_optimizer: images / opt,
    })
}

/// The seed's pipelines: P1 the CIFAR recipe on 32x32 images, P2 the ImageNet recipe on
/// 500x375 photos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pipeline {
    P1,
    P2,
}

/// Images/s of `pipeline` on batches of `batch` images on `device` (batched on the device; on
/// flex the CPU kernels over rayon), timed over `iters` batches after one warm-up batch.
pub fn augmentation(
    pipeline: Pipeline,
    batch: usize,
    iters: usize,
    device: &Device,
) -> Result<f64> {
    anyhow::ensure!(
        batch > 0 && iters > 0,
        "batch and iterations must be positive"
    );
    let (compose, [h, w]) = match pipeline {
        Pipeline::P1 => (pipelines::cifar(), [32, 32]),
        Pipeline::P2 => (pipelines::imagenet(), [375, 500]),
    };
    let transform = Transform::from(compose);
    let images: Vec<Image<u8>> = (0..batch)
        .map(|i| {
            let data = pixels(3 * h * w)
                .iter()
                .map(|v| ((v + 1.0) * 127.5) as u8 ^ (i as u8))
                .collect();
            Image::from_chw(data, 3, h, w).context("a synthetic image")
        })
        .collect::<Result<_>>()?;
    let input = DeviceBatch::from_u8(&images, device)?;
    let data = input.pixels.to_data();
    let indices: Vec<u64> = (0..batch as u64).collect();
    let mut elapsed = 0.0;
    for epoch in 0..=iters as u64 {
        // A fresh tensor per batch, as from a loader; making it is not timed.
        let fresh = DeviceBatch {
            pixels: Tensor::from_data(data.clone(), device),
            dtype: input.dtype,
        };
        device.sync().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let start = Instant::now();
        let (out, _) = augment_batch_with(Kernels::Auto, &transform, fresh, 7, epoch, &indices)?;
        drop(out);
        device.sync().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if epoch > 0 {
            elapsed += start.elapsed().as_secs_f64();
        }
    }
    Ok((iters * batch) as f64 / elapsed)
}

/// Deterministic values in `[-1, 1]`.
fn pixels(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_benchmarks_measure_on_flex() {
        let device = Device::flex();
        let step = training_step(ModelName::Cifar, 10, 2, 1, &device).expect("step");
        assert!(step.forward_backward > 0.0 && step.forward_backward.is_finite());
        assert!(step.with_optimizer <= step.forward_backward, "{step:?}");
        let rate = augmentation(Pipeline::P1, 4, 1, &device).expect("augmentation");
        assert!(rate > 0.0 && rate.is_finite(), "{rate}");
        assert!(training_step(ModelName::Cifar, 10, 0, 1, &device).is_err());
    }
}
