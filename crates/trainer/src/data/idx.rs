//! MNIST and Fashion-MNIST in their IDX files (gzipped or not), as 32x32 RGB images: the 28x28
//! grey digits are padded by 2 pixels of black on every side (as LeNet's 32x32 input did) and
//! repeated into the three channels the models take.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use kindling_augment::Image;

/// Which IDX dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxKind {
    Mnist,
    FashionMnist,
}

impl IdxKind {
    /// Class names, indexed by label.
    pub fn classes(self) -> [&'static str; 10] {
        match self {
            IdxKind::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            IdxKind::FashionMnist => [
                "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                "bag", "boot",
            ],
        }
    }
}

/// The training or the test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// One split of an IDX dataset in memory.
#[derive(Debug, Clone)]
pub struct IdxDataset {
    pub kind: IdxKind,
    images: Vec<u8>,
    labels: Vec<u8>,
    side: [usize; 2],
}

/// The output side: 28 + 2 * 2.
const SIDE: usize = 32;

impl IdxDataset {
    /// Reads `train-*` or `t10k-*` `images-idx3-ubyte` and `labels-idx1-ubyte` (each with or
    /// without `.gz`) from `dir`, keeping the first `limit` samples if given.
    pub fn load(dir: &Path, kind: IdxKind, split: Split, limit: Option<usize>) -> Result<Self> {
        let prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        let (dims, mut images) = read_idx(&images_path, 3, limit)?;
        let (label_dims, mut labels) = read_idx(&labels_path, 1, limit)?;
        let n = dims[0];
        ensure!(
            label_dims[0] == n,
            "{} holds {} labels for the {n} images of {}",
            labels_path.display(),
            label_dims[0],
            images_path.display()
        );
        ensure!(
            dims[1] <= SIDE && dims[2] <= SIDE,
            "{}: images of {}x{}, at most {SIDE}x{SIDE} supported",
            images_path.display(),
            dims[1],
            dims[2]
        );
        if let Some(i) = labels.iter().position(|&l| l > 9) {
            bail!(
                "{}: record {i} has label {}, expected 0-9",
                labels_path.display(),
                labels[i]
            );
        }
        images.shrink_to_fit();
        labels.shrink_to_fit();
        Ok(Self {
            kind,
            images,
            labels,
            side: [dims[1], dims[2]],
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Sample `index` as a 3x32x32 image (grey, centred on black) and its label.
    pub fn get(&self, index: usize) -> (Image<u8>, usize) {
        let [h, w] = self.side;
        let (top, left) = ((SIDE - h) / 2, (SIDE - w) / 2);
        let src = &self.images[index * h * w..(index + 1) * h * w];
        let mut plane = vec![0u8; SIDE * SIDE];
        for y in 0..h {
            plane[(top + y) * SIDE + left..(top + y) * SIDE + left + w]
                .copy_from_slice(&src[y * w..(y + 1) * w]);
        }
        let data = plane.repeat(3);
        let image = Image::from_chw(data, 3, SIDE, SIDE).expect("3x32x32 buffer");
        (image, usize::from(self.labels[index]))
    }
}

/// `dir/name.gz` or `dir/name`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .with_context(|| format!("{}: no {name} or {name}.gz", dir.display()))
}

/// Reads an IDX file of unsigned bytes with `rank` dimensions; returns the dimensions (the
/// first cut to `limit`) and the data. Truncated files name the record where they end.
fn read_idx(path: &Path, rank: usize, limit: Option<usize>) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("{}: broken gzip data", path.display()))?;
        out
    } else {
        raw
    };
    let header = 4 + 4 * rank;
    ensure!(
        bytes.len() >= header,
        "{}: {} bytes, shorter than the IDX header",
        path.display(),
        bytes.len()
    );
    ensure!(
        bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08 && usize::from(bytes[3]) == rank,
        "{}: not an IDX file of unsigned bytes with {rank} dimensions (magic {:02x?})",
        path.display(),
        &bytes[..4]
    );
    let mut dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let record: usize = dims[1..].iter().product();
    let available = (bytes.len() - header) / record.max(1);
    if available < dims[0] {
        bail!(
            "{}: truncated at record {available} of {} ({} bytes of data, expected {})",
            path.display(),
            dims[0],
            bytes.len() - header,
            dims[0] * record
        );
    }
    let n = limit.map_or(dims[0], |l| l.min(dims[0]));
    dims[0] = n;
    Ok((dims, bytes[header..header + n * record].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(rank: usize, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, rank as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn reads_pads_and_names_truncation() {
        let dir = std::env::temp_dir().join(format!("kindling-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let pixels: Vec<u8> = (0..2 * 28 * 28).map(|i| (i % 251) as u8).collect();
        std::fs::write(
            dir.join("t10k-images-idx3-ubyte"),
            idx(3, &[2, 28, 28], &pixels),
        )
        .expect("write");
        // Labels gzipped, to cover both encodings.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &idx(1, &[2], &[7, 3])).expect("gz");
        std::fs::write(
            dir.join("t10k-labels-idx1-ubyte.gz"),
            gz.finish().expect("gz"),
        )
        .expect("write");
        let d = IdxDataset::load(&dir, IdxKind::Mnist, Split::Test, None).expect("loads");
        assert_eq!(d.len(), 2);
        let (img, label) = d.get(1);
        assert_eq!((img.shape(), label), ([3, 32, 32], 3));
        assert_eq!(img.get(0, 0, 0), 0, "border is black");
        assert_eq!(
            img.get(2, 2, 2),
            pixels[28 * 28],
            "pixel (0, 0) of image 1 at (2, 2)"
        );

        std::fs::write(
            dir.join("t10k-images-idx3-ubyte"),
            idx(3, &[2, 28, 28], &pixels[..1000]),
        )
        .expect("write");
        let e = format!(
            "{:#}",
            IdxDataset::load(&dir, IdxKind::Mnist, Split::Test, None).expect_err("truncated")
        );
        assert!(
            e.contains("truncated at record 1 of 2") && e.contains("t10k-images"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            IdxDataset::load(&dir, IdxKind::Mnist, Split::Train, None).expect_err("missing")
        );
        assert!(e.contains("train-images-idx3-ubyte"), "{e}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
