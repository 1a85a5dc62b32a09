//! Host-staged collectives on burn tensors: tensor -> host `f32` -> collective -> tensor on the
//! tensor's own device, with its own dtype. Works for every burn backend, and for groups whose
//! ranks use different backends.

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::comm::{Communicator, ReduceOp};
use crate::error::{DistError, Result};

/// Reads a float tensor into host `f32`s.
pub(crate) fn to_host<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| DistError::Tensor(e.to_string()))
}

/// A tensor like `like` (device, dtype, shape) holding `values`.
pub(crate) fn from_host<const D: usize>(values: Vec<f32>, like: &Tensor<D>) -> Tensor<D> {
    from_host_parts(values, like.shape().to_vec(), &like.device(), like.dtype())
}

/// A tensor of `shape` on `device` with `dtype`, holding `values`.
pub(crate) fn from_host_parts<const D: usize>(
    values: Vec<f32>,
    shape: Vec<usize>,
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, dtype))
}

/// All-reduces a float tensor across the group; the result lives on the input's device.
pub fn all_reduce_tensor<const D: usize, C: Communicator + ?Sized>(
    comm: &mut C,
    tensor: Tensor<D>,
    op: ReduceOp,
) -> Result<Tensor<D>> {
    let like = tensor.clone();
    let mut host = to_host(tensor)?;
    comm.all_reduce(&mut host, op)?;
    Ok(from_host(host, &like))
}

/// Broadcasts `root`'s tensor; every rank passes a tensor of the same shape and gets root's
/// values on its own device.
pub fn broadcast_tensor<const D: usize, C: Communicator + ?Sized>(
    comm: &mut C,
    tensor: Tensor<D>,
    root: usize,
) -> Result<Tensor<D>> {
    let like = tensor.clone();
    let mut host = to_host(tensor)?;
    comm.broadcast(&mut host, root)?;
    Ok(from_host(host, &like))
}
