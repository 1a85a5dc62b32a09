//! Pipelines as data: the shipped files, JSON/TOML round trips, defaults and errors.

use kindling_augment::functional::{Interpolation, Padding, PaddingMode};
use kindling_augment::transforms::{
    CenterCrop, ColorJitter, EraseValue, Normalize, RandomApply, RandomChoice, RandomCrop,
    RandomErasing, RandomHorizontalFlip, RandomKeyword, RandomResizedCrop, RandomRotation,
    RandomVerticalFlip, Resize, ToTensor,
};
use kindling_augment::{Applied, AugmentError, Compose, Transform, pipelines};

const CIFAR_TOML: &str = include_str!("../../pipelines/cifar.toml");
const CIFAR_JSON: &str = include_str!("../../pipelines/cifar.json");
const IMAGENET_TOML: &str = include_str!("../../pipelines/imagenet.toml");
const IMAGENET_JSON: &str = include_str!("../../pipelines/imagenet.json");

/// A pipeline using every transform with non-default parameters.
fn everything() -> Transform {
    Compose::new([
        RandomCrop::new([20, 24])
            .padding([1, 2, 3, 4])
            .pad_if_needed(true)
            .fill([1.0, 2.0, 3.0])
            .padding_mode(PaddingMode::Reflect)
            .into(),
        RandomApply::new(
            [
                RandomVerticalFlip::new(0.25).into(),
                RandomRotation::new([-10.0, 30.0])
                    .interpolation(Interpolation::Bilinear)
                    .expand(true)
                    .center([3.5, 4.0])
                    .fill(7.0)
                    .into(),
            ],
            0.75,
        )
        .into(),
        RandomChoice::new([
            Resize::new(30).max_size(40).antialias(false).into(),
            Resize::new([28, 26])
                .interpolation(Interpolation::Nearest)
                .into(),
        ])
        .weights([1.0, 3.0])
        .into(),
        CenterCrop::new(24).into(),
        RandomResizedCrop::new([16, 18])
            .scale([0.5, 0.9])
            .ratio([0.5, 2.0])
            .antialias(false)
            .into(),
        RandomHorizontalFlip::new(1.0).into(),
        ColorJitter::new()
            .brightness(0.4)
            .contrast([0.5, 1.5])
            .saturation(0.3)
            .hue([-0.1, 0.2])
            .into(),
        ToTensor.into(),
        RandomErasing::new()
            .p(0.9)
            .value(EraseValue::Random(RandomKeyword::Random))
            .into(),
        RandomErasing::new()
            .scale([0.1, 0.2])
            .ratio([0.5, 1.5])
            .value([0.1, 0.2, 0.3])
            .into(),
        Normalize::new([0.4, 0.5, 0.6], [0.2, 0.25, 0.3]).into(),
    ])
    .into()
}

#[test]
fn shipped_files_equal_the_seed_pipelines() {
    let cifar = Transform::from(pipelines::cifar());
    let imagenet = Transform::from(pipelines::imagenet());
    assert_eq!(Transform::from_toml(CIFAR_TOML).expect("cifar.toml"), cifar);
    assert_eq!(Transform::from_json(CIFAR_JSON).expect("cifar.json"), cifar);
    assert_eq!(
        Transform::from_toml(IMAGENET_TOML).expect("imagenet.toml"),
        imagenet
    );
    assert_eq!(
        Transform::from_json(IMAGENET_JSON).expect("imagenet.json"),
        imagenet
    );
}

#[test]
fn json_round_trip() {
    for t in [
        everything(),
        pipelines::cifar().into(),
        pipelines::imagenet().into(),
    ] {
        let text = t.to_json().expect("serialise");
        assert_eq!(
            Transform::from_json(&text).expect("parse back"),
            t,
            "{text}"
        );
    }
}

#[test]
fn toml_round_trip() {
    for t in [
        everything(),
        pipelines::cifar().into(),
        pipelines::imagenet().into(),
    ] {
        let text = t.to_toml().expect("serialise");
        assert_eq!(
            Transform::from_toml(&text).expect("parse back"),
            t,
            "{text}"
        );
    }
}

#[test]
fn plain_serde_validates_too() {
    let ok: Transform = serde_json::from_str(r#"{"type": "RandomVerticalFlip"}"#).expect("valid");
    assert_eq!(ok, RandomVerticalFlip::default().into());
    let err = serde_json::from_str::<Transform>(r#"{"type": "RandomVerticalFlip", "p": -1}"#)
        .expect_err("p = -1");
    assert!(err.to_string().contains("RandomVerticalFlip.p"), "{err}");
}

#[test]
fn omitted_fields_take_torchvision_defaults() {
    let parse = |s: &str| Transform::from_json(s).expect(s);
    assert_eq!(
        parse(r#"{"type": "RandomResizedCrop", "size": 224}"#),
        RandomResizedCrop::new(224).into()
    );
    let Transform::RandomResizedCrop(rrc) = parse(r#"{"type": "RandomResizedCrop", "size": 8}"#)
    else {
        panic!("variant");
    };
    assert_eq!(rrc.scale, [0.08, 1.0]);
    assert_eq!(rrc.ratio, [3.0 / 4.0, 4.0 / 3.0]);
    assert_eq!(rrc.interpolation, Interpolation::Bilinear);
    assert!(rrc.antialias);

    let Transform::RandomErasing(re) = parse(r#"{"type": "RandomErasing"}"#) else {
        panic!("variant");
    };
    assert_eq!(re, RandomErasing::default());
    assert_eq!((re.p, re.scale, re.ratio), (0.5, [0.02, 0.33], [0.3, 3.3]));
    assert_eq!(re.value, EraseValue::Single(0.0));

    let Transform::RandomRotation(rr) = parse(r#"{"type": "RandomRotation", "degrees": 15}"#)
    else {
        panic!("variant");
    };
    assert_eq!(rr.interpolation, Interpolation::Nearest);
    assert_eq!(rr.range(), [-15.0, 15.0]);
    assert!(!rr.expand && rr.center.is_none());

    let Transform::RandomCrop(rc) =
        parse(r#"{"type": "RandomCrop", "size": 32, "padding": [4, 2]}"#)
    else {
        panic!("variant");
    };
    assert_eq!(
        rc.padding,
        Some(Padding {
            left: 4,
            top: 2,
            right: 4,
            bottom: 2
        })
    );
    assert_eq!(rc.padding_mode, PaddingMode::Constant);
    assert_eq!(
        parse(r#"{"type": "RandomHorizontalFlip"}"#),
        RandomHorizontalFlip::new(0.5).into()
    );
    assert_eq!(
        parse(r#"{"type": "ColorJitter"}"#),
        ColorJitter::new().into()
    );
    assert_eq!(
        parse(r#"{"type": "RandomErasing", "value": "random"}"#),
        RandomErasing::new()
            .value(EraseValue::Random(RandomKeyword::Random))
            .into()
    );
}

fn config_message(r: Result<Transform, AugmentError>) -> String {
    match r {
        Err(AugmentError::Config { message, .. }) => message,
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[test]
fn unknown_transforms_and_fields_are_rejected() {
    let msg = config_message(Transform::from_json(r#"{"type": "RandomFoo"}"#));
    assert!(
        msg.contains("RandomFoo") && msg.contains("RandomCrop"),
        "{msg}"
    );
    let msg = config_message(Transform::from_json(
        r#"{"type": "RandomCrop", "size": 32, "paddding": 4}"#,
    ));
    assert!(msg.contains("paddding"), "{msg}");
    let msg = config_message(Transform::from_toml(
        "type = \"Compose\"\n[[transforms]]\ntype = \"ColorJitter\"\nbrightnes = 0.2\n",
    ));
    assert!(msg.contains("brightnes"), "{msg}");
    assert!(Transform::from_json(r#"{"type": "ToTensor", "scale": true}"#).is_err());
    assert!(Transform::from_json(r#"{"type": "RandomCrop"}"#).is_err());
    assert!(Transform::from_json(r#"{"type": "RandomCrop", "size": -3}"#).is_err());
    assert!(Transform::from_json(r#"{"type": "RandomErasing", "value": "noise"}"#).is_err());
}

fn invalid(r: Result<Transform, AugmentError>) -> (&'static str, String) {
    match r {
        Err(AugmentError::InvalidParameter { name, expected, .. }) => (name, expected),
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
}

#[test]
fn bad_parameters_name_the_field_and_range() {
    let (name, expected) = invalid(Transform::from_json(
        r#"{"type": "Compose", "transforms": [{"type": "RandomHorizontalFlip", "p": 1.5}]}"#,
    ));
    assert_eq!(name, "RandomHorizontalFlip.p");
    assert!(expected.contains("[0, 1]"), "{expected}");

    let toml = "type = \"ColorJitter\"\nbrightness = nan\n";
    assert_eq!(
        invalid(Transform::from_toml(toml)).0,
        "ColorJitter.brightness"
    );
    let toml = "type = \"ColorJitter\"\nhue = 0.7\n";
    assert_eq!(invalid(Transform::from_toml(toml)).0, "ColorJitter.hue");
    let toml = "type = \"ColorJitter\"\ncontrast = -0.5\n";
    assert_eq!(
        invalid(Transform::from_toml(toml)).0,
        "ColorJitter.contrast"
    );

    let cases = [
        (
            r#"{"type": "RandomResizedCrop", "size": 8, "scale": [0.9, 0.1]}"#,
            "RandomResizedCrop.scale",
        ),
        (
            r#"{"type": "RandomResizedCrop", "size": 8, "ratio": [0.0, 1.0]}"#,
            "RandomResizedCrop.ratio",
        ),
        (
            r#"{"type": "RandomResizedCrop", "size": 0}"#,
            "RandomResizedCrop.size",
        ),
        (
            r#"{"type": "RandomCrop", "size": [32, 0]}"#,
            "RandomCrop.size",
        ),
        (
            r#"{"type": "RandomErasing", "scale": [0.1, 1.5]}"#,
            "RandomErasing.scale",
        ),
        (
            r#"{"type": "RandomErasing", "ratio": [-1, 2]}"#,
            "RandomErasing.ratio",
        ),
        (r#"{"type": "RandomErasing", "p": -0.1}"#, "RandomErasing.p"),
        (
            r#"{"type": "RandomRotation", "degrees": -5}"#,
            "RandomRotation.degrees",
        ),
        (
            r#"{"type": "RandomRotation", "degrees": [10, -10]}"#,
            "RandomRotation.degrees",
        ),
        (
            r#"{"type": "Normalize", "mean": [0.5], "std": [0]}"#,
            "Normalize.std",
        ),
        (
            r#"{"type": "Normalize", "mean": [0.5, 0.5], "std": [1]}"#,
            "Normalize.std",
        ),
        (
            r#"{"type": "Normalize", "mean": [], "std": []}"#,
            "Normalize.mean",
        ),
        (
            r#"{"type": "RandomApply", "transforms": [], "p": 2}"#,
            "RandomApply.p",
        ),
        (
            r#"{"type": "RandomChoice", "transforms": []}"#,
            "RandomChoice.transforms",
        ),
        (
            r#"{"type": "RandomChoice", "transforms": [{"type": "ToTensor"}], "p": [1, 2]}"#,
            "RandomChoice.p",
        ),
        (
            r#"{"type": "Resize", "size": 32, "max_size": 16}"#,
            "Resize.max_size",
        ),
        (
            r#"{"type": "RandomCrop", "size": 8, "fill": []}"#,
            "RandomCrop.fill",
        ),
    ];
    for (json, field) in cases {
        assert_eq!(invalid(Transform::from_json(json)).0, field, "{json}");
    }
}

#[test]
fn recorded_params_serialise() {
    let params = vec![
        Applied::RandomCrop { top: 3, left: 1 },
        Applied::ColorJitter {
            order: [2, 0, 3, 1],
            brightness: Some(0.912_345_678_901_234_5),
            contrast: None,
            saturation: None,
            hue: Some(-0.01),
        },
        Applied::RandomErasing {
            erase: true,
            top: 1,
            left: 2,
            height: 3,
            width: 4,
            noise_seed: Some(u64::MAX),
        },
    ];
    let text = serde_json::to_string(&params).expect("serialise");
    let back: Vec<Applied> = serde_json::from_str(&text).expect("parse");
    assert_eq!(back, params);
}
