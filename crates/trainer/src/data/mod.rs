//! Datasets the trainer can read.

pub mod cifar;
pub mod folder;
pub mod idx;
pub mod synthetic;

use std::sync::Arc;

use kindling_augment::Image;

/// A dataset the loop trains or validates on: the built-in one, an IDX or CIFAR-10 split, or
/// an image folder.
#[derive(Debug, Clone)]
pub enum Dataset {
    Synthetic(synthetic::Synthetic),
    Idx(Arc<idx::IdxDataset>),
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

    /// Sample `index`: a 3x32x32 u8 image and its label; an image file that cannot be decoded
    /// is an error naming it.
    pub fn get(&self, index: usize) -> anyhow::Result<(Image<u8>, usize)> {
        Ok(match self {
            Dataset::Synthetic(d) => d.get(index),
            Dataset::Idx(d) => d.get(index),
            Dataset::Cifar10(d) => d.get(index),
            Dataset::Folder(d) => d.get(index)?,
        })
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
