//! burn-cuda's LLVM 23.1 without internet access. burn-cuda -> cubecl-cuda -> cubecl-llvm ->
//! `tracel-llvm-bundler 23.1.0-4`, whose build script downloads a prebuilt LLVM unless
//! `$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed` exists. PyPI's
//! `mlc-llvm-static` wheels hold the same LLVM (static libraries, headers, `llvm-config`, NVPTX
//! in the extra-targets wheel), so this lays them out there and the build needs no download.
//! See `../shared/gpu/README.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cmd::run;

/// The wheels, pinned: llvm-sys 231 binds LLVM 23.1's C API.
const WHEELS: [&str; 2] = [
    "mlc-llvm-static==23.1.1.post0",
    "mlc-llvm-static-extra-targets==23.1.1.post0",
];
/// The folder and marker the bundler's build script looks for.
const BUNDLE: &str = "tracel-llvm-23.1.0-4";
const MARKER: &str = ".tracel-llvm-installed";
/// Where the bundler downloads from; reachable means burn's own download works.
const DOWNLOAD_HOST: &str = "github.com:443";

/// The `XDG_DATA_HOME` a `cuda` build should run with: `None` when burn's own download should
/// do (an LLVM is already installed where it looks, `KINDLING_LLVM=download`, or the download
/// host answers), else the offline kit's (`KINDLING_LLVM=pip` forces it), made if missing.
pub(crate) fn xdg_data_home_for_cuda() -> Result<Option<PathBuf>> {
    let choice = std::env::var("KINDLING_LLVM").unwrap_or_else(|_| "auto".into());
    match choice.as_str() {
        "download" => return Ok(None),
        "pip" => return kit().map(Some),
        "auto" => {}
        other => bail!("KINDLING_LLVM={other}: expected auto, pip or download"),
    }
    if let Some(installed) = default_data_home().map(|d| d.join("tracel").join(BUNDLE).join(MARKER))
        && installed.is_file()
    {
        eprintln!(
            "xtask: LLVM 23.1 for burn-cuda is installed ({})",
            installed.display()
        );
        return Ok(None);
    }
    if reachable(DOWNLOAD_HOST) {
        eprintln!("xtask: {DOWNLOAD_HOST} answers: burn-cuda downloads its LLVM itself");
        return Ok(None);
    }
    eprintln!(
        "xtask: {DOWNLOAD_HOST} does not answer: LLVM 23.1 from PyPI's mlc-llvm-static wheels"
    );
    kit().map(Some)
}

/// Where the bundler looks without our help: `$XDG_DATA_HOME`, else `~/.local/share`.
fn default_data_home() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
}

fn reachable(host: &str) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = host.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok())
}

/// The kit's folder: `$KINDLING_LLVM_KIT`, else `~/.cache/kindling/llvm-23.1`.
fn kit_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KINDLING_LLVM_KIT") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(Path::new(&home).join(".cache/kindling/llvm-23.1"))
}

/// Makes the kit (once) and returns the `XDG_DATA_HOME` that points the bundler at it.
pub(crate) fn kit() -> Result<PathBuf> {
    let dir = kit_dir()?;
    let xdg = dir.join("xdg");
    let bundle = xdg.join("tracel").join(BUNDLE);
    if bundle.join(MARKER).is_file() {
        eprintln!("xtask: LLVM kit ready in {}", dir.display());
        return Ok(xdg);
    }
    let wheels = dir.join("wheels");
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--no-deps", "-d"])
        .arg(&wheels)
        .args(WHEELS);
    run(pip).context("cannot fetch the LLVM wheels (python3 -m pip must reach PyPI)")?;
    let sdk = dir.join("sdk");
    for wheel in std::fs::read_dir(&wheels)? {
        let wheel = wheel?.path();
        if wheel.extension().is_some_and(|e| e == "whl") {
            // A wheel is a zip file; Python's zipfile unpacks it wherever pip runs.
            let mut unzip = Command::new("python3");
            unzip.args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&sdk);
            run(unzip)?;
        }
    }
    let prefix = sdk.join("mlc_llvm_static/static");
    let config = prefix.join("bin/llvm-config");
    if !config.is_file() {
        bail!(
            "the wheels hold no {}: has the layout of mlc-llvm-static changed?",
            config.display()
        );
    }
    // zipfile drops the executable bits.
    for tool in std::fs::read_dir(prefix.join("bin"))? {
        make_executable(&tool?.path())?;
    }
    let version = Command::new(&config).arg("--version").output();
    let version = match &version {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => bail!("{} does not run: {version:?}", config.display()),
    };
    if !version.starts_with("23.1") {
        bail!(
            "{} is LLVM {version}; burn-cuda needs 23.1",
            config.display()
        );
    }
    std::fs::create_dir_all(bundle.parent().context("bundle path")?)?;
    if bundle.exists() || bundle.is_symlink() {
        std::fs::remove_file(&bundle).ok();
    }
    std::os::unix::fs::symlink(&prefix, &bundle)
        .with_context(|| format!("cannot link {}", bundle.display()))?;
    std::fs::write(bundle.join(MARKER), b"")?;
    eprintln!(
        "xtask: LLVM {version} laid out in {} from PyPI's {}; cargo runs with XDG_DATA_HOME={}",
        prefix.display(),
        WHEELS.join(" and "),
        xdg.display()
    );
    Ok(xdg)
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_mode(perms.mode() | 0o755);
    std::fs::set_permissions(path, perms)
        .with_context(|| format!("cannot make {} executable", path.display()))
}

/// Points a cargo command that builds `cuda` at the kit when it is needed.
pub(crate) fn prepare_cuda_build(cmd: &mut Command) -> Result<()> {
    if let Some(xdg) = xdg_data_home_for_cuda()? {
        cmd.env("XDG_DATA_HOME", xdg);
    }
    Ok(())
}

/// Runs a cargo command that builds `cuda`, with the kit when it is needed.
pub(crate) fn run_cuda_build(mut cmd: Command) -> Result<()> {
    prepare_cuda_build(&mut cmd)?;
    run(cmd)
}
