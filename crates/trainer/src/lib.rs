//! `kindling-trainer`: the training loop and the `kindling` command line for Kindling.
//!
//! Start with [`device::parse_devices`], which turns a `--device` flag into burn devices, and
//! [`device::smoke_test`], which checks that a device computes a convolution and its gradients
//! like the `flex` CPU reference. The training loop itself is not written yet.

pub mod config;
pub mod data;
pub mod device;
pub mod inspect;
pub mod run;
pub mod train;
