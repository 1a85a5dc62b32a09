//! Throughput of every AlexNet variant on flex: forward (eval) and forward + backward
//! (train, dropout off), at batch 1, 64 and 256, in images/s.
//!
//! Run with `cargo xtask bench` or `cargo bench -p kindling-model --profile dev` (the
//! workspace's one optimised profile; the release profile would rebuild the whole burn
//! stack). `KINDLING_BENCH_BATCHES=1,64` limits the batch sizes: a batch of 256 at 224x224
//! takes tens of seconds per step on two cores.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kindling_model::AlexNetConfig;

/// A deterministic batch, so the benchmark never touches the backend RNG for its inputs.
fn batch(n: usize, side: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let x: Vec<f32> = (0..n * 3 * side * side)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    let y: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
    (
        Tensor::from_data(TensorData::new(x, [n, 3, side, side]), device),
        Tensor::from_data(TensorData::new(y, [n]), device),
    )
}

fn batches() -> Vec<usize> {
    std::env::var("KINDLING_BENCH_BATCHES")
        .ok()
        .map(|s| s.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 64, 256])
}

fn variants(c: &mut Criterion) {
    let device = Device::flex();
    let train_device = device.clone().autodiff();
    let configs = [
        ("cifar", AlexNetConfig::cifar()),
        ("torchvision", AlexNetConfig::torchvision()),
        ("paper_grouped", AlexNetConfig::paper(true)),
    ];
    for (name, config) in configs {
        let side = config.variant.nominal_input();
        let mut group = c.benchmark_group(format!("alexnet_{name}_flex"));
        group.sample_size(10);
        for n in batches() {
            group.throughput(Throughput::Elements(n as u64));

            let model = config.clone().with_num_classes(10).init(&device).valid();
            let (x, _) = batch(n, side, &device);
            group.bench_function(format!("forward/batch{n}"), |b| {
                b.iter(|| model.forward(x.clone()).into_data())
            });

            let model = config
                .clone()
                .with_num_classes(10)
                .with_dropout(0.0)
                .init(&train_device);
            let (x, y) = batch(n, side, &train_device);
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
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = variants
}
criterion_main!(benches);
