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

/// `kindling bench`: one RESULT line per batch size, and a clear error for a bad device.
#[test]
fn kindling_bench_prints_a_result_per_measurement() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args([
            "bench", "step", "--model", "cifar", "--batch", "2,4", "--steps", "1",
        ])
        .output()
        .expect("kindling runs");
    let text = crate::output_text(&out);
    assert!(out.status.success(), "{text}");
    let results: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("RESULT bench=step"))
        .collect();
    assert_eq!(results.len(), 2, "{text}");
    assert!(
        results[1].contains("model=cifar") && results[1].contains("batch=4"),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args([
            "bench",
            "augment",
            "--pipeline",
            "p1",
            "--batch",
            "8",
            "--iters",
            "1",
        ])
        .output()
        .expect("kindling runs");
    let text = crate::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("RESULT bench=augment pipeline=P1"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(["bench", "step", "--device", "tpu"])
        .output()
        .expect("kindling runs");
    assert!(!out.status.success());
    assert!(crate::output_text(&out).contains("unknown device \"tpu\""));
}
