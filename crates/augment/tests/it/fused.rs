//! The fused fast paths of `Compose` (CIFAR and ImageNet shapes) against the op-by-op path:
//! same draws for the same seed, and bit-identical outputs for the same parameters.

use std::path::{Path, PathBuf};

use kindling_augment::transforms::{
    ColorJitter, Normalize, RandomCrop, RandomHorizontalFlip, RandomResizedCrop, RandomRotation,
    ToTensor,
};
use kindling_augment::{
    Applied, Augment, Compose, Image, Sample, Transform, apply_batch, pipelines, sample_rng,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn reference_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KINDLING_AUGMENT_REFERENCE") {
        return PathBuf::from(dir);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|d| d.join("shared/conformance/augment"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| here.join("../../../shared/conformance/augment"))
}

/// The conformance photos of one size, if the reference folder is there.
fn photos(suffix: &str) -> Vec<Image<u8>> {
    let dir = reference_dir().join("images");
    ["astronaut", "chelsea", "coffee"]
        .iter()
        .filter_map(|n| image::open(dir.join(format!("{n}_{suffix}.png"))).ok())
        .map(|img| Image::try_from(&img.to_rgb8()).expect("non-empty"))
        .collect()
}

fn noise(seed: u64, h: usize, w: usize) -> Image<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    Image::from_chw((0..3 * h * w).map(|_| rng.random()).collect(), 3, h, w).expect("valid")
}

/// The same pipeline with its random transforms nested in an inner `Compose`, which never
/// matches a fused shape: the op-by-op path.
fn op_by_op(p: &Compose) -> Compose {
    let n = p.transforms.len() - 2;
    let mut t = vec![Transform::from(Compose::new(p.transforms[..n].to_vec()))];
    t.extend(p.transforms[n..].iter().cloned());
    Compose::new(t)
}

/// Fused and op-by-op outputs are identical for `seeds`: the same parameters are drawn, and
/// replaying them through either path gives the same image.
fn check(p: &Compose, img: &Image<u8>, seeds: std::ops::Range<u64>) {
    let slow = op_by_op(p);
    for s in seeds {
        let (fast_out, fast_params) = p
            .apply_recorded(img.clone(), &mut sample_rng(s, 1, 2))
            .expect("fused runs");
        let (slow_out, slow_params) = slow
            .apply_recorded(img.clone(), &mut sample_rng(s, 1, 2))
            .expect("op by op runs");
        assert_eq!(fast_params, slow_params, "seed {s}: different draws");
        assert_eq!(fast_out, slow_out, "seed {s}: params {fast_params:?}");
        assert_eq!(
            p.replay(img.clone(), &fast_params).expect("replay"),
            fast_out
        );
    }
}

fn cifar_like(crop: RandomCrop, jitter: ColorJitter, mean: [f64; 3], std: [f64; 3]) -> Compose {
    Compose::new([
        crop.into(),
        RandomHorizontalFlip::default().into(),
        jitter.into(),
        ToTensor.into(),
        Normalize::new(mean, std).into(),
    ])
}

#[test]
fn fused_cifar_equals_op_by_op() {
    let photos = photos("32x32");
    assert!(
        !photos.is_empty() || std::env::var_os("KINDLING_AUGMENT_REFERENCE").is_none(),
        "KINDLING_AUGMENT_REFERENCE is set but has no 32x32 photos"
    );
    let p = pipelines::cifar();
    for img in photos.iter().chain(&[noise(1, 32, 32)]) {
        check(&p, img, 0..400);
    }
    // Brighter/darker ranges that saturate, padding into most of the crop, fills, odd sizes.
    let variants = [
        cifar_like(
            RandomCrop::new(32).padding(4),
            ColorJitter::new()
                .brightness([0.0, 3.0])
                .contrast([0.0, 3.0]),
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
        ),
        cifar_like(
            RandomCrop::new([20, 28])
                .padding([3, 9, 1, 0])
                .fill(vec![10.0, 200.0, 300.0]),
            ColorJitter::new().contrast(0.9),
            [0.5; 3],
            [0.5; 3],
        ),
        cifar_like(
            RandomCrop::new(40).pad_if_needed(true).fill(77.7),
            ColorJitter::new().brightness(0.5),
            [0.1, 0.2, 0.3],
            [0.3, 0.2, 0.1],
        ),
        cifar_like(
            RandomCrop::new(8).padding(20),
            ColorJitter::new(),
            [0.5; 3],
            [0.25; 3],
        ),
    ];
    for (k, p) in variants.iter().enumerate() {
        for img in photos.iter().chain(&[noise(2, 32, 32), noise(3, 29, 35)]) {
            check(p, img, 100 * k as u64..100 * k as u64 + 100);
        }
    }
}

#[test]
fn fused_imagenet_equals_op_by_op() {
    let photos = photos("500x375");
    let p = pipelines::imagenet();
    for img in photos.iter().chain(&[noise(4, 120, 90)]) {
        check(&p, img, 0..12);
    }
    let variant = Compose::new([
        RandomResizedCrop::new([90, 70])
            .antialias(false)
            .scale([0.01, 1.0])
            .into(),
        RandomHorizontalFlip::new(0.5).into(),
        ColorJitter::new()
            .brightness([0.0, 2.5])
            .contrast([0.0, 2.5])
            .into(),
        RandomRotation::new(180.0)
            .fill(vec![255.0, 1.5, 2.5])
            .into(),
        ToTensor.into(),
        Normalize::new([0.5; 3], [0.5; 3]).into(),
    ]);
    for img in photos.iter().chain(&[noise(5, 50, 80)]) {
        check(&variant, img, 0..40);
    }
}

#[test]
fn fused_paths_replay_exact_angles_and_other_jitter_params() {
    let img = noise(6, 60, 70);
    let p2 = pipelines::imagenet();
    let slow2 = op_by_op(&p2);
    let rrc = Applied::RandomResizedCrop {
        top: 3,
        left: 5,
        height: 50,
        width: 41,
    };
    let jitter = |saturation: Option<f64>| Applied::ColorJitter {
        order: [3, 1, 2, 0],
        brightness: Some(1.1),
        contrast: Some(0.9),
        saturation,
        hue: None,
    };
    for angle in [0.0, 90.0, -90.0, 180.0, 270.0, 360.0, 12.5] {
        for flip in [false, true] {
            for saturation in [None, Some(1.4)] {
                let params = vec![
                    rrc.clone(),
                    Applied::RandomHorizontalFlip { flip },
                    jitter(saturation),
                    Applied::RandomRotation { angle },
                ];
                assert_eq!(
                    p2.replay(img.clone(), &params).expect("fused"),
                    slow2.replay(img.clone(), &params).expect("op by op"),
                    "{angle} {flip} {saturation:?}"
                );
            }
        }
    }
    let p1 = pipelines::cifar();
    let params = vec![
        Applied::RandomCrop { top: 7, left: 0 },
        Applied::RandomHorizontalFlip { flip: true },
        jitter(Some(0.3)),
    ];
    let img = noise(7, 32, 32);
    assert_eq!(
        p1.replay(img.clone(), &params).expect("fused"),
        op_by_op(&p1)
            .replay(img.clone(), &params)
            .expect("op by op")
    );
    // Errors stay those of the op-by-op path.
    let bad = vec![
        Applied::RandomCrop { top: 7, left: 0 },
        Applied::RandomHorizontalFlip { flip: true },
        Applied::ColorJitter {
            order: [0, 1, 2, 3],
            brightness: Some(-1.0),
            contrast: None,
            saturation: None,
            hue: None,
        },
    ];
    assert!(p1.replay(img.clone(), &bad).is_err());
    assert!(
        p1.apply(
            Image::<u8>::filled(0, 1, 32, 32).expect("valid"),
            &mut sample_rng(0, 0, 0)
        )
        .is_err()
    );
    let gray = Sample::from(Image::<u8>::filled(0, 1, 32, 32).expect("valid"));
    assert_eq!(
        p1.apply(gray.clone(), &mut sample_rng(0, 0, 0))
            .map_err(|e| e.to_string()),
        op_by_op(&p1)
            .apply(gray, &mut sample_rng(0, 0, 0))
            .map_err(|e| e.to_string())
    );
}

#[test]
fn batch_stacks_per_sample_results() {
    let imgs: Vec<Image<u8>> = (0..37).map(|k| noise(k, 32, 32)).collect();
    let p = pipelines::cifar();
    let b = apply_batch(&p, &imgs, 11, 2, 100).expect("batch runs");
    assert_eq!(b.shape, [37, 3, 32, 32]);
    for (i, img) in imgs.iter().enumerate() {
        let x = p
            .apply_seeded(img.clone(), 11, 2, 100 + i as u64)
            .expect("runs")
            .into_f32()
            .expect("f32");
        assert_eq!(&b.data[i * 3072..(i + 1) * 3072], x.as_slice(), "image {i}");
    }
    assert_eq!(apply_batch(&p, &[], 0, 0, 0).expect("empty").shape, [0; 4]);
    // A pipeline that ends in u8 is an error, not a panic.
    let u8_only = Compose::new([RandomHorizontalFlip::default().into()]);
    assert!(apply_batch(&u8_only, &imgs, 0, 0, 0).is_err());
}
