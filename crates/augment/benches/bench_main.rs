//! Throughput of the canonical pipelines (images/s), single-threaded and over a rayon batch.
//!
//! Inputs are the conformance photos (`$KINDLING_AUGMENT_REFERENCE/images`, default
//! `/work/shared/conformance/augment/images`): P1 = CIFAR pipeline on 32x32 RGB u8, P2 =
//! ImageNet pipeline on 500x375 photos (both to normalised f32 CHW); `resize_u8_500x375` is
//! P2's resize alone. `*/op_by_op` runs the same transforms without the fused path (nested in
//! an inner `Compose`), for comparison.
//! Each iteration uses the next sample index, so the random parameters vary as in training.
//! `p1_tensor_flex/batchN` runs P1 on a `[N, 3, 32, 32]` tensor on flex with per-sample
//! parameters (`batched::augment_batch`: on flex, the CPU kernels in host memory over rayon),
//! reading the result back to the host to finish it; `tensor_ops_batchN` forces burn tensor
//! operations (`Kernels::TensorOps`, what runs on a GPU). `KINDLING_BENCH_DEVICE=wgpu` (or
//! `wgpu:cpu`, `cuda:0`) runs the group on that device instead (`p1_tensor_wgpu/...`), timing
//! until the device is done without reading the batch back.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use kindling_augment::batched::{DeviceBatch, Kernels, augment_batch_with};
use kindling_augment::{Augment, Compose, Image, Transform, apply_batch, pipelines};

fn images(suffix: &str) -> Vec<Image<u8>> {
    let dir = std::env::var_os("KINDLING_AUGMENT_REFERENCE")
        .map_or_else(
            || PathBuf::from("/work/shared/conformance/augment"),
            PathBuf::from,
        )
        .join("images");
    ["astronaut", "chelsea", "coffee"]
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}_{suffix}.png"));
            let rgb = image::open(&path)
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot read benchmark input {} ({e}); set KINDLING_AUGMENT_REFERENCE \
                         to the conformance folder",
                        path.display()
                    )
                })
                .to_rgb8();
            Image::try_from(&rgb).expect("non-empty image")
        })
        .collect()
}

/// The same transforms with the random ones nested in an inner `Compose`: no fused path.
fn op_by_op(p: &Compose) -> Compose {
    let n = p.transforms.len() - 2;
    let mut t = vec![Transform::from(Compose::new(p.transforms[..n].to_vec()))];
    t.extend(p.transforms[n..].iter().cloned());
    Compose::new(t)
}

fn single(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, p: &Compose, imgs: &[Image<u8>]) {
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            let img = imgs[(i % imgs.len() as u64) as usize].clone();
            i += 1;
            black_box(p.apply_seeded(img, 7, 0, i).expect("pipeline runs"))
        })
    });
}

fn batch(g: &mut BenchmarkGroup<'_, WallTime>, p: &Compose, imgs: &[Image<u8>], n: usize) {
    let batch: Vec<Image<u8>> = imgs.iter().cycle().take(n).cloned().collect();
    g.throughput(Throughput::Elements(n as u64));
    let mut epoch = 0u64;
    g.bench_function(format!("rayon_batch{n}"), |b| {
        b.iter(|| {
            epoch += 1;
            black_box(apply_batch(p, &batch, 7, epoch, 0).expect("pipeline runs"))
        })
    });
}

/// The device of the `p1_tensor_*` group: `KINDLING_BENCH_DEVICE` = `flex` (default), `wgpu`
/// (the best adapter), `wgpu:cpu` (lavapipe) or `cuda:N` (built with the `cuda` feature).
fn bench_device() -> (String, burn::tensor::Device) {
    use burn::tensor::Device;
    let name = std::env::var("KINDLING_BENCH_DEVICE").unwrap_or_else(|_| "flex".into());
    let device = match name.as_str() {
        "flex" => Device::flex(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "wgpu")]
        "wgpu:cpu" => Device::wgpu(burn::tensor::DeviceKind::Cpu),
        #[cfg(feature = "cuda")]
        cuda if cuda.starts_with("cuda:") => {
            Device::cuda(cuda[5..].parse::<usize>().expect("cuda:N with a number N"))
        }
        other => panic!(
            "KINDLING_BENCH_DEVICE={other}: expected flex, wgpu, wgpu:cpu or cuda:N (with the \
             features built)"
        ),
    };
    (name.replace(':', "_"), device)
}

fn tensor_batch(
    g: &mut BenchmarkGroup<'_, WallTime>,
    p: &Compose,
    imgs: &[Image<u8>],
    n: usize,
    kernels: Kernels,
    device: &burn::tensor::Device,
) {
    let device = device.clone();
    let on_flex = device == burn::tensor::Device::flex();
    let images: Vec<Image<u8>> = imgs.iter().cycle().take(n).cloned().collect();
    let input = DeviceBatch::from_u8(&images, &device).expect("batch");
    let pipeline = Transform::from(p.clone());
    let indices: Vec<u64> = (0..n as u64).collect();
    g.throughput(Throughput::Elements(n as u64));
    let mut epoch = 0u64;
    let name = match kernels {
        Kernels::TensorOps => format!("tensor_ops_batch{n}"),
        _ => format!("batch{n}"),
    };
    // Each iteration gets its own tensor, as from a loader (a clone would share the buffer
    // and force flex to copy it on the way to the host kernels); making it is not timed.
    let data = input.pixels.to_data();
    let fresh = || DeviceBatch {
        pixels: burn::tensor::Tensor::from_data(data.clone(), &device),
        dtype: input.dtype,
    };
    g.bench_function(name, |b| {
        b.iter_batched(
            fresh,
            |batch| {
                epoch += 1;
                let (out, _) = augment_batch_with(kernels, &pipeline, batch, 7, epoch, &indices)
                    .expect("pipeline runs");
                if on_flex {
                    // Host memory already: hand the buffer over, as a consumer would.
                    black_box(out.pixels.into_data());
                } else {
                    // The batch stays on the device: wait for the work, read nothing back.
                    black_box(out.pixels);
                    device.sync().expect("device work completes");
                }
            },
            BatchSize::LargeInput,
        )
    });
}

fn bench(c: &mut Criterion) {
    let small = images("32x32");
    let p1 = pipelines::cifar();
    let mut g = c.benchmark_group("p1_cifar_32");
    single(&mut g, "single", &p1, &small);
    single(&mut g, "op_by_op", &op_by_op(&p1), &small);
    batch(&mut g, &p1, &small, 256);
    g.finish();

    let (name, device) = bench_device();
    let mut g = c.benchmark_group(format!("p1_tensor_{name}"));
    for n in [256, 1024] {
        tensor_batch(&mut g, &p1, &small, n, Kernels::Auto, &device);
        if device == burn::tensor::Device::flex() {
            // Off flex, Auto is the tensor ops already.
            tensor_batch(&mut g, &p1, &small, n, Kernels::TensorOps, &device);
        }
    }
    g.finish();

    let big = images("500x375");
    let p2 = pipelines::imagenet();
    resampler(c, &big);
    let mut g = c.benchmark_group("p2_imagenet_500x375");
    single(&mut g, "single", &p2, &big);
    single(&mut g, "op_by_op", &op_by_op(&p2), &big);
    batch(&mut g, &p2, &big, 32);
    g.finish();
}

/// P2's first step alone: the antialiased u8 resize of a crop to 224x224 (the AVX2 kernels,
/// where the CPU has them), over three crops of RandomResizedCrop's typical sizes.
fn resampler(c: &mut Criterion, imgs: &[Image<u8>]) {
    use kindling_augment::functional::{CropBox, Interpolation, resized_crop};
    let boxes = [(10, 30, 300, 320), (0, 0, 375, 500), (50, 100, 150, 180)].map(
        |(top, left, height, width)| CropBox {
            top,
            left,
            height,
            width,
        },
    );
    let mut g = c.benchmark_group("resize_u8_500x375");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("resized_crop_224", |b| {
        b.iter(|| {
            i += 1;
            let (img, crop) = (&imgs[i % imgs.len()], boxes[i % boxes.len()]);
            let out = resized_crop(img, crop, [224, 224], Interpolation::Bilinear, true);
            black_box(out.expect("the boxes lie inside the photos"))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
