//! `cargo xtask`: Kindling's workflows in one binary.
//!
//! xtask never links burn: it drives `cargo` and, for model work, the `kindling` binary, so that
//! `cargo xtask` starts in seconds. Every build it starts uses the `dev` profile (dependencies
//! optimised, see the root `Cargo.toml`) and the same feature set, so tests, benches and runs
//! share one build of the burn stack.

#[cfg(test)]
mod tidy;

use anyhow::Result;
use clap::{Parser, Subcommand};

use bench::{bench, bench_ddp};
use bench_allreduce::bench_allreduce;
use ci::{build, ci, test};
use cmd::kindling;
use docs_check::docs_check;
use examples::{example, examples};
use launch::train;

mod bench;
mod bench_allreduce;
mod ci;
mod cmd;
mod device_pack;
mod docs;
mod docs_check;
mod examples;
mod features;
mod launch;
mod llvm_kit;

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
    /// Measure the seed's comparison tables with `kindling compare` (augment | parallel);
    /// without arguments, a small augmentation comparison on the built-in data, in minutes.
    #[command(disable_help_flag = true)]
    Compare {
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
    /// Prepare the one-command GPU check: `kindling` with wgpu and with cuda+nccl (stripped,
    /// compressed), the Vulkan loader, PyTorch's step benchmark and `check.sh`, in an ignored
    /// folder under 64 MiB; prints the command to run on the GPU machine.
    DevicePack {
        #[arg(long, default_value = "device-pack")]
        out: std::path::PathBuf,
        /// Leave the CUDA binary out (its build compiles the burn stack for CUDA once).
        #[arg(long)]
        skip_cuda: bool,
    },
    /// Lay out LLVM 23.1 for burn-cuda from PyPI's wheels (what `build --features cuda` does
    /// offline) and print the XDG_DATA_HOME to build with.
    LlvmKit,
    /// All-reduce time of 1, 16 and 64 MB and the barrier (header round) time: threads, MPI
    /// (mpirun), TCP and PyTorch's gloo (from the anchors' torchrun), at 2 and 4 ranks.
    BenchAllreduce {
        /// Multiplies the number of timed iterations (1: 50/20/10 per size).
        #[arg(long, default_value_t = 1)]
        scale: usize,
        /// Group sizes to measure, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "2,4")]
        ranks: Vec<usize>,
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

/// `cargo xtask compare` without arguments: six of the default arms, 2 seeds, 3 epochs on a
/// slice of the built-in data; batches of 16, so that the short run takes enough steps to learn.
const QUICK_COMPARE: [&str; 17] = [
    "augment",
    "--only",
    "none,crop,flip,erasing,mixup,recipe",
    "--seeds",
    "2",
    "--train-size",
    "1000",
    "--val-size",
    "300",
    "--epochs",
    "3",
    "--batch-size",
    "16",
    "--out",
    "compare/quick",
    "--warmup-epochs",
    "1",
];

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
        Cmd::Compare { args } if args.is_empty() => {
            kindling("compare", &QUICK_COMPARE.map(String::from))
        }
        Cmd::Compare { args } => kindling("compare", &args),
        Cmd::Example { name, args } => example(&name, &args),
        Cmd::Examples => examples(),
        Cmd::DevicePack { out, skip_cuda } => device_pack::device_pack(&out, skip_cuda),
        Cmd::LlvmKit => llvm_kit::kit().map(|xdg| println!("XDG_DATA_HOME={}", xdg.display())),
        Cmd::Bench { args } => bench(&args),
        Cmd::BenchAllreduce { scale, ranks } => bench_allreduce(scale, &ranks),
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
