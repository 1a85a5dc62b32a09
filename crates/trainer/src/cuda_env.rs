//! What the CUDA backend needs at run time besides the binary: the NVIDIA driver
//! (`libcuda.so.1`, which cudarc loads when the first CUDA device is made) and
//! `libdevice.10.bc` from a CUDA toolkit (`$CUDA_PATH`, else the usual places), which the NVPTX
//! compiler links into every kernel that calls a math function. burn panics deep inside when
//! either is missing; this names what is missing before a CUDA device is made.

use std::path::{Path, PathBuf};

/// The driver library cudarc loads.
pub const DRIVER: &str = "libcuda.so.1";
/// Where cubecl looks for a toolkit when `CUDA_PATH` is unset (cubecl-llvm's list).
const TOOLKIT_ROOTS: [&str; 4] = ["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda", "/usr"];
const LIBDEVICE: &str = "nvvm/libdevice/libdevice.10.bc";

/// Both checks, the driver first.
pub fn check() -> Result<(), String> {
    driver()?;
    let cuda_path = std::env::var_os("CUDA_PATH").map(PathBuf::from);
    libdevice(cuda_path.as_deref()).map(drop)
}

/// Whether the NVIDIA driver library loads.
pub fn driver() -> Result<(), String> {
    // SAFETY: loading the driver runs only its own initialisers, which cudarc runs anyway when
    // it loads the same library for the first CUDA device; the handle is closed right away.
    #[allow(unsafe_code)]
    let loaded = unsafe { libloading::Library::new(DRIVER) };
    loaded.map(drop).map_err(|e| {
        format!(
            "the NVIDIA driver ({DRIVER}) cannot be loaded ({e}): CUDA devices need the NVIDIA \
             driver installed on this machine"
        )
    })
}

/// `libdevice.10.bc` under `cuda_path` (`$CUDA_PATH`) if given, else under the first usual
/// toolkit folder that has it.
pub fn libdevice(cuda_path: Option<&Path>) -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match cuda_path {
        Some(root) => vec![root.join(LIBDEVICE)],
        None => TOOLKIT_ROOTS
            .iter()
            .map(|r| Path::new(r).join(LIBDEVICE))
            .collect(),
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!(
                "libdevice.10.bc (CUDA's math library, which the CUDA backend links into its \
                 kernels) is missing: looked at {}; install a CUDA toolkit or set CUDA_PATH to one",
                looked.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libdevice_is_found_under_cuda_path_or_named_when_missing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = libdevice(Some(dir.path())).expect_err("empty toolkit");
        assert!(
            err.contains("libdevice.10.bc") && err.contains("CUDA_PATH"),
            "{err}"
        );
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        let file = dir.path().join(LIBDEVICE);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, b"BC").expect("write");
        assert_eq!(libdevice(Some(dir.path())), Ok(file));
    }

    #[test]
    fn a_missing_driver_is_named() {
        // Machines with the driver load it; the others must name the library.
        if let Err(e) = driver() {
            assert!(e.contains(DRIVER) && e.contains("NVIDIA driver"), "{e}");
        }
    }
}
