//! Training checkpoints: model, optimizer state and position in one file, written atomically.
//!
//! Layout: the magic line `KINDLING-CHECKPOINT 1\n`, an 8-byte little-endian header length, a
//! JSON header ([`Header`]: position, section lengths, an FNV-1a checksum of the payload, the
//! run's config), then the model (burn record bytes, which keep parameter ids, so the optimizer
//! state finds its parameters) and the optimizer state (burnpack bytes). A truncated or altered
//! file is an error naming the file, never a silently different run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::run::write_atomic;

const MAGIC: &[u8] = b"KINDLING-CHECKPOINT 1\n";

/// Where a checkpoint stands in its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken (drives the learning-rate schedule).
    pub step: usize,
    /// Validation top-1 accuracy after `epoch`.
    pub val_acc: f64,
    pub model_len: u64,
    pub optimizer_len: u64,
    /// FNV-1a 64 of the model and optimizer bytes.
    pub checksum: u64,
    /// The config of the run that wrote it.
    pub config: TrainConfig,
    /// Set when the run was interrupted inside epoch `epoch + 1`: how far it got.
    #[serde(default)]
    pub partial: Option<Partial>,
}

/// The part of an epoch done before an interruption, and its running metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Batches of the epoch already trained (a whole number of optimizer steps).
    pub batches_done: usize,
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
}

/// A checkpoint in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub header: Header,
    pub model: Vec<u8>,
    pub optimizer: Vec<u8>,
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Checkpoint {
    pub fn new(
        epoch: usize,
        step: usize,
        val_acc: f64,
        config: &TrainConfig,
        model: Vec<u8>,
        optimizer: Vec<u8>,
    ) -> Self {
        let header = Header {
            epoch,
            step,
            val_acc,
            model_len: model.len() as u64,
            optimizer_len: optimizer.len() as u64,
            checksum: fnv1a(&[&model, &optimizer]),
            config: config.clone(),
            partial: None,
        };
        Self {
            header,
            model,
            optimizer,
        }
    }

    /// Writes the checkpoint to `path` through a temporary file and a rename: a crash at any
    /// moment leaves the previous file or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = serde_json::to_vec(&self.header)?;
        let mut bytes = Vec::with_capacity(
            MAGIC.len() + 8 + header.len() + self.model.len() + self.optimizer.len(),
        );
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&self.model);
        bytes.extend_from_slice(&self.optimizer);
        write_atomic(path, &bytes)
    }

    /// Reads and checks a checkpoint.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&bytes).with_context(|| format!("{} is not a valid checkpoint", path.display()))
    }

    fn parse(bytes: &[u8]) -> Result<Self> {
        ensure!(bytes.starts_with(MAGIC), "it does not start with {MAGIC:?}");
        let rest = &bytes[MAGIC.len()..];
        ensure!(rest.len() >= 8, "it ends before the header length");
        let header_len = u64::from_le_bytes(rest[..8].try_into()?) as usize;
        let rest = &rest[8..];
        ensure!(rest.len() >= header_len, "it ends inside the header");
        let header: Header = serde_json::from_slice(&rest[..header_len])?;
        let rest = &rest[header_len..];
        let (m, o) = (header.model_len as usize, header.optimizer_len as usize);
        if rest.len() != m + o {
            bail!(
                "{} bytes after the header, expected {} (model) + {} (optimizer): truncated",
                rest.len(),
                m,
                o
            );
        }
        let (model, optimizer) = rest.split_at(m);
        ensure!(
            fnv1a(&[model, optimizer]) == header.checksum,
            "the checksum does not match: the file was altered"
        );
        Ok(Self {
            header,
            model: model.to_vec(),
            optimizer: optimizer.to_vec(),
        })
    }
}

/// The checkpoint files of a run directory.
pub fn dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// `checkpoints/last.ckpt`: the latest one, which `--resume` reads.
pub fn last(run: &Path) -> PathBuf {
    dir(run).join("last.ckpt")
}

/// `checkpoints/best.ckpt`: the one with the best validation accuracy.
pub fn best(run: &Path) -> PathBuf {
    dir(run).join("best.ckpt")
}

/// `checkpoints/epoch-NNNN.ckpt`.
pub fn of_epoch(run: &Path, epoch: usize) -> PathBuf {
    dir(run).join(format!("epoch-{epoch:04}.ckpt"))
}

/// Points `to` at the same file as `from` (a hard link, else a copy), atomically: a new name
/// is linked, then renamed over `to`. Checkpoints are tens of MB; linking avoids writing them
/// twice.
pub fn link(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension("ckpt.link.tmp");
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp)
            .with_context(|| format!("cannot copy {} to {}", from.display(), tmp.display()))?;
    }
    std::fs::rename(&tmp, to)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), to.display()))?;
    if let Some(parent) = to.parent() {
        crate::run::sync_dir(parent);
    }
    Ok(())
}

/// Writes checkpoint `c` of a completed epoch into the run directory `run`:
/// `epoch-NNNN.ckpt`, `best.ckpt` when `is_best`, then `last.ckpt` (last, so that it never
/// points past the files written before it), and removes the per-epoch files older than the
/// last `keep`.
pub fn save_epoch(run: &Path, c: &Checkpoint, keep: usize, is_best: bool) -> Result<()> {
    let epoch_file = of_epoch(run, c.header.epoch);
    c.save(&epoch_file)?;
    if is_best {
        link(&epoch_file, &best(run))?;
    }
    link(&epoch_file, &last(run))?;
    prune(run, c.header.epoch, keep)
}

/// Removes the per-epoch checkpoints older than the last `keep`.
pub fn prune(run: &Path, epoch: usize, keep: usize) -> Result<()> {
    if epoch > keep {
        let old = of_epoch(run, epoch - keep);
        if old.exists() {
            std::fs::remove_file(&old)
                .with_context(|| format!("cannot remove {}", old.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = std::env::temp_dir().join(format!("kindling-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.ckpt");
        let c = Checkpoint::new(
            3,
            42,
            0.5,
            &TrainConfig::default(),
            vec![1, 2, 3],
            vec![4, 5],
        );
        c.save(&path).expect("saves");
        assert_eq!(Checkpoint::load(&path).expect("loads"), c);

        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("write");
        let e = format!("{:#}", Checkpoint::load(&path).expect_err("truncated"));
        assert!(e.contains("truncated") && e.contains("c.ckpt"), "{e}");
        let mut altered = bytes.clone();
        let n = altered.len();
        altered[n - 1] ^= 1;
        std::fs::write(&path, &altered).expect("write");
        let e = format!("{:#}", Checkpoint::load(&path).expect_err("altered"));
        assert!(e.contains("checksum"), "{e}");
        std::fs::write(&path, b"not a checkpoint").expect("write");
        assert!(Checkpoint::load(&path).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
