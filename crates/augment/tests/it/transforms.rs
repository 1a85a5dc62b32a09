//! Behaviour of the random transforms: sampling, replay, reproducibility, bad input.

use kindling_augment::transforms::{
    CenterCrop, ColorJitter, EraseValue, Normalize, RandomApply, RandomChoice, RandomCrop,
    RandomErasing, RandomHorizontalFlip, RandomKeyword, RandomResizedCrop, RandomRotation,
    RandomVerticalFlip, Resize, ToTensor,
};
use kindling_augment::{
    Applied, Augment, AugmentError, Compose, Image, Sample, Transform, pipelines, sample_rng,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A u8 image with random content.
pub fn noise_image(c: usize, h: usize, w: usize, seed: u64) -> Image<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..c * h * w).map(|_| rng.random::<u8>()).collect();
    Image::from_chw(data, c, h, w).expect("valid shape")
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn unsupported_reason(r: Result<Sample, AugmentError>) -> String {
    match r {
        Err(AugmentError::UnsupportedInput { reason, .. }) => reason,
        other => panic!("expected UnsupportedInput, got {other:?}"),
    }
}

#[test]
fn seed_pipelines_give_normalised_f32() {
    let out = pipelines::cifar()
        .apply(noise_image(3, 32, 32, 1), &mut rng(0))
        .expect("cifar");
    assert_eq!((out.shape(), out.dtype()), ([3, 32, 32], "f32"));
    let Sample::F32(img) = out else { panic!("f32") };
    // Normalize(0.5, 0.5) maps [0, 1] to [-1, 1].
    assert!(img.as_slice().iter().all(|v| (-1.0..=1.0).contains(v)));
    let out = pipelines::imagenet()
        .apply(noise_image(3, 100, 150, 2), &mut rng(0))
        .expect("imagenet");
    assert_eq!((out.shape(), out.dtype()), ([3, 224, 224], "f32"));
}

/// A pipeline exercising every random transform, including the containers.
fn busy_pipeline() -> Compose {
    Compose::new([
        RandomChoice::new([
            RandomCrop::new(20).padding(2).into(),
            RandomResizedCrop::new(20).into(),
        ])
        .into(),
        RandomApply::new(
            [
                RandomRotation::new(30.0).into(),
                RandomVerticalFlip::default().into(),
            ],
            0.5,
        )
        .into(),
        RandomHorizontalFlip::default().into(),
        ColorJitter::new()
            .brightness(0.3)
            .contrast(0.3)
            .saturation(0.3)
            .hue(0.1)
            .into(),
        ToTensor.into(),
        RandomErasing::new()
            .p(0.8)
            .value(EraseValue::Random(RandomKeyword::Random))
            .into(),
        RandomErasing::new().value([0.1, 0.2, 0.3]).into(),
        Normalize::new([0.5; 3], [0.25; 3]).into(),
    ])
}

#[test]
fn replay_reproduces_the_output_exactly() {
    let pipelines: [(&str, Compose, [usize; 3]); 3] = [
        ("cifar", pipelines::cifar(), [3, 32, 32]),
        ("imagenet", pipelines::imagenet(), [3, 64, 80]),
        ("busy", busy_pipeline(), [3, 24, 24]),
    ];
    for (name, p, [c, h, w]) in pipelines {
        for seed in 0..20 {
            let img = noise_image(c, h, w, seed);
            let (out, params) = p
                .apply_recorded(img.clone(), &mut rng(seed))
                .expect("apply");
            assert!(!params.is_empty());
            // Recording does not change the draws.
            assert_eq!(p.apply(img.clone(), &mut rng(seed)).expect("apply"), out);
            assert_eq!(
                p.replay(img.clone(), &params).expect("replay"),
                out,
                "{name}"
            );
            // Replay also works from serialised parameters.
            let text = serde_json::to_string(&params).expect("serialise");
            let back: Vec<Applied> = serde_json::from_str(&text).expect("parse");
            assert_eq!(
                p.replay(img, &back).expect("replay"),
                out,
                "{name} via JSON"
            );
        }
    }
}

#[test]
fn replay_rejects_foreign_or_wrong_length_params() {
    let img = noise_image(3, 32, 32, 0);
    let (_, params) = pipelines::cifar()
        .apply_recorded(img.clone(), &mut rng(1))
        .expect("apply");
    let imagenet = pipelines::imagenet();
    assert!(imagenet.replay(img.clone(), &params).is_err());
    let cifar = pipelines::cifar();
    assert!(cifar.replay(img.clone(), &params[..1]).is_err());
    let mut extra = params.clone();
    extra.push(Applied::RandomHorizontalFlip { flip: true });
    assert!(cifar.replay(img.clone(), &extra).is_err());
    // Out-of-range replayed values are errors, not panics.
    let mut bad = params;
    bad[0] = Applied::RandomCrop { top: 100, left: 0 };
    assert!(cifar.replay(img, &bad).is_err());
}

#[test]
fn seeded_output_is_independent_of_thread_order() {
    let p = pipelines::cifar();
    let images: Vec<Image<u8>> = (0..16).map(|i| noise_image(3, 32, 32, 100 + i)).collect();
    let sequential: Vec<Sample> = images
        .iter()
        .enumerate()
        .map(|(i, img)| p.apply_seeded(img.clone(), 7, 3, i as u64).expect("apply"))
        .collect();
    // The same samples in reverse order, on four threads.
    let mut parallel: Vec<(usize, Sample)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (p, images) = (&p, &images);
                s.spawn(move || {
                    (0..16)
                        .rev()
                        .filter(|i| i % 4 == t)
                        .map(|i| {
                            let img = images[i].clone();
                            (i, p.apply_seeded(img, 7, 3, i as u64).expect("apply"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    parallel.sort_by_key(|(i, _)| *i);
    let parallel: Vec<Sample> = parallel.into_iter().map(|(_, s)| s).collect();
    assert_eq!(parallel, sequential);
    // A different epoch changes the augmentation.
    let other_epoch = p.apply_seeded(images[0].clone(), 7, 4, 0).expect("apply");
    assert_ne!(other_epoch, sequential[0]);
    // apply_seeded is apply with sample_rng.
    let explicit = p
        .apply(images[0].clone(), &mut sample_rng(7, 3, 0))
        .expect("apply");
    assert_eq!(explicit, sequential[0]);
}

#[test]
fn gray_and_rgba_input_to_color_jitter_is_an_error() {
    let jitter = ColorJitter::new().brightness(0.2);
    for c in [1, 4] {
        let reason = unsupported_reason(jitter.apply(noise_image(c, 8, 8, 0), &mut rng(0)));
        assert!(reason.contains(&format!("got {c}")), "{reason}");
        let reason =
            unsupported_reason(pipelines::cifar().apply(noise_image(c, 32, 32, 0), &mut rng(0)));
        assert!(reason.contains("RGB"), "{reason}");
    }
    // Geometric transforms accept any channel count.
    let out = RandomCrop::new(4)
        .apply(noise_image(4, 8, 8, 0), &mut rng(0))
        .expect("crop");
    assert_eq!(out.shape(), [4, 4, 4]);
}

#[test]
fn wrong_dtype_is_an_error() {
    let u8_img = noise_image(3, 8, 8, 0);
    let f32_img = kindling_augment::functional::to_f32(&u8_img);
    let n = Normalize::new([0.5; 3], [0.5; 3]);
    assert!(unsupported_reason(n.apply(u8_img.clone(), &mut rng(0))).contains("ToTensor"));
    assert!(unsupported_reason(ToTensor.apply(f32_img, &mut rng(0))).contains("u8"));
    let e = RandomErasing::new().p(1.0);
    assert!(unsupported_reason(e.apply(u8_img.clone(), &mut rng(0))).contains("f32"));
    assert!(Sample::from(u8_img).into_f32().is_err());
}

#[test]
fn crops_larger_than_the_image() {
    let img = noise_image(3, 10, 12, 0);
    let reason = unsupported_reason(RandomCrop::new(16).apply(img.clone(), &mut rng(0)));
    assert!(reason.contains("pad_if_needed"), "{reason}");
    let out = RandomCrop::new(16)
        .pad_if_needed(true)
        .apply(img.clone(), &mut rng(0))
        .expect("padded");
    assert_eq!(out.shape(), [3, 16, 16]);
    // Padding 3 makes 16x18, enough for 16x16.
    let out = RandomCrop::new(16)
        .padding(3)
        .apply(img.clone(), &mut rng(0))
        .expect("padded");
    assert_eq!(out.shape(), [3, 16, 16]);
    assert!(CenterCrop::new(11).apply(img, &mut rng(0)).is_err());
}

#[test]
fn zero_size_images_cannot_be_built() {
    assert!(Image::<u8>::from_chw(vec![], 3, 0, 5).is_err());
    assert!(Image::<f32>::filled(0.0, 0, 2, 2).is_err());
}

#[test]
fn bad_parameters_from_builders_error_at_apply() {
    let img = noise_image(3, 8, 8, 0);
    let cases: Vec<(Transform, &str)> = vec![
        (
            RandomHorizontalFlip::new(f64::NAN).into(),
            "RandomHorizontalFlip.p",
        ),
        (RandomVerticalFlip::new(1.01).into(), "RandomVerticalFlip.p"),
        (
            ColorJitter::new().saturation(-1.0).into(),
            "ColorJitter.saturation",
        ),
        (
            RandomResizedCrop::new(4).ratio([2.0, 1.0]).into(),
            "RandomResizedCrop.ratio",
        ),
        (
            RandomResizedCrop::new(4).scale([-0.1, 1.0]).into(),
            "RandomResizedCrop.scale",
        ),
        (
            RandomRotation::new(f64::INFINITY).into(),
            "RandomRotation.degrees",
        ),
        (
            RandomRotation::new(5.0).center([f64::NAN, 0.0]).into(),
            "RandomRotation.center",
        ),
        (RandomCrop::new(0).into(), "RandomCrop.size"),
        (Resize::new([0, 4]).into(), "Resize.size"),
        (RandomApply::new([], -0.5).into(), "RandomApply.p"),
        (
            RandomChoice::new([ToTensor.into()]).weights([0.0]).into(),
            "RandomChoice.p",
        ),
        (
            Compose::new([RandomHorizontalFlip::new(2.0).into()]).into(),
            "RandomHorizontalFlip.p",
        ),
    ];
    for (t, field) in cases {
        match t.apply(img.clone(), &mut rng(0)) {
            Err(AugmentError::InvalidParameter { name, .. }) => assert_eq!(name, field),
            other => panic!("{field}: expected InvalidParameter, got {other:?}"),
        }
        assert!(t.validate().is_err());
    }
}

#[test]
fn flip_probabilities_are_respected() {
    let img = noise_image(3, 5, 7, 0);
    let flipped = kindling_augment::functional::horizontal_flip(&img);
    for seed in 0..20 {
        let always = RandomHorizontalFlip::new(1.0)
            .apply(img.clone(), &mut rng(seed))
            .expect("ok");
        assert_eq!(always, Sample::U8(flipped.clone()));
        let never = RandomHorizontalFlip::new(0.0)
            .apply(img.clone(), &mut rng(seed))
            .expect("ok");
        assert_eq!(never, Sample::U8(img.clone()));
    }
    let mut r = rng(3);
    let n = (0..2000)
        .filter(|_| {
            let (_, p) = RandomHorizontalFlip::default()
                .apply_recorded(img.clone(), &mut r)
                .expect("ok");
            p == [Applied::RandomHorizontalFlip { flip: true }]
        })
        .count();
    assert!((900..1100).contains(&n), "{n} of 2000 flipped");
}

#[test]
fn color_jitter_draws_within_ranges_in_random_order() {
    let j = ColorJitter::new()
        .brightness(0.2)
        .contrast([0.5, 0.6])
        .hue(0.05);
    let img = noise_image(3, 4, 4, 0);
    let mut r = rng(9);
    let mut orders = std::collections::HashSet::new();
    for _ in 0..500 {
        let (_, p) = j.apply_recorded(img.clone(), &mut r).expect("ok");
        let [
            Applied::ColorJitter {
                order,
                brightness,
                contrast,
                saturation,
                hue,
            },
        ] = p.as_slice()
        else {
            panic!("one ColorJitter entry: {p:?}");
        };
        let b = brightness.expect("enabled");
        let c = contrast.expect("enabled");
        let h = hue.expect("enabled");
        assert!((0.8..1.2).contains(&b) && (0.5..0.6).contains(&c) && (-0.05..0.05).contains(&h));
        assert!(saturation.is_none());
        orders.insert(*order);
    }
    assert_eq!(orders.len(), 24, "all permutations occur");
}

#[test]
fn random_resized_crop_samples_scale_and_ratio() {
    let t = RandomResizedCrop::new(8)
        .scale([0.25, 0.5])
        .ratio([0.5, 2.0]);
    let img = noise_image(1, 100, 100, 0);
    let mut r = rng(5);
    for _ in 0..300 {
        let (out, p) = t.apply_recorded(img.clone(), &mut r).expect("ok");
        assert_eq!(out.shape(), [1, 8, 8]);
        let [
            Applied::RandomResizedCrop {
                top,
                left,
                height,
                width,
            },
        ] = p.as_slice()
        else {
            panic!("{p:?}");
        };
        let area = (height * width) as f64 / 10_000.0;
        let ratio = *width as f64 / *height as f64;
        // Rounding the sides to integers moves area and ratio a little.
        assert!((0.23..0.52).contains(&area), "area {area}");
        assert!((0.45..2.2).contains(&ratio), "ratio {ratio}");
        assert!(top + height <= 100 && left + width <= 100);
    }
}

#[test]
fn random_erasing_writes_the_value() {
    let img = kindling_augment::functional::to_f32(&noise_image(3, 20, 20, 0));
    let t = RandomErasing::new().p(1.0).value([0.25, 0.5, 0.75]);
    let (out, p) = t.apply_recorded(img.clone(), &mut rng(1)).expect("ok");
    let [
        Applied::RandomErasing {
            erase: true,
            top,
            left,
            height,
            width,
            noise_seed: None,
        },
    ] = p.as_slice()
    else {
        panic!("{p:?}");
    };
    let Sample::F32(out) = out else { panic!("f32") };
    for c in 0..3 {
        for y in 0..20 {
            for x in 0..20 {
                let inside =
                    (*top..top + height).contains(&y) && (*left..left + width).contains(&x);
                let want = if inside {
                    [0.25, 0.5, 0.75][c]
                } else {
                    img.get(c, y, x)
                };
                assert_eq!(out.get(c, y, x), want);
            }
        }
    }
    // A per-channel value of the wrong length is an error.
    let bad = RandomErasing::new().p(1.0).value([0.1, 0.2]);
    assert!(bad.apply(img, &mut rng(0)).is_err());
}

#[test]
fn random_choice_follows_weights() {
    let t = RandomChoice::new([ToTensor.into(), ToTensor.into(), ToTensor.into()])
        .weights([0.0, 1.0, 3.0]);
    let img = noise_image(1, 1, 1, 0);
    let mut r = rng(0);
    let mut counts = [0usize; 3];
    for _ in 0..4000 {
        let (_, p) = t.apply_recorded(img.clone(), &mut r).expect("ok");
        let [Applied::RandomChoice { index }] = p.as_slice() else {
            panic!("{p:?}");
        };
        counts[*index] += 1;
    }
    assert_eq!(counts[0], 0);
    assert!((900..1100).contains(&counts[1]), "{counts:?}");
}

#[test]
fn resize_and_rotation_shapes() {
    let img = noise_image(3, 30, 40, 0);
    let out = Resize::new(15).apply(img.clone(), &mut rng(0)).expect("ok");
    assert_eq!(out.shape(), [3, 15, 20]);
    let out = RandomRotation::new(45.0)
        .apply(img.clone(), &mut rng(0))
        .expect("ok");
    assert_eq!(out.shape(), [3, 30, 40]);
    let out = RandomRotation::new([90.0, 90.0])
        .expand(true)
        .apply(img, &mut rng(0))
        .expect("ok");
    assert_eq!(out.shape(), [3, 40, 30]);
}

/// Sizes whose arithmetic would overflow are errors, never panics or wrapped allocations.
#[test]
fn overflowing_sizes_are_errors() {
    use kindling_augment::functional::{self as f, Padding, PaddingMode};
    assert!(Image::<u8>::from_chw(vec![], 1 << 32, 1 << 32, 2).is_err());
    let img = Image::<u8>::filled(0, 3, 4, 4).expect("valid image");
    let padding = Padding {
        left: 0,
        top: usize::MAX,
        right: 0,
        bottom: 1,
    };
    assert!(f::pad(&img, padding, PaddingMode::Constant, &[0]).is_err());
    let batch = vec![Image::<f32>::filled(0.0, 3, 2, 2).expect("valid image"); 2];
    assert!(f::mixup(&batch, &[0, 1], 0.5, usize::MAX).is_err());
}
