//! Integration tests of kindling-augment.

mod batched;
mod config;
mod conformance;
mod fused;
mod properties;
mod transforms;
