//! `cargo xtask`: Kindling's workflows in one binary.
//!
//! xtask never links burn: it drives `cargo` and, for model work, the `kindling` binary, so that
//! `cargo xtask` starts in seconds. Every build it starts uses the `dev` profile (dependencies
//! optimised, see the root `Cargo.toml`) and the same feature set, so tests, benches and runs
//! share one build of the burn stack.

#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod docs;
mod features;

/// The library crates that are published on their own.
const LIBRARY_CRATES: [&str; 3] = ["kindling-augment", "kindling-model", "kindling-dist"];

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Kindling's workflows")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the release `kindling` binary with the chosen backend features.
    Build {
        /// Backend features besides the default `flex`, comma separated (wgpu, cuda).
        #[arg(long, default_value = "")]
        features: String,
    },
    /// Run the whole test suite (flex, and wgpu when a Vulkan driver is installed).
    Test {
        /// Skip the wgpu tests even when a Vulkan driver is present.
        #[arg(long)]
        no_wgpu: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Everything CI checks: fmt, clippy, CUDA type-check, docs, benches compiled, packaging, tests.
    Ci {
        /// Run every check except the test suite (CI then runs `cargo xtask test` itself).
        #[arg(long)]
        skip_tests: bool,
    },
    /// Train with the `kindling` binary (built in the test profile); arguments go to `kindling train`.
    #[command(disable_help_flag = true)]
    Train {
        /// Arguments for `kindling train`, e.g. --epochs 3 --device wgpu:cpu
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write a PNG grid of augmented versions of an image; arguments go to `kindling preview`.
    #[command(disable_help_flag = true)]
    Preview {
        /// Arguments for `kindling preview`, e.g. --pipeline FILE --image FILE --out grid.png
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a model summary; arguments go to `kindling summary` (--model, --input, --json).
    #[command(disable_help_flag = true)]
    Summary {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Save first-layer filters as a PNG; arguments go to `kindling filters` (--model, --weights, --out).
    #[command(disable_help_flag = true)]
    Filters {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run any `kindling` subcommand (dataset, activations, check-device, ...) with the binary of
    /// the test build, e.g. `cargo xtask kindling check-device --device wgpu:cpu`.
    #[command(disable_help_flag = true)]
    Kindling {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a crate's example (crates/*/examples) with the binary of the test build, e.g.
    /// `cargo xtask example allreduce_threads -- 2 16`.
    Example {
        /// The example's name (its file name without `.rs`).
        name: String,
        /// Arguments for the example.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run every crate's example once with small arguments (what CI does after the tests).
    Examples,
    /// All-reduce time of 1, 16 and 64 MB between 2 ranks: threads, MPI (mpirun), TCP.
    BenchAllreduce {
        /// Multiplies the number of timed iterations (1: 50/20/10 per size).
        #[arg(long, default_value_t = 1)]
        scale: usize,
    },
    /// CPU time per DDP training step of the CIFAR AlexNet (batch 64 per rank, one thread per
    /// process), 1 rank then 2 ranks under mpirun, and the efficiency.
    BenchDdp {
        /// Timed steps per run.
        #[arg(long, default_value_t = 15)]
        steps: usize,
    },
    /// End-to-end training images/s (loader, augmentation, step) against the bare
    /// forward+backward+step of the same model and batch.
    BenchTrain {
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// torchvision's AlexNet on a folder of 500x375 JPEGs (decoded and augmented at 224)
        /// instead of the CIFAR AlexNet on the built-in dataset.
        #[arg(long)]
        jpeg224: bool,
        /// Loader threads (`kindling train -j`).
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Check the shell commands of the Markdown docs: every `cargo xtask` line parses, `train`
    /// lines pass `kindling train --dry-run`, and the cheap ones run.
    DocsCheck,
    /// Run the criterion benchmarks (dev profile, shared with the tests).
    Bench {
        /// Extra arguments for the bench binaries (e.g. a criterion filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// Errors print as one message with its causes, without a backtrace (`RUST_BACKTRACE` is for
/// panics).
fn main() -> std::process::ExitCode {
    match run_cli(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Build { features } => build(&features),
        Cmd::Test { no_wgpu, args } => test(!no_wgpu, &args),
        Cmd::Ci { skip_tests } => ci(skip_tests),
        Cmd::Train { args } => train(&args),
        Cmd::Preview { args } => kindling("preview", &args),
        Cmd::Summary { args } => kindling("summary", &args),
        Cmd::Filters { args } => kindling("filters", &args),
        Cmd::Kindling { args } => match args.split_first() {
            Some((subcommand, rest)) => kindling(subcommand, rest),
            None => kindling("--help", &[]),
        },
        Cmd::Example { name, args } => example(&name, &args),
        Cmd::Examples => examples(),
        Cmd::Bench { args } => bench(&args),
        Cmd::BenchAllreduce { scale } => bench_allreduce(scale),
        Cmd::BenchDdp { steps } => bench_ddp(steps),
        Cmd::DocsCheck => docs_check(),
        Cmd::BenchTrain {
            batch,
            steps,
            jpeg224,
            workers,
        } => {
            let workload = if jpeg224 { "jpeg224" } else { "cifar" };
            example(
                "train_throughput",
                &[
                    batch.to_string(),
                    steps.to_string(),
                    workload.to_string(),
                    workers.to_string(),
                ],
            )
        }
    }
}

fn build(features: &str) -> Result<()> {
    let mut cmd = cargo(&["build", "--release", "--package", "kindling-trainer"]);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    run(cmd)?;
    println!("built {}", target_dir().join("release/kindling").display());
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn test(want_wgpu: bool, extra: &[String]) -> Result<()> {
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

fn ci(skip_tests: bool) -> Result<()> {
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

/// Runs a `kindling` subcommand with the binary that `cargo xtask test` builds: the same
/// command, profile and features, so training never compiles the burn stack a second time
/// (dev-dependencies such as criterion change feature unification, which `cargo run` would not
/// see).
fn kindling(subcommand: &str, args: &[String]) -> Result<()> {
    let output = build_test_targets()?;
    let binary = executable(&output, "kindling", "bin")
        .context("cargo built no `kindling` binary (is crates/trainer still a member?)")?;
    let mut cmd = Command::new(binary);
    cmd.arg(subcommand).args(args);
    ensure_runtime_dir(&mut cmd);
    run(cmd)
}

/// `kindling train`, or with `--engine mpi` one `kindling train` per rank under `mpirun -n N`
/// (N from `--nproc-per-node`, default 2), like torchrun for this machine. The threads engine
/// needs no launcher: `kindling train --nproc-per-node N` runs N ranks in one process.
fn train(args: &[String]) -> Result<()> {
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
    let mut train = vec!["train".to_string()];
    train.extend(launch.rest.iter().cloned());
    train.extend(["--engine".to_string(), engine.to_string()]);
    if engine == "mpi" {
        let mut cmd = mpirun(n, &binary)?;
        cmd.args(&train);
        return run(cmd).context("is Open MPI installed (openmpi-bin)?");
    }
    // tcp and nccl: start the ranks like torchrun, with the rendezvous in the environment.
    let nccl_dir = if engine == "nccl" {
        nccl_symlink_dir()?
    } else {
        None
    };
    env_ranks(n, &binary, &train, |cmd| {
        set_threads_per_rank(cmd, n);
        if let Some(dir) = &nccl_dir {
            let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
            cmd.env("LD_LIBRARY_PATH", format!("{}:{old}", dir.display()));
        }
    })
    .context("training failed")
}

/// Runs `n` processes of `binary args` with torchrun's environment (`RANK`, `LOCAL_RANK`,
/// `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` on a free loopback port), `adjust`ing each
/// command first; fails naming the ranks that failed.
fn env_ranks(
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
fn set_threads_per_rank(cmd: &mut Command, ranks: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        cmd.env("RAYON_NUM_THREADS", (cores / ranks).max(1).to_string());
    }
}

/// cudarc loads `libnccl.so` or `libnccl.so.<CUDA major>`, while the pip wheels and Debian ship
/// `libnccl.so.2`: when only that exists, a folder with a `libnccl.so` link to it, for the ranks'
/// LD_LIBRARY_PATH.
fn nccl_symlink_dir() -> Result<Option<PathBuf>> {
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

/// The Markdown files whose shell commands `docs-check` checks.
fn doc_files() -> Result<Vec<PathBuf>> {
    let root = root();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "crates"] {
        for entry in std::fs::read_dir(root.join(dir))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            } else if path.join("README.md").is_file() {
                files.push(path.join("README.md"));
            }
        }
    }
    files.sort();
    Ok(files)
}

fn docs_check() -> Result<()> {
    let output = build_test_targets()?;
    let binary =
        executable(&output, "kindling", "bin").context("cargo built no `kindling` binary")?;
    // A scratch folder for what the commands write, where the docs' relative paths still
    // resolve (crates/..., ../shared) and `photo.jpg`-style placeholders exist.
    let scratch = std::env::temp_dir().join(format!("kindling-docs-{}", std::process::id()));
    let work = scratch.join("work");
    std::fs::create_dir_all(&work)?;
    std::os::unix::fs::symlink(root().join("crates"), work.join("crates"))?;
    if let Some(shared) = root().parent().map(|p| p.join("shared")) {
        std::os::unix::fs::symlink(shared, scratch.join("shared"))?;
    }
    let placeholder = root().join("../shared/conformance/augment/images/astronaut_500x375.png");
    let (mut ran, mut dry, mut parsed, mut not_run) = (0, 0, 0, Vec::new());
    let mut failures = Vec::new();
    for file in doc_files()? {
        let text = std::fs::read_to_string(&file)?;
        let shown = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        for cmd in docs::shell_commands(&text) {
            let all = docs::words(&cmd.text);
            let w = docs::without_env(&all);
            let at = format!("{shown}:{}: `{}`", cmd.line, cmd.text);
            let outcome: Result<&str> = match w.first().map(String::as_str) {
                Some("cargo") if w.get(1).map(String::as_str) == Some("xtask") => {
                    let argv =
                        std::iter::once("cargo xtask".to_string()).chain(w[2..].iter().cloned());
                    match Cli::try_parse_from(argv) {
                        Err(e) => Err(anyhow::anyhow!("does not parse: {}", e.kind())),
                        Ok(cli) => match cli.command {
                            Cmd::Train { args } => dry_run(&binary, &work, &args),
                            Cmd::Summary { args } => {
                                run_doc(&binary, &work, "summary", &args, &placeholder)
                            }
                            Cmd::Filters { args } => {
                                run_doc(&binary, &work, "filters", &args, &placeholder)
                            }
                            Cmd::Preview { args } => {
                                run_doc(&binary, &work, "preview", &args, &placeholder)
                            }
                            Cmd::Kindling { args }
                                if args.first().is_some_and(|s| {
                                    ["dataset", "activations", "check-device"].contains(&s.as_str())
                                }) =>
                            {
                                run_doc(&binary, &work, &args[0], &args[1..], &placeholder)
                            }
                            _ => Ok("parsed"),
                        },
                    }
                }
                Some("kindling") if cmd.text.contains('[') => Ok("synopsis"),
                Some("kindling") if w.get(1).map(String::as_str) == Some("train") => {
                    dry_run(&binary, &work, &w[2..])
                }
                Some("kindling")
                    if w.get(1).is_some_and(|s| {
                        [
                            "summary",
                            "filters",
                            "preview",
                            "dataset",
                            "activations",
                            "check-device",
                        ]
                        .contains(&s.as_str())
                    }) =>
                {
                    run_doc(&binary, &work, &w[1], &w[2..], &placeholder)
                }
                Some("kindling") if needs_earlier_files(&work, w)? => Ok("needs"),
                _ => Ok("not run"),
            };
            match outcome {
                Ok("ran") => ran += 1,
                Ok("dry") => dry += 1,
                Ok("parsed") => parsed += 1,
                Ok("synopsis") => not_run.push(format!("{at} (a usage synopsis)")),
                Ok("needs") => not_run.push(format!("{at} (needs files an earlier step makes)")),
                Ok(_) => not_run.push(format!("{at} (not a Kindling command)")),
                Err(e) => failures.push(format!("{at}: {e:#}")),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "docs-check: {ran} commands ran, {dry} training commands validated by --dry-run, \
         {parsed} more xtask commands parsed, {} not run:",
        not_run.len()
    );
    for line in &not_run {
        println!("  {line}");
    }
    if !failures.is_empty() {
        bail!(
            "{} documented commands fail:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// Flags whose value is a file an earlier step of the docs creates (a run, weights).
const INPUT_FLAGS: [&str; 4] = ["--config", "--weights", "--checkpoint", "--resume"];

/// Whether `args` name an input file that does not exist in `work`; creates the folders of
/// `--out` values there.
fn needs_earlier_files(work: &Path, args: &[String]) -> Result<bool> {
    for pair in args.windows(2) {
        if INPUT_FLAGS.contains(&pair[0].as_str()) && !work.join(&pair[1]).exists() {
            return Ok(true);
        }
        if pair[0] == "--out"
            && let Some(parent) = work.join(&pair[1]).parent()
        {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(false)
}

/// Flags whose value may be a file of the repository (the shipped pipelines).
const REPOSITORY_FLAGS: [&str; 2] = ["--train-pipeline", "--eval-pipeline"];

/// `args` with the values of [`REPOSITORY_FLAGS`] that exist in the repository (not in `work`)
/// made absolute, so the docs' `crates/augment/pipelines/...` are read for real.
fn repository_files(work: &Path, args: &[String]) -> Vec<String> {
    let mut args = args.to_vec();
    for i in 1..args.len() {
        let (flag, value) = (&args[i - 1], Path::new(&args[i]));
        if REPOSITORY_FLAGS.contains(&flag.as_str())
            && !work.join(value).exists()
            && root().join(value).exists()
        {
            args[i] = root().join(value).display().to_string();
        }
    }
    args
}

/// `kindling train --dry-run` with a documented command's arguments (launcher flags turned
/// back into what `kindling train` takes), in `work`.
fn dry_run(binary: &Path, work: &Path, args: &[String]) -> Result<&'static str> {
    if needs_earlier_files(work, args)? {
        return Ok("needs");
    }
    let args = repository_files(work, args);
    let launch = parse_launch(&args)?;
    let mut cmd = Command::new(binary);
    cmd.arg("train")
        .args(&launch.rest)
        .arg("--dry-run")
        .current_dir(work);
    match launch.engine.as_deref() {
        None | Some("threads") => {
            if let Some(n) = launch.nproc {
                cmd.args(["--nproc-per-node", &n.to_string()]);
            }
        }
        Some(engine) => {
            cmd.args(["--engine", engine]);
        }
    }
    quiet_run(cmd).map(|()| "dry")
}

/// Runs a documented `kindling` subcommand in `work`; a missing `--image` becomes a real
/// picture (the docs say `photo.jpg`).
fn run_doc(
    binary: &Path,
    work: &Path,
    subcommand: &str,
    args: &[String],
    placeholder: &Path,
) -> Result<&'static str> {
    if needs_earlier_files(work, args)? {
        return Ok("needs");
    }
    let mut args = args.to_vec();
    for i in 1..args.len() {
        if args[i - 1] == "--image" && !work.join(&args[i]).exists() {
            args[i] = placeholder.display().to_string();
        }
    }
    let mut cmd = Command::new(binary);
    cmd.arg(subcommand).args(&args).current_dir(work);
    ensure_runtime_dir(&mut cmd);
    quiet_run(cmd).map(|()| "ran")
}

fn quiet_run(mut cmd: Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", describe(&cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `mpirun -n N` of a binary, as root where needed, one thread per process.
fn mpirun(n: usize, binary: &Path) -> Result<Command> {
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

fn bench_allreduce(scale: usize) -> Result<()> {
    let output = build_test_targets()?;
    let binary =
        executable(&output, "allreduce_bench", "example").context("no example allreduce_bench")?;
    let mut threads = Command::new(&binary);
    threads.args(["threads", "2", &scale.to_string()]);
    run(threads)?;
    let mut mpi = mpirun(2, &binary)?;
    mpi.args(["mpi", "2", &scale.to_string()]);
    run(mpi)?;
    let args = ["tcp".to_string(), "2".to_string(), scale.to_string()];
    env_ranks(2, &binary, &args, |_| {}).context("the tcp all-reduce benchmark failed")
}

fn bench_ddp(steps: usize) -> Result<()> {
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

/// The launcher's view of `kindling train` arguments.
#[derive(Debug, PartialEq)]
struct Launch {
    nproc: Option<usize>,
    engine: Option<String>,
    /// The arguments without `--nproc-per-node` and `--engine` (for mpirun's ranks).
    rest: Vec<String>,
}

fn parse_launch(args: &[String]) -> Result<Launch> {
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

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs an example built by the test build (which builds every example), for the same reason
/// as [`kindling`].
fn example(name: &str, args: &[String]) -> Result<()> {
    let output = build_test_targets()?;
    let binary = executable(&output, name, "example")
        .with_context(|| format!("no example `{name}` in crates/*/examples"))?;
    let mut cmd = Command::new(binary);
    cmd.args(args);
    ensure_runtime_dir(&mut cmd);
    run(cmd)
}

/// Every example with arguments that finish in seconds, so CI proves they run as documented.
fn examples() -> Result<()> {
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

/// `cargo test --workspace --no-run` with JSON messages on stdout, returned.
fn build_test_targets() -> Result<Vec<u8>> {
    let mut build = cargo(&[
        "test",
        "--workspace",
        "--features",
        features::test_features(),
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    build.stdout(std::process::Stdio::piped());
    eprintln!("xtask: {}", describe(&build));
    let output = build.spawn()?.wait_with_output()?;
    if !output.status.success() {
        bail!("the test build failed ({})", output.status);
    }
    Ok(output.stdout)
}

/// The path of the executable of target `name` of `kind` (`bin`, `example`) in cargo's JSON
/// build messages.
fn executable(messages: &[u8], name: &str, kind: &str) -> Option<PathBuf> {
    String::from_utf8_lossy(messages)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        // `cargo test` also builds main.rs as a test harness; that one has `profile.test`.
        .filter(|m| m["profile"]["test"] == false)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == kind))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

fn bench(extra: &[String]) -> Result<()> {
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

/// The workspace root, found from this crate's manifest so xtask works from any directory.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(root());
    cmd
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: {}", describe(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", describe(&cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    let envs: String = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={} ", k.to_str()?, v?.to_str()?)))
        .collect();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    format!(
        "{envs}{} {}",
        cmd.get_program().to_string_lossy(),
        args.join(" ")
    )
}

/// A Vulkan ICD manifest is what the loader needs to find lavapipe or a GPU driver.
fn vulkan_driver_present() -> bool {
    ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .flatten()
        .any(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
}

/// Mesa's Vulkan drivers warn (and some versions fail) without a runtime directory.
fn ensure_runtime_dir(cmd: &mut Command) {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("kindling-xdg-runtime");
        if std::fs::create_dir_all(&dir).is_ok() {
            cmd.env("XDG_RUNTIME_DIR", dir);
        }
    }
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

    #[test]
    fn picks_the_kindling_binary_not_its_test_harness() {
        let messages = br#"{"reason":"compiler-artifact","target":{"name":"kindling","kind":["bin"]},"profile":{"test":true},"executable":"/t/deps/kindling-abc"}
{"reason":"compiler-artifact","target":{"name":"it","kind":["test"]},"profile":{"test":true},"executable":"/t/deps/it-1"}
{"reason":"compiler-artifact","target":{"name":"kindling","kind":["bin"]},"profile":{"test":false},"executable":"/t/kindling"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable(messages, "kindling", "bin"),
            Some(PathBuf::from("/t/kindling"))
        );
        assert_eq!(
            executable(b"{\"reason\":\"build-finished\"}", "kindling", "bin"),
            None
        );
        let example = br#"{"reason":"compiler-artifact","target":{"name":"custom_loop","kind":["example"]},"profile":{"test":false},"executable":"/t/examples/custom_loop"}"#;
        assert_eq!(
            executable(example, "custom_loop", "example"),
            Some(PathBuf::from("/t/examples/custom_loop"))
        );
        assert_eq!(executable(example, "custom_loop", "bin"), None);
    }
}
