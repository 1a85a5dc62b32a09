//! [`DistributedSampler`]: which dataset indices each rank reads, like PyTorch's.

use crate::error::{DistError, Result};

/// Splits `0..len` into `num_replicas` equal-length, strided shards: rank `r` takes positions
/// `r, r + W, r + 2W, ...` of the (optionally shuffled) index list.
///
/// - Without `drop_last`, the list is padded by repeating its first indices (cyclically) up to a
///   multiple of `W`, so every rank gets `ceil(len / W)` samples.
/// - With `drop_last`, the tail is dropped instead: every rank gets `floor(len / W)` samples.
/// - With `shuffle`, the list is a permutation seeded by `seed + epoch`, identical on every rank
///   (a self-contained SplitMix64 + Fisher-Yates, so it doesn't depend on any RNG crate's
///   version); call [`set_epoch`](Self::set_epoch) at each epoch to reshuffle.
///
/// ```
/// use kindling_dist::DistributedSampler;
/// let s0 = DistributedSampler::new(10, 4, 0).unwrap().with_shuffle(false);
/// assert_eq!(s0.indices(), vec![0, 4, 8]);
/// let s3 = DistributedSampler::new(10, 4, 3).unwrap().with_shuffle(false);
/// assert_eq!(s3.indices(), vec![3, 7, 1]); // padded with index 1
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributedSampler {
    len: usize,
    num_replicas: usize,
    rank: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
    epoch: u64,
}

impl DistributedSampler {
    /// A sampler over a dataset of `len` items for `rank` of `num_replicas`, with PyTorch's
    /// defaults: shuffle on, seed 0, `drop_last` off, epoch 0.
    pub fn new(len: usize, num_replicas: usize, rank: usize) -> Result<Self> {
        if num_replicas == 0 || rank >= num_replicas {
            return Err(DistError::Invalid(format!(
                "rank {rank} is not in a group of {num_replicas} replicas"
            )));
        }
        Ok(Self {
            len,
            num_replicas,
            rank,
            shuffle: true,
            seed: 0,
            drop_last: false,
            epoch: 0,
        })
    }

    /// Shuffle (from `seed + epoch`) or keep dataset order.
    #[must_use]
    pub fn with_shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// The shuffling seed; must be the same on every rank.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Drop the tail instead of padding.
    #[must_use]
    pub fn with_drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Set the epoch, which (with the seed) selects the permutation.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Number of indices each rank gets.
    pub fn num_samples(&self) -> usize {
        if self.drop_last {
            self.len / self.num_replicas
        } else {
            self.len.div_ceil(self.num_replicas)
        }
    }

    /// Number of indices over all ranks (padded or truncated).
    pub fn total_size(&self) -> usize {
        self.num_samples() * self.num_replicas
    }

    /// This rank's indices for the current epoch.
    pub fn indices(&self) -> Vec<usize> {
        let mut all: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            shuffle(&mut all, self.seed.wrapping_add(self.epoch));
        }
        let total = self.total_size();
        if total > all.len() && !all.is_empty() {
            let padding = total - all.len();
            let cycle: Vec<usize> = all.iter().copied().cycle().take(padding).collect();
            all.extend(cycle);
        }
        all.truncate(total);
        all.into_iter()
            .skip(self.rank)
            .step_by(self.num_replicas)
            .collect()
    }
}

/// SplitMix64: small, fast, and fully specified, so permutations are stable forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0), by rejection: no modulo bias.
    fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }
}

fn shuffle(items: &mut [usize], seed: u64) {
    let mut rng = SplitMix64(seed);
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shards(
        len: usize,
        w: usize,
        shuffle: bool,
        seed: u64,
        epoch: u64,
        drop_last: bool,
    ) -> Vec<Vec<usize>> {
        (0..w)
            .map(|r| {
                let mut s = DistributedSampler::new(len, w, r)
                    .expect("valid rank")
                    .with_shuffle(shuffle)
                    .with_seed(seed)
                    .with_drop_last(drop_last);
                s.set_epoch(epoch);
                s.indices()
            })
            .collect()
    }

    #[test]
    fn matches_pytorch_without_shuffle() {
        // torch.utils.data.DistributedSampler(range(10), num_replicas=4, rank=r, shuffle=False)
        let s = shards(10, 4, false, 0, 0, false);
        assert_eq!(
            s,
            vec![vec![0, 4, 8], vec![1, 5, 9], vec![2, 6, 0], vec![3, 7, 1]]
        );
        let s = shards(10, 4, false, 0, 0, true);
        assert_eq!(s, vec![vec![0, 4], vec![1, 5], vec![2, 6], vec![3, 7]]);
    }

    #[test]
    fn rejects_bad_rank() {
        assert!(DistributedSampler::new(10, 2, 2).is_err());
        assert!(DistributedSampler::new(10, 0, 0).is_err());
    }

    #[test]
    fn epoch_changes_permutation() {
        let a = shards(100, 2, true, 7, 0, false);
        let b = shards(100, 2, true, 7, 1, false);
        assert_ne!(a, b);
        assert_eq!(a, shards(100, 2, true, 7, 0, false));
    }

    proptest! {
        #[test]
        fn shards_partition_the_dataset(
            len in 0usize..300, w in 1usize..9, shuffle: bool, seed: u64, epoch in 0u64..5, drop_last: bool,
        ) {
            let s = shards(len, w, shuffle, seed, epoch, drop_last);
            // Equal lengths.
            let n = s[0].len();
            prop_assert!(s.iter().all(|x| x.len() == n));
            let expected = if drop_last { len / w } else { len.div_ceil(w) };
            prop_assert_eq!(n, expected);
            let all: Vec<usize> = s.iter().flatten().copied().collect();
            prop_assert!(all.iter().all(|i| *i < len));
            let mut unique = all.clone();
            unique.sort_unstable();
            unique.dedup();
            if drop_last {
                // Disjoint, and only the tail (fewer than w indices) is missing.
                prop_assert_eq!(unique.len(), all.len());
                prop_assert_eq!(len - unique.len(), len % w);
            } else {
                // Covers everything; duplicates are exactly the padding.
                prop_assert_eq!(unique.len(), len);
                prop_assert_eq!(all.len() - len, if len == 0 { 0 } else { w * n - len });
                if len >= w {
                    // Padding is shorter than the dataset: each index appears at most twice.
                    let mut counts = vec![0usize; len];
                    all.iter().for_each(|i| counts[*i] += 1);
                    prop_assert!(counts.iter().all(|c| *c <= 2));
                }
            }
            // Strided: rank r's k-th index is position r + k*W of the global list.
            let global: Vec<usize> = (0..n).flat_map(|k| s.iter().map(move |x| x[k])).collect();
            let mut order: Vec<usize> = (0..len).collect();
            if shuffle { shuffle_fn(&mut order, seed.wrapping_add(epoch)); }
            for (pos, idx) in global.iter().enumerate() {
                prop_assert_eq!(*idx, order[pos % len.max(1)]);
            }
        }

        #[test]
        fn same_permutation_on_every_rank(len in 1usize..200, w in 1usize..6, seed: u64, epoch in 0u64..3) {
            prop_assert_eq!(shards(len, w, true, seed, epoch, false), shards(len, w, true, seed, epoch, false));
            let mut perm: Vec<usize> = (0..len).collect();
            shuffle_fn(&mut perm, seed ^ epoch);
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..len).collect::<Vec<_>>());
        }
    }

    fn shuffle_fn(items: &mut [usize], seed: u64) {
        shuffle(items, seed);
    }
}
