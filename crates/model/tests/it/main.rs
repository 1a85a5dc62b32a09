//! Integration tests of kindling-model, in one binary because every burn-linked test binary
//! takes long to link.

mod common;
mod init;
mod introspection;
mod parity;
mod visual;
mod weights;
