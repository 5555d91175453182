//! A write asked to stop (SIGTERM, as a cancelled job's reconciler sends it): the writes that can
//! put back what they were changing catch it, stop what they run and fail, so that the host stays
//! as it was before they began. The others keep SIGTERM's default: they die at once, as a killed
//! write always could, and the next write settles what they left.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::error::Error;

static ASKED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: nix::libc::c_int) {
    ASKED.store(true, Ordering::SeqCst);
}

/// From now on SIGTERM only marks this process as asked to stop ([`asked`]); calls restart.
pub fn catch() -> Result<(), Error> {
    let action = SigAction::new(SigHandler::Handler(on_term), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGTERM, &action) }
        .map(drop)
        .map_err(|e| Error::Invalid(format!("cannot catch SIGTERM: {e}")))
}

/// Whether this process was asked to stop since [`catch`].
pub fn asked() -> bool {
    ASKED.load(Ordering::SeqCst)
}

/// The failure of a write of `what` that stopped because it was asked to.
pub fn stopped(what: &str) -> Error {
    Error::Invalid(format!("{what} was stopped on request (SIGTERM); it changed nothing"))
}
