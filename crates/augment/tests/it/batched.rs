//! The batched tensor path against the CPU path, MixUp/CutMix, the soft-target loss and the
//! batcher. (Conformance against torchvision's files is in `conformance.rs`.)

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kindling_augment::batched::{
    AugmentBatcher, AugmentOn, BatchMix, DeviceBatch, Dtype, ImageSource, Kernels, LabeledImage,
    MixDraw, augment_batch, augment_batch_recorded, augment_batch_with, mix, ops, replay_batch,
    replay_batch_with, soft_cross_entropy,
};
use kindling_augment::transforms::{
    CenterCrop, ColorJitter, Normalize, RandomApply, RandomChoice, RandomCrop, RandomErasing,
    RandomResizedCrop, RandomRotation, RandomVerticalFlip, Resize, ToTensor,
};
use kindling_augment::{Augment, AugmentError, Compose, Image, Transform, pipelines};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Deterministic, textured test images of one size.
fn images(n: usize, h: usize, w: usize) -> Vec<Image<u8>> {
    (0..n)
        .map(|k| {
            let data = (0..3 * h * w)
                .map(|i| ((i * (7 + 2 * k) + k * 31 + (i / w) * 3) % 256) as u8)
                .collect();
            Image::from_chw(data, 3, h, w).expect("valid")
        })
        .collect()
}

fn values(x: Tensor<4>) -> Vec<f32> {
    x.into_data().try_to_vec::<f32>().expect("f32")
}

/// Max abs difference and the fraction of values differing by more than `atol`.
fn diff(a: &[f32], b: &[f32], atol: f32) -> (f32, f64) {
    assert_eq!(a.len(), b.len());
    let mut max = 0.0f32;
    let mut over = 0usize;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        max = max.max(d);
        over += usize::from(d > atol);
    }
    (max, over as f64 / a.len() as f64)
}

/// Runs `pipeline` on both paths with the same seeds (the batch with `kernels`); returns the two
/// outputs and checks that both paths drew the same parameters.
fn both_paths(
    pipeline: &Transform,
    imgs: &[Image<u8>],
    device: &Device,
    kernels: Kernels,
) -> (Vec<f32>, Vec<f32>) {
    let indices: Vec<u64> = (0..imgs.len() as u64).map(|i| i * 3 + 1).collect();
    let mut cpu = Vec::new();
    let mut cpu_params = Vec::new();
    for (img, &i) in imgs.iter().zip(&indices) {
        let mut rng = kindling_augment::sample_rng(7, 2, i);
        let (out, params) = pipeline.apply_recorded(img.clone(), &mut rng).expect("cpu");
        cpu.extend(out.into_f32().expect("f32").into_vec());
        cpu_params.push(params);
    }
    let batch = DeviceBatch::from_u8(imgs, device).expect("batch");
    let (out, params) =
        augment_batch_with(kernels, pipeline, batch, 7, 2, &indices).expect("tensor");
    assert_eq!(
        params, cpu_params,
        "the two paths drew different parameters"
    );
    assert_eq!(out.dtype, Dtype::F32);
    (cpu, values(out.pixels))
}

/// Holds the tensor operations to the CPU path.
fn cpu_matches_tensor_on(device: &Device) {
    let ops = Kernels::TensorOps;
    // P1 within its conformance tolerance: one u8 level (1/255/0.5) on at most 1 %.
    let (cpu, gpu) = both_paths(&pipelines::cifar().into(), &images(16, 32, 32), device, ops);
    let (max, frac) = diff(&cpu, &gpu, 1e-5);
    assert!(
        max <= 0.0079 && frac <= 0.01,
        "P1: max {max}, mismatch {frac}"
    );

    // P2 on photo-sized inputs: differences on at most 3 % (nearest rotation flips, u8 resize
    // rounding), as the conformance tolerance.
    let (cpu, gpu) = both_paths(
        &pipelines::imagenet().into(),
        &images(3, 120, 160),
        device,
        ops,
    );
    let (_, frac) = diff(&cpu, &gpu, 0.02);
    assert!(frac <= 0.03, "P2: mismatch {frac}");

    // Every other transform, u8 and f32 stages, containers with per-sample branches.
    let everything: Transform = Compose::new([
        RandomApply::new([RandomVerticalFlip::new(1.0).into()], 0.5).into(),
        RandomChoice::new([
            RandomCrop::new(28).padding(2).into(),
            CenterCrop::new(28).into(),
        ])
        .into(),
        Resize::new(24).into(),
        ColorJitter::new()
            .brightness(0.3)
            .contrast(0.3)
            .saturation(0.4)
            .hue(0.1)
            .into(),
        RandomRotation::new(20.0)
            .interpolation(kindling_augment::functional::Interpolation::Bilinear)
            .into(),
        ToTensor.into(),
        RandomErasing::new().p(0.7).into(),
        RandomErasing::new()
            .p(0.7)
            .value(kindling_augment::transforms::EraseValue::Random(
                kindling_augment::transforms::RandomKeyword::Random,
            ))
            .into(),
        Normalize::new([0.5; 3], [0.25; 3]).into(),
    ])
    .into();
    let (cpu, gpu) = both_paths(&everything, &images(12, 40, 36), device, ops);
    let (_, frac) = diff(&cpu, &gpu, 0.02);
    assert!(frac <= 0.03, "all transforms: mismatch {frac}");

    // RandomResizedCrop alone on f32 is close everywhere (no u8 rounding, no rotation).
    let rrc: Transform = Compose::new([ToTensor.into(), RandomResizedCrop::new(24).into()]).into();
    let (cpu, gpu) = both_paths(&rrc, &images(6, 50, 40), device, ops);
    let (max, _) = diff(&cpu, &gpu, 0.0);
    assert!(max <= 1e-4, "RandomResizedCrop f32: max {max}");
}

#[test]
fn cpu_and_tensor_paths_agree_flex() {
    cpu_matches_tensor_on(&Device::flex());
}

#[cfg(feature = "wgpu")]
#[test]
#[ignore = "needs a Vulkan driver (lavapipe); run by `cargo xtask test`"]
fn cpu_and_tensor_paths_agree_wgpu() {
    cpu_matches_tensor_on(&Device::wgpu(burn::tensor::DeviceKind::Cpu));
}

/// On flex, `augment_batch` runs the CPU transforms in host memory: the batch equals the CPU
/// path bit for bit, for every pipeline, with the same parameters drawn and replayable.
#[test]
fn host_kernels_on_flex_equal_the_cpu_path() {
    let device = Device::flex();
    let mixed: Transform = Compose::new([
        RandomChoice::new([
            RandomCrop::new(28).padding(2).into(),
            CenterCrop::new(28).into(),
        ])
        .into(),
        ColorJitter::new().saturation(0.4).hue(0.1).into(),
        ToTensor.into(),
        RandomErasing::new().p(0.7).into(),
    ])
    .into();
    let cases: [(Transform, Vec<Image<u8>>); 3] = [
        (pipelines::cifar().into(), images(16, 32, 32)),
        (pipelines::imagenet().into(), images(3, 120, 160)),
        (mixed, images(9, 40, 36)),
    ];
    for (pipeline, imgs) in cases {
        for kernels in [Kernels::Auto, Kernels::Host] {
            let (cpu, batch) = both_paths(&pipeline, &imgs, &device, kernels);
            assert_eq!(cpu, batch, "{kernels:?}");
        }
    }
    // u8 stages stay u8 values; f32 batches go through as f32.
    let crop: Transform = RandomCrop::new(24).into();
    let batch = DeviceBatch::from_u8(&images(4, 32, 32), &device).expect("batch");
    let out = augment_batch(&crop, batch, 1, 0, &[0, 1, 2, 3]).expect("crop");
    assert_eq!((out.dims(), out.dtype), ([4, 3, 24, 24], Dtype::U8));
    let f: Vec<Image<f32>> = images(2, 8, 8)
        .iter()
        .map(kindling_augment::functional::to_f32)
        .collect();
    let batch = DeviceBatch::from_f32(&f, &device).expect("batch");
    let norm: Transform = Normalize::new([0.5; 3], [0.5; 3]).into();
    let out = augment_batch(&norm, batch, 1, 0, &[0, 1]).expect("normalize");
    let expected = kindling_augment::functional::normalize(&f[1], &[0.5; 3], &[0.5; 3]).unwrap();
    assert_eq!(values(out.pixels)[3 * 64..], expected.into_vec()[..]);
    // A u8 batch holding fractions is not a u8 image: the tensor ops take it, as on a GPU.
    let frac = DeviceBatch {
        pixels: Tensor::full([2, 3, 8, 8], 10.5, &device),
        dtype: Dtype::U8,
    };
    let flip: Transform = kindling_augment::transforms::RandomHorizontalFlip::new(1.0).into();
    let out = augment_batch(&flip, frac, 0, 0, &[0, 1]).expect("flip");
    assert!(values(out.pixels).iter().all(|&v| v == 10.5));
    // Samples that come out in different shapes cannot form a batch: an error naming both.
    let ragged: Transform =
        RandomChoice::new([RandomCrop::new(20).into(), RandomCrop::new(24).into()]).into();
    let batch = DeviceBatch::from_u8(&images(8, 32, 32), &device).expect("batch");
    let e = augment_batch(&ragged, batch, 0, 0, &(0..8).collect::<Vec<_>>()).expect_err("ragged");
    assert!(e.to_string().contains("one shape"), "{e}");
}

#[test]
fn replay_reproduces_a_recorded_batch() {
    let device = Device::flex();
    let p: Transform = pipelines::cifar().into();
    let imgs = images(5, 32, 32);
    let batch = DeviceBatch::from_u8(&imgs, &device).expect("batch");
    let (out, params) =
        augment_batch_recorded(&p, batch.clone(), 1, 0, &[0, 1, 2, 3, 4]).expect("run");
    let again = replay_batch(&p, batch.clone(), &params).expect("replay");
    assert_eq!(values(out.pixels.clone()), values(again.pixels));
    // The tensor ops replay the same parameters (to the conformance tolerance).
    let ops = replay_batch_with(Kernels::TensorOps, &p, batch.clone(), &params).expect("replay");
    let (max, _) = diff(&values(out.pixels.clone()), &values(ops.pixels), 0.0);
    assert!(max <= 0.0079, "{max}");
    // Another epoch draws differently.
    let other = augment_batch(&p, batch.clone(), 1, 1, &[0, 1, 2, 3, 4]).expect("run");
    assert_ne!(values(out.pixels), values(other.pixels));
    // A parameter list of the wrong length is an error.
    let short: Vec<_> = params.iter().map(|p| p[..1].to_vec()).collect();
    assert!(replay_batch(&p, batch, &short).is_err());
}

#[test]
fn bad_batches_are_errors() {
    let device = Device::flex();
    let p: Transform = pipelines::cifar().into();
    let gray = DeviceBatch {
        pixels: Tensor::zeros([2, 1, 32, 32], &device),
        dtype: Dtype::U8,
    };
    for kernels in [Kernels::Auto, Kernels::TensorOps] {
        let e = augment_batch_with(kernels, &p, gray.clone(), 0, 0, &[0, 1])
            .expect_err("gray into ColorJitter");
        assert!(e.to_string().contains("3 (RGB) channels"), "{e}");
    }
    let empty = DeviceBatch {
        pixels: Tensor::zeros([0, 3, 32, 32], &device),
        dtype: Dtype::U8,
    };
    assert!(augment_batch(&p, empty, 0, 0, &[]).is_err());
    let ok = DeviceBatch::from_u8(&images(2, 32, 32), &device).expect("batch");
    assert!(matches!(
        augment_batch(&p, ok.clone(), 0, 0, &[0]),
        Err(AugmentError::SizeMismatch { .. })
    ));
    // Normalize before ToTensor, as on the CPU.
    let wrong: Transform = Compose::new([Normalize::new([0.5; 3], [0.5; 3]).into()]).into();
    assert!(augment_batch(&wrong, ok.clone(), 0, 0, &[0, 1]).is_err());
    // A crop larger than the image.
    let big: Transform = RandomCrop::new(40).into();
    assert!(augment_batch(&big, ok.clone(), 0, 0, &[0, 1]).is_err());
    // Functional ops check their parameters.
    assert!(ops::adjust_brightness(ok.pixels.clone(), &[f64::NAN, 1.0], Dtype::U8).is_err());
    assert!(ops::adjust_hue(ok.pixels.clone(), &[0.7, 0.0], Dtype::U8).is_err());
    assert!(ops::horizontal_flip(ok.pixels.clone(), &[true]).is_err());
    assert!(ops::normalize(ok.pixels, &[0.5; 2], &[0.5; 2]).is_err());
    let mixed_sizes = [images(1, 32, 32), images(1, 16, 16)].concat();
    assert!(DeviceBatch::from_u8(&mixed_sizes, &device).is_err());
}

#[test]
fn mixup_and_cutmix_follow_torchvision() {
    let device = Device::flex();
    // Odd batch: sample 0 pairs with the last one.
    let x = Tensor::<4>::from_data(
        TensorData::new((0..3).map(|i| i as f32).collect::<Vec<_>>(), [3, 1, 1, 1]),
        &device,
    );
    let (y, t) = mix::mixup(x.clone(), &[0, 1, 2], 0.25, 3, 0.0).expect("mixup");
    assert_eq!(values(y), [0.75 * 2.0, 0.25, 0.25 * 2.0 + 0.75]);
    let t: Vec<f32> = t.into_data().try_to_vec::<f32>().expect("f32");
    assert_eq!(&t[0..3], &[0.25, 0.0, 0.75]);
    // Label smoothing 0.3 over 3 classes: 0.8 on the label, 0.1 elsewhere, rows sum to 1.
    let (_, t) = mix::mixup(x.clone(), &[0, 1, 2], 1.0, 3, 0.3).expect("mixup");
    let t: Vec<f32> = t.into_data().try_to_vec::<f32>().expect("f32");
    assert!(
        (t[0] - 0.8).abs() < 1e-6 && (t[1] - 0.1).abs() < 1e-6,
        "{t:?}"
    );

    let img = Tensor::<4>::from_data(
        TensorData::new(
            (0..2 * 16).map(|i| (i / 16) as f32).collect::<Vec<_>>(),
            [2, 1, 4, 4],
        ),
        &device,
    );
    let b = kindling_augment::functional::MixBox {
        x1: 1,
        y1: 0,
        x2: 3,
        y2: 2,
    };
    let (y, t, lam) = mix::cutmix(img, &[0, 1], b, 2, 0.0).expect("cutmix");
    assert_eq!(lam, 0.75);
    let y = values(y);
    assert_eq!(y[1], 1.0, "box of sample 0 comes from sample 1");
    assert_eq!(y[0], 0.0);
    assert_eq!(y[16 + 1], 0.0, "box of sample 1 comes from sample 0");
    let t: Vec<f32> = t.into_data().try_to_vec::<f32>().expect("f32");
    assert_eq!(t, [0.75, 0.25, 0.25, 0.75]);

    // Bad input.
    assert!(mix::mixup(x.clone(), &[0, 1, 3], 0.5, 3, 0.0).is_err());
    assert!(mix::mixup(x.clone(), &[0, 1], 0.5, 3, 0.0).is_err());
    assert!(mix::mixup(x, &[0, 1, 2], 1.5, 3, 0.0).is_err());
    let bad = BatchMix {
        mixup_alpha: Some(0.0),
        ..BatchMix::default()
    };
    let e = bad
        .draw(&mut StdRng::seed_from_u64(0), 8, 8)
        .expect_err("alpha 0");
    assert!(e.to_string().contains("mixup_alpha"), "{e}");
}

#[test]
fn batch_mix_draws_follow_the_switch() {
    let mut rng = StdRng::seed_from_u64(3);
    let only_cutmix = BatchMix {
        mixup_alpha: None,
        ..BatchMix::default()
    };
    let only_mixup = BatchMix {
        cutmix_alpha: None,
        ..BatchMix::default()
    };
    let (mut cut, mut up, mut none) = (0, 0, 0);
    for _ in 0..400 {
        assert!(matches!(
            only_cutmix.draw(&mut rng, 32, 32).expect("ok"),
            MixDraw::CutMix { .. }
        ));
        match only_mixup.draw(&mut rng, 32, 32).expect("ok") {
            MixDraw::MixUp { lam } => assert!((0.0..=1.0).contains(&lam)),
            other => panic!("{other:?}"),
        }
        let half = BatchMix {
            prob: 0.5,
            ..BatchMix::default()
        };
        match half.draw(&mut rng, 32, 32).expect("ok") {
            MixDraw::CutMix {
                mix_box: [x1, y1, x2, y2],
            } => {
                assert!(x1 <= x2 && x2 <= 32 && y1 <= y2 && y2 <= 32);
                cut += 1
            }
            MixDraw::MixUp { .. } => up += 1,
            MixDraw::None => none += 1,
        }
    }
    // prob 0.5, switch 0.5: about 200 unmixed, 100 of each.
    assert!((150..250).contains(&none) && (60..140).contains(&cut) && (60..140).contains(&up));
}

#[test]
fn soft_cross_entropy_equals_hard_on_one_hot() {
    let device = Device::flex();
    let logits = Tensor::<2>::from_data(
        TensorData::new(
            vec![
                0.3f32, -1.2, 2.0, 0.1, 0.5, 0.5, -0.7, 1.1, 3.0, -2.0, 0.0, 0.2,
            ],
            [3, 4],
        ),
        &device,
    );
    let labels = [2usize, 0, 3];
    let targets = mix::mixed_targets(&labels, 4, 1.0, 0.0, &device).expect("targets");
    let soft: f32 = soft_cross_entropy(logits.clone(), targets)
        .expect("loss")
        .into_scalar();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0, 3], [3]), &device);
    let hard: f32 = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits.clone(), idx)
        .into_scalar();
    assert!((soft - hard).abs() < 1e-6, "soft {soft} vs hard {hard}");
    // Smoothed targets give a different (larger, for confident logits) loss.
    let smooth = mix::mixed_targets(&labels, 4, 1.0, 0.2, &device).expect("targets");
    let s: f32 = soft_cross_entropy(logits.clone(), smooth)
        .expect("loss")
        .into_scalar();
    assert!((s - soft).abs() > 1e-3);
    let wrong = Tensor::<2>::zeros([3, 5], &device);
    assert!(soft_cross_entropy(logits, wrong).is_err());
}

#[test]
fn batcher_decodes_augments_and_mixes() {
    let device = Device::flex();
    let imgs = images(4, 32, 32);
    let mut png = Vec::new();
    imgs[0]
        .to_rgb_image()
        .expect("rgb")
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let items: Vec<LabeledImage> = imgs
        .iter()
        .enumerate()
        .map(|(i, img)| LabeledImage {
            image: if i == 0 {
                ImageSource::Encoded(png.clone())
            } else {
                ImageSource::Pixels(img.clone())
            },
            label: i % 3,
            index: 10 + i as u64,
        })
        .collect();
    let p: Transform = pipelines::cifar().into();
    let cpu = AugmentBatcher::new(p.clone(), AugmentOn::Cpu, 3, 5);
    let dev = AugmentBatcher::new(p.clone(), AugmentOn::Device, 3, 5);
    for b in [&cpu, &dev] {
        b.set_epoch(4);
    }
    let a = cpu.try_batch(items.clone(), &device).expect("cpu batch");
    let d = dev.try_batch(items.clone(), &device).expect("device batch");
    assert_eq!(a.images.dims(), [4, 3, 32, 32]);
    let (max, frac) = diff(&values(a.images.clone()), &values(d.images), 1e-5);
    assert!(
        max <= 0.0079 && frac <= 0.01,
        "CPU vs device batcher: {max} {frac}"
    );
    // Sample 1 equals the pipeline applied with its own index as seed.
    let one = p
        .apply_seeded(imgs[1].clone(), 5, 4, 11)
        .expect("cpu")
        .into_f32()
        .expect("f32");
    assert_eq!(&values(a.images)[3 * 1024..6 * 1024], one.as_slice());
    let t: Vec<f32> = a.targets.into_data().try_to_vec::<f32>().expect("f32");
    assert_eq!(&t[..6], &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);

    let mixing = AugmentBatcher::new(p.clone(), AugmentOn::Cpu, 3, 5).with_mix(BatchMix {
        cutmix_alpha: None,
        ..BatchMix::default()
    });
    let m = mixing.try_batch(items.clone(), &device).expect("mixed");
    let t: Vec<f32> = m.targets.into_data().try_to_vec::<f32>().expect("f32");
    assert!(
        t.iter().any(|&v| v > 0.0 && v < 1.0),
        "targets are mixed: {t:?}"
    );

    // A corrupt image names its item; a label out of range is an error.
    let mut bad = items.clone();
    bad[2].image = ImageSource::Encoded(vec![0x89, b'P', b'N', b'G', 0, 1]);
    let e = cpu.try_batch(bad, &device).expect_err("corrupt");
    assert!(matches!(e, AugmentError::Decode { index: 12, .. }), "{e}");
    let mut bad = items;
    bad[1].label = 3;
    assert!(cpu.try_batch(bad, &device).is_err());
    assert!(cpu.try_batch(Vec::new(), &device).is_err());
}
