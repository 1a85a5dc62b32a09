use burn::tensor::Device;
use kindling_model::{AlexNetConfig, WeightInit};
use kindling_trainer::config::TrainConfig;
use kindling_trainer::data::synthetic::Synthetic;
use kindling_trainer::run::RunDir;
use kindling_trainer::train::{evaluate, save_model, train, validation_set};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kindling-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A short run end to end: every file of the run directory is written, and the exported
/// weights reproduce the last validation accuracy when loaded into a fresh model.
#[test]
fn a_short_run_writes_its_directory_and_exports_loadable_weights() {
    let _rng = crate::rng_lock();
    let config = TrainConfig {
        epochs: 2,
        warmup_epochs: 1,
        batch_size: 32,
        train_size: 128,
        val_size: 64,
        ..TrainConfig::default()
    };
    let dir = temp_dir("short-run");
    let mut run = RunDir::create(&dir, &config).expect("run directory");
    let model = train(&config, &mut run, true).expect("training runs");
    save_model(&model, &run).expect("weights saved");

    let history = run.history();
    assert_eq!(history.len(), 2);
    for m in history {
        assert!(m.train_loss.is_finite() && m.val_loss.is_finite(), "{m:?}");
        assert!((0.0..=1.0).contains(&m.val_acc), "{m:?}");
    }
    for file in [
        "config.json",
        "metrics.csv",
        "metrics.json",
        "model.safetensors",
        "confusion.csv",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }

    let device = Device::flex();
    let reloaded = AlexNetConfig::cifar()
        .with_init(WeightInit::Kaiming)
        .init(&device)
        .load_weights(dir.join("model.safetensors"))
        .expect("exported weights load back");
    let val: Synthetic = validation_set(&config);
    let eval = evaluate(&reloaded, &val, config.batch_size, &device).expect("evaluates");
    assert_eq!(
        eval.top1, history[1].val_acc,
        "reloaded weights must give the recorded accuracy"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn invalid_configs_are_rejected_before_anything_is_written() {
    let config = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    let dir = temp_dir("invalid");
    let mut run = RunDir::create(&dir, &TrainConfig::default()).expect("run directory");
    let err = train(&config, &mut run, true).expect_err("batch_size 0 is invalid");
    assert!(err.to_string().contains("batch_size"), "{err}");
    assert!(run.history().is_empty());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Gradient accumulation: 2 batches of 16 per step give the same weights as 1 batch of 32
/// (dropout off, same samples in the same order); a run with batches of 16 and no accumulation
/// (twice the steps) does not.
#[test]
fn accumulation_equals_the_large_batch() {
    let _rng = crate::rng_lock();
    let base = TrainConfig {
        epochs: 1,
        warmup_epochs: 0,
        schedule: kindling_trainer::config::Schedule::Constant,
        train_size: 64,
        val_size: 16,
        lr: 0.01,
        ..TrainConfig::default()
    };
    let run_with = |name: &str, config: &TrainConfig| {
        let dir = temp_dir(name);
        let mut run = RunDir::create(&dir, config).expect("run directory");
        let model = train(config, &mut run, true).expect("training runs");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        model
            .conv_weight("features.0")
            .expect("conv")
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")
    };
    let large = run_with(
        "acc-large",
        &TrainConfig {
            batch_size: 32,
            ..base.clone()
        },
    );
    let accumulated = run_with(
        "acc-small",
        &TrainConfig {
            batch_size: 16,
            accumulate: 2,
            ..base.clone()
        },
    );
    let small = run_with(
        "acc-none",
        &TrainConfig {
            batch_size: 16,
            ..base
        },
    );
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(
        max_diff(&large, &accumulated) < 1e-5,
        "{}",
        max_diff(&large, &accumulated)
    );
    assert!(max_diff(&large, &small) > 1e-4, "negative control");
}

/// MixUp + CutMix with label smoothing, augmentation on the device, a step schedule: the run
/// trains and records top-5 accuracy.
#[test]
fn mixing_device_augmentation_and_schedules_train() {
    let _rng = crate::rng_lock();
    let config = TrainConfig {
        epochs: 2,
        warmup_epochs: 0,
        schedule: kindling_trainer::config::Schedule::Step,
        step_size: 1,
        gamma: 0.5,
        mixup_alpha: Some(0.4),
        cutmix_alpha: Some(1.0),
        label_smoothing: 0.1,
        augment_on: kindling_trainer::config::AugmentOn::Device,
        train_size: 96,
        val_size: 32,
        ..TrainConfig::default()
    };
    let dir = temp_dir("mixing");
    let mut run = RunDir::create(&dir, &config).expect("run directory");
    train(&config, &mut run, true).expect("training runs");
    let h = run.history();
    assert_eq!(h.len(), 2);
    assert!(
        h.iter()
            .all(|m| m.train_loss.is_finite() && m.val_top5 >= m.val_acc)
    );
    assert!(
        (h[1].lr - h[0].lr * 0.5).abs() < 1e-12,
        "step schedule: {h:?}"
    );
    let confusion = std::fs::read_to_string(dir.join("confusion.csv")).expect("confusion");
    let total: usize = confusion
        .lines()
        .skip(1)
        .flat_map(|l| {
            l.split(',')
                .skip(1)
                .map(|v| v.parse::<usize>().expect("count"))
        })
        .sum();
    assert_eq!(total, 32, "every validation image is counted once");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
