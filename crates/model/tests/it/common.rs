//! Access to the PyTorch reference folder and numeric comparison helpers.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;

/// The PyTorch reference set, found through `KINDLING_MODEL_REFERENCE` or the workspace's
/// `shared/conformance/model`. File names are read through the manifest's `roles`, because
/// they depend on the seeds the set was built with.
pub struct Reference {
    pub dir: PathBuf,
    pub manifest: Value,
}

impl Reference {
    pub fn load() -> Self {
        let dir = std::env::var_os("KINDLING_MODEL_REFERENCE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../../shared/conformance/model"
                ))
            });
        let manifest_path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&manifest_path).unwrap_or_else(|e| {
            panic!(
                "PyTorch reference missing: cannot read {} ({e}); set KINDLING_MODEL_REFERENCE to \
                 the folder holding manifest.json",
                manifest_path.display()
            )
        });
        let manifest = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", manifest_path.display()));
        Self { dir, manifest }
    }

    pub fn file(&self, role: &str) -> String {
        self.manifest["roles"][role]
            .as_str()
            .unwrap_or_else(|| panic!("manifest.json has no role {role:?}"))
            .to_string()
    }

    pub fn path(&self, role: &str) -> PathBuf {
        self.dir.join(self.file(role))
    }

    pub fn shape(&self, role: &str) -> Vec<usize> {
        let file = self.file(role);
        self.manifest["files"][&file]["shape"]
            .as_array()
            .unwrap_or_else(|| panic!("manifest.json has no shape for {file}"))
            .iter()
            .map(|v| v.as_u64().expect("shape entries are integers") as usize)
            .collect()
    }

    /// `(atol, rtol)` from the file's manifest entry, or the README's forward default.
    pub fn tolerance(&self, role: &str) -> (f32, f32) {
        let t = &self.manifest["files"][&self.file(role)]["tolerance"];
        (
            t["atol"].as_f64().unwrap_or(1e-4) as f32,
            t["rtol"].as_f64().unwrap_or(1e-3) as f32,
        )
    }

    pub fn f32s(&self, role: &str) -> Vec<f32> {
        let bytes = read(&self.path(role));
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(
            values.len(),
            self.shape(role).iter().product::<usize>(),
            "{role} size"
        );
        values
    }

    pub fn i64s(&self, role: &str) -> Vec<i64> {
        read(&self.path(role))
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8-byte chunk")))
            .collect()
    }

    pub fn tensor4(&self, role: &str, device: &Device) -> Tensor<4> {
        let shape: [usize; 4] = self.shape(role).try_into().expect("a 4-d reference");
        Tensor::from_data(TensorData::new(self.f32s(role), shape), device)
    }

    /// `manifest.json → sgd_reference` (through `key_roles`).
    pub fn sgd(&self) -> &Value {
        let key = self.manifest["key_roles"]["sgd_reference"]
            .as_str()
            .unwrap_or("sgd_reference");
        &self.manifest[key]
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// Checks `|got - want| <= atol + rtol * |want|` elementwise; returns the largest absolute
/// difference, for the report.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut max_abs = 0.0f32;
    let mut worst = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        max_abs = max_abs.max(d);
        // Written so that a NaN counts as a failure.
        let within = d <= atol + rtol * w.abs();
        if !within && worst.is_none() {
            worst = Some((i, g, w));
        }
    }
    if let Some((i, g, w)) = worst {
        panic!(
            "{what}: element {i} is {g}, reference {w} (max |diff| {max_abs:e}, atol {atol:e}, rtol {rtol:e})"
        );
    }
    println!("{what}: max |diff| {max_abs:e}");
    max_abs
}

/// `[rows, cols]` row-major to `[cols, rows]`.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// A minimal safetensors writer, to build deliberately broken state dicts.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let len = values.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).expect("header JSON");
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

pub fn flex() -> Device {
    Device::flex()
}
