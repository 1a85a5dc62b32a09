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
    let (_, acc) = evaluate(&reloaded, &val, config.batch_size, &device).expect("evaluates");
    assert_eq!(
        acc, history[1].val_acc,
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
