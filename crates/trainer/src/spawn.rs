//! Starts the ranks of a multi-process run on this machine, as torchrun and mpirun would: N
//! copies of this binary with torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), or under `mpirun -n N`. Each rank gets
//! `RAYON_NUM_THREADS = cores / N` (unless set), so that N ranks do not each take every core.
//! `kindling launch` and `kindling compare parallel` start their ranks here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::Engine;

/// Where the ranks of this machine sit in the whole group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Processes on this machine.
    pub nproc_per_node: usize,
    pub nnodes: usize,
    /// This machine's index, `0..nnodes`.
    pub node_rank: usize,
    /// Where rank 0 (on node 0) listens, reachable from every node.
    pub master_addr: String,
    pub master_port: u16,
    /// Where rank 0 listens (`KINDLING_BIND`); default every interface at `master_port`.
    pub bind: Option<String>,
}

impl Group {
    /// All ranks on this one machine, meeting on a free loopback port.
    pub fn local(n: usize) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port for MASTER_PORT")?
            .port();
        Ok(Self {
            nproc_per_node: n,
            nnodes: 1,
            node_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            bind: None,
        })
    }

    fn check(&self) -> Result<()> {
        if self.nproc_per_node == 0 {
            bail!("--nproc-per-node 0: expected >= 1");
        }
        if self.nnodes == 0 || self.node_rank >= self.nnodes {
            bail!(
                "--node-rank {} is not a node of --nnodes {}",
                self.node_rank,
                self.nnodes
            );
        }
        Ok(())
    }
}

/// Where the ranks' output goes: this terminal, or a log file per rank in a folder.
#[derive(Debug, Clone)]
pub enum Output {
    Inherit,
    Logs(PathBuf),
}

/// Runs `args` (a `kindling` command line, e.g. `train --config ...`) as this machine's ranks
/// of `group` over `engine` (`tcp` or `nccl`: torchrun's environment; `mpi`: `mpirun -n N`, one
/// machine) and waits for all of them. When `stop` is set (SIGINT/SIGTERM to this process) the
/// ranks get SIGTERM, checkpoint and stop. A failure names the first rank that failed (and the
/// end of its log).
pub fn run_ranks(
    engine: Engine,
    group: &Group,
    args: &[OsString],
    output: &Output,
    stop: Option<&AtomicBool>,
) -> Result<()> {
    group.check()?;
    let n = group.nproc_per_node;
    if let Output::Logs(dir) = output {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find the kindling binary")?;
    let threads = threads_per_rank(n);
    let log_of = |name: String| match output {
        Output::Inherit => None,
        Output::Logs(dir) => Some(dir.join(name)),
    };
    match engine {
        Engine::Tcp | Engine::Nccl => {
            let world = n * group.nnodes;
            let mut children = Vec::with_capacity(n);
            for local in 0..n {
                let rank = group.node_rank * n + local;
                let log = log_of(format!("rank{rank}.log"));
                let mut cmd = Command::new(&exe);
                cmd.args(args)
                    .env("RANK", rank.to_string())
                    .env("WORLD_SIZE", world.to_string())
                    .env("LOCAL_RANK", local.to_string())
                    .env("LOCAL_WORLD_SIZE", n.to_string())
                    .env("GROUP_RANK", group.node_rank.to_string())
                    .env("MASTER_ADDR", &group.master_addr)
                    .env("MASTER_PORT", group.master_port.to_string())
                    .env("RAYON_NUM_THREADS", &threads);
                if let Some(bind) = &group.bind {
                    cmd.env("KINDLING_BIND", bind);
                }
                redirect(&mut cmd, log.as_deref())?;
                let child = cmd.spawn().context("cannot start a rank")?;
                children.push((rank, log, child));
            }
            let failure = wait_all(&mut children, stop)?;
            match failure {
                Some((rank, status, log)) => bail!(
                    "rank {rank} failed first ({status}){}",
                    log.map(|l| format!(": {}", tail(&l))).unwrap_or_default()
                ),
                None => Ok(()),
            }
        }
        Engine::Mpi => {
            if group.nnodes > 1 {
                bail!(
                    "engine mpi across machines: start the ranks with mpirun --hostfile \
                     (see docs/distributed.md), not kindling launch"
                );
            }
            let log = log_of("mpirun.log".into());
            let mut cmd = Command::new("mpirun");
            cmd.args(["-n", &n.to_string(), "--oversubscribe", "--bind-to", "none"]);
            if running_as_root() {
                cmd.arg("--allow-run-as-root");
            }
            cmd.args(["-x", &format!("RAYON_NUM_THREADS={threads}")])
                .arg(&exe)
                .args(args);
            redirect(&mut cmd, log.as_deref())?;
            let child = cmd
                .spawn()
                .context("cannot run mpirun: install Open MPI (apt-get install openmpi-bin)")?;
            let mut children = vec![(0, log, child)];
            match wait_all(&mut children, stop)? {
                Some((_, status, log)) => bail!(
                    "mpirun failed ({status}){}",
                    log.map(|l| format!(": {}", tail(&l))).unwrap_or_default()
                ),
                None => Ok(()),
            }
        }
        Engine::Threads => bail!("the threads engine runs in one process: use kindling train"),
    }
}

type Rank = (usize, Option<PathBuf>, Child);

/// Waits for every child. On `stop`, the children get SIGTERM once (they checkpoint at their
/// next step and exit); when one fails, the others get SIGTERM and, if still running after
/// [`FAILURE_GRACE`], SIGKILL, as torchrun's agent does, so that no rank waits for a dead peer
/// until its timeout. Returns the first failure by time of exit.
fn wait_all(
    children: &mut [Rank],
    stop: Option<&AtomicBool>,
) -> Result<Option<(usize, ExitStatus, Option<PathBuf>)>> {
    let mut done: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut first_failure = None;
    let mut signalled = false;
    let mut kill_at: Option<Instant> = None;
    while done.iter().any(Option::is_none) {
        for (i, (rank, log, child)) in children.iter_mut().enumerate() {
            if done[i].is_none()
                && let Some(status) = child.try_wait()?
            {
                done[i] = Some(status);
                if !status.success() && first_failure.is_none() {
                    first_failure = Some((*rank, status, log.clone()));
                }
            }
        }
        let stopping = stop.is_some_and(|s| s.load(Ordering::SeqCst));
        if !signalled && (stopping || first_failure.is_some()) {
            signalled = true;
            signal_running(children, &done, "-TERM");
            if first_failure.is_some() {
                kill_at = Some(Instant::now() + FAILURE_GRACE);
            }
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            kill_at = None;
            signal_running(children, &done, "-KILL");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(first_failure)
}

/// How long the other ranks get to stop after one failed.
pub const FAILURE_GRACE: Duration = Duration::from_secs(5);

fn signal_running(children: &[Rank], done: &[Option<ExitStatus>], signal: &str) {
    for (i, (_, _, child)) in children.iter().enumerate() {
        if done[i].is_none() {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }
}

fn threads_per_rank(n: usize) -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        (cores / n).max(1).to_string()
    })
}

fn redirect(cmd: &mut Command, log: Option<&Path>) -> Result<()> {
    cmd.stdin(Stdio::null());
    if let Some(log) = log {
        let file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        cmd.stdout(file.try_clone()?).stderr(file);
    }
    Ok(())
}

/// The last lines of a log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(5);
    format!("{} (log: {})", lines[start..].join(" / "), log.display())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether `mpirun` can be started (Open MPI installed).
pub fn mpirun_available() -> bool {
    Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
