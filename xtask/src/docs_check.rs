//! `cargo xtask docs-check`: runs the shell commands the Markdown docs show (see `docs` for how
//! they are extracted).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{build_test_targets, describe, ensure_runtime_dir, executable, root};
use crate::docs;
use crate::launch::parse_launch;
use crate::{Cli, Cmd};
use clap::Parser;

/// The Markdown files whose shell commands `docs-check` checks.
pub(crate) fn doc_files() -> Result<Vec<PathBuf>> {
    let root = root();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "crates"] {
        for entry in std::fs::read_dir(root.join(dir))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            } else if path.join("README.md").is_file() {
                files.push(path.join("README.md"));
            }
        }
    }
    files.sort();
    Ok(files)
}

pub(crate) fn docs_check() -> Result<()> {
    let output = build_test_targets()?;
    let binary =
        executable(&output, "kindling", "bin").context("cargo built no `kindling` binary")?;
    // A scratch folder for what the commands write, where the docs' relative paths still
    // resolve (crates/..., ../shared) and `photo.jpg`-style placeholders exist.
    let scratch = std::env::temp_dir().join(format!("kindling-docs-{}", std::process::id()));
    let work = scratch.join("work");
    std::fs::create_dir_all(&work)?;
    std::os::unix::fs::symlink(root().join("crates"), work.join("crates"))?;
    if let Some(shared) = root().parent().map(|p| p.join("shared")) {
        std::os::unix::fs::symlink(shared, scratch.join("shared"))?;
    }
    let placeholder = root().join("../shared/conformance/augment/images/astronaut_500x375.png");
    let (mut ran, mut dry, mut parsed, mut not_run) = (0, 0, 0, Vec::new());
    let mut failures = Vec::new();
    for file in doc_files()? {
        let text = std::fs::read_to_string(&file)?;
        let shown = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        for cmd in docs::shell_commands(&text) {
            let all = docs::words(&cmd.text);
            let w = docs::without_env(&all);
            let at = format!("{shown}:{}: `{}`", cmd.line, cmd.text);
            let outcome: Result<&str> = match w.first().map(String::as_str) {
                Some("cargo") if w.get(1).map(String::as_str) == Some("xtask") => {
                    let argv =
                        std::iter::once("cargo xtask".to_string()).chain(w[2..].iter().cloned());
                    match Cli::try_parse_from(argv) {
                        Err(e) => Err(anyhow::anyhow!("does not parse: {}", e.kind())),
                        Ok(cli) => match cli.command {
                            Cmd::Train { args } => dry_run(&binary, &work, &args),
                            Cmd::Summary { args } => {
                                run_doc(&binary, &work, "summary", &args, &placeholder)
                            }
                            Cmd::Filters { args } => {
                                run_doc(&binary, &work, "filters", &args, &placeholder)
                            }
                            Cmd::Preview { args } => {
                                run_doc(&binary, &work, "preview", &args, &placeholder)
                            }
                            Cmd::Compare { args } if !args.is_empty() => {
                                let mut args = args.clone();
                                args.push("--dry-run".into());
                                run_doc(&binary, &work, "compare", &args, &placeholder)
                            }
                            Cmd::Kindling { args }
                                if args.first().is_some_and(|s| {
                                    ["dataset", "activations", "check-device"].contains(&s.as_str())
                                }) =>
                            {
                                run_doc(&binary, &work, &args[0], &args[1..], &placeholder)
                            }
                            _ => Ok("parsed"),
                        },
                    }
                }
                Some("kindling") if cmd.text.contains('[') => Ok("synopsis"),
                Some("kindling") if w.get(1).map(String::as_str) == Some("compare") => {
                    let mut args = w[2..].to_vec();
                    args.push("--dry-run".into());
                    run_doc(&binary, &work, "compare", &args, &placeholder)
                }
                // `kindling launch ... -- train ARGS`, `mpirun ... kindling train ARGS`,
                // `srun ... kindling train ARGS`: the train part, by --dry-run.
                Some(first) if launched_train(first, w).is_some() => {
                    dry_run(&binary, &work, launched_train(first, w).unwrap_or_default())
                }
                Some("kindling") if w.get(1).map(String::as_str) == Some("train") => {
                    dry_run(&binary, &work, &w[2..])
                }
                Some("kindling")
                    if w.get(1).is_some_and(|s| {
                        [
                            "summary",
                            "filters",
                            "preview",
                            "dataset",
                            "activations",
                            "check-device",
                        ]
                        .contains(&s.as_str())
                    }) =>
                {
                    run_doc(&binary, &work, &w[1], &w[2..], &placeholder)
                }
                Some("kindling") if needs_earlier_files(&work, w)? => Ok("needs"),
                _ => Ok("not run"),
            };
            match outcome {
                Ok("ran") => ran += 1,
                Ok("dry") => dry += 1,
                Ok("parsed") => parsed += 1,
                Ok("synopsis") => not_run.push(format!("{at} (a usage synopsis)")),
                Ok("needs") => not_run.push(format!("{at} (needs files an earlier step makes)")),
                Ok(_) => not_run.push(format!("{at} (not a Kindling command)")),
                Err(e) => failures.push(format!("{at}: {e:#}")),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "docs-check: {ran} commands ran, {dry} training commands validated by --dry-run, \
         {parsed} more xtask commands parsed, {} not run:",
        not_run.len()
    );
    for line in &not_run {
        println!("  {line}");
    }
    if !failures.is_empty() {
        bail!(
            "{} documented commands fail:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// The `train` arguments of a command that launches `kindling train` ranks: `kindling launch
/// ... -- train ARGS`, or `mpirun`/`srun`/`torchrun` ... `kindling train ARGS`.
pub(crate) fn launched_train<'a>(first: &str, w: &'a [String]) -> Option<&'a [String]> {
    let train_after = |i: usize| (w.get(i)? == "train").then(|| &w[i + 1..]);
    match first {
        "kindling" if w.get(1).map(String::as_str) == Some("launch") => {
            train_after(w.iter().position(|x| x == "--")? + 1)
        }
        "mpirun" | "srun" | "torchrun" => {
            let kindling = |x: &String| x == "kindling" || x.ends_with("/kindling");
            train_after(w.iter().position(kindling)? + 1)
        }
        _ => None,
    }
}

/// Flags whose value is a file an earlier step of the docs creates (a run, weights).
pub(crate) const INPUT_FLAGS: [&str; 4] = ["--config", "--weights", "--checkpoint", "--resume"];

/// Whether `args` name an input file that does not exist in `work`; creates the folders of
/// `--out` values there.
pub(crate) fn needs_earlier_files(work: &Path, args: &[String]) -> Result<bool> {
    for pair in args.windows(2) {
        if INPUT_FLAGS.contains(&pair[0].as_str()) && !work.join(&pair[1]).exists() {
            return Ok(true);
        }
        if pair[0] == "--out"
            && let Some(parent) = work.join(&pair[1]).parent()
        {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(false)
}

/// Flags whose value may be a file of the repository (the shipped pipelines).
pub(crate) const REPOSITORY_FLAGS: [&str; 2] = ["--train-pipeline", "--eval-pipeline"];

/// `args` with the values of [`REPOSITORY_FLAGS`] that exist in the repository (not in `work`)
/// made absolute, so the docs' `crates/augment/pipelines/...` are read for real.
pub(crate) fn repository_files(work: &Path, args: &[String]) -> Vec<String> {
    let mut args = args.to_vec();
    for i in 1..args.len() {
        let (flag, value) = (&args[i - 1], Path::new(&args[i]));
        if REPOSITORY_FLAGS.contains(&flag.as_str())
            && !work.join(value).exists()
            && root().join(value).exists()
        {
            args[i] = root().join(value).display().to_string();
        }
    }
    args
}

/// `kindling train --dry-run` with a documented command's arguments (launcher flags turned
/// back into what `kindling train` takes), in `work`.
pub(crate) fn dry_run(binary: &Path, work: &Path, args: &[String]) -> Result<&'static str> {
    if needs_earlier_files(work, args)? {
        return Ok("needs");
    }
    let args = repository_files(work, args);
    let launch = parse_launch(&args)?;
    let mut cmd = Command::new(binary);
    cmd.arg("train")
        .args(&launch.rest)
        .arg("--dry-run")
        .current_dir(work);
    match launch.engine.as_deref() {
        None | Some("threads") => {
            if let Some(n) = launch.nproc {
                cmd.args(["--nproc-per-node", &n.to_string()]);
            }
        }
        Some(engine) => {
            cmd.args(["--engine", engine]);
        }
    }
    quiet_run(cmd).map(|()| "dry")
}

/// Runs a documented `kindling` subcommand in `work`; a missing `--image` becomes a real
/// picture (the docs say `photo.jpg`).
pub(crate) fn run_doc(
    binary: &Path,
    work: &Path,
    subcommand: &str,
    args: &[String],
    placeholder: &Path,
) -> Result<&'static str> {
    if needs_earlier_files(work, args)? {
        return Ok("needs");
    }
    let mut args = args.to_vec();
    for i in 1..args.len() {
        if args[i - 1] == "--image" && !work.join(&args[i]).exists() {
            args[i] = placeholder.display().to_string();
        }
    }
    let mut cmd = Command::new(binary);
    cmd.arg(subcommand).args(&args).current_dir(work);
    ensure_runtime_dir(&mut cmd);
    quiet_run(cmd).map(|()| "ran")
}

pub(crate) fn quiet_run(mut cmd: Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", describe(&cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
