//! `kindling-trainer`: the training loop and the `kindling` command line for Kindling.
//!
//! Where things live: [`cli`] (flags), [`config`] (the nested run configuration),
//! [`launch`] (starting ranks, opening and resuming runs), [`train`] (the [`train::Trainer`]
//! of one rank: steps and epochs), [`eval`] (evaluation, confusion matrix, prediction), [`preflight`] (the checks before a run), [`recipes`] (the default pipelines),
//! [`data`] (datasets, splits and the loader), [`model`] (building the network, fine-tuning),
//! [`checkpoint`], [`run`] (the run directory), [`plot`], [`signal`] (SIGINT/SIGTERM),
//! [`device`] (`--device` parsing and the device smoke test) and [`inspect`] (summary,
//! filters, previews), [`compare`] (`kindling compare`: augmentation arms and data-parallel
//! shapes, measured) and [`spawn`] (starting process ranks on this machine).

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod compare;
pub mod config;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub mod cuda_env;
pub mod data;
pub mod device;
pub mod eval;
pub mod inspect;
pub mod launch;
pub mod model;
pub mod plot;
pub mod preflight;
pub mod recipes;
pub mod run;
pub mod signal;
pub mod spawn;
pub mod train;
