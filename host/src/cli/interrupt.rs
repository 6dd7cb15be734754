//! Ctrl-C during an apply: the journal is exact at every moment (an apply killed with
//! SIGKILL resumes where it stopped), so an interrupted apply only says how far it got
//! and how to resume, and exits 130.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{SignalKind, signal};

/// Armed while an apply runs: a SIGINT then prints what `say` returns and exits 130.
/// Dropped, it is disarmed: a later SIGINT exits 130 without a word (the handler stays
/// installed for the rest of the process, as signal handlers do).
pub(super) struct Watch {
    armed: Arc<AtomicBool>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

/// Installs the SIGINT handler now (before the first call) and watches for it on a thread
/// of its own with a small runtime, tokio's signal hook (already in the tree for `serve`).
pub(super) fn watch(say: impl Fn() -> String + Send + 'static) -> anyhow::Result<Watch> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let mut sigint = {
        let _in = runtime.enter();
        signal(SignalKind::interrupt())?
    };
    let armed = Arc::new(AtomicBool::new(true));
    let still_armed = Arc::clone(&armed);
    std::thread::Builder::new().name("sigint".into()).spawn(move || {
        runtime.block_on(sigint.recv());
        if still_armed.load(Ordering::SeqCst) {
            say!("{}", say());
        }
        std::process::exit(crate::error::INTERRUPTED_EXIT);
    })?;
    Ok(Watch { armed })
}
