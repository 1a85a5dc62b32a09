//! The NCCL engine (feature `nccl`): all-reduce and broadcast through NCCL on CUDA devices,
//! through `cudarc`, one process per GPU; everything else through a [`TcpComm`] built from the
//! torchrun-style environment, which also carries the NCCL unique id from rank 0 to the others.
//!
//! Before each NCCL call the ranks exchange a small header through the TCP group, so
//! timeouts, dead peers, aborts and length mismatches are caught as errors before NCCL runs
//! (NCCL itself would hang or sum garbage). NCCL calls cannot be abandoned once they run: if one
//! has not finished within the timeout, a watchdog prints the error and exits the process.
//!
//! Data is staged through the host like the other engines (`&mut [f32]` in, CUDA buffer, NCCL,
//! back), so any burn backend's tensors can be reduced; the point of NCCL here is the transport
//! between GPUs and machines.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use cudarc::nccl::safe::{Comm, Id};

use crate::comm::{Communicator, ReduceOp};
use crate::error::{DistError, Result};
use crate::header::{Header, Op, verdict};
use crate::tcp::TcpComm;

/// One rank's handle on an NCCL group; see [`NcclComm::from_env`].
pub struct NcclComm {
    control: TcpComm,
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    comm: Comm,
    /// Reused device buffer of the last all-reduce or broadcast.
    device: Option<CudaSlice<f32>>,
    watchdog: Arc<Watchdog>,
    /// NCCL calls so far (the sequence number of their headers).
    seq: u64,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it do not
// overlap (NCCL's thread-safety rules). `NcclComm` owns its `Comm`, is neither `Clone` nor
// `Sync`, and makes every NCCL call through `&mut self`, with the CUDA context bound to the
// calling thread first.
#[allow(unsafe_code)]
unsafe impl Send for NcclComm {}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclComm")
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl NcclComm {
    /// Joins the group of the torchrun-style environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
    /// `MASTER_ADDR`, `MASTER_PORT`) and builds the NCCL communicator on GPU `LOCAL_RANK`.
    pub fn from_env(timeout: Duration) -> Result<Self> {
        Self::new(TcpComm::from_env(timeout)?)
    }

    /// Builds the NCCL communicator of a TCP group, on GPU `control.local_rank()`.
    pub fn new(mut control: TcpComm) -> Result<Self> {
        // Every rank checks the library before the collective below, so a rank without NCCL
        // fails the group instead of leaving the others waiting.
        let found = nccl_library_present();
        let all = control.all_gather_bytes(&[u8::from(found)])?;
        if let Some(rank) = all.iter().position(|b| b.first() != Some(&1)) {
            let err = if found {
                DistError::PeerFailed {
                    rank,
                    op: "nccl init",
                    reason: "NCCL could not be loaded there".into(),
                }
            } else {
                DistError::Invalid(missing_library_message())
            };
            return Err(err);
        }
        let gpu = control.local_rank();
        let context = CudaContext::new(gpu)
            .map_err(|e| DistError::Invalid(format!("CUDA device {gpu} (LOCAL_RANK): {e}")))?;
        let stream = context.default_stream();
        let id = if control.rank() == 0 {
            let id =
                Id::new().map_err(|e| DistError::Invalid(format!("ncclGetUniqueId: {e:?}")))?;
            id.internal().iter().map(|&c| c as u8).collect()
        } else {
            Vec::new()
        };
        let ids = control.all_gather_bytes(&id)?;
        let mut internal = [0 as std::ffi::c_char; 128];
        if ids[0].len() != internal.len() {
            return Err(DistError::Invalid("rank 0 sent a malformed NCCL id".into()));
        }
        for (dst, &src) in internal.iter_mut().zip(&ids[0]) {
            *dst = src as std::ffi::c_char;
        }
        let comm = Comm::from_rank(
            Arc::clone(&stream),
            control.rank(),
            control.world_size(),
            Id::uninit(internal),
        )
        .map_err(|e| DistError::Invalid(format!("ncclCommInitRank: {e:?}")))?;
        Ok(Self {
            control,
            context,
            stream,
            comm,
            device: None,
            watchdog: Watchdog::start(),
            seq: 0,
        })
    }

    /// Checks through the TCP group that every rank runs the same call with the same length
    /// (the header and verdict of every engine); a disagreement aborts the group.
    fn agree(&mut self, op: Op, len: usize, root: usize) -> Result<()> {
        self.seq += 1;
        let mine = Header::new(self.seq, op, len, root);
        let all = self.control.all_gather_bytes(&mine.to_bytes())?;
        let agreed = all
            .iter()
            .map(|h| Header::from_bytes(h))
            .collect::<Result<Vec<_>>>()
            .and_then(|headers| verdict(&headers));
        if let Err(err) = agreed {
            self.control.abort(&err.to_string());
            return Err(err);
        }
        Ok(())
    }

    /// Copies `buf` to the device, runs `call` on it, copies the result back; the watchdog
    /// ends the process if that takes longer than the timeout.
    fn on_device(
        &mut self,
        buf: &mut [f32],
        what: &'static str,
        call: impl FnOnce(&Comm, &mut CudaSlice<f32>) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let cuda = |e: &dyn std::fmt::Debug| DistError::Tensor(format!("{what}: CUDA {e:?}"));
        self.context.bind_to_thread().map_err(|e| cuda(&e))?;
        let mut device = match self.device.take() {
            Some(d) if d.len() == buf.len() => d,
            _ => self
                .stream
                .alloc_zeros::<f32>(buf.len())
                .map_err(|e| cuda(&e))?,
        };
        self.stream
            .memcpy_htod(&*buf, &mut device)
            .map_err(|e| cuda(&e))?;
        self.watchdog
            .arm(what, self.control.rank(), self.control.timeout());
        let outcome = call(&self.comm, &mut device)
            .map_err(DistError::Tensor)
            .and_then(|()| {
                self.stream
                    .memcpy_dtoh(&device, &mut *buf)
                    .map_err(|e| cuda(&e))?;
                self.stream.synchronize().map_err(|e| cuda(&e))
            });
        self.watchdog.disarm();
        self.device = Some(device);
        outcome
    }
}

impl Communicator for NcclComm {
    fn rank(&self) -> usize {
        self.control.rank()
    }

    fn world_size(&self) -> usize {
        self.control.world_size()
    }

    fn local_rank(&self) -> usize {
        self.control.local_rank()
    }

    fn timeout(&self) -> Duration {
        self.control.timeout()
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.control.set_timeout(timeout);
    }

    fn all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        self.agree(Op::AllReduce(op), buf.len(), 0)?;
        if buf.is_empty() || self.world_size() == 1 {
            return Ok(());
        }
        self.on_device(buf, "all_reduce", |comm, d| {
            comm.all_reduce_in_place(d, &cudarc::nccl::safe::ReduceOp::Sum)
                .map(drop)
                .map_err(|e| format!("ncclAllReduce: {e:?}"))
        })?;
        if op == ReduceOp::Mean {
            let n = self.world_size() as f32;
            buf.iter_mut().for_each(|a| *a /= n);
        }
        Ok(())
    }

    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<()> {
        self.agree(Op::Broadcast, buf.len(), root)?;
        if buf.is_empty() || self.world_size() == 1 {
            return Ok(());
        }
        self.on_device(buf, "broadcast", |comm, d| {
            comm.broadcast_in_place(d, root as i32)
                .map(drop)
                .map_err(|e| format!("ncclBroadcast: {e:?}"))
        })
    }

    fn barrier(&mut self) -> Result<()> {
        self.control.barrier()
    }

    fn all_gather_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.control.all_gather_bytes(bytes)
    }

    fn abort(&mut self, reason: &str) {
        self.control.abort(reason);
    }
}

/// Ends the process when an armed NCCL call outlives its deadline: NCCL cannot be abandoned
/// while it may still write the device buffer.
#[derive(Debug)]
struct Watchdog {
    start: Instant,
    /// Deadline in milliseconds since `start`; 0 when disarmed.
    deadline_ms: AtomicU64,
    what: std::sync::Mutex<(&'static str, usize, Duration)>,
}

impl Watchdog {
    fn start() -> Arc<Self> {
        let dog = Arc::new(Self {
            start: Instant::now(),
            deadline_ms: AtomicU64::new(0),
            what: std::sync::Mutex::new(("", 0, Duration::ZERO)),
        });
        let watch = Arc::downgrade(&dog);
        std::thread::spawn(move || {
            while let Some(dog) = watch.upgrade() {
                let deadline = dog.deadline_ms.load(Ordering::Acquire);
                if deadline != 0 && dog.start.elapsed().as_millis() as u64 > deadline {
                    let (what, rank, timeout) = *dog.what.lock().unwrap_or_else(|e| e.into_inner());
                    eprintln!(
                        "kindling-dist: rank {rank}: NCCL {what} did not finish within \
                         {timeout:?} (a peer died or hangs); NCCL cannot abandon it, so this \
                         rank exits."
                    );
                    std::process::exit(1);
                }
                drop(dog);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        dog
    }

    fn arm(&self, what: &'static str, rank: usize, timeout: Duration) {
        *self.what.lock().unwrap_or_else(|e| e.into_inner()) = (what, rank, timeout);
        let deadline = self.start.elapsed() + timeout;
        self.deadline_ms
            .store((deadline.as_millis() as u64).max(1), Ordering::Release);
    }

    fn disarm(&self) {
        self.deadline_ms.store(0, Ordering::Release);
    }
}

/// Whether cudarc finds an NCCL library under one of the names it tries.
fn nccl_library_present() -> bool {
    // SAFETY: this only `dlopen`s candidate library names (running their initialisers), which
    // is what every NCCL user does first; it touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        cudarc::nccl::sys::is_culib_present()
    }
}

/// Where `libnccl.so.2` (the name the pip wheels `nvidia-nccl-cu12`/`-cu13` and Debian's
/// `libnccl2` ship) may be, for the error message: cudarc looks for `libnccl.so` and
/// `libnccl.so.<CUDA major>`, not `.so.2`.
pub fn find_libnccl_so_2() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/local/cuda/lib64",
            "/usr/lib64",
        ]
        .iter()
        .map(PathBuf::from),
    );
    for prefix in [
        std::env::var_os("VIRTUAL_ENV"),
        std::env::var_os("CONDA_PREFIX"),
    ]
    .into_iter()
    .flatten()
    .map(PathBuf::from)
    .chain(["/usr/local", "/usr"].iter().map(PathBuf::from))
    {
        for lib in ["lib", "lib64"] {
            if let Ok(entries) = std::fs::read_dir(prefix.join(lib)) {
                for e in entries.flatten() {
                    let name = e.file_name();
                    if name.to_string_lossy().starts_with("python3") {
                        for site in ["site-packages", "dist-packages"] {
                            dirs.push(e.path().join(site).join("nvidia/nccl/lib"));
                        }
                    }
                }
            }
        }
    }
    dirs.into_iter()
        .map(|d| d.join("libnccl.so.2"))
        .find(|p| p.is_file())
}

fn missing_library_message() -> String {
    match find_libnccl_so_2() {
        Some(path) => format!(
            "NCCL was not found under the names cudarc loads (libnccl.so, libnccl.so.<CUDA \
             major>), but {} exists (the pip wheels and Debian name it libnccl.so.2): link it, \
             e.g. `mkdir -p ~/.cache/kindling/nccl && ln -sf {} ~/.cache/kindling/nccl/libnccl.so \
             && export LD_LIBRARY_PATH=~/.cache/kindling/nccl:$LD_LIBRARY_PATH` \
             (`cargo xtask train --engine nccl` does this for you)",
            path.display(),
            path.display()
        ),
        None => "NCCL was not found: install it (pip install nvidia-nccl-cu12, or Debian's \
                 libnccl2) and put its folder on LD_LIBRARY_PATH"
            .into(),
    }
}
