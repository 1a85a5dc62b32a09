//! All-reduces a buffer across N threads (one rank each) with the in-process engine and times it.
//!
//! ```sh
//! cargo xtask example allreduce_threads -- [RANKS] [MEGABYTES]
//! ```

use std::time::{Duration, Instant};

use kindling_dist::{Communicator, LocalGroup, ReduceOp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ranks: usize = args.first().map_or(Ok(2), |v| v.parse())?;
    let megabytes: usize = args.get(1).map_or(Ok(16), |v| v.parse())?;
    let len = megabytes * 1024 * 1024 / 4;

    // One "device" per rank; here just the rank number.
    let devices: Vec<usize> = (0..ranks).collect();
    let results = LocalGroup::run(&devices, Duration::from_secs(30), |comm, &rank| {
        // Rank r contributes r + 1 everywhere, so the sum is ranks * (ranks + 1) / 2.
        let mut buf = vec![(rank + 1) as f32; len];
        comm.barrier()?;
        let start = Instant::now();
        comm.all_reduce(&mut buf, ReduceOp::Sum)?;
        let elapsed = start.elapsed();
        Ok::<_, kindling_dist::DistError>((buf[0], buf[len - 1], elapsed))
    })?;
    let expected = (ranks * (ranks + 1) / 2) as f32;
    for (rank, result) in results.into_iter().enumerate() {
        let (first, last, elapsed) = result?;
        if first != expected || last != expected {
            return Err(format!("rank {rank}: got {first}/{last}, expected {expected}").into());
        }
        println!(
            "rank {rank}: sum of {megabytes} MB = {first} in {:.2} ms",
            elapsed.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
