//! The network of a run: the configured AlexNet variant, freshly initialised from the seed or
//! started from torchvision weights (fine-tuning), and rebuilt from a checkpoint.

use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use kindling_model::{AlexNet, LoadOptions, WeightInit, WeightSource};

use crate::checkpoint::Checkpoint;
use crate::config::{Freeze, TrainConfig};

/// The untrained network of a run on `device`, with `num_classes` outputs: weights drawn from
/// the seed (He initialisation), or loaded from `model.pretrained` with a fresh classifier head
/// when the class count differs; `model.freeze` stops gradients to the frozen part.
pub fn build(config: &TrainConfig, num_classes: usize, device: &Device) -> Result<AlexNet> {
    let net_config = config
        .model
        .name
        .config(num_classes)
        .with_dropout(config.dropout())
        // PyTorch's default init leaves this normalisation-free network stuck near chance for
        // hundreds of steps; He init starts learning at once.
        .with_init(WeightInit::Kaiming);
    let model = {
        // flex's RNG is process-global: ranks on threads of one process take turns, so each
        // draws the weights a single-device run would.
        static INIT: Mutex<()> = Mutex::new(());
        let _turn = INIT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        device.seed(config.seed);
        let model = net_config.init(device);
        // burn draws a parameter's initial values when it is first read: read them all now,
        // from this seed, before anything else draws (the per-epoch reseed, another rank).
        model.visit(&mut Materialize);
        model
    };
    let side = config.input_size();
    model
        .check_input([1, 3, side, side])
        .with_context(|| format!("model.input_size = {side} does not fit the model"))?;
    let mut model = match &config.model.pretrained {
        None => model,
        Some(path) => {
            let options = LoadOptions {
                replace_head: true,
                ..LoadOptions::default()
            };
            let (model, report) = model
                .load_weights_with(WeightSource::File(path), options)
                .with_context(|| {
                    format!(
                        "model.pretrained = {}: not weights of the {}",
                        path.display(),
                        config.model.name.config(num_classes).variant.title()
                    )
                })?;
            if report.loaded.is_empty() {
                bail!("model.pretrained = {}: no parameter loaded", path.display());
            }
            model
        }
    };
    if config.model.freeze == Some(Freeze::Features) {
        model.features = model.features.into_iter().map(Module::no_grad).collect();
    }
    Ok(model)
}

/// The model a checkpoint holds, built from its run's config, on `device`.
pub fn from_checkpoint(c: &Checkpoint, device: &Device) -> Result<AlexNet> {
    let config = &c.header.config;
    let classes = crate::data::class_names(config)?.len();
    config
        .model
        .name
        .config(classes)
        .with_dropout(config.dropout())
        .init(device)
        .load_checkpoint_bytes(&c.model)
        .context("the checkpoint does not hold a model of this run's kind")
}

/// Reads every parameter once, which makes burn draw lazily initialised values.
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}
