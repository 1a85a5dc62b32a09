//! The run directory: the resolved config, `metrics.csv` (one line per epoch) and `metrics.json`
//! (the whole history), both rewritten after every epoch.
//!
//! Every file is written to a temporary name and renamed, so a run killed at any moment leaves
//! either the previous or the new version of a file, never half of one.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::TrainConfig;

/// What one epoch measured.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Optimizer steps taken by the end of the epoch.
    #[serde(default)]
    pub step: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub val_top5: f64,
    pub images_per_sec: f64,
}

impl fmt::Display for EpochMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch {:>3}  lr {:.4}  train loss {:.4} acc {:5.1}%  val loss {:.4} acc {:5.1}% top-5 {:5.1}%  {:.0} img/s",
            self.epoch,
            self.lr,
            self.train_loss,
            self.train_acc * 100.0,
            self.val_loss,
            self.val_acc * 100.0,
            self.val_top5 * 100.0,
            self.images_per_sec
        )
    }
}

/// A run directory being written.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    history: Vec<EpochMetrics>,
}

const CSV_HEADER: [&str; 9] = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_top5",
    "images_per_sec",
];

impl RunDir {
    /// Creates `path` and writes the [resolved](TrainConfig::resolve) config into it. An existing run there is never
    /// overwritten: the caller picks another directory.
    pub fn create(path: &Path, config: &TrainConfig) -> Result<Self> {
        if path.join("config.json").exists() {
            anyhow::bail!(
                "{} already holds a run (config.json exists); choose another --out",
                path.display()
            );
        }
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create run directory {}", path.display()))?;
        write_atomic(
            &path.join("config.json"),
            &serde_json::to_vec_pretty(&config.clone().resolve())?,
        )?;
        write_atomic(&path.join("metrics.csv"), &metrics_csv(&[])?)?;
        Ok(Self {
            path: path.to_path_buf(),
            history: Vec::new(),
        })
    }

    /// Rewrites `config.json` (a resumed run that was extended).
    pub fn write_config(&self, config: &TrainConfig) -> Result<()> {
        write_atomic(
            &self.path.join("config.json"),
            &serde_json::to_vec_pretty(&config.clone().resolve())?,
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn history(&self) -> &[EpochMetrics] {
        &self.history
    }

    /// Appends one epoch to `metrics.csv` and rewrites `metrics.json`, `loss.png` and
    /// `accuracy.png`.
    pub fn record(&mut self, metrics: &EpochMetrics) -> Result<()> {
        self.history.push(metrics.clone());
        write_atomic(&self.path.join("metrics.csv"), &metrics_csv(&self.history)?)?;
        write_atomic(
            &self.path.join("metrics.json"),
            &serde_json::to_vec_pretty(&self.history)?,
        )?;
        crate::plot::write_curves(&self.path, &self.history)
    }
}

impl RunDir {
    /// Opens an existing run (to resume it): its recorded epochs are read back.
    pub fn open(path: &Path) -> Result<Self> {
        let file = path.join("metrics.json");
        let history = if file.exists() {
            let bytes =
                fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a metrics history", file.display()))?
        } else {
            Vec::new()
        };
        Ok(Self {
            path: path.to_path_buf(),
            history,
        })
    }

    /// Forgets epochs after `epochs` (recorded after the checkpoint a run resumes from).
    pub fn truncate_history(&mut self, epochs: usize) -> Result<()> {
        self.history.truncate(epochs);
        Ok(())
    }

    /// Writes `confusion.csv`: one row per true class, one column per predicted class.
    pub fn write_confusion(&self, classes: &[String], confusion: &[Vec<usize>]) -> Result<()> {
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(
            std::iter::once("true\\predicted").chain(classes.iter().map(String::as_str)),
        )?;
        for (c, row) in classes.iter().zip(confusion) {
            let counts = row.iter().map(usize::to_string);
            csv.write_record(std::iter::once(c.clone()).chain(counts))?;
        }
        write_atomic(&self.path.join("confusion.csv"), &csv_bytes(csv)?)
    }

    /// Writes `skipped_images.txt`: the images `--skip-bad-images` left out, one per line
    /// with the reason, so none is dropped silently.
    pub fn write_skipped(&self, skipped: &std::collections::BTreeSet<String>) -> Result<()> {
        let mut text = String::new();
        for line in skipped {
            text.push_str(line);
            text.push('\n');
        }
        write_atomic(&self.path.join("skipped_images.txt"), text.as_bytes())
    }
}

/// `metrics.csv`: a header and one row per epoch.
fn metrics_csv(history: &[EpochMetrics]) -> Result<Vec<u8>> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(CSV_HEADER)?;
    for m in history {
        csv.write_record([
            m.epoch.to_string(),
            m.step.to_string(),
            m.lr.to_string(),
            m.train_loss.to_string(),
            m.train_acc.to_string(),
            m.val_loss.to_string(),
            m.val_acc.to_string(),
            m.val_top5.to_string(),
            m.images_per_sec.to_string(),
        ])?;
    }
    csv_bytes(csv)
}

fn csv_bytes(csv: csv::Writer<Vec<u8>>) -> Result<Vec<u8>> {
    csv.into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write CSV: {}", e.error()))
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced to disk
/// before it is renamed over `path` (and the directory synced after), so that a kill or a
/// power cut leaves the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".kindling-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot rename a temporary file to {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename in `dir` durable. Best effort: some file systems refuse to sync a directory.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(epoch: usize) -> EpochMetrics {
        EpochMetrics {
            epoch,
            step: epoch * 10,
            lr: 0.1,
            train_loss: 1.0,
            train_acc: 0.5,
            val_loss: 0.9,
            val_acc: 0.6,
            val_top5: 0.9,
            images_per_sec: 100.0,
        }
    }

    #[test]
    fn records_every_epoch_and_refuses_to_overwrite_a_run() {
        let dir = std::env::temp_dir().join(format!("kindling-run-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut run = RunDir::create(&dir, &TrainConfig::default()).expect("creates");
        run.write_confusion(
            &["a,b".to_string(), "c\"d".to_string()],
            &[vec![1, 2], vec![3, 4]],
        )
        .expect("confusion");
        let mut rows = csv::Reader::from_path(dir.join("confusion.csv")).expect("csv");
        let header = rows.headers().expect("header").clone();
        assert_eq!(
            header.iter().collect::<Vec<_>>(),
            ["true\\predicted", "a,b", "c\"d"]
        );
        let first = rows.records().next().expect("a row").expect("parses");
        assert_eq!(first.iter().collect::<Vec<_>>(), ["a,b", "1", "2"]);
        run.record(&metrics(1)).expect("records");
        run.record(&metrics(2)).expect("records");
        let csv = fs::read_to_string(dir.join("metrics.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(
            csv.lines()
                .nth(2)
                .is_some_and(|l| l.starts_with("2,20,0.1,")),
            "{csv}"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("metrics.json")).expect("json"))
                .expect("parses");
        assert_eq!(json.as_array().map(Vec::len), Some(2));
        let config: TrainConfig =
            serde_json::from_slice(&fs::read(dir.join("config.json")).expect("config"))
                .expect("parses");
        assert_eq!(config, TrainConfig::default().resolve());
        assert!(RunDir::create(&dir, &TrainConfig::default()).is_err());
        assert!(fs::read_dir(&dir).expect("dir").all(|e| {
            !e.expect("entry")
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        }));
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
