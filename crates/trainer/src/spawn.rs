//! Starts the ranks of a multi-process run on this machine, as torchrun and mpirun would: N
//! copies of this binary with torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), or under `mpirun -n N`. Each rank gets
//! `RAYON_NUM_THREADS = cores / N` (unless set), so that N ranks do not each take every core.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::config::Engine;

/// Runs `args` (a `kindling` command line, e.g. `train --config ...`) as `n` ranks of
/// `engine` (`tcp` or `mpi`) and waits for all of them. Their output goes to
/// `logs/rank{R}.log` (`logs/mpirun.log` under MPI); a failure names the first failing rank
/// and the end of its log.
pub fn run_ranks(engine: Engine, n: usize, args: &[OsString], logs: &Path) -> Result<()> {
    if n == 0 {
        bail!("0 ranks: expected >= 1");
    }
    std::fs::create_dir_all(logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let exe = std::env::current_exe().context("cannot find the kindling binary")?;
    let threads = threads_per_rank(n);
    match engine {
        Engine::Tcp => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("cannot find a free port for MASTER_PORT")?
                .port();
            let mut children = Vec::with_capacity(n);
            for rank in 0..n {
                let log = logs.join(format!("rank{rank}.log"));
                let mut cmd = Command::new(&exe);
                cmd.args(args)
                    .env("RANK", rank.to_string())
                    .env("WORLD_SIZE", n.to_string())
                    .env("LOCAL_RANK", rank.to_string())
                    .env("LOCAL_WORLD_SIZE", n.to_string())
                    .env("MASTER_ADDR", "127.0.0.1")
                    .env("MASTER_PORT", port.to_string())
                    .env("RAYON_NUM_THREADS", &threads);
                redirect(&mut cmd, &log)?;
                children.push((rank, log, cmd.spawn().context("cannot start a rank")?));
            }
            let mut first_failure = None;
            for (rank, log, mut child) in children {
                let status = child.wait()?;
                if !status.success() && first_failure.is_none() {
                    first_failure = Some((rank, status, log));
                }
            }
            match first_failure {
                Some((rank, status, log)) => {
                    bail!("rank {rank} failed ({status}): {}", tail(&log))
                }
                None => Ok(()),
            }
        }
        Engine::Mpi => {
            let log = logs.join("mpirun.log");
            let mut cmd = Command::new("mpirun");
            cmd.args(["-n", &n.to_string(), "--oversubscribe", "--bind-to", "none"]);
            if running_as_root() {
                cmd.arg("--allow-run-as-root");
            }
            cmd.args(["-x", &format!("RAYON_NUM_THREADS={threads}")])
                .arg(&exe)
                .args(args);
            redirect(&mut cmd, &log)?;
            let status = cmd
                .status()
                .context("cannot run mpirun: install Open MPI (apt-get install openmpi-bin)")?;
            if !status.success() {
                bail!("mpirun failed ({status}): {}", tail(&log));
            }
            Ok(())
        }
        other => bail!("{other:?} ranks are not started by this launcher (tcp or mpi)"),
    }
}

fn threads_per_rank(n: usize) -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        (cores / n).max(1).to_string()
    })
}

fn redirect(cmd: &mut Command, log: &Path) -> Result<()> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
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
