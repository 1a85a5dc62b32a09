//! The trainer's integration tests, in one binary because every burn-linked binary is slow to link.

mod device;
mod train;
