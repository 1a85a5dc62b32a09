//! Image folders as torchvision's `ImageFolder` reads them: one subfolder per class (classes
//! sorted by name, labels in that order), PNG or JPEG files inside. Images are decoded when a
//! sample is read (on a loader thread) and converted to RGB (gray and RGBA are converted, alpha
//! dropped), at their own size: the run's pipelines resize and crop them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use kindling_augment::Image;
use kindling_dist::DistributedSampler;

use super::Dataset;
use crate::config::TrainConfig;

/// File extensions read as images (case-insensitive).
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// An image file that cannot be read as an image: the error of [`ImageFolder::get`], which
/// `--skip-bad-images` counts instead of failing on.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode image {}: {message}", path.display())]
pub struct BadImage {
    pub path: PathBuf,
    pub message: String,
}

/// The images of a folder tree and their labels.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    items: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Lists `root`'s class folders and their images. Errors name the folder: missing, no class
    /// folders, or a class folder without images.
    pub fn scan(root: &Path) -> Result<Self> {
        let classes = class_names(root)?;
        let mut items = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            if files.is_empty() {
                bail!(
                    "class folder {} has no images (expected .png, .jpg or .jpeg files)",
                    dir.display()
                );
            }
            files.sort();
            items.extend(files.into_iter().map(|f| (f, label)));
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            items,
        })
    }

    /// Keeps the samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Self {
        Self {
            root: self.root.clone(),
            classes: self.classes.clone(),
            items: indices.iter().map(|&i| self.items[i].clone()).collect(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Class names, indexed by label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The labels of the samples, in order.
    pub fn labels(&self) -> Vec<usize> {
        self.items.iter().map(|(_, label)| *label).collect()
    }

    /// The file of sample `index`.
    pub fn path(&self, index: usize) -> &Path {
        &self.items[index].0
    }

    /// Sample `index`: the decoded image as RGB at its own size, and its label. A file that
    /// cannot be decoded is a [`BadImage`] error naming it.
    pub fn get(&self, index: usize) -> Result<(Image<u8>, usize)> {
        let (path, label) = &self.items[index];
        let bad = |message: String| BadImage {
            path: path.clone(),
            message,
        };
        let decoded = image::open(path).map_err(|e| bad(e.to_string()))?.to_rgb8();
        let img = Image::try_from(&decoded).map_err(|e| bad(e.to_string()))?;
        Ok((img, *label))
    }
}

/// The folder a run's classes come from: `DIR/train` when `DIR` has `train/` and `val/`.
pub fn train_root(dir: &Path) -> PathBuf {
    if has_train_and_val(dir) {
        dir.join("train")
    } else {
        dir.to_path_buf()
    }
}

fn has_train_and_val(dir: &Path) -> bool {
    dir.join("train").is_dir() && dir.join("val").is_dir()
}

/// A seeded permutation of `0..n` that no epoch's shuffle repeats: every cut of a folder is
/// drawn from it, so a cut holds every class in proportion rather than the first classes.
fn seeded_order(n: usize, seed: u64) -> Result<Vec<usize>> {
    let mut order = DistributedSampler::new(n, 1, 0)?.with_seed(seed);
    order.set_epoch(u64::MAX);
    Ok(order.indices())
}

/// The first `n` samples of a seeded shuffle of `folder` (all of it, in order, without `n`).
fn cut(folder: &ImageFolder, n: Option<usize>, seed: u64) -> Result<ImageFolder> {
    match n {
        Some(n) if n < folder.len() => {
            let order = seeded_order(folder.len(), seed)?;
            Ok(folder.select(&order[..n]))
        }
        _ => Ok(folder.clone()),
    }
}

/// An image folder's training and validation sets: `train/` and `val/` inside `data_dir` when
/// both exist (each cut to `train_size` / `val_size` after a seeded shuffle when given), else
/// `val_size` images (default: a tenth) drawn by the seed for validation and the rest (or
/// `train_size` of it) for training.
pub fn splits(config: &TrainConfig) -> Result<(Dataset, Dataset)> {
    let dir =
        config.data.data_dir.clone().context(
            "--data-dir is needed for --dataset folder: one subfolder of images per class",
        )?;
    let (train_size, val_size) = (config.data.train_size, config.data.val_size);
    let (train, val) = if has_train_and_val(&dir) {
        let train = ImageFolder::scan(&dir.join("train"))?;
        let val = ImageFolder::scan(&dir.join("val"))?;
        if val.classes() != train.classes() {
            let only = |a: &ImageFolder, b: &ImageFolder| -> Vec<String> {
                let mut v: Vec<String> = a
                    .classes()
                    .iter()
                    .filter(|c| !b.classes().contains(c))
                    .cloned()
                    .collect();
                v.truncate(5);
                v
            };
            bail!(
                "{} and {} have different class folders: only in train {:?}, only in val {:?}",
                train.root().display(),
                val.root().display(),
                only(&train, &val),
                only(&val, &train)
            );
        }
        (
            cut(&train, train_size, config.seed)?,
            cut(&val, val_size, config.seed)?,
        )
    } else {
        let all = ImageFolder::scan(&dir)?;
        let n_val = val_size.unwrap_or((all.len() / 10).max(1));
        if all.len() <= n_val {
            bail!(
                "{} has {} images, not more than the {n_val} held out for validation: nothing \
                 left to train on",
                dir.display(),
                all.len()
            );
        }
        let order = seeded_order(all.len(), config.seed)?;
        let (val, train) = order.split_at(n_val);
        let train = &train[..train.len().min(train_size.unwrap_or(usize::MAX))];
        (all.select(train), all.select(val))
    };
    let needed = config.data.batch_size * config.optim.accumulate;
    if train.len() < needed {
        bail!(
            "{}: {} training images, fewer than batch_size * accumulate = {needed}",
            dir.display(),
            train.len()
        );
    }
    Ok((
        Dataset::Folder(Arc::new(train)),
        Dataset::Folder(Arc::new(val)),
    ))
}

/// The class folders of `root`, sorted by name (hidden folders skipped).
pub fn class_names(root: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(root)
        .with_context(|| format!("cannot read the image folder {}", root.display()))?;
    let mut classes: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|name| !name.starts_with('.'))
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!(
            "{} has no class folders: expected one subfolder of images per class",
            root.display()
        );
    }
    Ok(classes)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}
