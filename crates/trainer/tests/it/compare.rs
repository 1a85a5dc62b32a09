//! `kindling compare`: a tiny augmentation comparison (its files, a failing arm, continuing
//! from the runs already made) and the parallel comparison (three shapes, equal weights).

use crate::output_text as text;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kindling-cmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn kindling(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("kindling runs")
}

const SHORT: [&str; 10] = [
    "--train-size",
    "64",
    "--val-size",
    "32",
    "--epochs",
    "2",
    "--warmup-epochs",
    "0",
    "--batch-size",
    "32",
];

/// 2 default arms + 1 broken arm x 2 seeds: the table, the CSV files and the plot are
/// written, the broken arm is reported as failed and the others are complete; running the
/// command again reads the finished runs back and gives the same table.
#[test]
fn a_tiny_augment_comparison_writes_its_table_and_survives_a_failing_arm() {
    let dir = temp_dir("augment");
    // RandomCrop(64) cannot crop a 32x32 image: this arm fails before it trains.
    let bad = dir.join("too-big.toml");
    std::fs::write(
        &bad,
        "type = \"Compose\"\n[[transforms]]\ntype = \"RandomCrop\"\nsize = 64\n\
         [[transforms]]\ntype = \"ToTensor\"\n",
    )
    .unwrap();
    let out = dir.join("cmp");
    let arm = format!("bad={}", bad.display());
    let mut args = vec![
        "compare",
        "augment",
        "--only",
        "none,flip,bad",
        "--arm",
        &arm,
        "--seeds",
        "2",
    ];
    args.extend(SHORT);
    let first = kindling(&args, &out);
    assert!(first.status.success(), "{}", text(&first));
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("| none | 2 |"), "{stdout}");
    assert!(stdout.contains("| flip | 2 |"), "{stdout}");
    assert!(
        stdout.contains("| bad | 0 of 2 (failed: seed 0:"),
        "the failing arm is reported: {stdout}"
    );
    for file in [
        "summary.md",
        "summary.csv",
        "runs.csv",
        "curves.csv",
        "val_accuracy.png",
        "val_loss.png",
    ] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let plot = image::open(out.join("val_accuracy.png")).expect("a PNG");
    assert_eq!((plot.width(), plot.height()), (800, 480));

    // runs.csv: one row per run, figures consistent with each run's own metrics.csv.
    let mut runs = csv::Reader::from_path(out.join("runs.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = runs.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        let (arm, status) = (&row[0], &row[2]);
        if arm == "bad" {
            assert_eq!(status, "failed");
            assert!(
                row[10].contains("RandomCrop"),
                "the error names the cause: {row:?}"
            );
            continue;
        }
        assert_eq!(status, "ok", "{row:?}");
        let run = PathBuf::from(&row[9]);
        let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        let last: Vec<&str> = metrics.lines().last().unwrap().split(',').collect();
        let final_acc: f64 = row[3].parse().unwrap();
        assert_eq!(final_acc, last[6].parse::<f64>().unwrap());
        let (train, gap): (f64, f64) = (row[5].parse().unwrap(), row[6].parse().unwrap());
        assert!((train - final_acc - gap).abs() < 1e-12);
        assert!(
            run.join("model.safetensors").is_file(),
            "each arm is a normal run"
        );
    }

    // summary.csv: the mean over the two seeds of each arm.
    let mut summary = csv::Reader::from_path(out.join("summary.csv")).unwrap();
    let arms: Vec<csv::StringRecord> = summary.records().map(Result::unwrap).collect();
    assert_eq!(arms.len(), 3);
    let finals = |arm: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| &r[0] == arm)
            .map(|r| r[3].parse().unwrap())
            .collect()
    };
    let none = finals("none");
    let mean: f64 = arms[0][3].parse().unwrap();
    assert!((mean - (none[0] + none[1]) / 2.0).abs() < 1e-12);
    assert_eq!(&arms[2][2], "2", "both runs of the bad arm failed");

    // Again: nothing retrains, the same table comes back.
    let started = std::time::Instant::now();
    let second = kindling(&args, &out);
    assert!(second.status.success(), "{}", text(&second));
    let table = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.split('|').take(7).collect::<Vec<_>>().join("|"))
            .collect::<Vec<_>>()
    };
    assert_eq!(table(&first), table(&second));
    eprintln!("repeat took {:?}", started.elapsed());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compare_refuses_what_it_cannot_compare() {
    let dir = temp_dir("refuse");
    let out = kindling(&["compare", "augment", "--mixup", "1"], &dir.join("a"));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("sets MixUp and CutMix per arm"),
        "{}",
        text(&out)
    );
    let out = kindling(
        &["compare", "augment", "--model", "alexnet"],
        &dir.join("b"),
    );
    assert!(
        text(&out).contains("written for 32x32 inputs"),
        "{}",
        text(&out)
    );
    let out = kindling(&["compare", "augment", "--only", "nope"], &dir.join("c"));
    assert!(
        text(&out).contains("--only nope: no such arm"),
        "{}",
        text(&out)
    );
    let out = kindling(
        &["compare", "parallel", "--ranks", "3", "--batch-size", "32"],
        &dir.join("d"),
    );
    assert!(
        text(&out).contains("does not split into 3 ranks"),
        "{}",
        text(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// One rank x 32, two threads x 16 and two TCP processes x 16 train the same model: the table
/// shows all three with weight differences at rounding level.
#[test]
fn the_parallel_comparison_trains_three_shapes_to_the_same_weights() {
    let _rng = crate::rng_lock();
    let dir = temp_dir("parallel");
    let out = dir.join("cmp");
    let args = [
        "compare",
        "parallel",
        "--ranks",
        "2",
        "--engines",
        "tcp",
        "--train-size",
        "128",
        "--val-size",
        "16",
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--batch-size",
        "32",
    ];
    let run = kindling(&args, &out);
    assert!(run.status.success(), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 4, "header and three shapes: {stdout}");
    assert!(rows[1].starts_with("| 1 rank |") && rows[1].contains("(reference)"));
    for (row, name) in [
        (rows[2], "| 2 threads |"),
        (rows[3], "| 2 processes (tcp) |"),
    ] {
        assert!(row.starts_with(name), "{row}");
        let diff: f32 = row
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a weight difference in {row}"));
        assert!(diff < 1e-5, "{name} ends {diff} from one rank");
    }
    assert!(out.join("summary.md").is_file());
    assert!(out.join("runs/tcp-logs/rank1.log").is_file());
    std::fs::remove_dir_all(&dir).ok();
}

/// `--side-by-side` with two devices: two arms train at once, each in a `kindling train`
/// process of its own on one of the devices, and the table has both.
#[test]
fn side_by_side_arms_train_in_their_own_processes() {
    let dir = temp_dir("side");
    let out = dir.join("cmp");
    let mut args = vec![
        "compare",
        "augment",
        "--only",
        "none,flip",
        "--seeds",
        "1",
        "--device",
        "flex,flex",
        "--side-by-side",
    ];
    args.extend(SHORT);
    let run = kindling(&args, &out);
    assert!(run.status.success(), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("| none | 1 |") && stdout.contains("| flip | 1 |"),
        "{stdout}"
    );
    for arm in ["none", "flip"] {
        let run = out.join("runs").join(arm).join("seed0");
        assert!(
            run.join("train.log").is_file(),
            "{arm} trained in a process"
        );
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["dist"]["device"], "flex", "{arm} ran on one device");
    }
    std::fs::remove_dir_all(&dir).ok();
}
