//! The one feature set of the test build, chosen by what this machine has: `wgpu` always (a
//! missing Vulkan driver only skips its tests), `mpi` when Open MPI is installed (the `mpi`
//! crate's build script needs `mpicc` or its pkg-config file, and libclang for bindgen).
//! `mpi` adds no burn feature, so both sets share one burn build.

use std::sync::OnceLock;

/// How to get the MPI engine on Debian.
pub const MPI_PACKAGES: &str = "apt-get install libopenmpi-dev openmpi-bin libclang-dev";

/// The features of every test, clippy, doc and bench build on this machine. Says once why
/// `mpi` is left out when it is.
pub fn test_features() -> &'static str {
    static FEATURES: OnceLock<&'static str> = OnceLock::new();
    FEATURES.get_or_init(|| {
        if mpi_available() {
            "wgpu,mpi"
        } else {
            eprintln!(
                "xtask: Open MPI not found (no mpicc and mpirun on PATH, or KINDLING_NO_MPI set), so kindling is built without the \
                 `mpi` engine and its tests are skipped.\n\
                 xtask: install it to build and test it: {MPI_PACKAGES}"
            );
            "wgpu"
        }
    })
}

/// Whether Open MPI (or another MPI with `mpicc` and `mpirun`) is installed;
/// `KINDLING_NO_MPI=1` answers no, to try the build a machine without it gets.
pub fn mpi_available() -> bool {
    std::env::var_os("KINDLING_NO_MPI").is_none() && on_path("mpicc") && on_path("mpirun")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
