//! The [`Communicator`] trait: one rank's handle on a process group, whatever the engine.

use std::time::Duration;

use crate::error::{DistError, Result};

/// How [`Communicator::all_reduce`] combines the buffers of all ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise mean (sum divided by the world size).
    Mean,
}

/// The default timeout of every collective: 5 minutes, like NCCL/Gloo's PyTorch defaults' order
/// of magnitude for data-parallel training. Tests use much shorter ones.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Deadlines are `Instant::now() + timeout`; a bound keeps that addition from overflowing.
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A timeout every engine accepts: positive, and short enough for `now + timeout`.
pub(crate) fn check_timeout(timeout: Duration) -> Result<()> {
    if timeout.is_zero() {
        return Err(DistError::Invalid(
            "the collective timeout must be positive".into(),
        ));
    }
    if timeout > MAX_TIMEOUT {
        return Err(DistError::Invalid(format!(
            "the collective timeout {timeout:?} is longer than the maximum {MAX_TIMEOUT:?}"
        )));
    }
    Ok(())
}

/// One rank's handle on a process group.
///
/// All ranks must call the same collectives in the same order with buffers of the same length.
/// Every collective is bounded by [`timeout`](Communicator::timeout): a peer that does not arrive
/// in time yields [`DistError::Timeout`](crate::DistError::Timeout) naming it, and a peer that
/// failed yields [`DistError::PeerFailed`](crate::DistError::PeerFailed); a call never hangs.
/// After any such error the group is aborted: every later collective on every rank fails.
///
/// Reductions are deterministic: every rank receives bit-identical results, summed in rank order.
pub trait Communicator: Send + std::fmt::Debug {
    /// This rank, in `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of ranks in the group.
    fn world_size(&self) -> usize;
    /// This rank's index among the ranks of its machine (the device index to use).
    fn local_rank(&self) -> usize;
    /// The timeout of each collective.
    fn timeout(&self) -> Duration;
    /// Change the timeout of this rank's later collectives.
    fn set_timeout(&mut self, timeout: Duration);

    /// Combine `buf` element-wise across ranks; every rank gets the result in `buf`.
    fn all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<()>;
    /// Copy `root`'s `buf` into every other rank's `buf`.
    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<()>;
    /// Wait until every rank has arrived.
    fn barrier(&mut self) -> Result<()>;
    /// Gather every rank's bytes (lengths may differ); result indexed by rank. Meant for small
    /// metadata.
    fn all_gather_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>>;
    /// Tell the other ranks that this one failed: their pending and later collectives fail with
    /// [`DistError::PeerFailed`](crate::DistError::PeerFailed) carrying `reason`.
    fn abort(&mut self, reason: &str);
}

macro_rules! forward_communicator {
    ($($ty:ty),*) => {$(
        impl<C: Communicator + ?Sized> Communicator for $ty {
            fn rank(&self) -> usize {
                (**self).rank()
            }
            fn world_size(&self) -> usize {
                (**self).world_size()
            }
            fn local_rank(&self) -> usize {
                (**self).local_rank()
            }
            fn timeout(&self) -> Duration {
                (**self).timeout()
            }
            fn set_timeout(&mut self, timeout: Duration) {
                (**self).set_timeout(timeout);
            }
            fn all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
                (**self).all_reduce(buf, op)
            }
            fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<()> {
                (**self).broadcast(buf, root)
            }
            fn barrier(&mut self) -> Result<()> {
                (**self).barrier()
            }
            fn all_gather_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
                (**self).all_gather_bytes(bytes)
            }
            fn abort(&mut self, reason: &str) {
                (**self).abort(reason);
            }
        }
    )*};
}

forward_communicator!(Box<C>, &mut C);

/// One wait step of an engine's poll loop: yield the core while the wait is young (small
/// collectives finish within microseconds, so their latency depends on it), then sleep briefly.
pub(crate) fn pause(waited: Duration) {
    if waited < Duration::from_millis(2) {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(100));
    }
}
