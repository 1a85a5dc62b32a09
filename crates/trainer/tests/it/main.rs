//! The trainer's integration tests, in one binary because every burn-linked binary is slow to link.
// Configs are written as "defaults, then these fields", section by section.
#![allow(clippy::field_reassign_with_default)]

mod compare;
mod data;
mod device;
mod launch;
mod train;
mod workflow;

/// flex's RNG is process-global: tests that seed it and compare results hold this lock, so that
/// no other test draws from it in between.
pub static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`RNG_LOCK`], also after a test that held it panicked.
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The number of images a run's `confusion.csv` counts (every cell after the header row and the
/// class column).
pub fn confusion_total(run: &std::path::Path) -> usize {
    let confusion = std::fs::read_to_string(run.join("confusion.csv")).expect("confusion.csv");
    confusion
        .lines()
        .skip(1)
        .flat_map(|l| {
            l.split(',')
                .skip(1)
                .map(|v| v.parse::<usize>().expect("a count"))
                .collect::<Vec<_>>()
        })
        .sum()
}

/// A finished command's status, stdout and stderr, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts `cmd` as rank `rank` of a group of `world` processes with torchrun's variables
/// (rank 0 listening on loopback at `port`), one compute thread each, output captured.
pub fn start_rank(
    cmd: &mut std::process::Command,
    rank: usize,
    world: usize,
    port: u16,
) -> std::process::Child {
    cmd.env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    start_captured(cmd)
}

/// Starts `cmd` with one compute thread and its output captured.
pub fn start_captured(cmd: &mut std::process::Command) -> std::process::Child {
    cmd.env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kindling starts")
}
