//! Burn-free planning for data-parallel sync: gradient buckets and the cross-rank parameter check.

use std::ops::Range;

use crate::error::{DistError, Result};

/// Default cap of a gradient bucket: 25 MiB, PyTorch DDP's `bucket_cap_mb`.
pub const DEFAULT_BUCKET_CAP_BYTES: usize = 25 * 1024 * 1024;
/// Default cap of the first bucket: 1 MiB, so the first all-reduce starts early (PyTorch's
/// `dist._DEFAULT_FIRST_BUCKET_BYTES`).
pub const DEFAULT_FIRST_BUCKET_CAP_BYTES: usize = 1024 * 1024;

/// Groups parameters into buckets in **reverse** order (the order backward produces gradients).
///
/// `bytes[i]` is the size of parameter `i`. Returns ranges of positions in the reversed order;
/// position `p` is parameter `bytes.len() - 1 - p`. A bucket closes once it reaches its cap
/// (`first_cap` for the first bucket, `cap` after); a parameter larger than the cap gets a bucket
/// of its own.
pub fn plan_buckets(bytes: &[usize], first_cap: usize, cap: usize) -> Vec<Range<usize>> {
    let mut buckets = Vec::new();
    let mut start = 0;
    let mut filled = 0;
    for (pos, size) in bytes.iter().rev().enumerate() {
        let limit = if buckets.is_empty() { first_cap } else { cap };
        if pos > start && filled + size > limit {
            buckets.push(start..pos);
            start = pos;
            filled = 0;
        }
        filled += size;
    }
    if start < bytes.len() {
        buckets.push(start..bytes.len());
    }
    buckets
}

/// What the cross-rank check compares for each parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamMeta {
    /// Module path, e.g. `fc1.weight`.
    pub path: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Element type, as text (`F32`).
    pub dtype: String,
}

impl std::fmt::Display for ParamMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {:?} {}", self.path, self.shape, self.dtype)
    }
}

/// Encodes a parameter list for [`Communicator::all_gather_bytes`](crate::Communicator).
pub fn encode_meta(params: &[ParamMeta]) -> Vec<u8> {
    let mut out = String::new();
    for p in params {
        let shape: Vec<String> = p.shape.iter().map(ToString::to_string).collect();
        out.push_str(&format!("{}\t{}\t{}\n", p.path, shape.join(","), p.dtype));
    }
    out.into_bytes()
}

/// Decodes [`encode_meta`]'s output.
pub fn decode_meta(bytes: &[u8]) -> Result<Vec<ParamMeta>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DistError::Invalid(format!("parameter metadata: {e}")))?;
    text.lines()
        .map(|line| {
            let mut parts = line.split('\t');
            let (Some(path), Some(shape), Some(dtype)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(DistError::Invalid(format!(
                    "parameter metadata line `{line}`"
                )));
            };
            let shape = shape
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|d| {
                    d.parse::<usize>()
                        .map_err(|e| DistError::Invalid(format!("shape `{shape}`: {e}")))
                })
                .collect::<Result<_>>()?;
            Ok(ParamMeta {
                path: path.to_string(),
                shape,
                dtype: dtype.to_string(),
            })
        })
        .collect()
}

/// Checks that every rank has the same parameters (path, shape, dtype, in the same order).
/// `per_rank[r]` is rank `r`'s list. The error names the first differing parameter and the
/// ranks that differ from rank 0.
pub fn check_same_params(per_rank: &[Vec<ParamMeta>]) -> Result<()> {
    let Some(reference) = per_rank.first() else {
        return Ok(());
    };
    let longest = per_rank.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        let differ: Vec<usize> = (1..per_rank.len())
            .filter(|r| per_rank[*r].get(i) != reference.get(i))
            .collect();
        if differ.is_empty() {
            continue;
        }
        let param = reference
            .get(i)
            .or_else(|| differ.iter().find_map(|r| per_rank[*r].get(i)))
            .map(|p| p.path.clone())
            .unwrap_or_default();
        let detail: Vec<String> = std::iter::once(0)
            .chain(differ.iter().copied())
            .map(|r| match per_rank[r].get(i) {
                Some(p) => format!("rank {r}: {p}"),
                None => format!("rank {r}: no parameter #{i} (it has {})", per_rank[r].len()),
            })
            .collect();
        return Err(DistError::ParamMismatch {
            param,
            ranks: differ,
            detail: detail.join("; "),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(path: &str, shape: &[usize]) -> ParamMeta {
        ParamMeta {
            path: path.into(),
            shape: shape.to_vec(),
            dtype: "F32".into(),
        }
    }

    #[test]
    fn buckets_are_reverse_order_with_small_first() {
        // Sizes of params 0..5; reversed: [5]=10, [4]=10, [3]=50, [2]=10, [1]=100, [0]=1.
        let b = plan_buckets(&[1, 100, 10, 50, 10, 10], 20, 60);
        assert_eq!(b, vec![0..2, 2..4, 4..5, 5..6]);
    }

    #[test]
    fn huge_param_gets_own_bucket() {
        assert_eq!(plan_buckets(&[5, 1000, 5], 10, 10), vec![0..1, 1..2, 2..3]);
        assert!(plan_buckets(&[], 10, 10).is_empty());
    }

    #[test]
    fn meta_roundtrip_and_mismatch_names_param_and_ranks() {
        let a = vec![meta("fc1.weight", &[4, 8]), meta("fc1.bias", &[4])];
        assert_eq!(decode_meta(&encode_meta(&a)).expect("decode"), a);
        let b = vec![meta("fc1.weight", &[4, 6]), meta("fc1.bias", &[4])];
        let e = check_same_params(&[a.clone(), a.clone(), b]).expect_err("mismatch");
        match &e {
            DistError::ParamMismatch {
                param,
                ranks,
                detail,
            } => {
                assert_eq!(param, "fc1.weight");
                assert_eq!(ranks, &vec![2]);
                assert!(
                    detail.contains("rank 0: `fc1.weight` [4, 8] F32"),
                    "{detail}"
                );
                assert!(
                    detail.contains("rank 2: `fc1.weight` [4, 6] F32"),
                    "{detail}"
                );
            }
            other => panic!("{other}"),
        }
        let short = vec![meta("fc1.weight", &[4, 8])];
        let e = check_same_params(&[a.clone(), short]).expect_err("missing");
        assert!(e.to_string().contains("fc1.bias"), "{e}");
        assert!(check_same_params(&[a.clone(), a]).is_ok());
    }

    proptest! {
        #[test]
        fn buckets_cover_every_param_once_in_order(
            sizes in proptest::collection::vec(0usize..100, 0..40), first in 1usize..150, cap in 1usize..300,
        ) {
            let b = plan_buckets(&sizes, first, cap);
            let mut next = 0;
            for (i, r) in b.iter().enumerate() {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start);
                next = r.end;
                let limit = if i == 0 { first } else { cap };
                let total: usize = r.clone().map(|p| sizes[sizes.len() - 1 - p]).sum();
                // Over the cap only when the bucket holds a single parameter.
                prop_assert!(total <= limit || r.len() == 1);
            }
            prop_assert_eq!(next, sizes.len());
        }
    }
}
