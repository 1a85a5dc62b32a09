//! The trainer's integration tests, in one binary because every burn-linked binary is slow to link.
// Configs are written as "defaults, then these fields", section by section.
#![allow(clippy::field_reassign_with_default)]

mod data;
mod device;
mod train;
mod workflow;

/// flex's RNG is process-global: tests that seed it and compare results hold this lock, so that
/// no other test draws from it in between.
pub static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`RNG_LOCK`], also after a test that held it panicked.
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
