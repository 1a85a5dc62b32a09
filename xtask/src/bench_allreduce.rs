//! `cargo xtask bench-allreduce`: the all-reduce time of every CPU engine (threads, MPI, TCP)
//! and of PyTorch's gloo, at each group size, in the same minutes, with the ratios.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{build_test_targets, describe, executable, root, run};
use crate::features;
use crate::launch::{env_ranks, mpirun};

/// One engine's figures: median milliseconds by buffer size (MB), and the barrier's median
/// microseconds (the header round that precedes every collective).
#[derive(Debug, Default)]
struct Figures {
    median_ms: BTreeMap<usize, f64>,
    barrier_us: Option<f64>,
}

pub(crate) fn bench_allreduce(scale: usize, ranks: &[usize]) -> Result<()> {
    let output = build_test_targets()?;
    let binary =
        executable(&output, "allreduce_bench", "example").context("no example allreduce_bench")?;
    let out_dir = std::env::temp_dir().join(format!("kindling-allreduce-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    let torchrun = anchor_torchrun();
    if torchrun.is_none() {
        eprintln!(
            "xtask: no torchrun in the anchors' environment, so gloo is not measured; \
             make it with ../shared/anchors/setup.sh"
        );
    }
    let mut tables = Vec::new();
    for &n in ranks {
        let mut engines: Vec<(&str, Figures)> = Vec::new();
        if let Some(torchrun) = &torchrun {
            engines.push(("gloo", gloo(torchrun, n, scale)?));
        }
        let csv = |engine: &str| out_dir.join(format!("{engine}-{n}.csv"));
        let args = |engine: &str| {
            [engine, &n.to_string(), &scale.to_string()]
                .map(String::from)
                .into_iter()
                .chain([csv(engine).display().to_string()])
                .collect::<Vec<_>>()
        };
        let mut threads = Command::new(&binary);
        threads.args(args("threads"));
        run(threads)?;
        engines.push(("threads", read_figures(&csv("threads"))?));
        if features::mpi_available() {
            let mut mpi = mpirun(n, &binary)?;
            mpi.args(args("mpi"));
            run(mpi)?;
            engines.push(("mpi", read_figures(&csv("mpi"))?));
        }
        env_ranks(n, &binary, &args("tcp"), |_| {})
            .context("the tcp all-reduce benchmark failed")?;
        engines.push(("tcp", read_figures(&csv("tcp"))?));
        tables.push(table(n, &engines));
    }
    std::fs::remove_dir_all(&out_dir).ok();
    println!();
    for t in tables {
        println!("{t}");
    }
    Ok(())
}

/// torchrun of the anchors' environment (`../shared/anchors/setup.sh`), if it was made.
fn anchor_torchrun() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let torchrun = Path::new(&home).join(".cache/kindling-anchors/bin/torchrun");
    torchrun.is_file().then_some(torchrun)
}

/// `allreduce_gloo.py` on `n` ranks, one thread each, over loopback.
fn gloo(torchrun: &Path, n: usize, scale: usize) -> Result<Figures> {
    let script = root().join("../shared/anchors/allreduce_gloo.py");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new(torchrun);
    cmd.args([
        "--nnodes=1".to_string(),
        format!("--nproc_per_node={n}"),
        "--master_addr=127.0.0.1".to_string(),
        format!("--master_port={port}"),
    ])
    .arg(&script)
    .arg(scale.to_string())
    .env("OMP_NUM_THREADS", "1")
    .env("GLOO_SOCKET_IFNAME", "lo");
    eprintln!("xtask: {}", describe(&cmd));
    let out = cmd.output().context("cannot run torchrun")?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() {
        bail!(
            "gloo on {n} ranks failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_figures(&text)
}

fn read_figures(path: &Path) -> Result<Figures> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("the benchmark wrote no {}", path.display()))?;
    parse_figures(&text)
}

/// Reads the CSV both scripts print (`size_MB,iters,median_ms,...`) and `# barrier_us=`.
fn parse_figures(text: &str) -> Result<Figures> {
    let mut figures = Figures::default();
    for line in text.lines() {
        if let Some(us) = line.strip_prefix("# barrier_us=") {
            figures.barrier_us = us.trim().parse().ok();
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() >= 3
            && let (Ok(mb), Ok(ms)) = (fields[0].parse(), fields[2].parse())
        {
            figures.median_ms.insert(mb, ms);
        }
    }
    if figures.median_ms.is_empty() {
        bail!("no all-reduce figures in:\n{text}");
    }
    Ok(figures)
}

/// A markdown table: one row per size, each engine's median and its bandwidth ratio to gloo
/// (gloo's time over the engine's), and the barrier row.
fn table(n: usize, engines: &[(&str, Figures)]) -> String {
    let gloo = engines
        .iter()
        .find(|(name, _)| *name == "gloo")
        .map(|e| &e.1);
    let mut out = format!("{n} ranks, median ms per all-reduce (ratio: gloo's time / ours)\n\n");
    let names: Vec<&str> = engines.iter().map(|e| e.0).collect();
    out += &format!("| size | {} |\n", names.join(" | "));
    out += &format!("|---|{}\n", "---|".repeat(names.len()));
    let sizes: Vec<usize> = engines
        .iter()
        .flat_map(|e| e.1.median_ms.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for mb in sizes {
        let cells: Vec<String> = engines
            .iter()
            .map(|(name, f)| {
                match (
                    f.median_ms.get(&mb),
                    gloo.and_then(|g| g.median_ms.get(&mb)),
                ) {
                    (Some(ms), Some(g)) if *name != "gloo" => format!("{ms:.3} ({:.2}x)", g / ms),
                    (Some(ms), _) => format!("{ms:.3}"),
                    (None, _) => "-".into(),
                }
            })
            .collect();
        out += &format!("| {mb} MB | {} |\n", cells.join(" | "));
    }
    let barrier: Vec<String> = engines
        .iter()
        .map(|(_, f)| f.barrier_us.map_or("-".into(), |us| format!("{us:.1} us")))
        .collect();
    out += &format!("| barrier | {} |\n", barrier.join(" | "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_csv_of_both_scripts_and_tabulates_ratios() {
        let gloo = parse_figures(
            "# ranks=2 torch=2.15 backend=gloo\nsize_MB,iters,median_ms,min_ms,algbw_GBps,busbw_GBps\n\
             1,50,2.000,1.9,0.5,0.5\n16,20,10.000,9,1,1\n",
        )
        .expect("gloo");
        let mpi = parse_figures(
            "# ranks=2 engine=mpi\nsize_MB,iters,median_ms,min_ms,algbw_GBps,busbw_GBps\n\
             1,50,1.000,0.9,1,1\n16,20,8.000,7,1,1\n# barrier_us=12.5\n",
        )
        .expect("mpi");
        assert_eq!(mpi.barrier_us, Some(12.5));
        assert!(parse_figures("nothing here").is_err());
        let t = table(2, &[("gloo", gloo), ("mpi", mpi)]);
        assert!(t.contains("| 1 MB | 2.000 | 1.000 (2.00x) |"), "{t}");
        assert!(t.contains("| 16 MB | 10.000 | 8.000 (1.25x) |"), "{t}");
        assert!(t.contains("| barrier | - | 12.5 us |"), "{t}");
    }
}
