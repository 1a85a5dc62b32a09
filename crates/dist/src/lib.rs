//! `kindling-dist`: data-parallel gradient synchronisation (PyTorch DDP semantics) for every
//! burn backend.
//!
//! burn's own collectives only run on CUDA; this crate stages tensors through host `f32`
//! buffers instead (tensor -> host -> collective -> tensor on the original device and dtype), so
//! it works on flex, wgpu, CUDA, and groups that mix them.
//!
//! Where to start:
//! - [`Communicator`]: one rank's handle on a process group (`rank`, `world_size`,
//!   `all_reduce`, `broadcast`, `barrier`, `all_gather_bytes`), every collective bounded by a
//!   timeout, failures of peers reported as [`DistError::PeerFailed`] /
//!   [`DistError::Timeout`] instead of hangs.
//! - [`LocalGroup`]: the in-process engine, one thread per device:
//!   [`LocalGroup::run`]`(&devices, timeout, |comm, device| ...)`.
//! - [`Ddp`]: on each rank, [`Ddp::prepare`] the model (parameter check + broadcast from rank
//!   0), then [`Ddp::sync`] the [`GradientsParams`](burn::optim::GradientsParams) of each step
//!   before the optimizer (bucketed mean all-reduce); [`Ddp::no_sync`] for gradient
//!   accumulation.
//! - [`DistributedSampler`]: which dataset indices each rank reads (PyTorch's sampler).
//! - [`all_reduce_tensor`] / [`broadcast_tensor`]: collectives on single tensors.
//!
//! ```no_run
//! use std::time::Duration;
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::{GradientsParams, SgdConfig};
//! use burn::tensor::{Device, Tensor};
//! use kindling_dist::{Ddp, DdpConfig, LocalGroup};
//!
//! let devices = vec![Device::flex().autodiff(), Device::flex().autodiff()];
//! let results = LocalGroup::run(&devices, Duration::from_secs(60), |comm, device| {
//!     let mut ddp = Ddp::new(comm, DdpConfig::default())?;
//!     let mut model: Linear = ddp.prepare(LinearConfig::new(4, 2).init(device))?;
//!     let mut optim = SgdConfig::new().init();
//!     for _step in 0..3 {
//!         let x = Tensor::<2>::ones([8, 4], device); // this rank's shard of the batch
//!         let loss = model.forward(x).powf_scalar(2.0).mean();
//!         let grads = GradientsParams::from_grads(loss.backward(), &model);
//!         let grads = ddp.sync(&model, grads)?;
//!         model = optim.step(0.1, model, grads);
//!     }
//!     Ok::<_, kindling_dist::DistError>(model)
//! })
//! .unwrap();
//! ```

#![warn(missing_docs)]

mod comm;
mod ddp;
mod error;
mod header;
mod local;
#[cfg(feature = "mpi")]
mod mpi_engine;
#[cfg(feature = "nccl")]
mod nccl;
pub mod plan;
mod sampler;
pub mod slurm;
mod tcp;
mod tensor;

pub use comm::{Communicator, DEFAULT_TIMEOUT, ReduceOp};
pub use ddp::{Ddp, DdpConfig};
pub use error::{DistError, Result};
pub use local::{LocalComm, LocalGroup, RankError};
#[cfg(feature = "mpi")]
pub use mpi_engine::MpiComm;
#[cfg(feature = "nccl")]
pub use nccl::{NcclComm, find_libnccl_so_2};
pub use sampler::DistributedSampler;
pub use tcp::{TcpComm, TcpEnv};
pub use tensor::{all_reduce_tensor, broadcast_tensor};
