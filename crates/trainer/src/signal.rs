//! SIGINT (Ctrl-C) and SIGTERM (Slurm, Kubernetes, torchrun stopping a job): the first one asks
//! the training loop to checkpoint at the next optimizer step and stop; a second one of the same
//! kind exits at once, as shells expect.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

/// What the handlers set.
#[derive(Debug)]
pub struct Stop {
    /// Set by the first SIGINT or SIGTERM; the training loop polls it.
    pub flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Stop {
    /// The number of the signal that set the flag, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n => i32::try_from(n).ok(),
        }
    }

    /// The exit status of a process stopped by that signal: 128 + its number (130 for
    /// SIGINT, 143 for SIGTERM), as shells and job schedulers read it.
    pub fn exit_code(&self) -> u8 {
        self.signal()
            .and_then(|s| u8::try_from(128 + s).ok())
            .unwrap_or(130)
    }
}

static STOP: OnceLock<Stop> = OnceLock::new();

/// The signal that asked this process to stop, if the handlers are installed and one came.
pub fn received() -> Option<i32> {
    STOP.get().and_then(Stop::signal)
}

/// `SIGTERM`, `SIGINT`, or `signal N`.
pub fn name(signal: i32) -> String {
    match signal {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// Installs the handlers once and returns what they set. A handler that cannot be installed
/// leaves the default behaviour (the process dies at the signal), which loses no checkpoint
/// written before it.
pub fn stop() -> &'static Stop {
    STOP.get_or_init(|| {
        let stop = Stop {
            flag: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
        };
        for signal in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag before this signal sets it: only a second
            // signal exits at once.
            let exit = 128 + signal;
            let _ = signal_hook::flag::register_conditional_shutdown(
                signal,
                exit,
                Arc::clone(&stop.flag),
            );
            let _ = signal_hook::flag::register_usize(
                signal,
                Arc::clone(&stop.signal),
                signal as usize,
            );
            let _ = signal_hook::flag::register(signal, Arc::clone(&stop.flag));
        }
        stop
    })
}
