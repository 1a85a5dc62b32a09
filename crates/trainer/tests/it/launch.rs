//! Starting the processes of a data-parallel run the ways users know: `kindling launch`
//! (torchrun's flags), Slurm's environment (`srun kindling train`), and what happens when the
//! rendezvous port is taken.

use crate::output_text as text;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kindling-launch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A short data-parallel training run's flags (without `--out`).
const TRAIN: [&str; 14] = [
    "train",
    "--epochs",
    "1",
    "--warmup-epochs",
    "0",
    "--batch-size",
    "16",
    "--train-size",
    "64",
    "--val-size",
    "16",
    "--quiet",
    "--dist-timeout-secs",
    "30",
];

fn engine_of(run: &std::path::Path) -> String {
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).expect("config.json"))
            .expect("json");
    config["dist"]["engine"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn kindling_launch_starts_ranks_with_torchruns_flags() {
    let dir = temp_dir("tcp");
    let port = free_port().to_string();
    // torchrun's spellings, underscores included.
    let out = Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args([
            "launch",
            "--nproc_per_node",
            "2",
            "--master_port",
            &port,
            "--",
        ])
        .args(TRAIN)
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .expect("kindling runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("on 2 ranks (tcp)"),
        "{}",
        text(&out)
    );
    assert_eq!(engine_of(&dir.join("run")), "tcp");
    assert!(dir.join("run/model.safetensors").is_file());
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "mpi")]
#[test]
fn kindling_launch_starts_mpi_ranks() {
    let dir = temp_dir("mpi");
    let out = Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(["launch", "--nproc-per-node", "2", "--engine", "mpi", "--"])
        .args(TRAIN)
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .expect("kindling runs");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(engine_of(&dir.join("run")), "mpi");
    std::fs::remove_dir_all(&dir).ok();
}

/// What `srun -n 2 kindling train --engine tcp` gives each task: Slurm's variables and no
/// torchrun ones; the ranks meet on the first host of the node list, at 15000 + the job id's
/// last four digits.
#[test]
fn slurm_tasks_find_each_other_without_torchruns_variables() {
    let dir = temp_dir("slurm");
    // Slurm's port range is below the kernel's ephemeral ports: probe for a free one there.
    let start = 15000 + (std::process::id() % 9000) as u16;
    let port = (start..25000)
        .chain(15000..start)
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port in 15000..25000");
    let job_id = (port - 15000 + 40000).to_string(); // last four digits: port - 15000
    let children: Vec<_> = (0..2)
        .map(|task| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_kindling"));
            cmd.args(TRAIN)
                .args(["--engine", "tcp", "--out"])
                .arg(dir.join("run"));
            for var in [
                "RANK",
                "WORLD_SIZE",
                "LOCAL_RANK",
                "MASTER_ADDR",
                "MASTER_PORT",
            ] {
                cmd.env_remove(var);
            }
            cmd.env("SLURM_PROCID", task.to_string())
                .env("SLURM_NTASKS", "2")
                .env("SLURM_LOCALID", task.to_string())
                .env("SLURM_JOB_NODELIST", "localhost")
                .env("SLURM_JOB_ID", &job_id);
            crate::start_captured(&mut cmd)
        })
        .collect();
    for (task, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("task ends");
        assert!(out.status.success(), "task {task}: {}", text(&out));
        if task == 0 {
            assert!(String::from_utf8_lossy(&out.stdout).contains("on 2 ranks (tcp)"));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Something else (torchrun's own store, another job) holds MASTER_PORT: rank 0 says it
/// cannot listen there, and the launcher stops the other rank instead of letting it wait for
/// its timeout.
#[test]
fn an_occupied_master_port_is_a_clear_error_not_a_hang() {
    let dir = temp_dir("busy");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = squatter.local_addr().expect("addr").port().to_string();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args([
            "launch",
            "--nproc-per-node",
            "2",
            "--master-port",
            &port,
            "--",
        ])
        .args(TRAIN)
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .expect("kindling runs");
    let took = start.elapsed();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rank 0 cannot listen on"), "{}", text(&out));
    assert!(stderr.contains("rank 0 failed first"), "{}", text(&out));
    assert!(
        took < Duration::from_secs(20),
        "the group stopped in {took:?}, not at the 30 s timeout"
    );
    drop(squatter);
    std::fs::remove_dir_all(&dir).ok();
}

/// torchrun from PATH or the anchors' environment (`../shared/anchors/setup.sh`).
fn torchrun() -> Option<PathBuf> {
    let anchors = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/kindling-anchors/bin/torchrun"));
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("torchrun"))
        .chain(anchors)
        .find(|p| p.is_file())
}

/// Real torchrun: its agent's store holds MASTER_PORT, and Kindling's ranks meet beside it.
#[test]
fn torchrun_starts_kindling_ranks() {
    let Some(torchrun) = torchrun() else {
        eprintln!("skipped: no torchrun (../shared/anchors/setup.sh installs one)");
        return;
    };
    let dir = temp_dir("torchrun");
    let port = free_port().to_string();
    let out = Command::new(&torchrun)
        .args([
            "--no-python",
            "--nproc-per-node",
            "2",
            "--master-port",
            &port,
        ])
        .arg(env!("CARGO_BIN_EXE_kindling"))
        .args(TRAIN)
        .args(["--engine", "tcp", "--out"])
        .arg(dir.join("run"))
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("torchrun runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("on 2 ranks (tcp)"),
        "{}",
        text(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGTERM to one rank of a running group (Slurm preempting a task, a user killing a
/// process): every rank stops at the same optimizer step, rank 0 writes the checkpoint, and
/// every rank exits with 143 naming the rank that received the signal.
#[test]
fn sigterm_to_one_rank_stops_the_group_and_rank_0_checkpoints() {
    let dir = temp_dir("sigterm");
    let run = dir.join("run");
    let port = free_port();
    // Long enough that the signal lands mid-run.
    let mut train = TRAIN;
    assert_eq!(train[1], "--epochs");
    train[2] = "500";
    let mut ranks: Vec<_> = (0..2)
        .map(|rank| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_kindling"));
            cmd.args(train).args(["--engine", "tcp", "--out"]).arg(&run);
            crate::start_rank(&mut cmd, rank, 2, port)
        })
        .collect();
    // Rank 0 adds a line to metrics.csv after the first epoch: by then both ranks train.
    let started = Instant::now();
    let epochs_done = || {
        std::fs::read_to_string(run.join("metrics.csv"))
            .map_or(0, |t| t.lines().count().saturating_sub(1))
    };
    while epochs_done() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never finished an epoch"
        );
        assert!(
            ranks
                .iter_mut()
                .all(|r| r.try_wait().ok().flatten().is_none()),
            "a rank ended before it was signalled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &ranks[1].id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let outputs: Vec<_> = ranks
        .into_iter()
        .map(|r| r.wait_with_output().expect("rank ends"))
        .collect();
    let took = killed.elapsed();
    // Well within the 30 s collective timeout: the ranks agree at the next step.
    assert!(took < Duration::from_secs(20), "{took:?}");
    for (rank, out) in outputs.iter().enumerate() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(143), "rank {rank}: {}", text(out));
        assert!(
            stderr.contains("rank 1 received SIGTERM: interrupted in epoch"),
            "rank {rank}: {stderr}"
        );
        let where_ = if rank == 0 {
            format!("continue with --resume {}", run.display())
        } else {
            "rank 0 wrote the checkpoint".to_string()
        };
        assert!(stderr.contains(&where_), "rank {rank}: {stderr}");
    }
    let checkpoint =
        kindling_trainer::checkpoint::Checkpoint::load(&kindling_trainer::checkpoint::last(&run))
            .expect("rank 0 checkpointed");
    assert!(
        checkpoint.header.epoch >= 1,
        "{:?}",
        checkpoint.header.epoch
    );
    std::fs::remove_dir_all(&dir).ok();
}
