//! Failures during DDP training: a rank that dies, a rank that never arrives.

use std::time::{Duration, Instant};

use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::Device;
use kindling_dist::{Communicator, Ddp, DdpConfig, DistError, LocalGroup, RankError};

use crate::common::{batch, mlp, mse};

/// Trains 3 steps; `misbehave(rank, step)` runs before each sync and may fail or stall.
fn train(
    timeout: Duration,
    misbehave: impl Fn(usize, usize) -> Result<(), DistError> + Sync,
) -> Vec<Result<Duration, RankError<DistError>>> {
    let devices = vec![Device::flex().autodiff(); 2];
    LocalGroup::run(&devices, timeout, |comm, device| {
        let rank = comm.rank();
        let mut ddp = Ddp::new(comm, DdpConfig::default())?;
        let mut model = ddp.prepare(mlp(4, 0, device))?;
        let mut optim = SgdConfig::new().init();
        for step in 0..3 {
            let (x, y) = batch(step, rank * 2..rank * 2 + 2, device);
            let grads = GradientsParams::from_grads(mse(&model, x, y).backward(), &model);
            misbehave(rank, step)?;
            let start = Instant::now();
            match ddp.sync(&model, grads) {
                Ok(grads) => model = optim.step(0.1, model, grads),
                // Report how long the failing collective took to fail.
                Err(e) => {
                    eprintln!("rank {rank}: sync failed after {:?}: {e}", start.elapsed());
                    return Err(e);
                }
            }
        }
        Ok(Duration::ZERO)
    })
    .expect("group")
}

#[test]
fn rank_returning_an_error_fails_the_other_rank_fast() {
    let timeout = Duration::from_secs(3);
    let start = Instant::now();
    let out = train(timeout, |rank, step| {
        if rank == 1 && step == 1 {
            return Err(DistError::Invalid("data loader broke".into()));
        }
        Ok(())
    });
    let elapsed = start.elapsed();
    eprintln!("dead peer (error) detected; whole run took {elapsed:?}");
    assert!(elapsed < timeout + Duration::from_secs(1), "{elapsed:?}");
    match &out[0] {
        Err(RankError::Failed(DistError::PeerFailed {
            rank: 1,
            op,
            reason,
        })) => {
            assert_eq!(*op, "all_reduce");
            assert!(reason.contains("data loader broke"), "{reason}");
        }
        other => panic!("rank 0: {other:?}"),
    }
    assert!(matches!(
        &out[1],
        Err(RankError::Failed(DistError::Invalid(_)))
    ));
}

#[test]
fn rank_panicking_fails_the_other_rank_fast() {
    let timeout = Duration::from_secs(3);
    let start = Instant::now();
    let out = train(timeout, |rank, step| {
        assert!(!(rank == 0 && step == 2), "rank 0 hit a bug");
        Ok(())
    });
    let elapsed = start.elapsed();
    eprintln!("dead peer (panic) detected; whole run took {elapsed:?}");
    assert!(elapsed < timeout + Duration::from_secs(1), "{elapsed:?}");
    assert!(matches!(&out[0], Err(RankError::Panicked(m)) if m.contains("rank 0 hit a bug")));
    assert!(
        matches!(
            &out[1],
            Err(RankError::Failed(DistError::PeerFailed { rank: 0, .. }))
        ),
        "{:?}",
        out[1]
    );
}

#[test]
fn stalled_rank_times_out_at_the_configured_timeout() {
    let timeout = Duration::from_millis(1500);
    let out = LocalGroup::run(
        &[Device::flex().autodiff(), Device::flex().autodiff()],
        timeout,
        |comm, device| {
            let rank = comm.rank();
            let mut ddp = Ddp::new(comm, DdpConfig::default())?;
            let model = ddp.prepare(mlp(4, 0, device))?;
            let (x, y) = batch(0, rank * 2..rank * 2 + 2, device);
            let grads = GradientsParams::from_grads(mse(&model, x, y).backward(), &model);
            if rank == 1 {
                std::thread::sleep(timeout + Duration::from_secs(1));
            }
            let start = Instant::now();
            let result = ddp.sync(&model, grads).map(|_| ());
            Ok::<_, DistError>((result, start.elapsed()))
        },
    )
    .expect("group");
    let (r0, t0) = out[0].as_ref().expect("rank 0 ran");
    eprintln!("timeout configured {timeout:?}, fired after {t0:?}: {r0:?}");
    assert_eq!(
        r0,
        &Err(DistError::Timeout {
            op: "all_reduce",
            peer: 1,
            after: timeout
        })
    );
    assert!(
        *t0 >= timeout && *t0 < timeout + Duration::from_millis(500),
        "{t0:?}"
    );
    // The straggler finds the group aborted instead of waiting for a full timeout of its own.
    let (r1, t1) = out[1].as_ref().expect("rank 1 ran");
    assert!(
        matches!(r1, Err(DistError::PeerFailed { rank: 0, .. })),
        "{r1:?}"
    );
    assert!(*t1 < Duration::from_millis(100), "{t1:?}");
}

#[test]
fn timeouts_too_large_for_a_deadline_are_rejected() {
    let Err(err) = LocalGroup::handles(2, Duration::MAX) else {
        panic!("Duration::MAX cannot be a deadline");
    };
    assert!(err.to_string().contains("longer than the maximum"), "{err}");
}
