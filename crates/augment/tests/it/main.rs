//! Integration tests of kindling-augment.

mod config;
mod conformance;
mod fused;
mod properties;
mod transforms;
