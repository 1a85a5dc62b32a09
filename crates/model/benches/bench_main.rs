//! Throughput of CIFAR AlexNet on flex: forward, and forward + backward, at batch 1 and 64.
//!
//! Run with `cargo bench -p kindling-model --profile dev` (the workspace's one optimised
//! profile; the release profile would rebuild the whole burn stack).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kindling_model::AlexNetConfig;

/// A deterministic batch, so the benchmark never touches the backend RNG for its inputs.
fn batch(n: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let x: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    let y: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
    (
        Tensor::from_data(TensorData::new(x, [n, 3, 32, 32]), device),
        Tensor::from_data(TensorData::new(y, [n]), device),
    )
}

fn cifar(c: &mut Criterion) {
    let device = Device::flex();
    let train_device = device.clone().autodiff();
    let mut group = c.benchmark_group("cifar_alexnet_flex");
    group.sample_size(10);
    for n in [1usize, 64] {
        group.throughput(Throughput::Elements(n as u64));

        let model = AlexNetConfig::cifar().init(&device).valid();
        let (x, _) = batch(n, &device);
        group.bench_function(format!("forward/batch{n}"), |b| {
            b.iter(|| model.forward(x.clone()).into_data())
        });

        let model = AlexNetConfig::cifar().with_dropout(0.0).init(&train_device);
        let (x, y) = batch(n, &train_device);
        let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
        group.bench_function(format!("forward_backward/batch{n}"), |b| {
            b.iter(|| {
                let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
                loss.backward()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cifar);
criterion_main!(benches);
