//! `cargo xtask bench` and `bench-ddp`: criterion benchmarks in the test profile, and the DDP
//! measurement against the PyTorch anchor.

use anyhow::{Context, Result, bail};

use crate::cmd::{build_test_targets, cargo, describe, ensure_runtime_dir, executable, run};
use crate::features;
use crate::launch::mpirun;

pub(crate) fn bench_ddp(steps: usize) -> Result<()> {
    let output = build_test_targets()?;
    let binary =
        executable(&output, "ddp_efficiency", "example").context("no example ddp_efficiency")?;
    let mut cpu_ms = Vec::new();
    for ranks in [1, 2] {
        let mut cmd = mpirun(ranks, &binary)?;
        // One thread per process, like the PyTorch script's torch.set_num_threads(1).
        cmd.env("RAYON_NUM_THREADS", "1");
        cmd.args(["64", &steps.to_string(), "3"]);
        eprintln!("xtask: {}", describe(&cmd));
        let out = cmd.output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        if !out.status.success() {
            bail!(
                "{ranks} ranks failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cpu: f64 = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cpu_ms_per_step="))
            .and_then(|v| v.parse().ok())
            .context("no cpu_ms_per_step in the output")?;
        cpu_ms.push(cpu);
    }
    println!(
        "DDP CPU-time efficiency (1 rank / 2 ranks, per step): {:.1}%",
        100.0 * cpu_ms[0] / cpu_ms[1]
    );
    Ok(())
}

pub(crate) fn bench(extra: &[String]) -> Result<()> {
    // `--bench '*'`: only the criterion targets; libtest's bench mode would reject criterion's
    // flags when run on the library targets.
    let mut cmd = cargo(&[
        "bench",
        "--workspace",
        "--bench",
        "*",
        "--profile",
        "dev",
        "--features",
        features::test_features(),
    ]);
    if !extra.is_empty() {
        cmd.arg("--");
        cmd.args(extra);
    }
    ensure_runtime_dir(&mut cmd);
    run(cmd)
}
