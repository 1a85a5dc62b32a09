//! The user's workflow through the `kindling` binary: every model variant on an image folder,
//! pipelines from files, fine-tuning, resuming with more epochs, SIGTERM, and the errors a user
//! meets before training starts.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kindling_trainer::checkpoint::{self, Checkpoint};
use kindling_trainer::config::TrainConfig;

use crate::data::colour_folder;
use crate::output_text as text;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kindling-wf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn kindling<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("kindling runs")
}

/// `kindling train` on `data` (a folder with train/ and val/) with a short schedule.
fn train_folder(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec![
        "train".as_ref(),
        "--quiet".as_ref(),
        "--dataset".as_ref(),
        "folder".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--epochs".as_ref(),
        "1".as_ref(),
        "--warmup-epochs".as_ref(),
        "0".as_ref(),
        "-b".as_ref(),
        "4".as_ref(),
        "-j".as_ref(),
        "2".as_ref(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    kindling(args)
}

fn config_of(run: &Path) -> TrainConfig {
    serde_json::from_slice(&std::fs::read(run.join("config.json")).expect("config.json"))
        .expect("a config")
}

/// Each variant trains at its own size on an image folder of mixed sizes and modes, with the
/// default pipelines of its size written into config.json.
#[test]
fn every_model_variant_trains_on_an_image_folder() {
    let root = temp_dir("variants");
    let data = root.join("data");
    colour_folder(&data.join("train"), 4);
    colour_folder(&data.join("val"), 2);
    for (model, side) in [("cifar", 32), ("alexnet", 224), ("alexnet-paper", 227)] {
        let out = root.join(model);
        let result = train_folder(&data, &out, &["--model", model]);
        assert!(result.status.success(), "{model}: {}", text(&result));
        let config = config_of(&out);
        assert_eq!(config.input_size(), side);
        let train = config.train_pipeline().to_json().expect("json");
        let first_step = if side == 32 {
            "Resize"
        } else {
            "RandomResizedCrop"
        };
        assert!(train.contains(first_step), "{model}: {train}");
        let metrics = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics");
        assert!(metrics.starts_with("epoch,step,lr,"), "{metrics}");
        // 12 training images, batch 4: 3 steps.
        assert!(
            metrics
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("1,3,")),
            "{metrics}"
        );
        assert!(checkpoint::best(&out).is_file());
    }
    std::fs::remove_dir_all(&root).expect("cleanup");
}

/// A pipeline file given with --train-pipeline is what the run uses (and records); a pipeline
/// whose output does not fit the model, an unknown transform, and an image smaller than a crop
/// are errors naming the file and what was expected, before anything is trained.
#[test]
fn pipelines_come_from_files_and_bad_ones_are_named() {
    let root = temp_dir("pipelines");
    let data = root.join("data");
    colour_folder(&data.join("train"), 4);
    colour_folder(&data.join("val"), 2);
    let good = root.join("train.toml");
    std::fs::write(
        &good,
        "type = \"Compose\"\n\
         [[transforms]]\ntype = \"Resize\"\nsize = [36, 36]\n\
         [[transforms]]\ntype = \"RandomCrop\"\nsize = 32\n\
         [[transforms]]\ntype = \"ToTensor\"\n",
    )
    .expect("pipeline file");
    let out = root.join("good");
    let result = train_folder(
        &data,
        &out,
        &["--train-pipeline", good.to_str().expect("utf-8")],
    );
    assert!(result.status.success(), "{}", text(&result));
    let recorded = config_of(&out).train_pipeline();
    assert_eq!(
        recorded,
        kindling_augment::Transform::from_path(&good).expect("parses")
    );
    // The recorded config repeats the run.
    let again = root.join("again");
    let config_file = out.join("config.json");
    let result = kindling([
        "train".as_ref(),
        "--quiet".as_ref(),
        "--config".as_ref(),
        config_file.as_os_str(),
        "--out".as_ref(),
        again.as_os_str(),
    ]);
    assert!(result.status.success(), "{}", text(&result));
    assert_eq!(config_of(&again), config_of(&out));

    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "wrong_size.toml",
            "type = \"Compose\"\n[[transforms]]\ntype = \"Resize\"\nsize = [40, 40]\n\
             [[transforms]]\ntype = \"ToTensor\"\n",
            &["augment.train_pipeline", "3x40x40", "3x32x32"],
        ),
        (
            "unknown.toml",
            "type = \"Compose\"\n[[transforms]]\ntype = \"RandomSharpen\"\n",
            &["unknown.toml", "RandomSharpen"],
        ),
        (
            "too_big.toml",
            "type = \"Compose\"\n[[transforms]]\ntype = \"RandomCrop\"\nsize = 200\n\
             [[transforms]]\ntype = \"ToTensor\"\n",
            &["augment.train_pipeline", ".png", "RandomCrop"],
        ),
    ];
    for (name, body, wanted) in cases {
        let file = root.join(name);
        std::fs::write(&file, body).expect("pipeline file");
        let out = root.join(name.replace(".toml", ""));
        let result = train_folder(
            &data,
            &out,
            &["--train-pipeline", file.to_str().expect("utf-8")],
        );
        let t = text(&result);
        assert!(!result.status.success(), "{name}: {t}");
        for w in wanted {
            assert!(t.contains(w), "{name}: expected {w:?} in {t}");
        }
        assert!(
            !t.contains("backtrace"),
            "{name}: user errors print no backtrace: {t}"
        );
        assert!(
            !out.join("metrics.json").exists(),
            "{name}: nothing trained"
        );
    }
    std::fs::remove_dir_all(&root).expect("cleanup");
}

/// Classes that differ between train/ and val/ are named; so is an undecodable image, which
/// --skip-bad-images lists in skipped_images.txt instead.
#[test]
fn folder_errors_name_the_classes_and_files() {
    let root = temp_dir("folder-errors");
    let data = root.join("data");
    colour_folder(&data.join("train"), 4);
    colour_folder(&data.join("val"), 2);
    std::fs::create_dir_all(data.join("val/yellow")).expect("class");
    std::fs::copy(data.join("val/red/0.png"), data.join("val/yellow/0.png")).expect("copy");
    let result = train_folder(&data, &root.join("classes"), &[]);
    let t = text(&result);
    assert!(
        !result.status.success() && t.contains("only in val [\"yellow\"]"),
        "{t}"
    );
    std::fs::remove_dir_all(data.join("val/yellow")).expect("remove");

    std::fs::write(data.join("train/red/broken.png"), b"not a png").expect("corrupt");
    std::fs::write(data.join("val/green/broken.jpg"), b"not a jpeg").expect("corrupt");
    let result = train_folder(&data, &root.join("broken"), &["--train-size", "13"]);
    let t = text(&result);
    assert!(!result.status.success() && t.contains("broken.png"), "{t}");
    let out = root.join("skipping");
    let result = train_folder(&data, &out, &["--skip-bad-images"]);
    assert!(result.status.success(), "{}", text(&result));
    let skipped = std::fs::read_to_string(out.join("skipped_images.txt")).expect("listed");
    assert!(
        skipped.contains("train/red/broken.png") && skipped.contains("val/green/broken.jpg"),
        "{skipped}"
    );
    // The 6 readable validation images are counted, the broken one is not.
    let counted = crate::confusion_total(&out);
    assert_eq!(counted, 6);
    std::fs::remove_dir_all(&root).expect("cleanup");
}

/// A folder with more images than --train-size: the cut is a seeded shuffle, so every class is
/// in it (the first files of a class-sorted list would hold only the first classes).
#[test]
fn a_cut_of_an_image_folder_holds_every_class() {
    let root = temp_dir("balanced");
    colour_folder(&root.join("train"), 8);
    colour_folder(&root.join("val"), 8);
    let mut config = TrainConfig::default();
    config.data.dataset = kindling_trainer::config::DatasetKind::Folder;
    config.data.data_dir = Some(root.clone());
    config.data.batch_size = 2;
    config.data.train_size = Some(9);
    config.data.val_size = Some(6);
    let (train, val) = kindling_trainer::data::splits(&config).expect("splits");
    assert_eq!((train.len(), val.len()), (9, 6));
    for (name, set) in [("train", &train), ("val", &val)] {
        let mut seen = [0usize; 3];
        for i in 0..set.len() {
            seen[set.get(i).expect("decodes").1] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "{name}: classes {seen:?}");
    }
    // Without sizes, the whole folders.
    config.data.train_size = None;
    config.data.val_size = None;
    let (train, val) = kindling_trainer::data::splits(&config).expect("splits");
    assert_eq!((train.len(), val.len()), (24, 24));
    std::fs::remove_dir_all(&root).expect("cleanup");
}

/// Fine-tuning: PyTorch's CIFAR AlexNet (10 classes) starts a 3-class run with a new head; with
/// --freeze features the convolutions keep the file's values. Weights of another variant are an
/// error naming the file and the shapes.
#[test]
fn fine_tuning_replaces_the_head_and_freezes_features() {
    let root = temp_dir("finetune");
    let data = root.join("data");
    colour_folder(&data.join("train"), 4);
    colour_folder(&data.join("val"), 2);
    let pth = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/model/cifar_alexnet_seed0.pth");
    assert!(pth.is_file(), "{} is missing (../shared)", pth.display());
    let out = root.join("frozen");
    let result = train_folder(
        &data,
        &out,
        &[
            "--pretrained",
            pth.to_str().expect("utf-8"),
            "--freeze",
            "features",
        ],
    );
    assert!(result.status.success(), "{}", text(&result));
    let device = burn::tensor::Device::flex();
    let original = kindling_model::AlexNetConfig::cifar()
        .init(&device)
        .load_weights(&pth)
        .expect("the reference loads");
    let trained = kindling_model::AlexNetConfig::cifar()
        .with_num_classes(3)
        .init(&device)
        .load_weights(out.join("model.safetensors"))
        .expect("the run's weights load");
    let values = |m: &kindling_model::AlexNet, layer: &str| -> Vec<f32> {
        m.conv_weight(layer)
            .expect("conv")
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")
    };
    assert_eq!(
        values(&original, "features.0"),
        values(&trained, "features.0"),
        "frozen features keep the file's values"
    );

    // Without freezing, the features move.
    let out = root.join("unfrozen");
    let result = train_folder(&data, &out, &["--pretrained", pth.to_str().expect("utf-8")]);
    assert!(result.status.success(), "{}", text(&result));
    let tuned = kindling_model::AlexNetConfig::cifar()
        .with_num_classes(3)
        .init(&device)
        .load_weights(out.join("model.safetensors"))
        .expect("loads");
    assert_ne!(
        values(&original, "features.0"),
        values(&tuned, "features.0")
    );

    // A weight file this test makes: a 7-class head is replaced, the features are the file's.
    let seven = root.join("seven.safetensors");
    let made = kindling_model::AlexNetConfig::cifar()
        .with_num_classes(7)
        .with_init(kindling_model::WeightInit::Kaiming)
        .init(&device);
    std::fs::write(&seven, made.to_torchvision_safetensors().expect("exports")).expect("write");
    let out = root.join("made");
    let result = train_folder(
        &data,
        &out,
        &[
            "--pretrained",
            seven.to_str().expect("utf-8"),
            "--freeze",
            "features",
        ],
    );
    assert!(result.status.success(), "{}", text(&result));
    let trained = kindling_model::AlexNetConfig::cifar()
        .with_num_classes(3)
        .init(&device)
        .load_weights(out.join("model.safetensors"))
        .expect("loads");
    assert_eq!(values(&made, "features.3"), values(&trained, "features.3"));

    // CIFAR weights for torchvision's AlexNet.
    let result = train_folder(
        &data,
        &root.join("wrong"),
        &[
            "--model",
            "alexnet",
            "--pretrained",
            pth.to_str().expect("utf-8"),
        ],
    );
    let t = text(&result);
    assert!(!result.status.success(), "{t}");
    assert!(
        t.contains("cifar_alexnet_seed0.pth") && t.contains("features.0.weight"),
        "{t}"
    );
    std::fs::remove_dir_all(&root).expect("cleanup");
}

/// `--resume RUN --epochs N` extends a finished run; flags that would change what it computes
/// are refused, named.
#[test]
fn resume_extends_a_run_and_refuses_other_changes() {
    let root = temp_dir("extend");
    let out = root.join("run");
    let small = ["--train-size", "64", "--val-size", "16"];
    let mut args = vec!["train", "--quiet", "--epochs", "1", "--warmup-epochs", "0"];
    args.extend(small);
    args.extend(["--out", out.to_str().expect("utf-8")]);
    let result = kindling(&args);
    assert!(result.status.success(), "{}", text(&result));

    let dir = out.to_str().expect("utf-8");
    let result = kindling(["train", "--quiet", "--resume", dir, "--lr", "0.5"]);
    let t = text(&result);
    assert!(!result.status.success() && t.contains("optim.lr"), "{t}");
    let result = kindling(["train", "--quiet", "--resume", dir, "--epochs", "2"]);
    assert!(result.status.success(), "{}", text(&result));
    let history = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics");
    assert_eq!(history.lines().count(), 3, "{history}");
    assert_eq!(config_of(&out).epochs, 2);
    let c = Checkpoint::load(&checkpoint::last(&out)).expect("last");
    assert_eq!(c.header.epoch, 2);
    std::fs::remove_dir_all(&root).expect("cleanup");
}

/// SIGTERM (what Slurm and Kubernetes send) checkpoints at the next step and exits with 143;
/// the run resumes from that checkpoint.
#[cfg(unix)]
#[test]
fn sigterm_checkpoints_and_exits_143() {
    let root = temp_dir("sigterm");
    let out = root.join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(["train", "--quiet", "--epochs", "50", "--warmup-epochs", "0"])
        .args(["--train-size", "256", "--val-size", "8", "-b", "8", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kindling starts");
    let last = checkpoint::last(&out);
    let start = std::time::Instant::now();
    while !last.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(300),
            "no checkpoint after 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let c = Checkpoint::load(&last).expect("a checkpoint at the stop");
    assert!(
        c.header.partial.is_some(),
        "stopped inside an epoch: {:?}",
        c.header
    );
    std::fs::remove_dir_all(&root).expect("cleanup");
}

/// `eval`, `predict`, `filters` and `activations` read a trained run's checkpoint, on the
/// device asked for.
#[test]
fn a_trained_run_is_inspected_from_its_checkpoint() {
    let root = temp_dir("inspect");
    let data = root.join("data");
    colour_folder(&data.join("train"), 4);
    colour_folder(&data.join("val"), 2);
    let out = root.join("run");
    let result = train_folder(&data, &out, &[]);
    assert!(result.status.success(), "{}", text(&result));
    let best = checkpoint::best(&out);
    let best = best.to_str().expect("utf-8");
    let result = kindling(["eval", "--checkpoint", best, "--device", "cpu"]);
    let t = text(&result);
    assert!(
        result.status.success() && t.contains("6 validation images"),
        "{t}"
    );
    let image = data.join("val/red/0.png");
    let result = kindling([
        "predict",
        "--checkpoint",
        best,
        "--device",
        "cpu",
        image.to_str().expect("utf-8"),
    ]);
    let t = text(&result);
    assert!(result.status.success() && t.contains("red"), "{t}");
    for (command, png) in [("filters", "filters.png"), ("activations", "act.png")] {
        let target = root.join(png);
        let mut args = vec![
            command,
            "--checkpoint",
            best,
            "--out",
            target.to_str().expect("utf-8"),
        ];
        if command == "activations" {
            args.extend(["--image", image.to_str().expect("utf-8")]);
        }
        let result = kindling(&args);
        assert!(result.status.success(), "{command}: {}", text(&result));
        let picture = image::open(&target).expect("a PNG").to_rgb8();
        assert!(picture.width() > 32, "{command}");
    }
    std::fs::remove_dir_all(&root).expect("cleanup");
}
