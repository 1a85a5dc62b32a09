//! `cargo xtask example` and `examples`: the crates' examples, built by the test build.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd::{build_test_targets, ensure_runtime_dir, executable, run};
use crate::features;
use crate::launch::mpirun;

/// Runs an example built by the test build (which builds every example), for the same reason
/// as [`kindling`](crate::cmd::kindling).
pub(crate) fn example(name: &str, args: &[String]) -> Result<()> {
    let output = build_test_targets()?;
    let binary = executable(&output, name, "example")
        .with_context(|| format!("no example `{name}` in crates/*/examples"))?;
    let mut cmd = Command::new(binary);
    cmd.args(args);
    ensure_runtime_dir(&mut cmd);
    run(cmd)
}

/// Every example with arguments that finish in seconds, so CI proves they run as documented.
pub(crate) fn examples() -> Result<()> {
    let out = std::env::temp_dir().join(format!("kindling-examples-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let path = |p: &Path| p.display().to_string();
    let runs: [(&str, Vec<String>); 4] = [
        ("allreduce_threads", vec!["2".into(), "4".into()]),
        (
            "summary_and_filters",
            vec!["cifar".into(), path(&out.join("filters.png"))],
        ),
        (
            "augment_folder",
            vec![
                "crates/augment/pipelines/cifar.toml".into(),
                "../shared/conformance/augment/images".into(),
                path(&out.join("augmented")),
                "1".into(),
            ],
        ),
        ("custom_loop", vec!["2".into()]),
    ];
    for (name, args) in &runs {
        example(name, args)?;
    }
    // The same all-reduce example across processes: threads, then two MPI ranks.
    example(
        "allreduce_bench",
        &["threads".into(), "2".into(), "1".into()],
    )?;
    if features::mpi_available() {
        let output = build_test_targets()?;
        let binary = executable(&output, "allreduce_bench", "example")
            .context("no example allreduce_bench")?;
        let mut mpi = mpirun(2, &binary)?;
        mpi.args(["mpi", "2", "1"]);
        run(mpi)?;
    } else {
        eprintln!(
            "xtask: the all-reduce example across MPI processes is skipped (no Open MPI: {})",
            features::MPI_PACKAGES
        );
    }
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
