//! CIFAR-10 in its official binary format, and its download.
//!
//! The binary version (`cifar-10-binary.tar.gz`) unpacks to `cifar-10-batches-bin/` with five
//! training files `data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin`; every record
//! is one label byte and 3072 pixel bytes (the red, green and blue 32x32 planes), which is
//! already the CHW layout Kindling uses.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use kindling_augment::Image;
use md5::{Digest, Md5};

use super::idx::Split;

/// The official tarball (Alex Krizhevsky's page) and its MD5, as torchvision checks it.
pub const URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// The folder the tarball unpacks to.
pub const FOLDER: &str = "cifar-10-batches-bin";

pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const RECORD: usize = 1 + 3 * 32 * 32;

/// One split of CIFAR-10 in memory.
#[derive(Debug, Clone)]
pub struct Cifar10 {
    records: Vec<u8>,
}

impl Cifar10 {
    /// Reads the training (`data_batch_1..5.bin`) or test (`test_batch.bin`) files from
    /// `dir/cifar-10-batches-bin`, keeping the first `limit` records if given.
    pub fn load(dir: &Path, split: Split, limit: Option<usize>) -> Result<Self> {
        let folder = dir.join(FOLDER);
        let files: Vec<String> = match split {
            Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            Split::Test => vec!["test_batch.bin".into()],
        };
        let mut records = Vec::new();
        for file in files {
            if limit.is_some_and(|l| records.len() / RECORD >= l) {
                break;
            }
            let path = folder.join(&file);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read {} (download CIFAR-10 with --download)",
                    path.display()
                )
            })?;
            if bytes.len() % RECORD != 0 {
                bail!(
                    "{}: truncated in record {} ({} bytes, records are {RECORD} bytes)",
                    path.display(),
                    bytes.len() / RECORD,
                    bytes.len()
                );
            }
            if let Some(r) = bytes.chunks_exact(RECORD).position(|r| r[0] > 9) {
                bail!(
                    "{}: record {r} has label {}, expected 0-9",
                    path.display(),
                    bytes[r * RECORD]
                );
            }
            records.extend_from_slice(&bytes);
        }
        if let Some(l) = limit {
            records.truncate(l * RECORD);
        }
        Ok(Self { records })
    }

    pub fn len(&self) -> usize {
        self.records.len() / RECORD
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Sample `index`: a 3x32x32 image and its label.
    pub fn get(&self, index: usize) -> (Image<u8>, usize) {
        let r = &self.records[index * RECORD..(index + 1) * RECORD];
        let image = Image::from_chw(r[1..].to_vec(), 3, 32, 32).expect("3x32x32 record");
        (image, usize::from(r[0]))
    }
}

/// Downloads the tarball from `url` into `dir`, checks its MD5 against `md5_hex`, and unpacks
/// `cifar-10-batches-bin` there. Everything goes through temporary names in `dir` that are
/// removed on failure: `dir/cifar-10-batches-bin` either appears complete or not at all.
/// Does nothing if the folder is already there.
pub fn download(url: &str, dir: &Path, md5_hex: &str, progress: bool) -> Result<PathBuf> {
    let target = dir.join(FOLDER);
    if target.is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let part = dir.join(".cifar-10-binary.tar.gz.part");
    let unpack = dir.join(".cifar-10-unpack");
    let result = fetch_and_unpack(url, &part, &unpack, &target, md5_hex, progress);
    let _ = std::fs::remove_file(&part);
    let _ = std::fs::remove_dir_all(&unpack);
    result.map(|()| target)
}

fn fetch_and_unpack(
    url: &str,
    part: &Path,
    unpack: &Path,
    target: &Path,
    md5_hex: &str,
    progress: bool,
) -> Result<()> {
    let response = ureq::get(url)
        .call()
        .with_context(|| format!("cannot download {url}"))?;
    let expected: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bar = if progress {
        indicatif::ProgressBar::new(expected.unwrap_or(0))
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "downloading CIFAR-10 [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut body = response.into_body().into_reader();
    let mut file =
        std::fs::File::create(part).with_context(|| format!("cannot write {}", part.display()))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = body
            .read(&mut buf)
            .with_context(|| format!("download of {url} broke off after {total} bytes"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        total += n as u64;
        bar.set_position(total);
    }
    file.sync_all()?;
    bar.finish_and_clear();
    if let Some(len) = expected {
        ensure!(total == len, "{url}: received {total} of {len} bytes");
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ensure!(
        digest == md5_hex,
        "{url}: MD5 {digest}, expected {md5_hex}: the download is damaged or not CIFAR-10"
    );
    std::fs::create_dir_all(unpack)?;
    let tar = flate2::read::GzDecoder::new(std::fs::File::open(part)?);
    tar::Archive::new(tar)
        .unpack(unpack)
        .with_context(|| format!("cannot unpack {}", part.display()))?;
    let unpacked = unpack.join(FOLDER);
    ensure!(
        unpacked.join("test_batch.bin").is_file(),
        "the tarball holds no {FOLDER}/test_batch.bin"
    );
    std::fs::rename(&unpacked, target)
        .with_context(|| format!("cannot move the data to {}", target.display()))
}
