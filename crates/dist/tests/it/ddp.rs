//! DDP equivalence: N ranks x batch b == 1 rank x batch N*b, for plain steps and `no_sync`
//! accumulation; parameter checks.

use std::time::Duration;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::Device;
use kindling_dist::{Ddp, DdpConfig, DistError, LocalGroup, RankError};

use crate::common::{batch, flat_params, max_abs_diff, mlp, mse};

pub(crate) const B: usize = 4;
pub(crate) const HIDDEN: usize = 5;
pub(crate) const STEPS: usize = 3;
pub(crate) const LR: f64 = 0.1;
const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn sgd() -> burn::optim::ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
        .init()
}

fn device() -> Device {
    Device::flex().autodiff()
}

/// One process, one batch of the first `rows` rows of each step.
pub(crate) fn single(rows: usize) -> Vec<f32> {
    let device = device();
    let mut model = mlp(HIDDEN, 0, &device);
    let mut optim = sgd();
    for step in 0..STEPS {
        let (x, y) = batch(step, 0..rows, &device);
        let grads = GradientsParams::from_grads(mse(&model, x, y).backward(), &model);
        model = optim.step(LR, model, grads);
    }
    flat_params(&model)
}

/// `world` ranks, each `b` rows per micro-batch and `micro` micro-batches per step (the last one
/// synced), each rank starting from different weights (rank 0's must win).
fn distributed(world: usize, micro: usize, config: DdpConfig) -> Vec<Vec<f32>> {
    let devices = vec![device(); world];
    let out = LocalGroup::run(&devices, TIMEOUT, |comm, device| {
        let rank = comm_rank(comm);
        let mut ddp = Ddp::new(comm, config)?;
        let mut model = ddp.prepare(mlp(HIDDEN, rank as u64 * 7, device))?;
        let mut optim = sgd();
        for step in 0..STEPS {
            for m in 0..micro {
                let first = (rank * micro + m) * B;
                let (x, y) = batch(step, first..first + B, device);
                let loss = mse(&model, x, y).div_scalar(micro as f32);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                if m + 1 < micro {
                    ddp.no_sync(&model, grads)?;
                } else {
                    let grads = ddp.sync(&model, grads)?;
                    model = optim.step(LR, model, grads);
                }
            }
        }
        Ok::<_, DistError>(flat_params(&model))
    })
    .expect("group");
    out.into_iter().map(|r| r.expect("rank ok")).collect()
}

fn comm_rank(comm: &mut kindling_dist::LocalComm) -> usize {
    use kindling_dist::Communicator;
    comm.rank()
}

fn check(world: usize, micro: usize) {
    let reference = single(world * micro * B);
    let control = single(B);
    for config in [
        DdpConfig::default(),
        DdpConfig::default().with_bucket_caps(16, 64),
    ] {
        let ranks = distributed(world, micro, config);
        for (r, params) in ranks.iter().enumerate() {
            assert_eq!(params, &ranks[0], "rank {r} diverged from rank 0");
        }
        let diff = max_abs_diff(&ranks[0], &reference);
        let control_diff = max_abs_diff(&control, &reference);
        eprintln!(
            "world {world} x micro {micro}, buckets {config:?}: max |ddp - single| = {diff:e}, \
             control (1 rank x batch {B}) differs by {control_diff:e}"
        );
        assert!(
            diff <= 1e-5,
            "DDP differs from the single-process run by {diff}"
        );
        assert!(
            control_diff > 1e-5,
            "negative control too close: {control_diff}"
        );
    }
}

#[test]
fn two_ranks_match_one_rank_with_double_batch() {
    check(2, 1);
}

#[test]
fn three_ranks_match_one_rank_with_triple_batch() {
    check(3, 1);
}

#[test]
fn no_sync_accumulation_matches_one_rank_with_full_batch() {
    check(2, 2);
}

#[test]
fn parameter_shape_mismatch_names_param_and_ranks() {
    let devices = vec![device(); 3];
    let out = LocalGroup::run(&devices, TIMEOUT, |comm, device| {
        let rank = comm_rank(comm);
        let hidden = if rank == 2 { HIDDEN + 1 } else { HIDDEN };
        let mut ddp = Ddp::new(comm, DdpConfig::default())?;
        ddp.prepare(mlp(hidden, 0, device)).map(|_| ())
    })
    .expect("group");
    for o in out {
        match o {
            Err(RankError::Failed(DistError::ParamMismatch {
                param,
                ranks,
                detail,
            })) => {
                assert_eq!(param, "fc1.weight");
                assert_eq!(ranks, vec![2]);
                assert!(
                    detail.contains("rank 0: `fc1.weight` [3, 5] F32"),
                    "{detail}"
                );
                assert!(
                    detail.contains("rank 2: `fc1.weight` [3, 6] F32"),
                    "{detail}"
                );
            }
            other => panic!("expected a parameter mismatch, got {other:?}"),
        }
    }
}

#[test]
fn invalid_config_is_rejected() {
    let mut comms = LocalGroup::handles(1, TIMEOUT).expect("group");
    let comm = comms.remove(0);
    let e = Ddp::new(
        comm,
        DdpConfig {
            root: 1,
            ..DdpConfig::default()
        },
    )
    .expect_err("bad root");
    assert!(matches!(e, DistError::Invalid(_)));
}
