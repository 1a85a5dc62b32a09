//! Does the data pipeline keep up? Images/s of the whole training loop (loader thread, decoding,
//! the CIFAR augmentation pipeline, batching, forward, backward, optimizer step, loss read back
//! every step) against the bare forward+backward+step of the same model and batch on a batch
//! that is already on the device, measured back to back in one process.
//!
//! ```sh
//! cargo xtask bench-train                      # batch 32 (the default run's), 24 steps each
//! cargo xtask example train_throughput -- [BATCH] [STEPS]
//! ```

use std::time::Instant;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kindling_model::{AlexNetConfig, WeightInit};
use kindling_trainer::config::TrainConfig;
use kindling_trainer::run::RunDir;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: usize| -> Result<usize, std::num::ParseIntError> {
        std::env::args().nth(i).map_or(Ok(default), |v| v.parse())
    };
    let (batch, steps) = (arg(1, 32)?, arg(2, 24)?);

    // Bare: one fixed batch, forward + backward + SGD step, the loss read back like the loop.
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut model = AlexNetConfig::cifar()
        .with_init(WeightInit::Kaiming)
        .init(&device);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: true,
        }))
        .init();
    let pixels: Vec<f32> = (0..batch * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [batch, 3, 32, 32]), &device);
    let labels: Vec<i64> = (0..batch).map(|i| (i % 10) as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
    let mut bare_time = 0.0;
    for step in 0..steps + 2 {
        let start = Instant::now();
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let _ = loss.clone().into_data();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.02, model, grads);
        if step >= 2 {
            bare_time += start.elapsed().as_secs_f64();
        }
    }
    let bare = (steps * batch) as f64 / bare_time;

    // The trainer's loop: one epoch of `steps` batches of the built-in dataset, augmented.
    let config = {
        let mut c = TrainConfig::default();
        c.epochs = 1;
        c.schedule.warmup_epochs = 0;
        c.data.batch_size = batch;
        c.data.train_size = Some(batch * steps);
        c.data.val_size = Some(1);
        c
    };
    let dir = std::env::temp_dir().join(format!("kindling-throughput-{}", std::process::id()));
    let mut run = RunDir::create(&dir, &config)?;
    kindling_trainer::launch::train(&config, &mut run, true)?;
    let full = run.history()[0].images_per_sec;
    std::fs::remove_dir_all(&dir)?;

    println!(
        "RESULT batch={batch} steps={steps} bare_images_per_s={bare:.1} \
         training_images_per_s={full:.1} ratio={:.1}%",
        100.0 * full / bare
    );
    Ok(())
}
