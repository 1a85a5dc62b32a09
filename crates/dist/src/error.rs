//! The error type of every fallible operation in this crate.

use std::time::Duration;

/// Result alias with [`DistError`].
pub type Result<T, E = DistError> = std::result::Result<T, E>;

/// What went wrong in a collective, in the set-up of a process group or in data-parallel sync.
///
/// Errors are `Clone` because one failure (for example a size mismatch detected at a rendezvous)
/// is reported to every rank of the group.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DistError {
    /// A peer did not arrive at the collective `op` within `after`.
    #[error("{op} timed out after {after:?}: rank {peer} never arrived")]
    Timeout {
        /// The collective (`all_reduce`, `broadcast`, `barrier`, `all_gather_bytes`).
        op: &'static str,
        /// The first rank that had not arrived.
        peer: usize,
        /// The configured timeout that expired.
        after: Duration,
    },
    /// A peer failed (returned an error, panicked, left the group or aborted it) while this rank
    /// was in, or entered, the collective `op`.
    #[error("{op}: rank {rank} failed: {reason}")]
    PeerFailed {
        /// The rank that failed.
        rank: usize,
        /// The collective this rank was in when it learned of the failure.
        op: &'static str,
        /// Why, as the failing rank (or the group) described it.
        reason: String,
    },
    /// The ranks passed buffers of different lengths to the same collective.
    #[error("{op}: buffer sizes differ across ranks (elements per rank: {sizes:?})")]
    SizeMismatch {
        /// The collective.
        op: &'static str,
        /// Length of the buffer of each rank, indexed by rank.
        sizes: Vec<usize>,
    },
    /// The ranks called different collectives (or broadcast from different roots) at the same
    /// point of their sequence.
    #[error("ranks disagree on the collective to run (per rank: {per_rank:?})")]
    OpMismatch {
        /// What each rank called, indexed by rank.
        per_rank: Vec<String>,
    },
    /// Data-parallel set-up found that the ranks' models differ.
    #[error(
        "parameter `{param}` differs across ranks (ranks {ranks:?} differ from rank 0): {detail}"
    )]
    ParamMismatch {
        /// Module path of the parameter (`fc1.weight`), or the first differing one.
        param: String,
        /// The ranks whose parameter differs from rank 0's.
        ranks: Vec<usize>,
        /// What each rank has, e.g. `rank 0: [4, 8] F32; rank 1: [4, 6] F32`.
        detail: String,
    },
    /// A bad argument (rank out of range, empty group, zero timeout...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Reading or creating a tensor failed.
    #[error("tensor data: {0}")]
    Tensor(String),
    /// The group was already aborted (or this handle was closed) before the call.
    #[error("the process group is closed: {0}")]
    Closed(String),
}
