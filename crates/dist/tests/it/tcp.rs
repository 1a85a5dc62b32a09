//! The TCP engine on loopback: one thread per rank, each with its own sockets, as separate
//! processes or machines would have.

use std::time::{Duration, Instant};

use burn::optim::GradientsParams;
use burn::tensor::Device;
use kindling_dist::{Communicator, Ddp, DdpConfig, DistError, ReduceOp, TcpComm, TcpEnv};

use crate::common::{TwoHosts, batch, flat_params, max_abs_diff, mlp, mse};
use crate::ddp::{B, HIDDEN, LR, STEPS, sgd, single};

/// A free port on loopback (bound, then released for rank 0 to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `f` on `world` ranks (threads), each joining the group over TCP.
pub fn group<T: Send>(
    world: usize,
    timeout: Duration,
    f: impl Fn(TcpComm) -> T + Sync,
) -> Vec<Result<T, DistError>> {
    let master = format!("127.0.0.1:{}", free_port());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let (f, master) = (&f, master.clone());
                scope.spawn(move || {
                    let env = TcpEnv {
                        rank,
                        world_size: world,
                        local_rank: rank,
                        master,
                        bind: None,
                    };
                    TcpComm::connect(env, timeout).map(f)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank thread"))
            .collect()
    })
}

#[test]
fn collectives_on_three_ranks() {
    let out = group(3, Duration::from_secs(20), |mut comm| {
        let rank = comm.rank();
        let mut sum = vec![rank as f32 + 1.0; 1000];
        comm.all_reduce(&mut sum, ReduceOp::Sum)?;
        let mut mean = vec![rank as f32 * 2.0; 3];
        comm.all_reduce(&mut mean, ReduceOp::Mean)?;
        let mut b = vec![rank as f32; 5];
        comm.broadcast(&mut b, 2)?;
        comm.barrier()?;
        let gathered = comm.all_gather_bytes(&vec![b'a' + rank as u8; rank + 1])?;
        let mut uneven = vec![1.0f32; 4 + rank];
        let mismatch = comm.all_reduce(&mut uneven, ReduceOp::Sum);
        let closed = comm.barrier();
        Ok::<_, DistError>((sum[999], mean[0], b[4], gathered, mismatch, closed))
    });
    for (rank, r) in out.into_iter().enumerate() {
        let (sum, mean, b, gathered, mismatch, closed) = r.expect("joined").expect("collectives");
        assert_eq!((sum, mean, b), (6.0, 2.0, 2.0), "rank {rank}");
        assert_eq!(
            gathered,
            vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
        );
        assert_eq!(
            mismatch,
            Err(DistError::SizeMismatch {
                op: "all_reduce",
                sizes: vec![4, 5, 6]
            }),
            "rank {rank}"
        );
        assert!(matches!(closed, Err(DistError::Closed(_))), "{closed:?}");
    }
}

/// DDP of the common MLP on one rank of a TCP group: rank r takes rows `r*B..(r+1)*B` of each
/// step's batch and starts from its own weights (rank 0's must win).
fn train_ddp(comm: TcpComm) -> Result<Vec<f32>, DistError> {
    let rank = comm.rank();
    let device = Device::flex().autodiff();
    let mut ddp = Ddp::new(comm, DdpConfig::default().with_bucket_caps(16, 64))?;
    let mut model = ddp.prepare(mlp(HIDDEN, rank as u64 * 7, &device))?;
    let mut optim = sgd();
    for step in 0..STEPS {
        let (x, y) = batch(step, rank * B..(rank + 1) * B, &device);
        let grads = GradientsParams::from_grads(mse(&model, x, y).backward(), &model);
        let grads = ddp.sync(&model, grads)?;
        model = optim.step(LR, model, grads);
    }
    Ok(flat_params(&model))
}

/// Both ranks' parameters equal one process's with the double batch, and differ from a
/// single batch's (negative control).
fn check_two_ranks(params: &[Vec<f32>], what: &str) {
    assert_eq!(params[0], params[1], "ranks diverged");
    let reference = single(2 * B);
    let diff = max_abs_diff(&params[0], &reference);
    let control = max_abs_diff(&single(B), &reference);
    eprintln!(
        "{what}: max |2 ranks - 1 rank x batch {}| = {diff:e}; control {control:e}",
        2 * B
    );
    assert!(diff <= 1e-5, "{diff}");
    assert!(control > 1e-5, "{control}");
}

#[test]
fn two_ranks_over_tcp_match_one_rank_with_double_batch() {
    let out = group(2, Duration::from_secs(30), train_ddp);
    let params: Vec<Vec<f32>> = out
        .into_iter()
        .map(|r| r.expect("joined").expect("trained"))
        .collect();
    check_two_ranks(&params, "TCP, loopback");
}

/// The entry point of each "host" of the namespace test; does nothing when run directly.
#[test]
#[ignore = "entry point of the ranks that the network-namespace test starts"]
fn netns_rank_entry() {
    if std::env::var_os("KINDLING_NETNS_RANK").is_none() {
        eprintln!("not started by the network-namespace test: nothing to do");
        return;
    }
    let comm = TcpComm::from_env(Duration::from_secs(30)).expect("rendezvous across hosts");
    let rank = comm.rank();
    let params = train_ddp(comm).expect("trains");
    let hex: Vec<String> = params
        .iter()
        .map(|v| format!("{:08x}", v.to_bits()))
        .collect();
    println!("RESULT {rank} {}", hex.join(","));
}

#[test]
fn two_hosts_in_network_namespaces_train_like_one() {
    let hosts = match TwoHosts::create() {
        Ok(hosts) => hosts,
        Err(why) => {
            eprintln!("skipped: two network namespaces need root and `ip netns` ({why})");
            return;
        }
    };
    let exe = std::env::current_exe().expect("test binary");
    let port = 29_500 + (std::process::id() % 400) as u16;
    let children: Vec<_> = (0..2)
        .map(|rank| {
            std::process::Command::new("ip")
                .args(["netns", "exec", &hosts.namespaces[rank]])
                .arg(&exe)
                .args(["tcp::netns_rank_entry", "--exact", "--include-ignored"])
                .args(["--nocapture", "--test-threads", "1"])
                .env("KINDLING_NETNS_RANK", rank.to_string())
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", &hosts.addresses[0])
                .env("MASTER_PORT", port.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("ip netns exec")
        })
        .collect();
    let mut params = vec![Vec::new(); 2];
    for child in children {
        let out = child.wait_with_output().expect("rank finished");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "a host failed: {stdout}");
        for line in stdout.lines() {
            let Some(at) = line.find("RESULT ") else {
                continue;
            };
            let mut parts = line[at + 7..].splitn(2, ' ');
            let rank: usize = parts.next().and_then(|r| r.parse().ok()).expect("rank");
            params[rank] = parts
                .next()
                .expect("values")
                .split(',')
                .map(|h| f32::from_bits(u32::from_str_radix(h, 16).expect("hex")))
                .collect();
        }
    }
    check_two_ranks(&params, "TCP, two network namespaces over veth");
}

#[test]
fn a_rank_that_leaves_is_reported_at_once_by_every_other_rank() {
    let timeout = Duration::from_secs(10);
    let out = group(3, timeout, |mut comm| {
        if comm.rank() == 1 {
            return Ok(Duration::ZERO); // drops its sockets, like a process that died
        }
        let start = Instant::now();
        let mut buf = vec![1.0f32; 16];
        comm.all_reduce(&mut buf, ReduceOp::Sum)
            .map(|()| start.elapsed())
            .map_err(|e| (e, start.elapsed()))
    });
    for rank in [0, 2] {
        match &out[rank] {
            Ok(Err((
                DistError::PeerFailed {
                    rank: 1,
                    op,
                    reason,
                },
                after,
            ))) => {
                assert_eq!(*op, "all_reduce");
                assert!(reason.contains("connection closed"), "{reason}");
                assert!(*after < Duration::from_secs(1), "took {after:?}");
            }
            other => panic!("rank {rank}: expected rank 1's failure, got {other:?}"),
        }
    }
}

#[test]
fn a_stuck_rank_times_out_naming_it_on_every_other_rank() {
    let timeout = Duration::from_millis(800);
    let out = group(3, timeout, |mut comm| {
        if comm.rank() == 2 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        let start = Instant::now();
        let mut buf = vec![1.0f32; 16];
        let r = comm.all_reduce(&mut buf, ReduceOp::Sum);
        (r, start.elapsed())
    });
    for rank in [0, 1] {
        let (r, after) = out[rank].as_ref().expect("joined");
        assert_eq!(
            r,
            &Err(DistError::Timeout {
                op: "all_reduce",
                peer: 2,
                after: timeout
            }),
            "rank {rank}"
        );
        assert!(
            *after >= timeout && *after < timeout + Duration::from_secs(1),
            "rank {rank}: {after:?}"
        );
    }
    // The late rank learns the verdict as soon as it arrives.
    let (late, _) = out[2].as_ref().expect("joined");
    assert!(
        matches!(late, Err(DistError::Timeout { peer: 2, .. })),
        "{late:?}"
    );
}

#[test]
fn an_aborting_rank_gives_its_reason_to_the_others() {
    let out = group(3, Duration::from_secs(10), |mut comm| {
        if comm.rank() == 2 {
            comm.abort("data loader broke");
            return None;
        }
        let mut buf = vec![1.0f32; 4];
        Some(comm.all_reduce(&mut buf, ReduceOp::Sum))
    });
    for rank in [0, 1] {
        match out[rank].as_ref().expect("joined") {
            Some(Err(DistError::PeerFailed {
                rank: 2, reason, ..
            })) => {
                assert_eq!(reason, "data loader broke");
            }
            other => panic!("rank {rank}: {other:?}"),
        }
    }
}

#[test]
fn a_missing_rank_fails_the_rendezvous_naming_it() {
    let master = format!("127.0.0.1:{}", free_port());
    let env = TcpEnv {
        rank: 0,
        world_size: 2,
        local_rank: 0,
        master,
        bind: None,
    };
    let start = Instant::now();
    let err = TcpComm::connect(env, Duration::from_millis(300)).expect_err("nobody joins");
    assert_eq!(
        err,
        DistError::Timeout {
            op: "rendezvous",
            peer: 1,
            after: Duration::from_millis(300)
        }
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    let bad = TcpEnv {
        rank: 2,
        world_size: 2,
        local_rank: 0,
        master: "127.0.0.1:1".into(),
        bind: None,
    };
    let err = TcpComm::connect(bad, Duration::from_secs(1)).expect_err("rank 2 of 2");
    assert!(
        err.to_string()
            .contains("RANK=2 is not a rank of WORLD_SIZE=2"),
        "{err}"
    );
}
