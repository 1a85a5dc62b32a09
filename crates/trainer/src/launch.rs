//! The one place that starts ranks and opens runs: a new run or a resumed one, on one device,
//! on one thread per device of this process (the threads engine), or as one rank of a
//! multi-process group (MPI, TCP, NCCL) that a launcher started.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kindling_dist::{Communicator, DistError, LocalGroup, RankError};
use kindling_model::AlexNet;

use crate::checkpoint::{self, Checkpoint};
use crate::config::{Engine, TrainConfig};
use crate::device::parse_devices;
use crate::run::RunDir;
use crate::train::{save_model, train_rank};

/// Trains a model as `config` says, writing the run into `run`; returns the final model.
pub fn train(config: &TrainConfig, run: &mut RunDir, quiet: bool) -> Result<AlexNet> {
    train_from(config, run, quiet, None, None, None)
}

/// Continues the run in `run` from its `checkpoints/last.ckpt` to the end of its config. The
/// data order, augmentation, learning rate and dropout draws (the device RNG is reseeded from
/// the seed and the epoch at every epoch) repeat the uninterrupted run, and so do the final
/// weights (tested bit for bit; mid-epoch, dropout's draws restart at the epoch's seed).
pub fn resume(run: &mut RunDir, quiet: bool, interrupt: Option<&AtomicBool>) -> Result<AlexNet> {
    let checkpoint = Checkpoint::load(&checkpoint::last(run.path()))?;
    let config = checkpoint.header.config.clone();
    resume_from(run, checkpoint, &config, quiet, interrupt)
}

/// [`resume`] from its `last.ckpt`, already loaded, with `config`: the checkpoint's own, or one
/// that differs only in [`RESUMABLE`](crate::config::RESUMABLE) settings (more epochs, other
/// devices). A changed config is written back to the run's `config.json`.
pub fn resume_from(
    run: &mut RunDir,
    checkpoint: Checkpoint,
    config: &TrainConfig,
    quiet: bool,
    interrupt: Option<&AtomicBool>,
) -> Result<AlexNet> {
    continue_run(run, &checkpoint, config)?;
    train_from(config, run, quiet, Some(checkpoint), None, interrupt)
}

/// Readies a reopened run to continue from `checkpoint` with `config`: forgets the epochs
/// recorded after the checkpoint, and writes a changed (extended) config back.
fn continue_run(run: &mut RunDir, checkpoint: &Checkpoint, config: &TrainConfig) -> Result<()> {
    run.truncate_history(checkpoint.header.epoch)?;
    if *config != checkpoint.header.config {
        run.write_config(config)?;
    }
    Ok(())
}

/// [`train`] from an optional checkpoint (which may stop inside an epoch), stopping after
/// `stop_after` epochs of this session if given, and at the next optimizer step once
/// `interrupt` is set (Ctrl-C, SIGTERM), with an [`Interrupted`](crate::train::Interrupted)
/// error after writing `last.ckpt`. Resuming inside an epoch skips the batches already trained
/// (with dropout on, its draws restart at the epoch's seed, so they differ from the
/// uninterrupted run's). Several devices train data-parallel, one thread (rank) per device.
pub fn train_from(
    config: &TrainConfig,
    run: &mut RunDir,
    quiet: bool,
    start: Option<Checkpoint>,
    stop_after: Option<usize>,
    interrupt: Option<&AtomicBool>,
) -> Result<AlexNet> {
    config.validate()?;
    if config.dist.engine != Engine::Threads {
        let engine = format!("{:?}", config.dist.engine).to_lowercase();
        bail!(
            "engine {engine} runs one process per rank: start the run with \
             cargo xtask train --nproc-per-node N --engine {engine}"
        );
    }
    let devices = parse_devices(&config.dist.device)?;
    if let [device] = devices.as_slice() {
        return train_rank(
            config,
            Some(run),
            quiet,
            start.as_ref(),
            stop_after,
            interrupt,
            device,
            None,
        );
    }
    let timeout = Duration::from_secs(config.dist.timeout_secs);
    let run = Mutex::new(Some(run));
    let outcomes = LocalGroup::run(&devices, timeout, |comm, device| {
        let rank = comm.rank();
        let run = if rank == 0 {
            run.lock().ok().and_then(|mut r| r.take())
        } else {
            None
        };
        train_rank(
            config,
            run,
            quiet || rank != 0,
            start.as_ref(),
            stop_after,
            interrupt,
            device,
            Some(comm),
        )
    })?;
    rank_zero_result(outcomes)
}

/// Rank 0's model, or the error that started a failure: a rank's own error rather than the
/// "peer failed" the others saw because of it.
fn rank_zero_result(outcomes: Vec<Result<AlexNet, RankError<anyhow::Error>>>) -> Result<AlexNet> {
    let mut errors = Vec::new();
    for (rank, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(model) if rank == 0 => return Ok(model),
            Ok(_) => {}
            Err(RankError::Failed(e)) => errors.push(e),
            Err(RankError::Panicked(msg)) => {
                errors.push(anyhow::anyhow!("rank {rank} panicked: {msg}"));
            }
        }
    }
    let is_echo = |e: &anyhow::Error| {
        matches!(
            e.downcast_ref::<DistError>(),
            Some(DistError::PeerFailed { .. } | DistError::Closed(_))
        )
    };
    let first = errors.iter().position(|e| !is_echo(e)).unwrap_or(0);
    match errors.into_iter().nth(first) {
        Some(e) => Err(e),
        None => bail!("rank 0 returned no model"),
    }
}

/// How a finished run went, for the line the CLI prints.
#[derive(Debug)]
pub struct Finished {
    /// Rank 0's run directory (other ranks of a multi-process run have none).
    pub run: Option<RunDir>,
    pub ranks: usize,
    pub engine: Engine,
    pub elapsed: Duration,
}

impl Finished {
    /// A run of the threads engine that returned `model`: its weights saved into `run`.
    fn of_threads(
        model: AlexNet,
        run: RunDir,
        config: &TrainConfig,
        started: Instant,
    ) -> Result<Self> {
        save_model(&model, &run)?;
        Ok(Self {
            run: Some(run),
            ranks: parse_devices(&config.dist.device)?.len(),
            engine: config.dist.engine,
            elapsed: started.elapsed(),
        })
    }
}

/// Starts a new run in `out` (threads, or this process's rank of a multi-process group) and
/// trains it to the end, saving `model.safetensors`.
pub fn start_new(
    config: &TrainConfig,
    out: &Path,
    quiet: bool,
    interrupt: &AtomicBool,
) -> Result<Finished> {
    if config.dist.engine != Engine::Threads {
        return train_process(config, out, quiet, None, interrupt);
    }
    let started = Instant::now();
    crate::preflight::preflight(config)?;
    let mut run = RunDir::create(out, config)?;
    let model = train_from(config, &mut run, quiet, None, None, Some(interrupt))?;
    Finished::of_threads(model, run, config, started)
}

/// Resumes the run in `dir` from its `last.ckpt` with `config` (the checkpoint's own config
/// with the allowed changes applied by the caller).
pub fn start_resume(
    dir: &Path,
    checkpoint: Checkpoint,
    config: &TrainConfig,
    quiet: bool,
    interrupt: &AtomicBool,
) -> Result<Finished> {
    if config.dist.engine != Engine::Threads {
        return train_process(config, dir, quiet, Some(checkpoint), interrupt);
    }
    let started = Instant::now();
    let mut run = RunDir::open(dir)?;
    let model = resume_from(&mut run, checkpoint, config, quiet, Some(interrupt))?;
    Finished::of_threads(model, run, config, started)
}

/// One rank of a multi-process run (engine mpi, tcp or nccl): rank 0 owns the run directory in
/// `out`; with `start`, the run resumes from that checkpoint (every rank reads it, so the run
/// directory must be visible to all of them).
fn train_process(
    config: &TrainConfig,
    out: &Path,
    quiet: bool,
    start: Option<Checkpoint>,
    interrupt: &AtomicBool,
) -> Result<Finished> {
    let timeout = Duration::from_secs(config.dist.timeout_secs);
    let mut comm: Box<dyn Communicator> = match config.dist.engine {
        Engine::Threads => bail!("the threads engine runs in one process"),
        Engine::Mpi => mpi_comm(timeout)?,
        Engine::Tcp => Box::new(kindling_dist::TcpComm::from_env(timeout)?),
        Engine::Nccl => nccl_comm(timeout)?,
    };
    let rank = comm.rank();
    let started = Instant::now();
    let train_here = |comm: &mut dyn Communicator| -> Result<Option<RunDir>> {
        let devices = parse_devices(&config.dist.device)?;
        let device = &devices[comm.local_rank() % devices.len()];
        let mut run = match (&start, rank) {
            (_, 1..) => None,
            (None, 0) => {
                crate::preflight::preflight(config)?;
                Some(RunDir::create(out, config)?)
            }
            (Some(c), 0) => {
                let mut run = RunDir::open(out)?;
                continue_run(&mut run, c, config)?;
                Some(run)
            }
        };
        let model = train_rank(
            config,
            run.as_mut(),
            quiet || rank != 0,
            start.as_ref(),
            None,
            Some(interrupt),
            device,
            Some(comm),
        )?;
        if let Some(run) = &run {
            save_model(&model, run)?;
        }
        Ok(run)
    };
    match train_here(comm.as_mut()) {
        Ok(run) => Ok(Finished {
            run,
            ranks: comm.world_size(),
            engine: config.dist.engine,
            elapsed: started.elapsed(),
        }),
        Err(e) => {
            // The other ranks fail at their next collective instead of waiting for the timeout.
            comm.abort(&format!("rank {rank}: {e:#}"));
            Err(e)
        }
    }
}

#[cfg(feature = "mpi")]
fn mpi_comm(timeout: Duration) -> Result<Box<dyn Communicator>> {
    Ok(Box::new(kindling_dist::MpiComm::init(timeout)?))
}

#[cfg(not(feature = "mpi"))]
fn mpi_comm(_timeout: Duration) -> Result<Box<dyn Communicator>> {
    bail!(
        "engine mpi: this kindling was built without the `mpi` feature; install Open MPI \
         (apt-get install libopenmpi-dev openmpi-bin libclang-dev) and rebuild (cargo xtask \
         builds it with `mpi` whenever mpicc is found), or use --engine tcp"
    )
}

#[cfg(feature = "nccl")]
fn nccl_comm(timeout: Duration) -> Result<Box<dyn Communicator>> {
    // cudarc panics when the driver is missing; say so first.
    crate::cuda_env::driver().map_err(|why| anyhow::anyhow!("engine nccl: {why}"))?;
    Ok(Box::new(kindling_dist::NcclComm::from_env(timeout)?))
}

#[cfg(not(feature = "nccl"))]
fn nccl_comm(_timeout: Duration) -> Result<Box<dyn Communicator>> {
    bail!("engine nccl: this kindling was built without the `nccl` feature (which needs CUDA)")
}

/// The config a resumed run continues with: the checkpoint's, with `overrides` applied (a JSON
/// object of the flags given, as `cli` builds it). Settings outside
/// [`RESUMABLE`](crate::config::RESUMABLE) that would change the run's meaning are refused,
/// named.
pub fn resumed_config(
    checkpoint: &Checkpoint,
    overrides: &serde_json::Value,
) -> Result<TrainConfig> {
    let original = &checkpoint.header.config;
    let mut value = serde_json::to_value(original)?;
    crate::cli::merge(&mut value, overrides);
    let config: TrainConfig =
        serde_json::from_value(value).context("the flags given with --resume")?;
    let changed = original.differences(&config, &crate::config::RESUMABLE);
    if !changed.is_empty() {
        bail!(
            "--resume continues a run as it was configured; these flags would change what it \
             computes: {} (a resumed run may only change {})",
            changed.join(", "),
            crate::config::RESUMABLE.join(", ")
        );
    }
    if config.epochs < checkpoint.header.epoch {
        bail!(
            "--epochs {} is fewer than the {} epochs the checkpoint has already trained",
            config.epochs,
            checkpoint.header.epoch
        );
    }
    config.validate()?;
    Ok(config)
}
