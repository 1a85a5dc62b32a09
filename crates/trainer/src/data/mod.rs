//! Datasets the trainer can read.

pub mod synthetic;
