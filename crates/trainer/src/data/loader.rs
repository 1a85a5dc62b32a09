//! The loader: prepares the batches of one epoch on a thread of its own, ahead of the model,
//! decoding and augmenting the images of each batch in parallel on a pool of `workers` threads
//! (torch's `DataLoader(num_workers=N)`), so the training step does not wait for them.

use std::sync::{Arc, mpsc};

use anyhow::{Context, Result};
use kindling_augment::batched::{AugmentBatcher, AugmentedBatch, ImageSource, LabeledImage};
use kindling_dist::DistributedSampler;
use rayon::prelude::*;

use super::Dataset;
use super::folder::BadImage;
use burn::tensor::Device;

/// Batches prepared ahead of the one the model is training on.
const PREFETCH: usize = 2;

/// Which batches of which epoch a loader produces.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seed: u64,
    pub epoch: usize,
    /// Batches of the epoch already trained (a resumed run skips them).
    pub skip: usize,
    /// Batches to produce in all, counting the skipped ones (drop_last).
    pub batches: usize,
    pub batch_size: usize,
    pub world: usize,
    pub rank: usize,
    /// Decoding and augmenting threads.
    pub workers: usize,
    /// Leave undecodable images out of their batch (and report them) instead of failing.
    pub skip_bad_images: bool,
}

/// A batch (none when `--skip-bad-images` left every image out), and the image files left out
/// of it.
#[derive(Debug)]
pub struct Loaded {
    pub batch: Option<AugmentedBatch>,
    pub skipped: Vec<String>,
}

/// The batches of one epoch, in order; dropping it stops the producing thread.
#[derive(Debug)]
pub struct Loader {
    receiver: mpsc::IntoIter<Result<Loaded>>,
}

/// The number of loader threads when none is given: the machine's cores.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Loader {
    /// The batches of `plan.epoch` for `plan.rank` of `plan.world`, skipping the first
    /// `plan.skip`.
    pub fn spawn(
        data: Dataset,
        batcher: Arc<AugmentBatcher>,
        plan: Plan,
        device: &Device,
    ) -> Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(PREFETCH);
        // The same seeded shuffle on every rank, each taking every `world`-th sample of it:
        // batch b of the ranks together is batch b of one rank with `world` times the size.
        let mut sampler =
            DistributedSampler::new(data.len(), plan.world, plan.rank)?.with_seed(plan.seed);
        sampler.set_epoch(plan.epoch as u64);
        let order = sampler.indices();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(plan.workers)
            .thread_name(|i| format!("kindling-loader-{i}"))
            .build()
            .context("cannot start the loader threads")?;
        let device = device.clone();
        std::thread::spawn(move || {
            let chunks = order
                .chunks_exact(plan.batch_size)
                .take(plan.batches)
                .skip(plan.skip);
            for chunk in chunks {
                let loaded = pool.install(|| load_batch(&data, &batcher, chunk, &plan, &device));
                if sender.send(loaded).is_err() {
                    break; // the training loop stopped early
                }
            }
        });
        Ok(Self {
            receiver: receiver.into_iter(),
        })
    }
}

/// Decodes the samples at `indices` in parallel and runs the batcher on them.
fn load_batch(
    data: &Dataset,
    batcher: &AugmentBatcher,
    indices: &[usize],
    plan: &Plan,
    device: &Device,
) -> Result<Loaded> {
    let decoded: Vec<Result<LabeledImage>> = indices
        .par_iter()
        .map(|&index| {
            let (image, label) = data.get(index)?;
            Ok(LabeledImage {
                image: ImageSource::Pixels(image),
                label,
                index: index as u64,
            })
        })
        .collect();
    let mut items = Vec::with_capacity(decoded.len());
    let mut skipped = Vec::new();
    for item in decoded {
        match item {
            Ok(item) => items.push(item),
            Err(e) if plan.skip_bad_images && e.is::<BadImage>() => skipped.push(format!("{e}")),
            Err(e) => return Err(e),
        }
    }
    if items.is_empty() {
        return Ok(Loaded {
            batch: None,
            skipped,
        });
    }
    let batch = batcher.try_batch(items, device).map_err(|e| {
        let culprit = culprit(data, batcher, indices).unwrap_or_else(|| items_files(data, indices));
        anyhow::Error::new(e).context(format!(
            "preparing a batch of epoch {} from {culprit}",
            plan.epoch
        ))
    })?;
    Ok(Loaded {
        batch: Some(batch),
        skipped,
    })
}

/// The first sample of a failed batch whose pipeline fails on its own, named (run only after
/// a failure, so the usual path pays nothing for it).
fn culprit(data: &Dataset, batcher: &AugmentBatcher, indices: &[usize]) -> Option<String> {
    use kindling_augment::Augment;
    indices.iter().find_map(|&index| {
        let (image, _) = data.get(index).ok()?;
        let shape = [image.channels(), image.height(), image.width()];
        let result =
            batcher
                .pipeline
                .apply_seeded(image, batcher.seed, batcher.epoch(), index as u64);
        result.err().map(|e| {
            format!(
                "{} (a {}x{}x{} image): {e}",
                data.describe(index),
                shape[0],
                shape[1],
                shape[2]
            )
        })
    })
}

fn items_files(data: &Dataset, indices: &[usize]) -> String {
    let mut files: Vec<String> = indices.iter().take(4).map(|&i| data.describe(i)).collect();
    if indices.len() > 4 {
        files.push(format!("and {} more", indices.len() - 4));
    }
    files.join(", ")
}

impl Iterator for Loader {
    type Item = Result<Loaded>;
    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.next()
    }
}
