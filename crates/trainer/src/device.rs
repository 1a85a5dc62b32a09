//! Device selection from a `--device` flag, and a smoke test that a device computes correctly.
//!
//! burn's `Device::default()` picks a backend by a fixed order of compiled features, so Kindling
//! always names the device explicitly.

use std::time::{Duration, Instant};

use burn::tensor::Tensor;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, TensorData};

/// A `--device` value that could not be turned into a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error(
        "unknown device {spec:?}: expected flex (or cpu), wgpu, wgpu:cpu, wgpu:N or cuda:N[,M...]"
    )]
    Unknown { spec: String },
    #[error("device {spec:?} needs the `{feature}` feature, which this build of kindling lacks")]
    NotCompiled { spec: String, feature: &'static str },
    #[error("bad device index {index:?} in {spec:?}: expected a non-negative integer")]
    BadIndex { spec: String, index: String },
    #[error("device {spec:?}: {why}")]
    CudaRuntime { spec: String, why: String },
}

/// Parses `flex` (or `cpu`, its PyTorch name), `wgpu` (best adapter), `wgpu:cpu` (software Vulkan), `wgpu:N` (discrete GPU N)
/// or `cuda:N[,M...]` (one device per index) into burn devices; a comma-separated list of
/// those (`flex,flex`, `wgpu:cpu,flex`) gives one device per entry, in order.
pub fn parse_devices(spec: &str) -> Result<Vec<Device>, DeviceError> {
    let mut groups: Vec<String> = Vec::new();
    for part in spec.split(',').map(str::trim) {
        // A bare index continues the list of the entry before it: `cuda:0,1`.
        match groups.last_mut() {
            Some(last) if !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()) => {
                last.push(',');
                last.push_str(part);
            }
            _ => groups.push(part.to_string()),
        }
    }
    let mut devices = Vec::new();
    for group in &groups {
        devices.extend(parse_one(group)?);
    }
    Ok(devices)
}

fn parse_one(spec: &str) -> Result<Vec<Device>, DeviceError> {
    let spec = spec.trim();
    let (backend, rest) = spec.split_once(':').unwrap_or((spec, ""));
    match backend {
        "flex" | "cpu" if rest.is_empty() => flex(spec),
        "wgpu" => wgpu(spec, rest),
        "cuda" => indices(spec, if rest.is_empty() { "0" } else { rest })?
            .into_iter()
            .map(|index| cuda(spec, index))
            .collect(),
        _ => Err(DeviceError::Unknown { spec: spec.into() }),
    }
}

fn indices(spec: &str, list: &str) -> Result<Vec<usize>, DeviceError> {
    list.split(',')
        .map(|part| {
            part.trim().parse().map_err(|_| DeviceError::BadIndex {
                spec: spec.into(),
                index: part.into(),
            })
        })
        .collect()
}

#[cfg(feature = "flex")]
fn flex(_spec: &str) -> Result<Vec<Device>, DeviceError> {
    Ok(vec![Device::flex()])
}

#[cfg(not(feature = "flex"))]
fn flex(spec: &str) -> Result<Vec<Device>, DeviceError> {
    Err(DeviceError::NotCompiled {
        spec: spec.into(),
        feature: "flex",
    })
}

#[cfg(feature = "wgpu")]
fn wgpu(spec: &str, rest: &str) -> Result<Vec<Device>, DeviceError> {
    use burn::tensor::DeviceKind;
    let kind = match rest {
        "" => DeviceKind::DefaultDevice,
        "cpu" => DeviceKind::Cpu,
        list => {
            return Ok(indices(spec, list)?
                .into_iter()
                .map(|i| Device::wgpu(DeviceKind::DiscreteGpu(i)))
                .collect());
        }
    };
    Ok(vec![Device::wgpu(kind)])
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(spec: &str, _rest: &str) -> Result<Vec<Device>, DeviceError> {
    Err(DeviceError::NotCompiled {
        spec: spec.into(),
        feature: "wgpu",
    })
}

#[cfg(feature = "cuda")]
fn cuda(spec: &str, index: usize) -> Result<Device, DeviceError> {
    crate::cuda_env::check().map_err(|why| DeviceError::CudaRuntime {
        spec: spec.into(),
        why,
    })?;
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(spec: &str, _index: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled {
        spec: spec.into(),
        feature: "cuda",
    })
}

/// What [`smoke_test`] measured on a device against the flex reference.
#[derive(Debug, Clone)]
pub struct SmokeReport {
    /// Largest absolute difference of the convolution output from the reference.
    pub forward_max_abs: f32,
    /// Largest absolute difference of the weight gradient from the reference.
    pub grad_max_abs: f32,
    /// Wall time of the forward and backward pass on the device, synchronised.
    pub elapsed: Duration,
}

/// Runs a small convolution forward and backward (AlexNet's first-layer shape, on a 35x35
/// input) on `device` and on flex from the same host data, and reports how far they differ.
#[cfg(feature = "flex")]
pub fn smoke_test(device: &Device) -> SmokeReport {
    let (x, w) = smoke_inputs();
    let start = Instant::now();
    let (out, grad) = conv_forward_backward(device, &x, &w);
    let elapsed = start.elapsed();
    let (ref_out, ref_grad) = conv_forward_backward(&Device::flex(), &x, &w);
    SmokeReport {
        forward_max_abs: max_abs_diff(&out, &ref_out),
        grad_max_abs: max_abs_diff(&grad, &ref_grad),
        elapsed,
    }
}

/// Deterministic inputs from a tiny LCG, so no backend RNG (flex's is process-global) is used.
fn smoke_inputs() -> (TensorData, TensorData) {
    let mut state = 0x2545_f491_u32;
    let mut next = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let x: Vec<f32> = (0..2 * 3 * 35 * 35).map(|_| next()).collect();
    let w: Vec<f32> = (0..8 * 3 * 11 * 11).map(|_| next() * 0.1).collect();
    (
        TensorData::new(x, [2, 3, 35, 35]),
        TensorData::new(w, [8, 3, 11, 11]),
    )
}

fn conv_forward_backward(device: &Device, x: &TensorData, w: &TensorData) -> (Vec<f32>, Vec<f32>) {
    let device = device.clone().autodiff();
    let x = Tensor::<4>::from_data(x.clone(), &device);
    let w = Tensor::<4>::from_data(w.clone(), &device).require_grad();
    let out = conv2d(
        x,
        w.clone(),
        None,
        ConvOptions::new([4, 4], [2, 2], [1, 1], 1),
    );
    let grads = out.clone().powi_scalar(2).sum().backward();
    let grad = w
        .grad(&grads)
        .map(|g| to_vec(g.into_data()))
        .unwrap_or_default();
    (to_vec(out.into_data()), grad)
}

fn to_vec(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().try_to_vec().unwrap_or_default()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    // A missing gradient or output must never look like a perfect match.
    if a.is_empty() || a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
