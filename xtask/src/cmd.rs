//! Running cargo and the binaries of the test build: the helpers every workflow shares.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::features;

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Runs a `kindling` subcommand with the binary that `cargo xtask test` builds: the same
/// command, profile and features, so training never compiles the burn stack a second time
/// (dev-dependencies such as criterion change feature unification, which `cargo run` would not
/// see).
pub(crate) fn kindling(subcommand: &str, args: &[String]) -> Result<()> {
    let output = build_test_targets()?;
    let binary = executable(&output, "kindling", "bin")
        .context("cargo built no `kindling` binary (is crates/trainer still a member?)")?;
    let mut cmd = Command::new(binary);
    cmd.arg(subcommand).args(args);
    ensure_runtime_dir(&mut cmd);
    run(cmd)
}

pub(crate) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `cargo test --workspace --no-run` with JSON messages on stdout, returned.
pub(crate) fn build_test_targets() -> Result<Vec<u8>> {
    let build = cargo(&[
        "test",
        "--workspace",
        "--features",
        features::test_features(),
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    build_json(build).context("the test build failed")
}

/// Runs a cargo build given `--message-format=json-render-diagnostics` and returns its JSON
/// messages (for [`executable`]); diagnostics still reach the terminal.
pub(crate) fn build_json(mut build: Command) -> Result<Vec<u8>> {
    build.stdout(std::process::Stdio::piped());
    eprintln!("xtask: {}", describe(&build));
    let output = build.spawn()?.wait_with_output()?;
    if !output.status.success() {
        bail!("{} failed ({})", describe(&build), output.status);
    }
    Ok(output.stdout)
}

/// The path of the executable of target `name` of `kind` (`bin`, `example`) in cargo's JSON
/// build messages.
pub(crate) fn executable(messages: &[u8], name: &str, kind: &str) -> Option<PathBuf> {
    String::from_utf8_lossy(messages)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        // `cargo test` also builds main.rs as a test harness; that one has `profile.test`.
        .filter(|m| m["profile"]["test"] == false)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == kind))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// The workspace root, found from this crate's manifest so xtask works from any directory.
pub(crate) fn root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR at run time too; prefer it to the compile-time value,
    // which names whichever checkout first built this binary when clones share a target dir.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

pub(crate) fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(root());
    cmd
}

pub(crate) fn run(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: {}", describe(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", describe(&cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&cmd));
    }
    Ok(())
}

pub(crate) fn describe(cmd: &Command) -> String {
    let envs: String = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={} ", k.to_str()?, v?.to_str()?)))
        .collect();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    format!(
        "{envs}{} {}",
        cmd.get_program().to_string_lossy(),
        args.join(" ")
    )
}

/// A Vulkan ICD manifest is what the loader needs to find lavapipe or a GPU driver.
pub(crate) fn vulkan_driver_present() -> bool {
    ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .flatten()
        .any(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
}

/// Mesa's Vulkan drivers warn (and some versions fail) without a runtime directory.
pub(crate) fn ensure_runtime_dir(cmd: &mut Command) {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("kindling-xdg-runtime");
        if std::fs::create_dir_all(&dir).is_ok() {
            cmd.env("XDG_RUNTIME_DIR", dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_kindling_binary_not_its_test_harness() {
        let messages = br#"{"reason":"compiler-artifact","target":{"name":"kindling","kind":["bin"]},"profile":{"test":true},"executable":"/t/deps/kindling-abc"}
{"reason":"compiler-artifact","target":{"name":"it","kind":["test"]},"profile":{"test":true},"executable":"/t/deps/it-1"}
{"reason":"compiler-artifact","target":{"name":"kindling","kind":["bin"]},"profile":{"test":false},"executable":"/t/kindling"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable(messages, "kindling", "bin"),
            Some(PathBuf::from("/t/kindling"))
        );
        assert_eq!(
            executable(b"{\"reason\":\"build-finished\"}", "kindling", "bin"),
            None
        );
        let example = br#"{"reason":"compiler-artifact","target":{"name":"custom_loop","kind":["example"]},"profile":{"test":false},"executable":"/t/examples/custom_loop"}"#;
        assert_eq!(
            executable(example, "custom_loop", "example"),
            Some(PathBuf::from("/t/examples/custom_loop"))
        );
        assert_eq!(executable(example, "custom_loop", "bin"), None);
    }
}
