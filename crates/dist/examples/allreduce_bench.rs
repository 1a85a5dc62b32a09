//! All-reduce (sum) time of 1, 16 and 64 MB f32 buffers between ranks, in the CSV format of
//! `../shared/anchors/allreduce_gloo.py` so the figures compare line by line.
//!
//! ```sh
//! cargo xtask example allreduce_bench -- threads [RANKS] [SCALE] [CSV]   # in-process engine
//! cargo xtask bench-allreduce      # threads, MPI, TCP and gloo, 2 and 4 ranks, side by side
//! ```
//!
//! `mpi` (under `mpirun`, built with the `mpi` feature) and `tcp` (with torchrun's environment)
//! measure those engines, one process per rank. Each size runs `SCALE * {50, 20, 10}` timed iterations after 3 warm-up ones; every
//! iteration starts from a fresh copy of the input (outside the timer) after a barrier, and its
//! time is the slowest rank's, as in the gloo script. Last comes the median time of a
//! `barrier`, the round of headers that precedes every collective (`# barrier_us=...`). With a
//! `CSV` path, rank 0 writes its output there too.

use std::time::{Duration, Instant};

use kindling_dist::{Communicator, DistError, LocalGroup, ReduceOp};

const SIZES_MB: [usize; 3] = [1, 16, 64];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let engine = args.first().map_or("threads", String::as_str);
    let scale: usize = args.get(2).map_or(Ok(1), |v| v.parse())?;
    let csv = args.get(3).map(std::path::PathBuf::from);
    match engine {
        "threads" => {
            let ranks: usize = args.get(1).map_or(Ok(2), |v| v.parse())?;
            let devices: Vec<usize> = (0..ranks).collect();
            let results = LocalGroup::run(&devices, Duration::from_secs(120), |comm, _| {
                measure(comm, "threads", scale, csv.as_deref())
            })?;
            for r in results {
                r?;
            }
        }
        "mpi" => mpi(scale, csv.as_deref())?,
        "tcp" => {
            // One process per rank, with torchrun's environment (RANK, WORLD_SIZE, ...).
            let mut comm = kindling_dist::TcpComm::from_env(Duration::from_secs(120))?;
            measure(&mut comm, "tcp", scale, csv.as_deref())?;
        }
        other => {
            return Err(format!("unknown engine {other}: expected threads, mpi or tcp").into());
        }
    }
    Ok(())
}

#[cfg(feature = "mpi")]
fn mpi(scale: usize, csv: Option<&std::path::Path>) -> Result<(), Box<dyn std::error::Error>> {
    let mut comm = kindling_dist::MpiComm::init(Duration::from_secs(120))?;
    measure(&mut comm, "mpi", scale, csv)?;
    Ok(())
}

#[cfg(not(feature = "mpi"))]
fn mpi(_scale: usize, _csv: Option<&std::path::Path>) -> Result<(), Box<dyn std::error::Error>> {
    Err("this example was built without the `mpi` feature".into())
}

/// Times the sizes on this rank; rank 0 prints the CSV (and writes it to `csv`).
fn measure(
    comm: &mut impl Communicator,
    engine: &str,
    scale: usize,
    csv: Option<&std::path::Path>,
) -> Result<(), DistError> {
    let (rank, world) = (comm.rank(), comm.world_size());
    let mut lines = vec![
        format!("# ranks={world} engine={engine}"),
        "size_MB,iters,median_ms,min_ms,algbw_GBps,busbw_GBps".to_string(),
    ];
    for mb in SIZES_MB {
        let len = mb * 1024 * 1024 / 4;
        let input = vec![(rank + 1) as f32; len];
        let mut buf = input.clone();
        let iters = scale
            * match mb {
                1 => 50,
                16 => 20,
                _ => 10,
            };
        for _ in 0..3 {
            buf.copy_from_slice(&input);
            comm.all_reduce(&mut buf, ReduceOp::Sum)?;
        }
        let expected = (world * (world + 1) / 2) as f32;
        if buf[0] != expected || buf[len - 1] != expected {
            return Err(DistError::Invalid(format!(
                "wrong all-reduce result {} (expected {expected})",
                buf[0]
            )));
        }
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            buf.copy_from_slice(&input);
            comm.barrier()?;
            let start = Instant::now();
            comm.all_reduce(&mut buf, ReduceOp::Sum)?;
            times.push(start.elapsed().as_secs_f64());
        }
        let slowest = slowest_of_each(comm, &times)?;
        let median = median(&slowest);
        let alg = (len * 4) as f64 / median / 1e9;
        let bus = alg * 2.0 * (world - 1) as f64 / world as f64;
        lines.push(format!(
            "{mb},{iters},{:.3},{:.3},{alg:.3},{bus:.3}",
            median * 1e3,
            slowest[0] * 1e3
        ));
    }
    // A barrier moves no data: its time is the cost of the header round of every collective.
    let iters = 200 * scale;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        comm.barrier()?;
        times.push(start.elapsed().as_secs_f64());
    }
    let slowest = slowest_of_each(comm, &times)?;
    lines.push(format!("# barrier_us={:.1}", median(&slowest) * 1e6));
    if rank == 0 {
        let text = lines.join("\n") + "\n";
        print!("{text}");
        if let Some(path) = csv {
            std::fs::write(path, text)
                .map_err(|e| DistError::Invalid(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(())
}

/// The slowest rank's time of each iteration, sorted, like the gloo script's MAX all-reduce.
fn slowest_of_each(comm: &mut impl Communicator, times: &[f64]) -> Result<Vec<f64>, DistError> {
    let bytes: Vec<u8> = times.iter().flat_map(|t| t.to_le_bytes()).collect();
    let all = comm.all_gather_bytes(&bytes)?;
    let mut slowest: Vec<f64> = (0..times.len())
        .map(|i| {
            all.iter()
                .map(|b| {
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(&b[i * 8..i * 8 + 8]);
                    f64::from_le_bytes(raw)
                })
                .fold(0.0, f64::max)
        })
        .collect();
    slowest.sort_by(f64::total_cmp);
    Ok(slowest)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n.is_multiple_of(2) {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    } else {
        sorted[n / 2]
    }
}
