use kindling_trainer::device::{DeviceError, parse_devices, smoke_test};

#[test]
fn flex_parses_and_matches_itself() {
    let devices = parse_devices("flex").expect("flex is the default backend");
    assert_eq!(devices.len(), 1);
    let report = smoke_test(&devices[0]);
    assert_eq!(report.forward_max_abs, 0.0);
    assert_eq!(report.grad_max_abs, 0.0);
}

#[test]
fn bad_specs_name_the_problem() {
    assert_eq!(
        parse_devices("tpu").unwrap_err(),
        DeviceError::Unknown { spec: "tpu".into() }
    );
    assert_eq!(
        parse_devices("wgpu:x").unwrap_err(),
        DeviceError::BadIndex {
            spec: "wgpu:x".into(),
            index: "x".into()
        }
    );
    assert_eq!(
        parse_devices("flex:1").unwrap_err(),
        DeviceError::Unknown {
            spec: "flex:1".into()
        }
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_an_error() {
    assert_eq!(
        parse_devices("cuda:0,1").unwrap_err(),
        DeviceError::NotCompiled {
            spec: "cuda:0,1".into(),
            feature: "cuda"
        }
    );
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_index_lists_give_one_device_each() {
    assert_eq!(parse_devices("wgpu:0,1").expect("two indices").len(), 2);
}

/// Runs real WGSL kernels; on CI that is lavapipe, Mesa's CPU Vulkan driver.
#[cfg(feature = "wgpu")]
#[test]
#[ignore = "needs a Vulkan driver: run by `cargo xtask test`"]
fn wgpu_cpu_matches_flex() {
    let device = &parse_devices("wgpu:cpu").expect("wgpu is compiled")[0];
    let report = smoke_test(device);
    assert!(report.forward_max_abs < 1e-3, "forward differs: {report:?}");
    assert!(report.grad_max_abs < 1e-3, "gradient differs: {report:?}");
}
