//! `kindling-trainer`: the training loop and the `kindling` command line for Kindling.
//!
//! [`train::train`] runs a training run as a [`config::TrainConfig`] says and writes it into a
//! [`run::RunDir`], with [`checkpoint`]s to resume from; [`device::parse_devices`] turns a
//! `--device` flag into burn devices and [`device::smoke_test`] checks one against the `flex`
//! CPU reference.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod inspect;
pub mod plot;
pub mod run;
pub mod train;
