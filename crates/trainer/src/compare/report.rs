//! What `kindling compare augment` writes: `runs.csv` (one row per run), `summary.csv` and
//! `summary.md` (one row per arm), `curves.csv` (per arm and epoch), and the plots
//! `val_accuracy.png` and `val_loss.png` (mean over seeds, band of one standard deviation).

use std::path::Path;

use anyhow::Result;

use super::augment::{ArmSummary, RunOutcome};
use super::stats::Spread;
use crate::plot::{Curve, palette, write_plot};
use crate::run::write_atomic;

/// Writes every file of the comparison into `out`.
pub fn write(out: &Path, header: &str, outcomes: &[RunOutcome], arms: &[ArmSummary]) -> Result<()> {
    write_atomic(&out.join("runs.csv"), &runs_csv(outcomes)?)?;
    write_atomic(&out.join("summary.csv"), &summary_csv(arms)?)?;
    write_atomic(&out.join("curves.csv"), &curves_csv(arms)?)?;
    write_atomic(
        &out.join("summary.md"),
        format!("{header}\n\n{}", markdown(arms)).as_bytes(),
    )?;
    plot(out, arms)
}

fn runs_csv(outcomes: &[RunOutcome]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "arm",
        "seed",
        "status",
        "final_val_acc",
        "best_val_acc",
        "train_acc",
        "gap",
        "train_images_per_sec",
        "augment_images_per_sec",
        "run",
        "error",
    ])?;
    for o in outcomes {
        let dir = o.dir.display().to_string();
        match &o.figures {
            Ok(f) => w.write_record([
                o.arm.clone(),
                o.seed.to_string(),
                "ok".into(),
                f.final_val_acc.to_string(),
                f.best_val_acc.to_string(),
                f.train_acc.to_string(),
                f.gap().to_string(),
                f.train_images_per_sec.to_string(),
                f.augment_images_per_sec.to_string(),
                dir,
                String::new(),
            ])?,
            Err(e) => w.write_record([
                o.arm.clone(),
                o.seed.to_string(),
                "failed".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                dir,
                e.clone(),
            ])?,
        }
    }
    Ok(w.into_inner()?)
}

fn mean(s: Option<Spread>) -> String {
    s.map(|s| s.mean.to_string()).unwrap_or_default()
}

fn sd(s: Option<Spread>) -> String {
    s.and_then(|s| s.sd)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn summary_csv(arms: &[ArmSummary]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "arm",
        "runs",
        "failed",
        "final_val_acc_mean",
        "final_val_acc_sd",
        "best_val_acc_mean",
        "best_val_acc_sd",
        "gap_mean",
        "gap_sd",
        "train_images_per_sec",
        "augment_images_per_sec",
        "augment_share",
    ])?;
    for a in arms {
        w.write_record([
            a.arm.clone(),
            a.runs.to_string(),
            a.failed.len().to_string(),
            mean(a.final_acc),
            sd(a.final_acc),
            mean(a.best_acc),
            sd(a.best_acc),
            mean(a.gap),
            sd(a.gap),
            mean(a.train_images_per_sec),
            mean(a.augment_images_per_sec),
            a.augment_share().map(|v| v.to_string()).unwrap_or_default(),
        ])?;
    }
    Ok(w.into_inner()?)
}

fn curves_csv(arms: &[ArmSummary]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "arm",
        "epoch",
        "val_acc_mean",
        "val_acc_sd",
        "train_loss_mean",
        "val_loss_mean",
        "val_loss_sd",
    ])?;
    for a in arms {
        for (i, acc) in a.val_acc_curve.iter().enumerate() {
            let train_loss = a.train_loss_curve.get(i).copied();
            let val_loss = a.val_loss_curve.get(i).copied();
            w.write_record([
                a.arm.clone(),
                (i + 1).to_string(),
                acc.mean.to_string(),
                sd(Some(*acc)),
                mean(train_loss),
                mean(val_loss),
                sd(val_loss),
            ])?;
        }
    }
    Ok(w.into_inner()?)
}

/// The per-arm table in Markdown (percentages, mean ± sample sd over seeds).
pub fn markdown(arms: &[ArmSummary]) -> String {
    let pct = |s: Option<Spread>| s.map(|s| s.show(100.0, 1)).unwrap_or_else(|| "–".into());
    let mut out = String::from(
        "| arm | runs | final val top-1 % | best val top-1 % | train − val gap (points) | \
         final train loss | train img/s | augment img/s (1 core) | augment share of step |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for a in arms {
        let ok = a.runs - a.failed.len();
        let runs = if a.failed.is_empty() {
            ok.to_string()
        } else {
            let (seed, why) = &a.failed[0];
            let why = why.lines().next().unwrap_or_default().replace('|', "/");
            format!("{ok} of {} (failed: seed {seed}: {why})", a.runs)
        };
        let loss = a
            .train_loss_curve
            .last()
            .map(|s| s.show(1.0, 3))
            .unwrap_or_else(|| "–".into());
        let rate = |s: Option<Spread>| {
            s.map(|s| format!("{:.0}", s.mean))
                .unwrap_or_else(|| "–".into())
        };
        let share = a
            .augment_share()
            .map(|v| format!("{:.1}%", v * 100.0))
            .unwrap_or_else(|| "–".into());
        out.push_str(&format!(
            "| {} | {runs} | {} | {} | {} | {loss} | {} | {} | {share} |\n",
            a.arm,
            pct(a.final_acc),
            pct(a.best_acc),
            pct(a.gap),
            rate(a.train_images_per_sec),
            rate(a.augment_images_per_sec),
        ));
    }
    out
}

fn plot(out: &Path, arms: &[ArmSummary]) -> Result<()> {
    let band = |curve: &[Spread], scale: f64| -> Curve<'static> {
        Curve {
            name: "",
            colour: palette(0),
            values: curve.iter().map(|s| s.mean * scale).collect(),
            band: Some(
                curve
                    .iter()
                    .map(|s| {
                        let d = s.sd.unwrap_or(0.0);
                        ((s.mean - d) * scale, (s.mean + d) * scale)
                    })
                    .collect(),
            ),
        }
    };
    let curves = |pick: fn(&ArmSummary) -> &Vec<Spread>, scale: f64| -> Vec<Curve<'_>> {
        arms.iter()
            .enumerate()
            .filter(|(_, a)| !pick(a).is_empty())
            .map(|(i, a)| Curve {
                name: &a.arm,
                colour: palette(i),
                ..band(pick(a), scale)
            })
            .collect()
    };
    write_plot(
        &out.join("val_accuracy.png"),
        "validation top-1 per arm (mean ± sd over seeds)",
        "accuracy (%)",
        &curves(|a| &a.val_acc_curve, 100.0),
        None,
    )?;
    write_plot(
        &out.join("val_loss.png"),
        "validation loss per arm (mean ± sd over seeds)",
        "loss",
        &curves(|a| &a.val_loss_curve, 1.0),
        None,
    )
}
