//! The `kindling` command line.

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use kindling_trainer::device::{parse_devices, smoke_test};

#[derive(Parser)]
#[command(name = "kindling", version, about = "Train image classifiers on burn")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check that a device computes a convolution and its gradients like the flex CPU reference.
    CheckDevice {
        /// flex, wgpu, wgpu:cpu, wgpu:N or cuda:N[,M...]
        #[arg(long, default_value = "flex")]
        device: String,
    },
}

/// Largest difference from flex accepted as "this device works": f32 conv sums of ~360 terms.
const TOLERANCE: f32 = 1e-3;

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::CheckDevice { device } => {
            let mut failed = false;
            for (i, dev) in parse_devices(&device)?.iter().enumerate() {
                let report = smoke_test(dev);
                let ok = report.forward_max_abs <= TOLERANCE && report.grad_max_abs <= TOLERANCE;
                failed |= !ok;
                println!(
                    "{device}[{i}] {dev:?}: forward max |diff| {:.2e}, gradient max |diff| {:.2e}, {:.1} ms: {}",
                    report.forward_max_abs,
                    report.grad_max_abs,
                    report.elapsed.as_secs_f64() * 1e3,
                    if ok { "ok" } else { "MISMATCH" }
                );
            }
            if failed {
                bail!("device {device} disagrees with flex beyond {TOLERANCE}");
            }
            Ok(())
        }
    }
}
