//! `cargo xtask build`, `test` and `ci`: the release binary, the test suite, and everything CI
//! checks (fmt, clippy, the CUDA type-check, docs, benches compiled, packaging, the tests).

use anyhow::{Result, bail};

use crate::cmd::{cargo, ensure_runtime_dir, run, target_dir, vulkan_driver_present};
use crate::features;

/// The library crates that are published on their own.
pub(crate) const LIBRARY_CRATES: [&str; 3] =
    ["kindling-augment", "kindling-model", "kindling-dist"];

pub(crate) fn build(features: &str) -> Result<()> {
    let mut cmd = cargo(&["build", "--release", "--package", "kindling-trainer"]);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    if features.split(',').any(|f| f == "cuda" || f == "nccl") {
        crate::llvm_kit::run_cuda_build(cmd)?;
    } else {
        run(cmd)?;
    }
    println!("built {}", target_dir().join("release/kindling").display());
    Ok(())
}

pub(crate) fn test(want_wgpu: bool, extra: &[String]) -> Result<()> {
    let mut cmd = cargo(&[
        "test",
        "--workspace",
        "--features",
        features::test_features(),
    ]);
    let run_wgpu = want_wgpu && vulkan_driver_present();
    if want_wgpu && !run_wgpu {
        eprintln!(
            "xtask: no Vulkan driver found, so the wgpu tests are skipped (ignored).\n\
             xtask: install one to run them: apt-get install mesa-vulkan-drivers libvulkan1"
        );
    }
    cmd.args(extra);
    if run_wgpu {
        // wgpu tests are `#[ignore]`d so that a plain `cargo test` passes without Vulkan.
        cmd.args(["--", "--include-ignored"]);
        ensure_runtime_dir(&mut cmd);
    }
    run(cmd)
}

pub(crate) fn ci(skip_tests: bool) -> Result<()> {
    run(cargo(&["fmt", "--all", "--check"]))?;
    run(cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        features::test_features(),
        "--",
        "-D",
        "warnings",
    ]))?;
    // burn's CUDA backend downloads LLVM in a build script; DOCS_RS=1 skips the download so the
    // CUDA code still type-checks on a machine without network access (it cannot link).
    let mut cuda = cargo(&[
        "check",
        "--workspace",
        "--all-targets",
        "--features",
        "cuda,nccl",
    ]);
    cuda.env("DOCS_RS", "1");
    run(cuda)?;
    let mut doc = cargo(&[
        "doc",
        "--workspace",
        "--no-deps",
        "--features",
        features::test_features(),
    ]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;
    run(cargo(&[
        "bench",
        "--workspace",
        "--profile",
        "dev",
        "--features",
        features::test_features(),
        "--no-run",
    ]))?;
    for krate in LIBRARY_CRATES {
        // --no-verify: verifying rebuilds burn outside the workspace profile (another 20
        // minutes); the workspace build above already compiled exactly these sources.
        run(cargo(&[
            "package",
            "--package",
            krate,
            "--no-verify",
            "--allow-dirty",
        ]))?;
    }
    if skip_tests {
        return Ok(());
    }
    if !features::mpi_available() {
        bail!(
            "CI runs the MPI tests, but Open MPI is not installed ({})",
            features::MPI_PACKAGES
        );
    }
    if !vulkan_driver_present() {
        bail!("CI runs the wgpu tests, but no Vulkan driver is installed (mesa-vulkan-drivers)");
    }
    test(true, &[])
}
