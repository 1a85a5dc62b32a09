//! Property tests: over random image sizes (1x1 and smaller than the crop included), valid
//! parameters and seeds, every transform returns an error or the shape and dtype it
//! promises, and never panics; seeded pipelines are reproducible.

use kindling_augment::functional::{Interpolation, PaddingMode, to_f32};
use kindling_augment::transforms::{
    CenterCrop, ColorJitter, EraseValue, Normalize, RandomApply, RandomChoice, RandomCrop,
    RandomErasing, RandomHorizontalFlip, RandomKeyword, RandomResizedCrop, RandomRotation,
    RandomVerticalFlip, Resize, Size, ToTensor,
};
use kindling_augment::{Augment, Compose, Sample, Transform, pipelines, sample_rng};
use proptest::prelude::*;

use crate::transforms::noise_image;

/// `(channels, height, width, content seed)`.
fn image_dims() -> impl Strategy<Value = (usize, usize, usize, u64)> {
    (
        prop_oneof![Just(1usize), Just(3), Just(4)],
        1usize..40,
        1usize..40,
        any::<u64>(),
    )
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        (1usize..48).prop_map(Size::Single),
        (1usize..48, 1usize..48).prop_map(|(h, w)| Size::Pair([h, w])),
    ]
}

fn prob() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64]
}

fn interpolation() -> impl Strategy<Value = Interpolation> {
    prop_oneof![Just(Interpolation::Nearest), Just(Interpolation::Bilinear)]
}

fn span(lo: f64, hi: f64) -> impl Strategy<Value = [f64; 2]> {
    (lo..hi, lo..hi).prop_map(|(a, b)| if a <= b { [a, b] } else { [b, a] })
}

fn random_crop() -> impl Strategy<Value = RandomCrop> {
    (
        size(),
        proptest::option::of(0usize..6),
        any::<bool>(),
        prop_oneof![
            Just(PaddingMode::Constant),
            Just(PaddingMode::Edge),
            Just(PaddingMode::Reflect),
            Just(PaddingMode::Symmetric)
        ],
    )
        .prop_map(|(s, pad, needed, mode)| {
            let mut t = RandomCrop::new(s).pad_if_needed(needed).padding_mode(mode);
            if let Some(p) = pad {
                t = t.padding(p);
            }
            t
        })
}

fn color_jitter() -> impl Strategy<Value = ColorJitter> {
    (0.0..1.0f64, span(0.0, 2.0), 0.0..1.0f64, 0.0..=0.5f64).prop_map(|(b, c, s, h)| {
        ColorJitter::new()
            .brightness(b)
            .contrast(c)
            .saturation(s)
            .hue(h)
    })
}

fn random_resized_crop() -> impl Strategy<Value = RandomResizedCrop> {
    (
        size(),
        span(0.01, 1.5),
        span(0.2, 5.0),
        interpolation(),
        any::<bool>(),
    )
        .prop_map(|(s, scale, ratio, i, aa)| {
            RandomResizedCrop::new(s)
                .scale(scale)
                .ratio(ratio)
                .interpolation(i)
                .antialias(aa)
        })
}

fn random_rotation() -> impl Strategy<Value = RandomRotation> {
    (
        0.0..360.0f64,
        interpolation(),
        any::<bool>(),
        proptest::option::of((-5.0..45.0f64, -5.0..45.0f64)),
    )
        .prop_map(|(d, i, expand, center)| {
            let mut t = RandomRotation::new(d)
                .interpolation(i)
                .expand(expand)
                .fill(3.0);
            if let Some((x, y)) = center {
                t = t.center([x, y]);
            }
            t
        })
}

fn random_erasing() -> impl Strategy<Value = RandomErasing> {
    (
        prob(),
        span(0.0, 1.0),
        span(0.1, 10.0),
        prop_oneof![
            Just(EraseValue::Single(0.5)),
            Just(EraseValue::PerChannel(vec![0.1, 0.2, 0.3])),
            Just(EraseValue::Random(RandomKeyword::Random)),
        ],
    )
        .prop_map(|(p, scale, ratio, value)| {
            RandomErasing::new()
                .p(p)
                .scale(scale)
                .ratio(ratio)
                .value(value)
        })
}

/// Any valid transform that takes u8 input (everything but Normalize and RandomErasing).
fn u8_transform() -> impl Strategy<Value = Transform> {
    prop_oneof![
        random_crop().prop_map(Transform::from),
        prob().prop_map(|p| RandomHorizontalFlip::new(p).into()),
        prob().prop_map(|p| RandomVerticalFlip::new(p).into()),
        color_jitter().prop_map(Transform::from),
        random_resized_crop().prop_map(Transform::from),
        random_rotation().prop_map(Transform::from),
        (size(), interpolation()).prop_map(|(s, i)| Resize::new(s).interpolation(i).into()),
        size().prop_map(|s| CenterCrop::new(s).into()),
        Just(ToTensor.into()),
    ]
}

/// Checks the shape and dtype promise of `t` for an input of shape `[c, h, w]` and dtype `dt`.
fn check_promise(t: &Transform, [c, h, w]: [usize; 3], dt: &str, out: &Sample) {
    let same_dtype = |d: &str| assert_eq!(d, dt, "{t:?} changed the dtype");
    match t {
        Transform::RandomCrop(t) => {
            let [th, tw] = t.size.square_or_pair();
            assert_eq!(out.shape(), [c, th, tw]);
            same_dtype(out.dtype());
        }
        Transform::RandomResizedCrop(t) => {
            let [th, tw] = t.size.square_or_pair();
            assert_eq!(out.shape(), [c, th, tw]);
            same_dtype(out.dtype());
        }
        Transform::CenterCrop(t) => {
            let [th, tw] = t.size.square_or_pair();
            assert_eq!(out.shape(), [c, th, tw]);
            same_dtype(out.dtype());
        }
        Transform::Resize(t) => {
            let [oh, ow] = t.output_size(h, w);
            assert_eq!(out.shape(), [c, oh, ow]);
            if let Size::Single(n) = t.size {
                assert_eq!(oh.min(ow), n, "shorter edge");
            }
            same_dtype(out.dtype());
        }
        Transform::RandomRotation(t) if t.expand => {
            assert_eq!(out.shape()[0], c);
            same_dtype(out.dtype());
        }
        Transform::ToTensor(_) => {
            assert_eq!((out.shape(), out.dtype()), ([c, h, w], "f32"));
        }
        _ => {
            assert_eq!(out.shape(), [c, h, w], "{t:?}");
            same_dtype(out.dtype());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn u8_transforms_keep_their_promises(
        (c, h, w, content) in image_dims(),
        t in u8_transform(),
        seed in any::<u64>(),
    ) {
        let img = noise_image(c, h, w, content);
        let result = t.apply(img, &mut sample_rng(seed, 0, 0));
        match (&t, result) {
            (_, Ok(out)) => check_promise(&t, [c, h, w], "u8", &out),
            // The errors a valid transform may give, and only for the inputs that cause them.
            (Transform::RandomCrop(rc), Err(_)) => {
                let [th, tw] = rc.size.square_or_pair();
                let (pv, pw) = rc
                    .padding
                    .map_or((0, 0), |p| (p.top + p.bottom, p.left + p.right));
                prop_assert!(!rc.pad_if_needed && (h + pv < th || w + pw < tw));
            }
            (Transform::ColorJitter(_), Err(_)) => prop_assert_ne!(c, 3),
            (Transform::CenterCrop(cc), Err(_)) => {
                let [th, tw] = cc.size.square_or_pair();
                prop_assert!(th > h || tw > w);
            }
            // Shorter-edge resize of a very thin image can round its other side to 0.
            (Transform::Resize(r), Err(_)) => {
                let out = r.output_size(h, w);
                prop_assert!(out.contains(&0), "{:?} -> {:?}", r, out);
            }
            (t, Err(e)) => prop_assert!(false, "{t:?} on {c}x{h}x{w}: {e}"),
        }
    }

    #[test]
    fn f32_transforms_keep_their_promises(
        (c, h, w, content) in image_dims(),
        erasing in random_erasing(),
        seed in any::<u64>(),
    ) {
        let img = to_f32(&noise_image(c, h, w, content));
        let result = erasing.apply(img.clone(), &mut sample_rng(seed, 1, 2));
        match result {
            Ok(out) => prop_assert_eq!((out.shape(), out.dtype()), ([c, h, w], "f32")),
            Err(e) => {
                // Only a per-channel value of the wrong length.
                prop_assert!(matches!(erasing.value, EraseValue::PerChannel(_)) && c != 3, "{e}");
            }
        }
        let norm = Normalize::new(vec![0.5; c], vec![0.25; c]);
        let out = norm.apply(img, &mut sample_rng(seed, 0, 0)).expect("normalize");
        prop_assert_eq!((out.shape(), out.dtype()), ([c, h, w], "f32"));
    }

    #[test]
    fn random_pipelines_never_panic_and_replay(
        (c, h, w, content) in image_dims(),
        ts in proptest::collection::vec(u8_transform(), 0..5),
        apply_p in prob(),
        seed in any::<u64>(),
    ) {
        // Containers around random transforms; errors are fine, panics are not.
        let split = ts.len() / 2;
        let pipeline = Compose::new([
            RandomApply::new(ts[..split].to_vec(), apply_p).into(),
            if ts.len() > split {
                RandomChoice::new(ts[split..].to_vec()).into()
            } else {
                Compose::default().into()
            },
        ]);
        let img = noise_image(c, h, w, content);
        if let Ok((out, params)) = pipeline.apply_recorded(img.clone(), &mut sample_rng(seed, 0, 0)) {
            prop_assert_eq!(pipeline.replay(img, &params).expect("replay"), out);
        }
    }

    #[test]
    fn seeded_cifar_is_reproducible(
        content in any::<u64>(),
        (h, w) in (24usize..40, 24usize..40),
        seed in any::<u64>(),
        epoch in 0u64..1000,
        index in any::<u64>(),
    ) {
        let p = pipelines::cifar();
        let img = noise_image(3, h, w, content);
        let a = p.apply_seeded(img.clone(), seed, epoch, index).expect("cifar");
        let b = p.apply_seeded(img.clone(), seed, epoch, index).expect("cifar");
        prop_assert_eq!((a.shape(), a.dtype()), ([3, 32, 32], "f32"));
        prop_assert_eq!(&a, &b);
        // Another index gives another augmentation (crop offsets, flip and two continuous
        // jitter factors: a collision is practically impossible).
        let other = p.apply_seeded(img, seed, epoch, index.wrapping_add(1)).expect("cifar");
        prop_assert_ne!(a, other);
    }
}

#[test]
fn different_indices_give_different_cifar_outputs() {
    let p = pipelines::cifar();
    let img = noise_image(3, 32, 32, 42);
    let outs: Vec<Sample> = (0..64)
        .map(|i| p.apply_seeded(img.clone(), 1234, 0, i).expect("cifar"))
        .collect();
    for i in 0..outs.len() {
        for j in i + 1..outs.len() {
            assert_ne!(outs[i], outs[j], "indices {i} and {j} collide");
        }
    }
}

#[test]
fn tiny_images_through_every_transform() {
    // 1x1 images, gray, RGB and RGBA: errors allowed, panics not.
    for c in [1, 3, 4] {
        let img = noise_image(c, 1, 1, 0);
        let ts: Vec<Transform> = vec![
            RandomCrop::new(1).into(),
            RandomCrop::new(3).pad_if_needed(true).into(),
            RandomCrop::new(2)
                .padding(1)
                .padding_mode(PaddingMode::Reflect)
                .into(),
            RandomResizedCrop::new(5).ratio([3.0, 4.0]).into(),
            RandomRotation::new(30.0).expand(true).into(),
            RandomRotation::new(30.0)
                .interpolation(Interpolation::Bilinear)
                .into(),
            Resize::new(4).into(),
            CenterCrop::new(1).into(),
            ColorJitter::new().hue(0.5).into(),
            ToTensor.into(),
        ];
        for t in ts {
            if let Ok(out) = t.apply(img.clone(), &mut sample_rng(0, 0, 0)) {
                check_promise(&t, [c, 1, 1], "u8", &out);
            }
        }
        let f = to_f32(&img);
        let e = RandomErasing::new().p(1.0).scale([0.0, 1.0]);
        assert_eq!(
            e.apply(f, &mut sample_rng(0, 0, 0))
                .expect("erasing")
                .shape(),
            [c, 1, 1]
        );
    }
}
