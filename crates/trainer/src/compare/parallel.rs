//! `kindling compare parallel`: the same model and global batch trained on one rank, on N
//! threads of one process (the DataParallel shape) and on N processes (the DDP shape, over
//! MPI or TCP); images/s, speedup and scaling efficiency, and how far the final weights are
//! from the one-rank run's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::checkpoint::{self, Checkpoint};
use crate::config::{Engine, TrainConfig};
use crate::device::parse_devices;
use crate::run::RunDir;

/// One way of running the same training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One rank with the whole batch.
    Single,
    /// N ranks as threads of one process.
    Threads,
    /// N ranks as processes (`tcp` or `mpi`).
    Processes(Engine),
}

impl Shape {
    pub fn name(self, ranks: usize) -> String {
        match self {
            Shape::Single => "1 rank".into(),
            Shape::Threads => format!("{ranks} threads"),
            Shape::Processes(e) => format!("{ranks} processes ({e:?})").to_lowercase(),
        }
    }

    fn dir_name(self) -> String {
        match self {
            Shape::Single => "single".into(),
            Shape::Threads => "threads".into(),
            Shape::Processes(e) => format!("{e:?}").to_lowercase(),
        }
    }
}

/// A shape's result.
#[derive(Debug)]
pub struct ShapeOutcome {
    pub shape: Shape,
    pub dir: PathBuf,
    pub result: Result<ShapeFigures, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShapeFigures {
    /// Training images/s over all ranks (harmonic mean of the epochs).
    pub images_per_sec: f64,
    pub final_val_acc: f64,
    /// Largest |difference| of any parameter from the one-rank run's (`None` for it).
    pub max_weight_diff: Option<f32>,
}

/// The config of `shape`: `base` holds the global batch in `data.batch_size` and the one
/// device every rank uses in `dist.device`.
pub fn shape_config(base: &TrainConfig, shape: Shape, ranks: usize) -> Result<TrainConfig> {
    let mut config = base.clone();
    if shape != Shape::Single {
        if ranks < 2 {
            bail!("invalid --ranks {ranks}: expected >= 2");
        }
        if !base.data.batch_size.is_multiple_of(ranks) {
            bail!(
                "--batch-size {} (the global batch) does not split into {ranks} ranks",
                base.data.batch_size
            );
        }
        config.data.batch_size = base.data.batch_size / ranks;
    }
    match shape {
        Shape::Single | Shape::Processes(_) => {}
        Shape::Threads => {
            config.dist.device = vec![base.dist.device.as_str(); ranks].join(",");
        }
    }
    config.dist.engine = match shape {
        Shape::Processes(engine) => engine,
        Shape::Single | Shape::Threads => Engine::Threads,
    };
    Ok(config.resolve())
}

/// Runs each shape into `out/runs/NAME` (a finished one is read back) and compares it with
/// the first, which must be [`Shape::Single`]. A failing shape is recorded; the others go on.
pub fn run_all(
    base: &TrainConfig,
    shapes: &[Shape],
    ranks: usize,
    out: &Path,
    interrupt: &AtomicBool,
) -> Result<Vec<ShapeOutcome>> {
    if parse_devices(&base.dist.device)?.len() != 1 {
        bail!(
            "compare parallel: give one --device (every rank uses it), not {}",
            base.dist.device
        );
    }
    let mut outcomes: Vec<ShapeOutcome> = Vec::new();
    let mut reference: Option<Vec<Vec<f32>>> = None;
    for &shape in shapes {
        let dir = out.join("runs").join(shape.dir_name());
        let result = run_shape(base, shape, ranks, &dir, interrupt);
        let result = match result {
            Err(e) if e.is::<crate::train::Interrupted>() => return Err(e),
            other => other.and_then(|()| {
                let config = shape_config(base, shape, ranks)?;
                let weights = final_weights(&config, &dir)?;
                let diff = reference.as_ref().map(|r| max_abs_diff(r, &weights));
                if shape == Shape::Single {
                    reference = Some(weights);
                }
                let history = RunDir::open(&dir)?.history().to_vec();
                let last = history.last().context("the run recorded no epoch")?;
                let seconds: f64 = history.iter().map(|m| 1.0 / m.images_per_sec).sum();
                Ok(ShapeFigures {
                    images_per_sec: history.len() as f64 / seconds,
                    final_val_acc: last.val_acc,
                    max_weight_diff: diff,
                })
            }),
        };
        outcomes.push(ShapeOutcome {
            shape,
            dir,
            result: result.map_err(|e| format!("{e:#}")),
        });
    }
    Ok(outcomes)
}

fn run_shape(
    base: &TrainConfig,
    shape: Shape,
    ranks: usize,
    dir: &Path,
    interrupt: &AtomicBool,
) -> Result<()> {
    let config = shape_config(base, shape, ranks)?;
    if dir.join("model.safetensors").exists() {
        let saved: TrainConfig = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
        if saved != config {
            bail!(
                "{} holds a run of another configuration; compare into another --out",
                dir.display()
            );
        }
        return Ok(());
    }
    if dir.join("config.json").exists() {
        bail!(
            "{} holds an unfinished run; remove it to run this shape again",
            dir.display()
        );
    }
    match shape {
        Shape::Single | Shape::Threads => {
            crate::launch::start_new(&config, dir, true, interrupt).map(|_| ())
        }
        Shape::Processes(engine) => {
            let parent = dir.parent().context("a run has a parent folder")?;
            std::fs::create_dir_all(parent)?;
            let config_file = parent.join(format!("{}.config.json", shape.dir_name()));
            crate::run::write_atomic(&config_file, &serde_json::to_vec_pretty(&config)?)?;
            let args: Vec<OsString> = vec![
                "train".into(),
                "--config".into(),
                config_file.into(),
                "--quiet".into(),
                "--out".into(),
                dir.into(),
            ];
            let logs = parent.join(format!("{}-logs", shape.dir_name()));
            let group = crate::spawn::Group::local(ranks)?;
            let output = crate::spawn::Output::Logs(logs);
            crate::spawn::run_ranks(engine, &group, &args, &output, Some(interrupt))
        }
    }
}

/// Every parameter of the run's final model, in the model's order.
fn final_weights(config: &TrainConfig, dir: &Path) -> Result<Vec<Vec<f32>>> {
    let checkpoint = Checkpoint::load(&checkpoint::last(dir))?;
    let model = crate::model::from_checkpoint(&checkpoint, &burn::tensor::Device::flex())
        .with_context(|| {
            format!(
                "reading the model of {} ({:?})",
                dir.display(),
                config.dist.engine
            )
        })?;
    let mut values = ReadParams(Vec::new());
    model.visit(&mut values);
    Ok(values.0)
}

struct ReadParams(Vec<Vec<f32>>);

impl ModuleVisitor for ReadParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(
            param
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default(),
        );
    }
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            let same = x.len() == y.len();
            x.iter()
                .zip(y)
                .map(move |(p, q)| if same { (p - q).abs() } else { f32::INFINITY })
        })
        .fold(0.0, f32::max)
}

/// The comparison as a Markdown table.
pub fn markdown(outcomes: &[ShapeOutcome], ranks: usize) -> String {
    let single = outcomes
        .iter()
        .find(|o| o.shape == Shape::Single)
        .and_then(|o| o.result.as_ref().ok())
        .map(|f| f.images_per_sec);
    let mut out = String::from(
        "| shape | train img/s | speedup vs 1 rank | scaling efficiency | final val top-1 % | max weight diff vs 1 rank |\n\
         |---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let name = o.shape.name(ranks);
        match &o.result {
            Ok(f) => {
                let n = if o.shape == Shape::Single { 1 } else { ranks };
                let (speedup, efficiency) = match single {
                    Some(s) => {
                        let speedup = f.images_per_sec / s;
                        (
                            format!("{speedup:.2}x"),
                            format!("{:.0}%", 100.0 * speedup / n as f64),
                        )
                    }
                    None => ("–".into(), "–".into()),
                };
                let diff = f
                    .max_weight_diff
                    .map(|d| format!("{d:.1e}"))
                    .unwrap_or_else(|| "(reference)".into());
                out.push_str(&format!(
                    "| {name} | {:.1} | {speedup} | {efficiency} | {:.1} | {diff} |\n",
                    f.images_per_sec,
                    100.0 * f.final_val_acc
                ));
            }
            Err(e) => {
                let why = e.lines().next().unwrap_or_default().replace('|', "/");
                out.push_str(&format!("| {name} | failed: {why} | | | | |\n"));
            }
        }
    }
    out
}
