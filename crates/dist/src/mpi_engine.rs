//! The MPI engine: one process per rank, started by `mpirun` (Open MPI), on one machine or many.
//!
//! MPI collectives cannot time out or be cancelled, and Open MPI sums buffers of different
//! lengths without complaint. So every collective starts with a small handshake: each rank sends
//! the others its [`Header`] (sequence number, operation, length, root) and polls for theirs
//! with `MPI_Improbe`, which leaves no receive pending. The handshake is where timeouts, dead
//! local peers (`/proc/<pid>`) and abort messages are caught, and where the [`verdict`] that
//! every engine shares finds size or operation mismatches, all as errors. Only once every rank has arrived with matching headers does the data move, through
//! Open MPI's own non-blocking collective (`MPI_Iallreduce`, ...), polled.
//!
//! A peer that dies *during* that data phase is the one case that cannot become an error: MPI
//! may still write into the caller's buffer, so returning would hand out memory that MPI owns.
//! The rank prints the error (naming the operation and the peer) and exits with status 1.

use std::time::{Duration, Instant};

use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::request::{Request, Scope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Destination, Root, Source};

use crate::comm::{Communicator, ReduceOp, check_timeout, pause};
use crate::error::{DistError, Result};
use crate::header::{Header, Op, verdict};

/// Message tags of the handshake and of abort notices (collectives use their own context).
const TAG_HEADER: i32 = 0x6b64_0001;
const TAG_ABORT: i32 = 0x6b64_0002;

/// Abort reasons are cut to this many bytes so that the notice stays an eager (non-blocking)
/// message.
const MAX_REASON_BYTES: usize = 1024;

/// How often (at most) the poll loops look at `/proc` for dead peers.
const LIVENESS_EVERY: Duration = Duration::from_millis(20);

/// Where a rank runs, for liveness checks of peers on the same machine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    host: String,
    pid: u32,
}

/// One rank's handle on the MPI world (`MPI_COMM_WORLD`); see [`MpiComm::init`].
///
/// Collectives follow the [`Communicator`] contract: timeouts name the first rank that did not
/// arrive, a rank that fails (or calls [`abort`](Communicator::abort)) makes the others'
/// collectives fail with [`DistError::PeerFailed`], a peer process on the same machine that
/// died is reported within about 20 ms, and buffer lengths are checked before any data moves.
/// Results are identical on every rank (Open MPI combines the same partial sums on each side);
/// the summation order is Open MPI's, not necessarily rank order.
///
/// Dropping the handle finalises MPI (`MPI_Finalize`); MPI cannot be initialised again in the
/// same process.
pub struct MpiComm {
    // Declared before `universe` so it is dropped before MPI is finalised.
    world: SimpleCommunicator,
    _universe: Universe,
    rank: usize,
    world_size: usize,
    local_rank: usize,
    timeout: Duration,
    seq: u64,
    peers: Vec<Peer>,
    /// Set when the group was aborted (by this rank or a peer) or a collective failed.
    closed: Option<String>,
    /// Send buffer of `MPI_Iallreduce` (which does not work in place in the safe API).
    scratch: Vec<f32>,
}

// SAFETY: MPI is initialised with `MPI_THREAD_SERIALIZED` (checked in `init`), which allows MPI
// calls from any thread as long as no two run at once. `MpiComm` is the only handle on the world
// communicator that this crate hands out, it is neither `Clone` nor `Sync`, and every MPI call
// goes through `&mut self` or `&self` of that one handle, so moving it to another thread keeps
// the calls serialised.
#[allow(unsafe_code)]
unsafe impl Send for MpiComm {}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiComm")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("local_rank", &self.local_rank)
            .field("timeout", &self.timeout)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl MpiComm {
    /// Initialises MPI and returns this process's handle on the world. Started by
    /// `mpirun -n N prog`, the process gets rank `0..N`; started alone it is a world of one.
    /// Each collective waits at most `timeout`.
    ///
    /// Fails if MPI was already initialised in this process or cannot give
    /// `MPI_THREAD_SERIALIZED`.
    pub fn init(timeout: Duration) -> Result<Self> {
        check_timeout(timeout)?;
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| {
                DistError::Invalid("MPI is already initialised in this process".into())
            })?;
        if threading < Threading::Serialized {
            return Err(DistError::Invalid(format!(
                "the MPI library gives thread level {threading:?}, and kindling-dist needs \
                 Serialized"
            )));
        }
        let world = universe.world();
        let rank = usize::try_from(world.rank())
            .map_err(|_| DistError::Invalid("negative MPI rank".into()))?;
        let world_size = usize::try_from(world.size())
            .map_err(|_| DistError::Invalid("negative MPI world size".into()))?;
        let host = mpi::environment::processor_name()
            .map_err(|e| DistError::Invalid(format!("MPI processor name: {e}")))?;
        let peers = gather_peers(
            &world,
            &Peer {
                host,
                pid: std::process::id(),
            },
        )?;
        let local_rank = peers[..rank]
            .iter()
            .filter(|p| p.host == peers[rank].host)
            .count();
        Ok(Self {
            world,
            _universe: universe,
            rank,
            world_size,
            local_rank,
            timeout,
            seq: 0,
            peers,
            closed: None,
            scratch: Vec::new(),
        })
    }

    /// The MPI library's version string (`Open MPI v4.1.4, ...`).
    pub fn library_version() -> String {
        mpi::environment::library_version().unwrap_or_else(|e| format!("unknown ({e})"))
    }

    /// Host name of each rank, indexed by rank.
    pub fn hosts(&self) -> Vec<&str> {
        self.peers.iter().map(|p| p.host.as_str()).collect()
    }

    fn fail(&mut self, err: DistError) -> DistError {
        if self.closed.is_none() {
            self.closed = Some(err.to_string());
        }
        err
    }

    /// The rank of `peer` if it runs on this machine and its process is gone.
    fn dead_local_peer(&self, among: impl Iterator<Item = usize>) -> Option<(usize, String)> {
        let me = &self.peers[self.rank].host;
        among
            .filter(|&r| r != self.rank && self.peers[r].host == *me)
            .find(|&r| process_gone(self.peers[r].pid))
            .map(|r| {
                (
                    r,
                    format!(
                        "its process (pid {} on {}) exited",
                        self.peers[r].pid, self.peers[r].host
                    ),
                )
            })
    }

    /// An abort notice from any peer, if one arrived.
    fn abort_notice(&self) -> Option<(usize, String)> {
        let probed = self
            .world
            .any_process()
            .immediate_matched_probe_with_tag(TAG_ABORT)?;
        let rank = usize::try_from(probed.1.source_rank()).unwrap_or(usize::MAX);
        let (bytes, _) = probed.matched_receive_vec::<u8>();
        Some((rank, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Sends this rank's header for the next collective and waits for every peer's.
    /// Returns the headers indexed by rank, once [`verdict`] found that they agree.
    fn handshake(&mut self, op: Op, len: usize, root: usize) -> Result<Vec<Header>> {
        if let Some(why) = &self.closed {
            return Err(DistError::Closed(why.clone()));
        }
        self.seq += 1;
        let mine = Header::new(self.seq, op, len, root).to_words();
        for peer in (0..self.world_size).filter(|&r| r != self.rank) {
            // 32 bytes: sent eagerly, so this returns at once even if the peer is absent.
            self.world
                .process_at_rank(peer as i32)
                .send_with_tag(&mine[..], TAG_HEADER);
        }
        let mut headers = vec![None; self.world_size];
        headers[self.rank] = Some(mine);
        let start = Instant::now();
        let mut last_liveness = start;
        loop {
            for (peer, header) in headers.iter_mut().enumerate() {
                if header.is_some() {
                    continue;
                }
                if let Some((msg, _)) = self
                    .world
                    .process_at_rank(peer as i32)
                    .immediate_matched_probe_with_tag(TAG_HEADER)
                {
                    let mut h = [0u64; 4];
                    msg.matched_receive_into(&mut h[..]);
                    *header = Some(h);
                }
            }
            let missing: Vec<usize> = (0..self.world_size)
                .filter(|&r| headers[r].is_none())
                .collect();
            if missing.is_empty() {
                break;
            }
            if let Some((rank, reason)) = self.abort_notice() {
                return Err(self.fail(DistError::PeerFailed {
                    rank,
                    op: op.name(),
                    reason,
                }));
            }
            let now = Instant::now();
            if now - last_liveness >= LIVENESS_EVERY {
                last_liveness = now;
                if let Some((rank, reason)) = self.dead_local_peer(missing.iter().copied()) {
                    return Err(self.fail(DistError::PeerFailed {
                        rank,
                        op: op.name(),
                        reason,
                    }));
                }
            }
            if now - start >= self.timeout {
                return Err(self.fail(DistError::Timeout {
                    op: op.name(),
                    peer: missing[0],
                    after: self.timeout,
                }));
            }
            pause(now - start);
        }
        let headers = headers
            .into_iter()
            .flatten()
            .map(Header::from_words)
            .collect::<Result<Vec<_>>>()
            .and_then(|headers| verdict(&headers).map(|()| headers));
        headers.map_err(|e| self.fail(e))
    }

    /// Polls a data-phase request to completion. Every rank has arrived, so it normally
    /// completes; if a peer dies or stalls past the timeout meanwhile, MPI still owns the
    /// buffers, so the error is printed and the process exits (see the module docs).
    fn complete<'a, D: ?Sized, S: Scope<'a>>(&self, op: Op, mut request: Request<'a, D, S>) {
        let start = Instant::now();
        let mut last_liveness = start;
        loop {
            match request.test() {
                Ok(_) => return,
                Err(pending) => request = pending,
            }
            let now = Instant::now();
            let failure = if now - last_liveness >= LIVENESS_EVERY {
                last_liveness = now;
                self.dead_local_peer(0..self.world_size)
                    .or_else(|| self.abort_notice())
                    .map(|(rank, reason)| DistError::PeerFailed {
                        rank,
                        op: op.name(),
                        reason,
                    })
            } else {
                None
            };
            let failure = failure.or_else(|| {
                (now - start >= self.timeout).then(|| {
                    DistError::Invalid(format!(
                        "{} did not complete within {:?} although every rank had arrived",
                        op.name(),
                        self.timeout
                    ))
                })
            });
            if let Some(err) = failure {
                eprintln!(
                    "kindling-dist: rank {}: {err}. MPI cannot abandon a collective in \
                     progress, so this rank exits.",
                    self.rank
                );
                std::process::exit(1);
            }
            pause(now - start);
        }
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn set_timeout(&mut self, timeout: Duration) {
        // The trait has no error path here; an invalid timeout keeps the old one.
        if check_timeout(timeout).is_ok() {
            self.timeout = timeout;
        }
    }

    fn all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        let code = Op::AllReduce(op);
        self.handshake(code, buf.len(), 0)?;
        if self.world_size == 1 || buf.is_empty() {
            return Ok(());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(buf);
        mpi::request::scope(|scope| {
            let request = self.world.immediate_all_reduce_into(
                scope,
                &scratch[..],
                &mut *buf,
                SystemOperation::sum(),
            );
            self.complete(code, request);
        });
        self.scratch = scratch;
        if op == ReduceOp::Mean {
            let n = self.world_size as f32;
            buf.iter_mut().for_each(|a| *a /= n);
        }
        Ok(())
    }

    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<()> {
        self.handshake(Op::Broadcast, buf.len(), root)?;
        if self.world_size == 1 || buf.is_empty() {
            return Ok(());
        }
        mpi::request::scope(|scope| {
            let request = self
                .world
                .process_at_rank(root as i32)
                .immediate_broadcast_into(scope, buf);
            self.complete(Op::Broadcast, request);
        });
        Ok(())
    }

    fn barrier(&mut self) -> Result<()> {
        // Nobody leaves the handshake before every rank's header has arrived: a barrier.
        self.handshake(Op::Barrier, 0, 0).map(drop)
    }

    fn all_gather_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let headers = self.handshake(Op::AllGather, bytes.len(), 0)?;
        let counts: Vec<i32> = headers.iter().map(|h| h.len as i32).collect();
        let displs = offsets(&counts);
        let total = counts.iter().map(|&c| c as usize).sum();
        let mut all = vec![0u8; total];
        if self.world_size > 1 && total > 0 {
            let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            mpi::request::scope(|scope| {
                let request =
                    self.world
                        .immediate_all_gather_varcount_into(scope, bytes, &mut partition);
                self.complete(Op::AllGather, request);
            });
        } else {
            all.copy_from_slice(bytes);
        }
        Ok(counts
            .iter()
            .zip(&displs)
            .map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec())
            .collect())
    }

    fn abort(&mut self, reason: &str) {
        if self.closed.is_some() {
            return;
        }
        let mut end = reason.len().min(MAX_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let notice = &reason.as_bytes()[..end];
        for peer in (0..self.world_size).filter(|&r| r != self.rank) {
            // Short enough to be sent eagerly: this does not wait for the peer.
            self.world
                .process_at_rank(peer as i32)
                .send_with_tag(notice, TAG_ABORT);
        }
        self.closed = Some(format!("rank {} aborted the group: {reason}", self.rank));
    }
}

/// All-gathers every rank's host and pid (blocking: it runs once, right after `MPI_Init`).
fn gather_peers(world: &SimpleCommunicator, me: &Peer) -> Result<Vec<Peer>> {
    let mine = format!("{}\n{}", me.pid, me.host).into_bytes();
    let size = world.size() as usize;
    let mut lens = vec![0i32; size];
    world.all_gather_into(&(mine.len() as i32), &mut lens[..]);
    let displs = offsets(&lens);
    let mut all = vec![0u8; lens.iter().map(|&l| l as usize).sum()];
    {
        let mut partition = PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
        world.all_gather_varcount_into(&mine[..], &mut partition);
    }
    lens.iter()
        .zip(&displs)
        .map(|(&l, &d)| {
            let text = String::from_utf8_lossy(&all[d as usize..(d + l) as usize]).into_owned();
            let (pid, host) = text
                .split_once('\n')
                .ok_or_else(|| DistError::Invalid(format!("bad peer record {text:?}")))?;
            let pid = pid
                .parse()
                .map_err(|_| DistError::Invalid(format!("bad peer pid {pid:?}")))?;
            Ok(Peer {
                host: host.to_string(),
                pid,
            })
        })
        .collect()
}

/// Whether process `pid` (on this machine) no longer runs: absent, or a zombie waiting for
/// `mpirun` to reap it.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses and may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| state == 'Z' || state == 'X'),
    }
}

/// Where each rank's part starts in a gathered buffer: the running sum of the counts before it.
fn offsets(counts: &[i32]) -> Vec<i32> {
    counts
        .iter()
        .scan(0, |at, &c| {
            let start = *at;
            *at += c;
            Some(start)
        })
        .collect()
}
