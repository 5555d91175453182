//! `l4d2ctl`: the host side of left4me. It renders instances, installs units, mounts overlays,
//! starts and stops game servers through systemd, and reports what runs (docs/DESIGN.md §5).
//!
//! It is what the reconciler runs and what an operator runs by hand; every write is idempotent.

pub mod a2s;
pub mod fsutil;
pub mod host;
pub mod install;
pub mod instance;
pub mod mount;
pub mod overlay;
pub mod overrides;
pub mod problem;
pub mod rcon;
pub mod status;
pub mod systemd;
pub mod units;

use std::path::Path;

pub use host::Host;

/// A failure of an l4d2ctl command: one line that names the thing and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {}", describe(cause))]
    Io { path: String, cause: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    /// A child process failed; its stderr has been passed through, its exit code is kept.
    #[error("{command} failed with exit code {code}")]
    Child { command: String, code: i32 },
    /// A child process was ended by a signal; `l4d2ctl` ends with 128 + its number, as a shell does.
    #[error("{command} was killed by {}", signal_name(*signal))]
    Killed { command: String, signal: i32 },
}

impl Error {
    pub fn io(path: impl AsRef<Path>, cause: std::io::Error) -> Error {
        Error::Io { path: path.as_ref().display().to_string(), cause }
    }

    /// The failure of a child that ended with `status`, which was not a success.
    pub fn child(command: impl Into<String>, status: std::process::ExitStatus) -> Error {
        use std::os::unix::process::ExitStatusExt;
        let command = command.into();
        match (status.code(), status.signal()) {
            (_, Some(signal)) => Error::Killed { command, signal },
            (Some(code), None) => Error::Child { command, code },
            (None, None) => Error::Child { command, code: 1 },
        }
    }

    /// The exit code `l4d2ctl` ends with: a failed child's own, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Child { code, .. } => *code,
            Error::Killed { signal, .. } => 128 + signal,
            _ => 1,
        }
    }
}

pub use left4me_state::signal_name;

/// An I/O error with its causes: a wrapped error's own text (the tar reader's "failed to unpack
/// `…`") hides the OS error under it ("No space left on device"), which says what to do.
pub fn describe(error: &std::io::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
