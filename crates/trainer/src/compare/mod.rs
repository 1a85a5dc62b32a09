//! `kindling compare`: the seed's comparison tables, measured by training.
//!
//! - [`augment`]: one run per augmentation arm ([`arms`]) and seed; accuracy, overfitting gap
//!   and cost per arm ([`stats`], written by [`report`]).
//! - [`parallel`]: one rank vs N threads vs N processes; throughput and weight agreement.
//!
//! Every run is a normal run directory under `OUT/runs/`, so a comparison that was stopped
//! continues where it was when the same command runs again.

pub mod arms;
pub mod augment;
pub mod parallel;
pub mod report;
pub mod stats;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};

use crate::config::{Engine, TrainConfig};

/// The plan of `kindling compare augment`: the base config from the flags, the arm set (the
/// default one, or `--arms`), `--arm` additions and the `--only` choice, checked.
pub fn augment_plan(args: &crate::cli::CompareAugmentArgs) -> Result<augment::Plan> {
    let base = args.base.config()?;
    if base.mix.mixup_alpha.is_some() || base.mix.cutmix_alpha.is_some() {
        bail!(
            "compare augment sets MixUp and CutMix per arm: leave --mixup and --cutmix out (or \
             put them in an arm's `mix`)"
        );
    }
    let default_set = args.arms.is_none();
    let mut all = match &args.arms {
        Some(path) => arms::from_path(path)?,
        None => arms::defaults()?,
    };
    for flag in &args.extra_arms {
        all.push(arms::from_flag(flag)?);
    }
    if !args.only.is_empty() {
        if let Some(unknown) = args
            .only
            .iter()
            .find(|n| !all.iter().any(|a| &a.name == *n))
        {
            let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
            bail!("--only {unknown}: no such arm (arms: {})", names.join(", "));
        }
        all.retain(|a| args.only.contains(&a.name));
    }
    if default_set && base.input_size() != arms::DEFAULT_SIDE {
        bail!(
            "the default arms are written for {0}x{0} inputs, and this model takes {1}x{1}: give \
             --arms FILE with pipelines for {1}x{1} (see crates/trainer/compare/augment.toml)",
            arms::DEFAULT_SIDE,
            base.input_size()
        );
    }
    Ok(augment::Plan {
        fit_images: default_set && base.data.dataset == crate::config::DatasetKind::Folder,
        base,
        arms: all,
        seeds: args.seeds,
        side_by_side: args.side_by_side,
    })
}

/// Runs an augmentation comparison into `out` and returns its Markdown table (also written to
/// `out/summary.md`, with the CSV files and plots).
pub fn compare_augment(
    plan: &augment::Plan,
    out: &Path,
    quiet: bool,
    interrupt: &AtomicBool,
) -> Result<String> {
    augment::preflight(plan)?;
    std::fs::create_dir_all(out)?;
    let total = plan.arms.len() * plan.seeds;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let progress = |o: &augment::RunOutcome| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if quiet {
            return;
        }
        match &o.figures {
            Ok(f) => println!(
                "[{n}/{total}] {} seed {}: final val top-1 {:.1}%, train {:.1}%",
                o.arm,
                o.seed,
                100.0 * f.final_val_acc,
                100.0 * f.train_acc
            ),
            Err(e) => println!("[{n}/{total}] {} seed {}: failed: {e}", o.arm, o.seed),
        }
    };
    let outcomes = augment::run_all(plan, out, interrupt, &progress)?;
    let names: Vec<String> = plan.arms.iter().map(|a| a.name.clone()).collect();
    let summary = augment::summarise(&names, &outcomes);
    let header = header("augmentation arms", &plan.base, plan.seeds);
    report::write(out, &header, &outcomes, &summary)?;
    Ok(report::markdown(&summary))
}

/// Runs a parallelism comparison into `out` and returns its Markdown table (also written to
/// `out/summary.md`).
pub fn compare_parallel(
    base: &TrainConfig,
    ranks: usize,
    engines: &[Engine],
    out: &Path,
    interrupt: &AtomicBool,
) -> Result<String> {
    let shapes = parallel_shapes(engines)?;
    // Every shape's config must be valid before the first one trains.
    for &shape in &shapes {
        parallel::shape_config(base, shape, ranks)?.validate()?;
    }
    std::fs::create_dir_all(out)?;
    let outcomes = parallel::run_all(base, &shapes, ranks, out, interrupt)?;
    let table = parallel::markdown(&outcomes, ranks);
    let header = header("data-parallel shapes", base, 1);
    crate::run::write_atomic(
        &out.join("summary.md"),
        format!("{header}\n\n{table}").as_bytes(),
    )?;
    Ok(table)
}

/// One rank, threads, then a processes shape per engine (`tcp`, `mpi`).
pub fn parallel_shapes(engines: &[Engine]) -> Result<Vec<parallel::Shape>> {
    let mut shapes = vec![parallel::Shape::Single, parallel::Shape::Threads];
    for &engine in engines {
        if !matches!(engine, Engine::Tcp | Engine::Mpi) {
            bail!("compare parallel starts tcp or mpi processes, not {engine:?}");
        }
        shapes.push(parallel::Shape::Processes(engine));
    }
    Ok(shapes)
}

/// What a comparison ran, for the top of `summary.md`.
fn header(what: &str, base: &TrainConfig, seeds: usize) -> String {
    let command: Vec<String> = std::iter::once("kindling".to_string())
        .chain(std::env::args().skip(1))
        .collect();
    let base = base.clone().resolve();
    // The names the flags take (`fashion-mnist`, `cifar`), not Rust's.
    let name = |v: serde_json::Value| v.as_str().unwrap_or("?").to_string();
    format!(
        "# Kindling comparison: {what}\n\n\
         `{}`\n\n\
         dataset {}, model {} at {}x{}, {} epochs, batch {}, train size {}, validation size \
         {}, seeds {}..{}, device {}. Mean ± sample standard deviation over seeds.",
        command.join(" "),
        name(serde_json::to_value(base.data.dataset).unwrap_or_default()),
        name(serde_json::to_value(base.model.name).unwrap_or_default()),
        base.input_size(),
        base.input_size(),
        base.epochs,
        base.data.batch_size,
        base.data
            .train_size
            .map_or("all".to_string(), |n| n.to_string()),
        base.data
            .val_size
            .map_or("all".to_string(), |n| n.to_string()),
        base.seed,
        base.seed + seeds as u64 - 1,
        base.dist.device,
    )
}
