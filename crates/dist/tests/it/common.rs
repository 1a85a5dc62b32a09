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

/// Two network namespaces joined by a veth pair: two "hosts" that reach each other only over
/// that link. Created by the test, removed on drop.
pub struct TwoHosts {
    pub namespaces: [String; 2],
    pub addresses: [String; 2],
}

impl TwoHosts {
    pub fn create() -> Result<Self, String> {
        let id = std::process::id();
        let hosts = Self {
            namespaces: [format!("kd{id}a"), format!("kd{id}b")],
            addresses: [
                format!("10.213.{}.1", id % 250),
                format!("10.213.{}.2", id % 250),
            ],
        };
        let [a, b] = &hosts.namespaces;
        let (va, vb) = (format!("kd{id}x"), format!("kd{id}y"));
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), a.clone()],
            vec!["netns".into(), "add".into(), b.clone()],
            vec![
                "link".into(),
                "add".into(),
                va.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                vb.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                va.clone(),
                "netns".into(),
                a.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                vb.clone(),
                "netns".into(),
                b.clone(),
            ],
        ];
        let mut steps = steps;
        for (ns, dev, addr) in [(a, &va, &hosts.addresses[0]), (b, &vb, &hosts.addresses[1])] {
            steps.push(vec![
                "-n".into(),
                ns.clone(),
                "addr".into(),
                "add".into(),
                format!("{addr}/24"),
                "dev".into(),
                dev.clone(),
            ]);
            steps.push(vec![
                "-n".into(),
                ns.clone(),
                "link".into(),
                "set".into(),
                dev.clone(),
                "up".into(),
            ]);
            steps.push(vec![
                "-n".into(),
                ns.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ]);
        }
        for step in steps {
            let out = std::process::Command::new("ip")
                .args(&step)
                .output()
                .map_err(|e| format!("cannot run `ip`: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "`ip {}` failed: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(hosts)
    }
}

impl TwoHosts {
    /// The link's network, `10.213.N.0/24` (the MPI test restricts Open MPI to it).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub fn subnet(&self) -> String {
        let host = &self.addresses[0];
        format!("{}.0/24", &host[..host.rfind('.').unwrap_or(host.len())])
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        for ns in &self.namespaces {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}
