//! Datasets the trainer can read.

pub mod cifar;
pub mod idx;
pub mod synthetic;

use std::sync::Arc;

use kindling_augment::Image;

/// A dataset the loop trains or validates on: the built-in one or an IDX split.
#[derive(Debug, Clone)]
pub enum Dataset {
    Synthetic(synthetic::Synthetic),
    Idx(Arc<idx::IdxDataset>),
    Cifar10(Arc<cifar::Cifar10>),
}

impl Dataset {
    pub fn len(&self) -> usize {
        match self {
            Dataset::Synthetic(d) => d.len(),
            Dataset::Idx(d) => d.len(),
            Dataset::Cifar10(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index`: a 3x32x32 u8 image and its label.
    pub fn get(&self, index: usize) -> (Image<u8>, usize) {
        match self {
            Dataset::Synthetic(d) => d.get(index),
            Dataset::Idx(d) => d.get(index),
            Dataset::Cifar10(d) => d.get(index),
        }
    }

    /// Class names, indexed by label.
    pub fn classes(&self) -> [&'static str; 10] {
        match self {
            Dataset::Synthetic(_) => synthetic::CLASSES,
            Dataset::Idx(d) => d.kind.classes(),
            Dataset::Cifar10(_) => cifar::CLASSES,
        }
    }
}
