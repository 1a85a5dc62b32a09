//! `cargo xtask train`: `kindling train`, or with `--engine mpi|tcp|nccl` one process per rank
//! (under `mpirun`, or with torchrun's environment), like torchrun for this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{
    build_test_targets, describe, ensure_runtime_dir, executable, kindling, run, running_as_root,
    target_dir,
};
use crate::features;

/// `kindling train`, or with `--engine mpi` one `kindling train` per rank under `mpirun -n N`
/// (N from `--nproc-per-node`, default 2), like torchrun for this machine. The threads engine
/// needs no launcher: `kindling train --nproc-per-node N` runs N ranks in one process.
pub(crate) fn train(args: &[String]) -> Result<()> {
    let launch = parse_launch(args)?;
    let engine = launch.engine.as_deref().unwrap_or("threads");
    if engine == "threads" {
        return kindling("train", args);
    }
    if !["mpi", "tcp", "nccl"].contains(&engine) {
        bail!("unknown --engine {engine}: expected threads, mpi, tcp or nccl");
    }
    let n = launch.nproc.unwrap_or(2);
    let binary = if engine == "nccl" {
        // The test build has no CUDA; NCCL runs the release build of `cargo xtask build`.
        let release = target_dir().join("release/kindling");
        if !release.is_file() {
            bail!(
                "--engine nccl runs {}: build it first with \
                 `cargo xtask build --features cuda,nccl` (on a machine with CUDA)",
                release.display()
            );
        }
        release
    } else {
        let output = build_test_targets()?;
        executable(&output, "kindling", "bin").context("cargo built no `kindling` binary")?
    };
    if engine == "mpi" && !features::mpi_available() {
        bail!(
            "this needs Open MPI and a kindling built with it: {}",
            features::MPI_PACKAGES
        );
    }
    // The binary's own launcher starts the ranks (torchrun's environment, or mpirun).
    let mut cmd = Command::new(&binary);
    cmd.args([
        "launch",
        "--nproc-per-node",
        &n.to_string(),
        "--engine",
        engine,
        "--",
    ])
    .arg("train")
    .args(&launch.rest);
    if engine == "nccl"
        && let Some(dir) = nccl_symlink_dir()?
    {
        let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        cmd.env("LD_LIBRARY_PATH", format!("{}:{old}", dir.display()));
    }
    ensure_runtime_dir(&mut cmd);
    run(cmd).context("training failed")
}

/// Runs `n` processes of `binary args` with torchrun's environment (`RANK`, `LOCAL_RANK`,
/// `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` on a free loopback port), `adjust`ing each
/// command first; fails naming the ranks that failed.
pub(crate) fn env_ranks(
    n: usize,
    binary: &Path,
    args: &[String],
    adjust: impl Fn(&mut Command),
) -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut children = Vec::new();
    for rank in 0..n {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string());
        adjust(&mut cmd);
        ensure_runtime_dir(&mut cmd);
        eprintln!("xtask: rank {rank}: {}", describe(&cmd));
        children.push(cmd.spawn().context("cannot start a rank")?);
    }
    let mut failed = Vec::new();
    for (rank, mut child) in children.into_iter().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            failed.push(format!("rank {rank}: {status}"));
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join(", "));
    }
    Ok(())
}

/// Threads of each rank's compute pool: the machine's cores shared among the ranks (what
/// torchrun does with OMP_NUM_THREADS), unless the caller chose.
pub(crate) fn set_threads_per_rank(cmd: &mut Command, ranks: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        cmd.env("RAYON_NUM_THREADS", (cores / ranks).max(1).to_string());
    }
}

/// cudarc loads `libnccl.so` or `libnccl.so.<CUDA major>`, while the pip wheels and Debian ship
/// `libnccl.so.2`: when only that exists, a folder with a `libnccl.so` link to it, for the ranks'
/// LD_LIBRARY_PATH.
pub(crate) fn nccl_symlink_dir() -> Result<Option<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/lib64"].map(PathBuf::from));
    if dirs.iter().any(|d| d.join("libnccl.so").exists()) {
        return Ok(None);
    }
    // Python wheels: ask the interpreter where nvidia/nccl lives, if there is one.
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import nvidia.nccl, os; print(os.path.join(nvidia.nccl.__path__[0], 'lib'))",
        ])
        .output()
        && out.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let Some(lib) = dirs
        .iter()
        .map(|d| d.join("libnccl.so.2"))
        .find(|p| p.is_file())
    else {
        return Ok(None); // the rank reports what is missing
    };
    let dir = target_dir().join("nccl-lib");
    std::fs::create_dir_all(&dir)?;
    let link = dir.join("libnccl.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)
        .with_context(|| format!("cannot link {} to {}", link.display(), lib.display()))?;
    eprintln!("xtask: NCCL: {} -> {}", link.display(), lib.display());
    Ok(Some(dir))
}

/// `mpirun -n N` of a binary, as root where needed, one thread per process.
pub(crate) fn mpirun(n: usize, binary: &Path) -> Result<Command> {
    if !features::mpi_available() {
        bail!(
            "this needs Open MPI and a kindling built with it: {}",
            features::MPI_PACKAGES
        );
    }
    let mut cmd = Command::new("mpirun");
    cmd.args(["-n", &n.to_string(), "--oversubscribe", "--bind-to", "none"]);
    if running_as_root() {
        cmd.arg("--allow-run-as-root");
    }
    set_threads_per_rank(&mut cmd, n);
    cmd.args(["-x", "RAYON_NUM_THREADS"]);
    cmd.arg(binary);
    ensure_runtime_dir(&mut cmd);
    Ok(cmd)
}

/// The launcher's view of `kindling train` arguments.
#[derive(Debug, PartialEq)]
pub(crate) struct Launch {
    pub(crate) nproc: Option<usize>,
    pub(crate) engine: Option<String>,
    /// The arguments without `--nproc-per-node` and `--engine` (for mpirun's ranks).
    pub(crate) rest: Vec<String>,
}

pub(crate) fn parse_launch(args: &[String]) -> Result<Launch> {
    let mut launch = Launch {
        nproc: None,
        engine: None,
        rest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        if flag != "--nproc-per-node" && flag != "--engine" {
            launch.rest.push(arg.clone());
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .with_context(|| format!("{flag} needs a value"))?
                .clone(),
        };
        if flag == "--engine" {
            launch.engine = Some(value);
        } else {
            let n: usize = value
                .parse()
                .ok()
                .filter(|&n| n >= 1)
                .with_context(|| format!("invalid --nproc-per-node {value}: expected >= 1"))?;
            launch.nproc = Some(n);
        }
    }
    Ok(launch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_flags_are_taken_out_of_the_training_arguments() {
        let args: Vec<String> = [
            "--epochs",
            "2",
            "--nproc-per-node=4",
            "--engine",
            "mpi",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let launch = parse_launch(&args).expect("parses");
        assert_eq!(launch.nproc, Some(4));
        assert_eq!(launch.engine.as_deref(), Some("mpi"));
        assert_eq!(launch.rest, ["--epochs", "2", "--quiet"]);
        let bad = parse_launch(&["--nproc-per-node".to_string(), "0".to_string()]);
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("invalid --nproc-per-node 0")
        );
        assert!(parse_launch(&["--engine".to_string()]).is_err());
    }
}
