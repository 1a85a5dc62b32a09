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

const CSV_HEADER: &str = "epoch,lr,train_loss,train_acc,val_loss,val_acc,val_top5,images_per_sec\n";

impl RunDir {
    /// Creates `path` and writes the resolved config into it. An existing run there is never
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
            &serde_json::to_vec_pretty(config)?,
        )?;
        write_atomic(&path.join("metrics.csv"), CSV_HEADER.as_bytes())?;
        Ok(Self {
            path: path.to_path_buf(),
            history: Vec::new(),
        })
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
        let mut csv = String::from(CSV_HEADER);
        for m in &self.history {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                m.epoch,
                m.lr,
                m.train_loss,
                m.train_acc,
                m.val_loss,
                m.val_acc,
                m.val_top5,
                m.images_per_sec
            ));
        }
        write_atomic(&self.path.join("metrics.csv"), csv.as_bytes())?;
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
        let mut csv = format!("true\\predicted,{}\n", classes.join(","));
        for (c, row) in classes.iter().zip(confusion) {
            let counts: Vec<String> = row.iter().map(usize::to_string).collect();
            csv.push_str(&format!("{c},{}\n", counts.join(",")));
        }
        write_atomic(&self.path.join("confusion.csv"), csv.as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(epoch: usize) -> EpochMetrics {
        EpochMetrics {
            epoch,
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
        run.record(&metrics(1)).expect("records");
        run.record(&metrics(2)).expect("records");
        let csv = fs::read_to_string(dir.join("metrics.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.lines().nth(2).is_some_and(|l| l.starts_with("2,0.1,")));
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("metrics.json")).expect("json"))
                .expect("parses");
        assert_eq!(json.as_array().map(Vec::len), Some(2));
        let config: TrainConfig =
            serde_json::from_slice(&fs::read(dir.join("config.json")).expect("config"))
                .expect("parses");
        assert_eq!(config, TrainConfig::default());
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
