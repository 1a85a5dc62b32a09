//! Integration tests of kindling-dist, in one binary because every burn-linked test binary
//! takes long to link.

mod common;
mod ddp;
mod failures;
mod header;
#[cfg(feature = "mpi")]
mod mpi;
mod tcp;
mod tensors;
