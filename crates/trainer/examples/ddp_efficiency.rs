//! CPU time of a data-parallel training step of the CIFAR AlexNet, per rank, against a single
//! process: the counterpart of `../shared/anchors/ddp_alexnet.py --mode bench` (same model,
//! batch 64 per rank, SGD momentum, dropout 0.5, one thread per process, fixed random data).
//!
//! ```sh
//! cargo xtask bench-ddp            # 1 and 2 ranks under mpirun, then the efficiency
//! mpirun -n 2 target/debug/examples/ddp_efficiency [BATCH] [STEPS] [WARMUP]
//! ```
//!
//! Rank 0 prints `RESULT world=.. cpu_ms_per_step=.. step_ms_median=.. images_per_s=..`, where
//! `cpu_ms_per_step` is the slowest rank's process CPU time (user + system, from
//! `/proc/self/stat`) over the timed steps divided by their number.

use std::time::{Duration, Instant};

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kindling_dist::{Communicator, Ddp, DdpConfig, MpiComm};
use kindling_model::{AlexNetConfig, WeightInit};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: usize| -> Result<usize, std::num::ParseIntError> {
        std::env::args().nth(i).map_or(Ok(default), |v| v.parse())
    };
    let (batch, steps, warmup) = (arg(1, 64)?, arg(2, 15)?, arg(3, 3)?);
    let mut comm = MpiComm::init(Duration::from_secs(600))?;
    let (rank, world) = (comm.rank(), comm.world_size());
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut model = AlexNetConfig::cifar()
        .with_dropout(0.5)
        .with_init(WeightInit::Kaiming)
        .init(&device);
    // A world of one trains the plain model, as the PyTorch script does.
    let mut ddp = if world > 1 {
        Some(Ddp::new(&mut comm, DdpConfig::default())?)
    } else {
        None
    };
    if let Some(ddp) = ddp.as_mut() {
        model = ddp.prepare(model)?;
    }
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    // Fixed inputs per rank (the script draws them once from a seeded generator).
    let pixels: Vec<f32> = (0..batch * 3 * 32 * 32)
        .map(|i| ((i * 7919 + rank * 104_729) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [batch, 3, 32, 32]), &device);
    let labels: Vec<i64> = (0..batch).map(|i| ((i + rank) % 10) as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);

    let mut times = Vec::with_capacity(steps);
    let mut cpu_start = 0.0;
    for i in 0..warmup + steps {
        if i == warmup {
            cpu_start = process_cpu_seconds()?;
        }
        let start = Instant::now();
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let grads = match ddp.as_mut() {
            Some(ddp) => ddp.sync(&model, grads)?,
            None => grads,
        };
        model = optim.step(0.01, model, grads);
        // Wait for the step's work to finish before stopping the clock.
        let _ = model
            .conv_weight("features.0")?
            .slice([0..1, 0..1, 0..1, 0..1])
            .into_data();
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let cpu_per_step = (process_cpu_seconds()? - cpu_start) / steps as f64;
    times.sort_by(f64::total_cmp);
    let median = times[steps / 2];
    drop(ddp);
    let cpu_all = comm.all_gather_bytes(&cpu_per_step.to_le_bytes())?;
    let slowest_cpu = cpu_all
        .iter()
        .map(|b| f64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])))
        .fold(0.0, f64::max);
    if rank == 0 {
        println!(
            "RESULT world={world} batch={batch} cpu_ms_per_step={:.1} step_ms_median={:.1} \
             images_per_s={:.1}",
            slowest_cpu * 1e3,
            median * 1e3,
            (world * batch) as f64 / median
        );
    }
    Ok(())
}

/// User + system CPU time of this process so far, in seconds (Linux `/proc/self/stat`, in
/// clock ticks of 1/100 s).
fn process_cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which is in parentheses): state is field 3, utime 14.
    let rest = stat.rsplit_once(')').ok_or("bad /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}
