//! `cargo xtask device-pack`: everything a GPU machine without build tools or network needs for
//! one check of Kindling against PyTorch (`xtask/device/check.sh`), in one ignored folder that
//! fits what a device run carries (64 MiB): `kindling` built with `wgpu` and with `cuda,nccl`
//! (stripped, xz-compressed), Debian's Vulkan loader, PyTorch's side of the step benchmark and
//! the check script. Prints the command to run there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{build_json, cargo, executable, root, run};
use crate::llvm_kit::prepare_cuda_build;

/// What a device run may carry, and the longest device command.
const CARRY_LIMIT: u64 = 64 << 20;
const COMMAND_LIMIT: usize = 2000;

pub(crate) fn device_pack(out: &Path, skip_cuda: bool) -> Result<()> {
    let out = if out.is_absolute() {
        out.to_path_buf()
    } else {
        root().join(out)
    };
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(out.join("vulkan"))?;
    // The wgpu binary: the test build's feature set without `mpi` (the GPU machine has no
    // Open MPI), so the burn stack is the test build's and nothing big is rebuilt.
    let wgpu = build_kindling(
        &["test", "--workspace", "--no-run", "--features", "wgpu"],
        false,
    )?;
    pack_binary(&wgpu, &out.join("kindling-wgpu.xz"))?;
    if skip_cuda {
        eprintln!("xtask: --skip-cuda: the pack has no CUDA binary");
    } else {
        // The CUDA binary: its own burn build (the `cuda` backend), in the same dev profile.
        let cuda = build_kindling(
            &[
                "build",
                "--package",
                "kindling-trainer",
                "--features",
                "cuda,nccl",
            ],
            true,
        )?;
        pack_binary(&cuda, &out.join("kindling-cuda.xz"))?;
    }
    vulkan_loader(&out.join("vulkan"))?;
    for file in ["check.sh", "torch_step.py"] {
        std::fs::copy(root().join("xtask/device").join(file), out.join(file))
            .with_context(|| format!("cannot copy xtask/device/{file}"))?;
    }
    let size = folder_size(&out)?;
    println!(
        "device pack: {} ({:.1} MiB of the {} MiB a device run carries)",
        out.display(),
        size as f64 / (1 << 20) as f64,
        CARRY_LIMIT >> 20
    );
    for entry in std::fs::read_dir(&out)? {
        let entry = entry?;
        println!(
            "  {:<22} {:>8.1} MiB",
            entry.file_name().to_string_lossy(),
            folder_size(&entry.path())? as f64 / (1 << 20) as f64
        );
    }
    if size > CARRY_LIMIT {
        bail!("the pack is larger than a device run carries");
    }
    let relative = out.strip_prefix(root()).unwrap_or(&out);
    let command = format!("OUT=$OUT bash {}/check.sh", relative.display());
    if command.len() > COMMAND_LIMIT {
        bail!("the device command is longer than {COMMAND_LIMIT} characters");
    }
    println!("device command (carry {}):\n{command}", relative.display());
    Ok(())
}

/// Builds `kindling` with `args` (a cargo command line) and returns the binary's path.
fn build_kindling(args: &[&str], cuda: bool) -> Result<PathBuf> {
    let mut cmd = cargo(args);
    cmd.arg("--message-format=json-render-diagnostics");
    if cuda {
        prepare_cuda_build(&mut cmd)?;
    }
    let messages = build_json(cmd)?;
    executable(&messages, "kindling", "bin").context("cargo built no `kindling` binary")
}

/// Strips and compresses `binary` into `to` (`NAME.xz`; right away: the next build replaces
/// the binary).
fn pack_binary(binary: &Path, to: &Path) -> Result<()> {
    // xz turns NAME into NAME.xz.
    let stripped = to.with_extension("");
    let mut strip = Command::new("strip");
    strip.arg("-o").arg(&stripped).arg(binary);
    run(strip).context("strip (binutils) is needed")?;
    let mut xz = Command::new("xz");
    xz.args(["-6", "-T0", "-f"]).arg(&stripped);
    run(xz).context("xz (xz-utils) is needed")
}

/// `libvulkan.so.1` from Debian's `libvulkan1` package (apt-get download: no root needed).
fn vulkan_loader(dir: &Path) -> Result<()> {
    let scratch = dir.join("deb");
    std::fs::create_dir_all(&scratch)?;
    let mut download = Command::new("apt-get");
    download
        .args(["download", "libvulkan1"])
        .current_dir(&scratch);
    run(download).context("cannot download Debian's libvulkan1 package")?;
    let deb = std::fs::read_dir(&scratch)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get downloaded no .deb")?;
    let tree = scratch.join("tree");
    let mut unpack = Command::new("dpkg-deb");
    unpack.arg("-x").arg(&deb).arg(&tree);
    run(unpack)?;
    let lib = tree.join("usr/lib/x86_64-linux-gnu");
    let mut found = false;
    for entry in std::fs::read_dir(&lib)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("libvulkan.so.1") {
            // Copy the file behind the links under the soname the binary asks for.
            std::fs::copy(std::fs::canonicalize(&path)?, dir.join("libvulkan.so.1"))?;
            found = true;
        }
    }
    std::fs::remove_dir_all(&scratch)?;
    if !found {
        bail!("no libvulkan.so.1 in {}", deb.display());
    }
    Ok(())
}

fn folder_size(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += folder_size(&entry?.path())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files the pack copies exist and parse (bash -n, Python's compiler).
    #[test]
    fn the_check_script_and_the_torch_benchmark_parse() {
        let dir = root().join("xtask/device");
        let bash = Command::new("bash")
            .arg("-n")
            .arg(dir.join("check.sh"))
            .output()
            .expect("bash runs");
        assert!(
            bash.status.success(),
            "{}",
            String::from_utf8_lossy(&bash.stderr)
        );
        let source = std::fs::read_to_string(dir.join("torch_step.py")).expect("torch_step.py");
        let python = Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .map(|mut stdin| stdin.write_all(source.as_bytes()))
                    .transpose()?;
                child.wait()
            });
        match python {
            Ok(status) => assert!(status.success(), "torch_step.py does not parse"),
            Err(e) => eprintln!("skipped the Python check: no python3 ({e})"),
        }
    }
}
