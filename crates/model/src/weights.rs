//! Loading torchvision-format state dicts, and Kindling's own checkpoints.
//!
//! torchvision state dicts (`features.0.weight`, `classifier.1.weight`, ...) are read from
//! `.pth` (`torch.save`) or `.safetensors` files or bytes. Before anything is applied, every
//! key and shape is checked against the network, so one [`WeightError::StateDict`] lists all
//! missing, unexpected and mis-shaped tensors. Linear weights are transposed from PyTorch's
//! `[out, in]` to burn's `[in, out]` by burn-store's `PyTorchToBurnAdapter`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::Module;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{
    BurnToPyTorchAdapter, ModuleRecord, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    SafetensorsStore, bridge,
};
use burn::tensor::{Bytes, DType};

use crate::error::{StateDictMismatch, WeightError, WeightFormat};
use crate::model::AlexNet;

/// Where weights come from.
#[derive(Debug, Clone, Copy)]
pub enum WeightSource<'a> {
    /// A file; the format follows the extension (`.pth`/`.pt`, `.safetensors`, `.bpk`).
    File(&'a Path),
    /// Bytes in memory, in the given format.
    Bytes(&'a [u8], WeightFormat),
}

/// How strictly a state dict must match the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Leave parameters the file lacks at their current values instead of failing (for files
    /// holding part of a network, like the first convolution only). Unexpected and mis-shaped
    /// tensors are still errors.
    pub allow_missing: bool,
    /// Fine-tuning: when the file's tensors for the last classifier layer have other shapes
    /// (a head for another class count), keep this network's fresh head instead of failing.
    /// Every other parameter must still match.
    pub replace_head: bool,
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Parameters that received values from the file.
    pub loaded: Vec<String>,
    /// Parameters the file lacked (only with [`LoadOptions::allow_missing`]).
    pub missing: Vec<String>,
    /// Head parameters left fresh because the file's had other shapes (only with
    /// [`LoadOptions::replace_head`]).
    pub replaced: Vec<String>,
}

impl WeightFormat {
    /// The format a file name's extension stands for.
    pub fn from_path(path: &Path) -> Result<Self, WeightError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("pth" | "pt" | "bin") => Ok(WeightFormat::Pytorch),
            Some("safetensors") => Ok(WeightFormat::Safetensors),
            Some("bpk" | "burnpack") => Ok(WeightFormat::Burnpack),
            _ => Err(WeightError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// A scratch copy of in-memory `.pth` bytes: burn's PyTorch reader reads zip checkpoints
/// from files only. Removed on drop.
struct ScratchFile(PathBuf);

impl ScratchFile {
    fn write(bytes: &[u8]) -> Result<Self, WeightError> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "kindling-model-{}-{}.pth",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).map_err(|source| WeightError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        // Best effort: a leftover file in the temp dir is harmless.
        let _ = std::fs::remove_file(&self.0);
    }
}

fn read_pytorch(path: &Path, origin: &str) -> Result<Vec<PackTensor>, WeightError> {
    let reader = PytorchReader::new(path).map_err(|e| corrupt(WeightFormat::Pytorch, origin, e))?;
    Ok(reader
        .into_tensors()
        .into_values()
        .map(bridge::from_pytorch)
        .collect())
}

fn read_safetensors(
    mut store: SafetensorsStore,
    origin: &str,
) -> Result<Vec<PackTensor>, WeightError> {
    let tensors = store
        .get_all_tensors()
        .map_err(|e| corrupt(WeightFormat::Safetensors, origin, e))?;
    Ok(tensors.values().cloned().collect())
}

fn corrupt(format: WeightFormat, origin: &str, error: impl std::fmt::Display) -> WeightError {
    WeightError::Corrupt {
        format,
        origin: origin.to_string(),
        message: error.to_string(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> WeightError {
    WeightError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a torchvision key (`classifier.6.weight`) and a burn parameter path
/// (`classifier.6.weight`, or a burn-side name such as `classifier.6.linear.weight`) name the
/// same layer's same parameter.
fn same_param(torch_key: &str, burn_path: &str) -> bool {
    let Some((layer, param)) = torch_key.rsplit_once('.') else {
        return false;
    };
    let param = match param {
        "weight" => ["weight", "gamma"],
        other => [other, other],
    };
    burn_path.starts_with(&format!("{layer}."))
        && param.iter().any(|p| burn_path.ends_with(&format!(".{p}")))
}

impl AlexNet {
    /// The parameters of a torchvision state dict for this network, with PyTorch-layout shapes.
    pub fn torch_state_dict_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.layer_specs()
            .into_iter()
            .flat_map(|spec| {
                spec.kind
                    .torch_parameters()
                    .into_iter()
                    .map(move |(suffix, shape)| (format!("{}.{suffix}", spec.name), shape))
            })
            .collect()
    }

    /// Loads a complete torchvision-format state dict from a `.pth` or `.safetensors` file.
    pub fn load_weights(self, path: impl AsRef<Path>) -> Result<Self, WeightError> {
        self.load_weights_with(WeightSource::File(path.as_ref()), LoadOptions::default())
            .map(|(model, _)| model)
    }

    /// Loads a complete torchvision-format state dict from bytes.
    pub fn load_weights_bytes(
        self,
        bytes: &[u8],
        format: WeightFormat,
    ) -> Result<Self, WeightError> {
        self.load_weights_with(WeightSource::Bytes(bytes, format), LoadOptions::default())
            .map(|(model, _)| model)
    }

    /// Loads a torchvision-format state dict (or, for [`WeightFormat::Burnpack`], a Kindling
    /// checkpoint) with the given options.
    pub fn load_weights_with(
        mut self,
        source: WeightSource<'_>,
        options: LoadOptions,
    ) -> Result<(Self, LoadReport), WeightError> {
        let (format, origin) = match source {
            WeightSource::File(path) => {
                (WeightFormat::from_path(path)?, path.display().to_string())
            }
            WeightSource::Bytes(_, format) => (format, "memory".to_string()),
        };
        let _scratch;
        let tensors = match (format, source) {
            (WeightFormat::Burnpack, _) => {
                let model = self.load_checkpoint_source(source)?;
                let loaded = model.torch_state_dict_shapes().into_keys().collect();
                return Ok((
                    model,
                    LoadReport {
                        loaded,
                        ..LoadReport::default()
                    },
                ));
            }
            (WeightFormat::Pytorch, WeightSource::File(path)) => {
                if !path.exists() {
                    return Err(io_error(path, std::io::ErrorKind::NotFound.into()));
                }
                read_pytorch(path, &origin)?
            }
            (WeightFormat::Pytorch, WeightSource::Bytes(bytes, _)) => {
                let scratch = ScratchFile::write(bytes)?;
                let tensors = read_pytorch(&scratch.0, &origin)?;
                // The reader reads tensor data lazily, so the file must outlive the apply.
                _scratch = scratch;
                tensors
            }
            (WeightFormat::Safetensors, WeightSource::File(path)) => {
                if !path.exists() {
                    return Err(io_error(path, std::io::ErrorKind::NotFound.into()));
                }
                read_safetensors(SafetensorsStore::from_file(path), &origin)?
            }
            (WeightFormat::Safetensors, WeightSource::Bytes(bytes, _)) => {
                read_safetensors(SafetensorsStore::from_bytes(Some(bytes.to_vec())), &origin)?
            }
        };

        let report = self.check_state_dict(&tensors, options)?;
        let mut tensors = tensors;
        tensors.retain(|t| !report.replaced.contains(&t.name));
        let result = self.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);
        let mut mismatch = StateDictMismatch {
            variant: self.variant().title().to_string(),
            ..Default::default()
        };
        mismatch.other = result.errors.iter().map(ToString::to_string).collect();
        if !options.allow_missing {
            mismatch.missing = result
                .missing
                .iter()
                .map(|(path, _)| path.clone())
                .filter(|path| !report.replaced.iter().any(|r| same_param(r, path)))
                .collect();
        }
        mismatch.unexpected = result.unused.clone();
        if mismatch.is_empty() {
            Ok((self, report))
        } else {
            Err(WeightError::StateDict(mismatch))
        }
    }

    /// Checks keys, shapes and dtypes in PyTorch's layout, so the error names the shapes the
    /// user sees in PyTorch rather than burn's transposed ones.
    fn check_state_dict(
        &self,
        tensors: &[PackTensor],
        options: LoadOptions,
    ) -> Result<LoadReport, WeightError> {
        let expected = self.torch_state_dict_shapes();
        let found: BTreeMap<&str, &PackTensor> =
            tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut mismatch = StateDictMismatch {
            variant: self.variant().title().to_string(),
            ..Default::default()
        };
        let mut report = LoadReport::default();
        let head = self
            .layer_specs()
            .into_iter()
            .rev()
            .find(|spec| !spec.kind.torch_parameters().is_empty())
            .map(|spec| format!("{}.", spec.name));
        for (key, shape) in &expected {
            match found.get(key.as_str()) {
                None => report.missing.push(key.clone()),
                Some(tensor) => {
                    let got = tensor.shape.to_vec();
                    let in_head = head.as_deref().is_some_and(|h| key.starts_with(h));
                    if &got != shape && options.replace_head && in_head {
                        report.replaced.push(key.clone());
                    } else if &got != shape {
                        mismatch.mismatched.push((key.clone(), shape.clone(), got));
                    } else if tensor.dtype != DType::F32 {
                        mismatch
                            .other
                            .push(format!("{key} has dtype {:?}; f32 is needed", tensor.dtype));
                    } else {
                        report.loaded.push(key.clone());
                    }
                }
            }
        }
        mismatch.unexpected = found
            .keys()
            .filter(|key| !expected.contains_key(**key))
            .map(|key| key.to_string())
            .collect();
        if !options.allow_missing {
            mismatch.missing = report.missing.clone();
        }
        if mismatch.is_empty() {
            Ok(report)
        } else {
            Err(WeightError::StateDict(mismatch))
        }
    }

    /// The parameters as a torchvision-format safetensors file (Linear weights transposed
    /// back to `[out, in]`), loadable by `safetensors.torch.load_file` + `load_state_dict`.
    pub fn to_torchvision_safetensors(&self) -> Result<Vec<u8>, WeightError> {
        let write_error = |e: burn::store::SafetensorsStoreError| WeightError::Write {
            format: WeightFormat::Safetensors,
            message: e.to_string(),
        };
        let mut store = SafetensorsStore::from_bytes(None)
            .skip_enum_variants(true)
            .with_to_adapter(BurnToPyTorchAdapter);
        self.save_into(&mut store).map_err(write_error)?;
        store.get_bytes().map_err(write_error)
    }

    /// Saves a Kindling checkpoint (burn's burnpack record) to `path`.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<(), WeightError> {
        self.clone()
            .into_record()
            .save(path.as_ref())
            .map_err(|e| WeightError::Write {
                format: WeightFormat::Burnpack,
                message: e.to_string(),
            })
    }

    /// A Kindling checkpoint as bytes.
    pub fn checkpoint_bytes(&self) -> Result<Vec<u8>, WeightError> {
        self.clone()
            .into_record()
            .into_bytes()
            .map(|bytes| bytes.to_vec())
            .map_err(|e| WeightError::Write {
                format: WeightFormat::Burnpack,
                message: e.to_string(),
            })
    }

    /// Loads a Kindling checkpoint written by [`save_checkpoint`](Self::save_checkpoint).
    pub fn load_checkpoint(self, path: impl AsRef<Path>) -> Result<Self, WeightError> {
        self.load_checkpoint_source(WeightSource::File(path.as_ref()))
    }

    /// Loads a Kindling checkpoint from [`checkpoint_bytes`](Self::checkpoint_bytes).
    pub fn load_checkpoint_bytes(self, bytes: &[u8]) -> Result<Self, WeightError> {
        self.load_checkpoint_source(WeightSource::Bytes(bytes, WeightFormat::Burnpack))
    }

    fn load_checkpoint_source(self, source: WeightSource<'_>) -> Result<Self, WeightError> {
        let (record, origin) = match source {
            WeightSource::File(path) => {
                if !path.exists() {
                    return Err(io_error(path, std::io::ErrorKind::NotFound.into()));
                }
                (ModuleRecord::load(path), path.display().to_string())
            }
            WeightSource::Bytes(bytes, _) => (
                ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())),
                "memory".to_string(),
            ),
        };
        let record = record.map_err(|e| corrupt(WeightFormat::Burnpack, &origin, e))?;
        let variant = self.variant().title().to_string();
        self.try_load_record(record).map_err(|e| {
            WeightError::StateDict(StateDictMismatch {
                variant,
                other: vec![e.to_string()],
                ..Default::default()
            })
        })
    }
}
