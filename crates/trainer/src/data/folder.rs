//! Image folders as torchvision's `ImageFolder` reads them: one subfolder per class (classes
//! sorted by name, labels in that order), PNG or JPEG files inside. Images are decoded when a
//! sample is read (on the loader thread), converted to RGB (gray and RGBA are converted, alpha
//! dropped) and resized to 32x32 (bilinear, antialiased) for the CIFAR AlexNet.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kindling_augment::Image;
use kindling_augment::functional::{Interpolation, resize};

/// The side of the square images the trainer's model takes.
pub const SIZE: usize = 32;

/// File extensions read as images (case-insensitive).
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

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

    /// Sample `index`: the decoded image as 3x32x32 RGB and its label. A file that cannot be
    /// decoded is an error naming it.
    pub fn get(&self, index: usize) -> Result<(Image<u8>, usize)> {
        let (path, label) = &self.items[index];
        let decoded = image::open(path)
            .with_context(|| format!("cannot decode image {}", path.display()))?
            .to_rgb8();
        let img = Image::try_from(&decoded)
            .with_context(|| format!("image {} is empty", path.display()))?;
        let img = if img.height() == SIZE && img.width() == SIZE {
            img
        } else {
            resize(&img, [SIZE, SIZE], Interpolation::Bilinear, true)?
        };
        Ok((img, *label))
    }
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
