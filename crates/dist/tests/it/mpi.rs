//! The MPI engine, for real: each test starts `mpirun -n N` on this test binary, whose
//! `mpi::rank_entry` runs one scenario per rank and prints `RESULT <rank> <key> <value>` lines
//! that the test then checks. Needs Open MPI (`openmpi-bin`); as root, mpirun gets
//! `--allow-run-as-root`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use burn::optim::GradientsParams;
use burn::tensor::Device;
use kindling_dist::{Communicator, Ddp, DdpConfig, DistError, MpiComm, ReduceOp};

use crate::common::{TwoHosts, batch, flat_params, max_abs_diff, mlp, mse};
use crate::ddp::{B, HIDDEN, LR, STEPS, sgd, single};

const SCENARIO_VAR: &str = "KINDLING_MPI_SCENARIO";
const TIMEOUT_VAR: &str = "KINDLING_MPI_TIMEOUT_MS";

/// What the ranks of one `mpirun` printed, by rank then key.
pub struct Ranks {
    results: BTreeMap<usize, BTreeMap<String, String>>,
    stderr: String,
    success: bool,
}

impl Ranks {
    pub fn get(&self, rank: usize, key: &str) -> &str {
        self.results
            .get(&rank)
            .and_then(|r| r.get(key))
            .unwrap_or_else(|| {
                panic!(
                    "rank {rank} reported no `{key}`; reports: {:?}\nstderr:\n{}",
                    self.results, self.stderr
                )
            })
    }
}

/// Runs `scenario` on `n` ranks under mpirun, each collective bounded by `timeout_ms`.
pub fn mpirun(n: usize, scenario: &str, timeout_ms: u64) -> Ranks {
    run_scenario(Command::new("mpirun"), n, scenario, timeout_ms)
}

/// Runs `scenario` under `cmd` (an `mpirun` command line with any options of its own).
fn run_scenario(mut cmd: Command, n: usize, scenario: &str, timeout_ms: u64) -> Ranks {
    let exe = std::env::current_exe().expect("test binary path");
    cmd.args(["-n", &n.to_string(), "--oversubscribe"]);
    if is_root() {
        cmd.arg("--allow-run-as-root");
    }
    // Keep the survivors running when a rank dies, so they can report it (Open MPI's default
    // kills the whole job), and keep traffic on this machine.
    cmd.args(["--mca", "orte_enable_recovery", "1"]);
    cmd.args(["--mca", "orte_abort_on_non_zero_status", "0"]);
    cmd.args(["-x", SCENARIO_VAR, "-x", TIMEOUT_VAR]);
    cmd.arg(&exe).args([
        "mpi::rank_entry",
        "--exact",
        "--nocapture",
        "--include-ignored",
        "--test-threads",
        "1",
    ]);
    cmd.env(SCENARIO_VAR, scenario);
    cmd.env(TIMEOUT_VAR, timeout_ms.to_string());
    let out = cmd
        .output()
        .expect("mpirun from openmpi-bin must be installed for the MPI tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut results: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for line in stdout.lines() {
        // libtest's "test mpi::rank_entry ... " may precede a report on the same line.
        let Some(at) = line.find("RESULT ") else {
            continue;
        };
        let mut parts = line[at..].splitn(4, ' ').skip(1);
        let (Some(rank), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        results
            .entry(rank.parse().expect("rank"))
            .or_default()
            .insert(key.to_string(), value.to_string());
    }
    eprintln!("mpirun {scenario}: {results:?}");
    Ranks {
        results,
        stderr,
        success: out.status.success(),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn report(rank: usize, key: &str, value: impl std::fmt::Display) {
    println!("RESULT {rank} {key} {value}");
}

/// The entry point of every rank started by the tests above; does nothing when run directly.
#[test]
#[ignore = "entry point of the ranks that the MPI tests start under mpirun"]
fn rank_entry() {
    let Ok(scenario) = std::env::var(SCENARIO_VAR) else {
        eprintln!("not started by an MPI test ({SCENARIO_VAR} unset): nothing to do");
        return;
    };
    let timeout = Duration::from_millis(
        std::env::var(TIMEOUT_VAR)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(30_000),
    );
    let mut comm = MpiComm::init(timeout).expect("MPI init");
    let rank = comm.rank();
    match scenario.as_str() {
        "collectives" => collectives(&mut comm),
        "equivalence" => {
            let params = train(&mut comm, 1);
            report(rank, "params", encode(&params));
            report(rank, "host", comm.hosts()[rank]);
            let netns = std::fs::read_link("/proc/self/ns/net").map(|p| p.display().to_string());
            report(
                rank,
                "netns",
                netns.unwrap_or_else(|e| format!("unknown ({e})")),
            );
        }
        "no_sync" => {
            let params = train(&mut comm, 2);
            report(rank, "params", encode(&params));
        }
        "dead_peer" | "stuck_peer" | "failing_peer" => faults(&mut comm, &scenario),
        "mismatch_op" | "mismatch_size" => {
            let message = crate::header::mismatch(&mut comm, &scenario["mismatch_".len()..]);
            report(rank, "message", message);
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn collectives(comm: &mut MpiComm) {
    let rank = comm.rank();
    let world = comm.world_size();
    report(rank, "world", world);
    report(rank, "local_rank", comm.local_rank());
    let mut sum = vec![rank as f32 + 1.0; 1000];
    comm.all_reduce(&mut sum, ReduceOp::Sum).expect("sum");
    report(rank, "sum", sum[999]);
    let mut mean = vec![rank as f32 * 2.0; 3];
    comm.all_reduce(&mut mean, ReduceOp::Mean).expect("mean");
    report(rank, "mean", mean[0]);
    let mut b = vec![rank as f32; 5];
    comm.broadcast(&mut b, world - 1).expect("broadcast");
    report(rank, "broadcast", b[4]);
    comm.barrier().expect("barrier");
    let gathered = comm
        .all_gather_bytes(&vec![b'a' + rank as u8; rank + 1])
        .expect("gather");
    let gathered: Vec<String> = gathered
        .iter()
        .map(|g| String::from_utf8_lossy(g).into_owned())
        .collect();
    report(rank, "gathered", gathered.join(","));
    // Different lengths: every rank must see the mismatch before data moves.
    let mut uneven = vec![1.0f32; 4 + rank];
    match comm.all_reduce(&mut uneven, ReduceOp::Sum) {
        Err(DistError::SizeMismatch { op, sizes }) => {
            report(rank, "mismatch", format!("{op}:{sizes:?}").replace(' ', ""));
        }
        other => report(
            rank,
            "mismatch",
            format!("unexpected:{other:?}").replace(' ', ""),
        ),
    }
    // The group is closed after a failed collective.
    let closed = matches!(comm.barrier(), Err(DistError::Closed(_)));
    report(rank, "closed_after", closed);
}

/// DDP of the common MLP: each rank takes its rows of each step's batch, `micro` micro-batches
/// per step, the last one synced. Rank r starts from different weights: rank 0's must win.
fn train(comm: &mut MpiComm, micro: usize) -> Vec<f32> {
    let device = Device::flex().autodiff();
    let rank = comm.rank();
    let mut ddp = Ddp::new(comm, DdpConfig::default().with_bucket_caps(16, 64)).expect("ddp");
    let mut model = ddp
        .prepare(mlp(HIDDEN, rank as u64 * 7, &device))
        .expect("prepare");
    let mut optim = sgd();
    for step in 0..STEPS {
        for m in 0..micro {
            let first = (rank * micro + m) * B;
            let (x, y) = batch(step, first..first + B, &device);
            let loss = mse(&model, x, y).div_scalar(micro as f32);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            if m + 1 < micro {
                ddp.no_sync(&model, grads).expect("no_sync");
            } else {
                let grads = ddp.sync(&model, grads).expect("sync");
                model = optim.step(LR, model, grads);
            }
        }
    }
    flat_params(&model)
}

/// Rank 1 misbehaves at the second collective of a loop of all-reduces; rank 0 reports what it
/// saw and how long it took.
fn faults(comm: &mut MpiComm, scenario: &str) {
    let rank = comm.rank();
    for step in 0..3 {
        if rank == 1 && step == 1 {
            match scenario {
                "dead_peer" => {
                    // SIGKILL: no chance to say goodbye.
                    let _ = Command::new("kill")
                        .args(["-9", &std::process::id().to_string()])
                        .status();
                    std::thread::sleep(Duration::from_secs(60));
                }
                "stuck_peer" => std::thread::sleep(comm.timeout() + Duration::from_secs(2)),
                _ => {
                    comm.abort("rank 1 returned an error: data loader broke");
                    report(rank, "aborted", true);
                    return;
                }
            }
        }
        let mut buf = vec![1.0f32; 1 << 16];
        let start = Instant::now();
        match comm.all_reduce(&mut buf, ReduceOp::Sum) {
            Ok(()) => report(rank, &format!("step{step}"), "ok"),
            Err(e) => {
                report(rank, "error", format!("{e:?}").replace('\n', " "));
                report(rank, "after_ms", start.elapsed().as_millis());
                return;
            }
        }
    }
}

fn encode(values: &[f32]) -> String {
    values
        .iter()
        .map(|v| format!("{:08x}", v.to_bits()))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode(text: &str) -> Vec<f32> {
    text.split(',')
        .map(|h| f32::from_bits(u32::from_str_radix(h, 16).expect("hex")))
        .collect()
}

#[test]
fn collectives_on_three_processes() {
    let ranks = mpirun(3, "collectives", 30_000);
    assert!(ranks.success, "mpirun failed:\n{}", ranks.stderr);
    for r in 0..3 {
        assert_eq!(ranks.get(r, "world"), "3");
        assert_eq!(ranks.get(r, "local_rank"), r.to_string());
        assert_eq!(ranks.get(r, "sum"), "6");
        assert_eq!(ranks.get(r, "mean"), "2");
        assert_eq!(ranks.get(r, "broadcast"), "2");
        assert_eq!(ranks.get(r, "gathered"), "a,bb,ccc");
        assert_eq!(ranks.get(r, "mismatch"), "all_reduce:[4,5,6]");
        assert_eq!(ranks.get(r, "closed_after"), "true");
    }
}

fn check_equivalence(scenario: &str, micro: usize) {
    let ranks = mpirun(2, scenario, 30_000);
    check_ranks_match_one_process(&ranks, scenario, micro);
}

/// Both ranks end with the same parameters, within 1e-6 of one process training on the
/// batch of both (while one process on one rank's batch is further away).
fn check_ranks_match_one_process(ranks: &Ranks, scenario: &str, micro: usize) {
    assert!(ranks.success, "mpirun failed:\n{}", ranks.stderr);
    let p0 = decode(ranks.get(0, "params"));
    let p1 = decode(ranks.get(1, "params"));
    assert_eq!(p0, p1, "the ranks' parameters diverged");
    let reference = single(2 * micro * B);
    let control = single(B);
    let diff = max_abs_diff(&p0, &reference);
    let control_diff = max_abs_diff(&control, &reference);
    eprintln!(
        "MPI {scenario}: max |2 ranks - 1 rank x batch {}| = {diff:e}; control differs by \
         {control_diff:e}",
        2 * micro * B
    );
    assert!(diff <= 1e-6, "MPI DDP differs from one process by {diff}");
    assert!(
        control_diff > 1e-5,
        "negative control too close: {control_diff}"
    );
}

#[test]
fn two_processes_match_one_process_with_double_batch() {
    check_equivalence("equivalence", 1);
}

#[test]
fn no_sync_accumulation_across_processes_matches_full_batch() {
    check_equivalence("no_sync", 2);
}

fn fault_run(scenario: &str, timeout_ms: u64) -> (Ranks, Duration) {
    let start = Instant::now();
    let ranks = mpirun(2, scenario, timeout_ms);
    (ranks, start.elapsed())
}

#[test]
fn killed_process_is_reported_by_the_survivor() {
    let (ranks, took) = fault_run("dead_peer", 5_000);
    let err = ranks.get(0, "error");
    assert!(
        err.starts_with("PeerFailed { rank: 1, op: \"all_reduce\"") && err.contains("exited"),
        "{err}"
    );
    let after: u64 = ranks.get(0, "after_ms").parse().expect("ms");
    eprintln!("killed peer reported after {after} ms (run took {took:?})");
    assert!(after < 6_000, "reported after {after} ms, timeout 5 s");
}

#[test]
fn stuck_process_times_out_naming_it() {
    let (ranks, _) = fault_run("stuck_peer", 1_500);
    let err = ranks.get(0, "error");
    assert!(
        err.starts_with("Timeout { op: \"all_reduce\", peer: 1, after: 1.5s"),
        "{err}"
    );
    let after: u64 = ranks.get(0, "after_ms").parse().expect("ms");
    eprintln!("stuck peer: timeout 1.5 s fired after {after} ms");
    assert!((1_500..2_500).contains(&after), "fired after {after} ms");
}

#[test]
fn failing_process_aborts_the_others_with_its_reason() {
    let (ranks, _) = fault_run("failing_peer", 10_000);
    assert_eq!(ranks.get(1, "aborted"), "true");
    let err = ranks.get(0, "error");
    assert!(
        err.starts_with("PeerFailed { rank: 1, op: \"all_reduce\"")
            && err.contains("data loader broke"),
        "{err}"
    );
    let after: u64 = ranks.get(0, "after_ms").parse().expect("ms");
    assert!(after < 1_000, "abort took {after} ms to arrive");
}

/// Two "machines" (network namespaces joined by a veth pair, see [`TwoHosts`]) trained by one
/// `mpirun` the way a cluster is: started in the first namespace with `--host A,B`, it starts
/// the second host's daemon through an rsh agent (here `ip netns exec` instead of ssh), and the
/// ranks talk over the link only (Open MPI's TCP transport, restricted to its subnet).
#[test]
fn two_hosts_in_network_namespaces_over_mpi_train_like_one() {
    let hosts = match TwoHosts::create() {
        Ok(hosts) => hosts,
        Err(why) => {
            eprintln!("skipped: two network namespaces need root and `ip netns` ({why})");
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("kindling-mpi-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Open MPI calls `AGENT HOST COMMAND...` to start its daemon on HOST, as it would call ssh.
    let agent = dir.join("netns-rsh");
    let [a, b] = &hosts.addresses;
    let script = format!(
        "#!/bin/sh\nhost=$1; shift\ncase $host in\n  {a}) ns={} ;;\n  {b}) ns={} ;;\n  \
         *) echo \"netns-rsh: unknown host $host\" >&2; exit 1 ;;\nesac\n\
         exec ip netns exec \"$ns\" sh -c \"$*\"\n",
        hosts.namespaces[0], hosts.namespaces[1]
    );
    std::fs::write(&agent, script).expect("agent script");
    let chmod = Command::new("chmod").arg("+x").arg(&agent).status();
    assert!(chmod.is_ok_and(|s| s.success()), "chmod");
    // `timeout`: a launch that cannot reach the second host fails the test instead of hanging.
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "ip", "netns", "exec", &hosts.namespaces[0], "mpirun"]);
    cmd.args(["--host", &format!("{a},{b}")]);
    cmd.arg("--mca").arg("plm_rsh_agent").arg(&agent);
    let subnet = hosts.subnet();
    for (key, value) in [
        ("btl", "tcp,self"),
        ("btl_tcp_if_include", subnet.as_str()),
        ("oob_tcp_if_include", subnet.as_str()),
    ] {
        cmd.args(["--mca", key, value]);
    }
    let ranks = run_scenario(cmd, 2, "equivalence", 30_000);
    assert!(ranks.success, "mpirun failed:\n{}", ranks.stderr);
    let (ns0, ns1) = (ranks.get(0, "netns"), ranks.get(1, "netns"));
    eprintln!("rank 0 in {ns0}, rank 1 in {ns1}");
    assert_ne!(ns0, ns1, "both ranks ran in one network namespace");
    check_ranks_match_one_process(&ranks, "equivalence across network namespaces", 1);
    std::fs::remove_dir_all(&dir).ok();
}
