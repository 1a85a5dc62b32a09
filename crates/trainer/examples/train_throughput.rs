//! Does the data pipeline keep up? Images/s of the whole training loop (loader threads,
//! decoding, the augmentation pipeline, batching, forward, backward, optimizer step, loss read
//! back every step) against the bare forward+backward+step of the same model and batch on a
//! batch that is already on the device, measured back to back in one process.
//!
//! Two workloads: `cifar` (the default run's: CIFAR AlexNet on the built-in dataset, 32x32) and
//! `jpeg224` (torchvision's AlexNet on a folder of 500x375 JPEGs made from the conformance
//! photos, decoded and augmented with the ImageNet recipe on `-j` loader threads).
//!
//! ```sh
//! cargo xtask bench-train                      # cifar, batch 32 (the default run's), 40 steps
//! cargo xtask bench-train --jpeg224            # the image-folder workload
//! cargo xtask example train_throughput -- [BATCH] [STEPS] [cifar|jpeg224] [WORKERS]
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kindling_trainer::config::{DatasetKind, ModelName, TrainConfig};
use kindling_trainer::run::RunDir;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize, default: usize| -> Result<usize, std::num::ParseIntError> {
        args.get(i).map_or(Ok(default), |v| v.parse())
    };
    let (batch, steps) = (number(1, 32)?, number(2, 24)?);
    let workload = args.get(3).map_or("cifar", String::as_str);
    let workers = number(4, 2)?;
    let scratch = std::env::temp_dir().join(format!("kindling-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    let mut config = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    config.schedule.warmup_epochs = 0;
    config.data.batch_size = batch;
    config.data.train_size = Some(batch * steps);
    config.data.workers = Some(workers);
    match workload {
        "cifar" => config.data.val_size = Some(1),
        "jpeg224" => {
            config.model.name = ModelName::Alexnet;
            config.data.dataset = DatasetKind::Folder;
            config.data.data_dir = Some(jpeg_folder(&scratch.join("data"), batch * steps)?);
        }
        other => return Err(format!("unknown workload {other:?}: cifar or jpeg224").into()),
    }
    // The bare step of the same model on a batch already in memory (10 classes, as before).
    let bare = kindling_trainer::bench::training_step(
        config.model.name,
        10,
        batch,
        steps,
        &Device::flex(),
    )?
    .with_optimizer;

    // The trainer's loop: one epoch of `steps` batches, augmented by the run's pipeline.
    let dir = scratch.join("run");
    let mut run = RunDir::create(&dir, &config)?;
    kindling_trainer::launch::train(&config, &mut run, true)?;
    let full = run.history()[0].images_per_sec;
    std::fs::remove_dir_all(&scratch)?;

    println!(
        "RESULT workload={workload} batch={batch} steps={steps} workers={workers} \
         bare_images_per_s={bare:.1} training_images_per_s={full:.1} ratio={:.1}%",
        100.0 * full / bare
    );
    Ok(())
}

/// Images/s of forward + backward + SGD step on one fixed batch (the loss read back like the
/// loop does), after two warm-up steps.
/// An image folder of `n` training JPEGs (quality 75 to 95, 500x375 and 375x500) in four
/// classes made from the conformance photos, plus four validation images.
fn jpeg_folder(root: &Path, n: usize) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let photos =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/augment/images");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&photos)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with("_500x375.png") {
            sources.push(image::open(&path)?.to_rgb8());
        }
    }
    sources.sort_by_key(|img| img.as_raw().first().copied());
    if sources.is_empty() {
        return Err(format!("no *_500x375.png photos in {}", photos.display()).into());
    }
    for (split, count) in [("train", n), ("val", 4)] {
        for i in 0..count {
            let class = format!("class{}", i % 4);
            let dir = root.join(split).join(&class);
            std::fs::create_dir_all(&dir)?;
            let mut img = sources[i % sources.len()].clone();
            if i % 3 == 1 {
                img = image::imageops::rotate90(&img);
            }
            let quality = [75u8, 85, 95][i % 3];
            let file = std::fs::File::create(dir.join(format!("{i}.jpg")))?;
            let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(
                std::io::BufWriter::new(file),
                quality,
            );
            encoder.encode_image(&img)?;
        }
    }
    Ok(root.to_path_buf())
}
