//! Datasets the trainer can read, how a run's config picks its splits, and the loader that
//! feeds batches to the training loop.

pub mod cifar;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod synthetic;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kindling_augment::Image;

use crate::config::{BUILTIN_SIZES, DatasetKind, TrainConfig};
use idx::{IdxDataset, IdxKind, Split};
use synthetic::Synthetic;

/// A dataset the loop trains or validates on: the built-in one, an IDX or CIFAR-10 split, or
/// an image folder.
#[derive(Debug, Clone)]
pub enum Dataset {
    Synthetic(Synthetic),
    Idx(Arc<IdxDataset>),
    Cifar10(Arc<cifar::Cifar10>),
    Folder(Arc<folder::ImageFolder>),
}

impl Dataset {
    pub fn len(&self) -> usize {
        match self {
            Dataset::Synthetic(d) => d.len(),
            Dataset::Idx(d) => d.len(),
            Dataset::Cifar10(d) => d.len(),
            Dataset::Folder(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index`: a 3-channel u8 image (3x32x32 for the built-in, IDX and CIFAR-10 data;
    /// an image folder's at its own size) and its label. An image file that cannot be decoded
    /// is a [`folder::BadImage`] error naming it.
    pub fn get(&self, index: usize) -> Result<(Image<u8>, usize)> {
        Ok(match self {
            Dataset::Synthetic(d) => d.get(index),
            Dataset::Idx(d) => d.get(index),
            Dataset::Cifar10(d) => d.get(index),
            Dataset::Folder(d) => d.get(index)?,
        })
    }

    /// Where sample `index` comes from, for error messages: a file, or the dataset and index.
    pub fn describe(&self, index: usize) -> String {
        match self {
            Dataset::Folder(d) => d.path(index).display().to_string(),
            _ => format!("sample {index}"),
        }
    }

    /// Class names, indexed by label.
    pub fn classes(&self) -> Vec<String> {
        let fixed = |names: [&str; 10]| names.iter().map(|c| c.to_string()).collect();
        match self {
            Dataset::Synthetic(_) => fixed(synthetic::CLASSES),
            Dataset::Idx(d) => fixed(d.kind.classes()),
            Dataset::Cifar10(_) => fixed(cifar::CLASSES),
            Dataset::Folder(d) => d.classes().to_vec(),
        }
    }
}

/// The built-in validation split: generated with another seed, so validation images are never
/// training images.
pub fn validation_set(config: &TrainConfig) -> Synthetic {
    let size = config.data.val_size.unwrap_or(BUILTIN_SIZES.1);
    Synthetic::new(config.seed.wrapping_add(0x5eed), size)
}

/// The training and validation data of a run: the built-in dataset, IDX or CIFAR-10 splits
/// (whole, or their first `train_size` / `val_size` samples), or an image folder
/// ([`folder::splits`]).
pub fn splits(config: &TrainConfig) -> Result<(Dataset, Dataset)> {
    let (train_size, val_size) = (config.data.train_size, config.data.val_size);
    let kind = match config.data.dataset {
        DatasetKind::Builtin => {
            let train = train_size.unwrap_or(BUILTIN_SIZES.0);
            return Ok((
                Dataset::Synthetic(Synthetic::new(config.seed, train)),
                Dataset::Synthetic(validation_set(config)),
            ));
        }
        DatasetKind::Mnist => IdxKind::Mnist,
        DatasetKind::FashionMnist => IdxKind::FashionMnist,
        DatasetKind::Folder => return folder::splits(config),
        DatasetKind::Cifar10 => {
            let dir = config.data_dir().context("CIFAR-10 has a default folder")?;
            let load = |split, size: Option<usize>| -> Result<Dataset> {
                let d = cifar::Cifar10::load(&dir, split, size)?;
                check_size(&dir, split, d.len(), size)?;
                Ok(Dataset::Cifar10(Arc::new(d)))
            };
            return Ok((
                load(Split::Train, train_size)?,
                load(Split::Test, val_size)?,
            ));
        }
    };
    let dir = config
        .data_dir()
        .context("--data-dir is needed for mnist: the folder of its IDX files")?;
    let load = |split, size: Option<usize>| -> Result<Dataset> {
        let d = IdxDataset::load(&dir, kind, split, size)?;
        check_size(&dir, split, d.len(), size)?;
        Ok(Dataset::Idx(Arc::new(d)))
    };
    Ok((
        load(Split::Train, train_size)?,
        load(Split::Test, val_size)?,
    ))
}

fn check_size(dir: &std::path::Path, split: Split, len: usize, want: Option<usize>) -> Result<()> {
    match want {
        Some(size) if len < size => bail!(
            "{}: {split:?} split has {len} samples, fewer than the {size} asked for",
            dir.display()
        ),
        _ if len == 0 => bail!("{}: {split:?} split is empty", dir.display()),
        _ => Ok(()),
    }
}

/// The class names of a run's dataset, indexed by label (an image folder's are its
/// subfolders).
pub fn class_names(config: &TrainConfig) -> Result<Vec<String>> {
    let fixed = |names: [&str; 10]| names.iter().map(|c| c.to_string()).collect();
    Ok(match config.data.dataset {
        DatasetKind::Builtin => fixed(synthetic::CLASSES),
        DatasetKind::Mnist => fixed(IdxKind::Mnist.classes()),
        DatasetKind::FashionMnist => fixed(IdxKind::FashionMnist.classes()),
        DatasetKind::Cifar10 => fixed(cifar::CLASSES),
        DatasetKind::Folder => {
            let dir = config
                .data
                .data_dir
                .clone()
                .context("a folder run has a data_dir")?;
            folder::class_names(&folder::train_root(&dir))?
        }
    })
}
