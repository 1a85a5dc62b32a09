//! The checks of a run before it trains: its data splits, its pipelines on a first image of each
//! split, and its model with its starting weights. `launch` runs them before a new run's
//! directory is made; every rank's [`Trainer`](crate::train::Trainer) reads its data through
//! them.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use kindling_augment::{Augment, Sample, Transform};

use crate::config::TrainConfig;
use crate::data::{self, Dataset};

/// A run's data and pipelines, checked.
pub(crate) struct Prepared {
    pub train_set: Dataset,
    pub val_set: Dataset,
    pub train_pipeline: Transform,
    pub eval_pipeline: Transform,
    pub num_classes: usize,
}

/// Reads the splits of a resolved `config` and checks its pipelines on them.
pub(crate) fn prepare(config: &TrainConfig) -> Result<Prepared> {
    let (train_set, val_set) = data::splits(config)?;
    let num_classes = train_set.classes().len();
    let train_pipeline = config.train_pipeline();
    let eval_pipeline = config.eval_pipeline();
    check_pipeline(
        config,
        "augment.train_pipeline",
        &train_pipeline,
        &train_set,
    )?;
    check_pipeline(config, "augment.eval_pipeline", &eval_pipeline, &val_set)?;
    Ok(Prepared {
        train_set,
        val_set,
        train_pipeline,
        eval_pipeline,
        num_classes,
    })
}

/// Every check [`Trainer::new`](crate::train::Trainer::new) makes of a new run (the data, the pipelines on a first image,
/// the model and its starting weights, built on flex), so that a mistake is reported before
/// the run directory is created and a corrected command can reuse its `--out`.
pub fn preflight(config: &TrainConfig) -> Result<()> {
    config.validate()?;
    let config = config.clone().resolve();
    let prepared = prepare(&config)?;
    crate::model::build(&config, prepared.num_classes, &Device::flex())?;
    Ok(())
}

/// Runs `pipeline` on the first sample of `data` and checks that it makes the model's input:
/// a pipeline that cannot run, or one whose output does not fit the model, is an error naming
/// the pipeline, the image and the sizes, before any training.
fn check_pipeline(
    config: &TrainConfig,
    field: &str,
    pipeline: &Transform,
    data: &Dataset,
) -> Result<()> {
    let side = config.input_size();
    let (image, _) = data.get(0)?;
    let before = [image.channels(), image.height(), image.width()];
    let out = pipeline
        .apply_seeded(image, config.seed, 0, 0)
        .and_then(Sample::into_f32)
        .with_context(|| {
            format!(
                "{field} cannot run on {} ({}x{}x{})",
                data.describe(0),
                before[0],
                before[1],
                before[2]
            )
        })?;
    let got = [out.channels(), out.height(), out.width()];
    if got != [3, side, side] {
        bail!(
            "{field} turns {} ({}x{}x{}) into {}x{}x{}, but the {} takes 3x{side}x{side} \
             (model.input_size); end the pipeline with a crop or resize to {side}",
            data.describe(0),
            before[0],
            before[1],
            before[2],
            got[0],
            got[1],
            got[2],
            config.model.name.config(1).variant.title()
        );
    }
    Ok(())
}
