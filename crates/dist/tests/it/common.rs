//! A tiny model and deterministic data: no backend RNG anywhere, so tests can run in parallel.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

pub const D_IN: usize = 3;
pub const D_OUT: usize = 2;

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn linear(d_in: usize, d_out: usize, seed: u64, device: &Device) -> Linear {
    Linear {
        weight: Param::from_data(
            TensorData::new(values(d_in * d_out, seed), [d_in, d_out]),
            device,
        ),
        bias: Some(Param::from_data(
            TensorData::new(values(d_out, seed + 1), [d_out]),
            device,
        )),
    }
}

/// The MLP `D_IN -> hidden -> D_OUT`, weights from `seed`.
pub fn mlp(hidden: usize, seed: u64, device: &Device) -> Mlp {
    Mlp {
        fc1: linear(D_IN, hidden, seed, device),
        fc2: linear(hidden, D_OUT, seed + 100, device),
    }
}

/// Rows `rows` of step `step`'s batch (inputs, targets).
pub fn batch(step: usize, rows: std::ops::Range<usize>, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let n = rows.len();
    let x: Vec<f32> = rows
        .clone()
        .flat_map(|r| values(D_IN, 1000 + (step * 1000 + r) as u64))
        .collect();
    let y: Vec<f32> = rows
        .flat_map(|r| values(D_OUT, 5000 + (step * 1000 + r) as u64))
        .collect();
    (
        Tensor::from_data(TensorData::new(x, [n, D_IN]), device),
        Tensor::from_data(TensorData::new(y, [n, D_OUT]), device),
    )
}

pub fn mse(model: &Mlp, x: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
    (model.forward(x) - y).powf_scalar(2.0).mean()
}

/// All parameters, flattened, in visiting order.
pub fn flat_params(model: &Mlp) -> Vec<f32> {
    let mut out = Vec::new();
    for t in [
        model.fc1.weight.val().flatten::<1>(0, 1),
        model.fc1.bias.as_ref().expect("bias").val(),
        model.fc2.weight.val().flatten::<1>(0, 1),
        model.fc2.bias.as_ref().expect("bias").val(),
    ] {
        out.extend(t.try_into_vec_as::<f32>().expect("f32"));
    }
    out
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
