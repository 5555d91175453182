//! The failure of an l4d2ctl command: one line that names the thing and the cause, and whether
//! trying again unchanged may succeed.

use std::path::Path;

use left4me_state::signal_name;

use crate::api::{Failure, FailureKind};

/// A failure of an l4d2ctl command: one line that names the thing and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {}", describe(cause))]
    Io { path: String, cause: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    /// The host cannot do it now and may once something apart from the command changes: Steam
    /// delivers, space is freed.
    #[error("{0}")]
    NotNow(String),
    /// A child process failed; its stderr has been passed through, its exit code is kept. `kind`
    /// says what its failure means: systemd's or steamcmd's may pass, a recipe's will not.
    #[error("{command} failed with exit code {code}")]
    Child { command: String, code: i32, kind: FailureKind },
    /// A child process was ended by a signal; `l4d2ctl` ends with 128 + its number, as a shell does.
    #[error("{command} was killed by {}", signal_name(*signal))]
    Killed { command: String, signal: i32 },
}

impl Error {
    pub fn io(path: impl AsRef<Path>, cause: std::io::Error) -> Error {
        Error::Io { path: path.as_ref().display().to_string(), cause }
    }

    /// The failure of a child that ended with `status`, which was not a success.
    pub fn child(command: impl Into<String>, status: std::process::ExitStatus, kind: FailureKind) -> Error {
        use std::os::unix::process::ExitStatusExt;
        let command = command.into();
        match (status.code(), status.signal()) {
            (_, Some(signal)) => Error::Killed { command, signal },
            (Some(code), None) => Error::Child { command, code, kind },
            (None, None) => Error::Child { command, code: 1, kind },
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

    /// Whether the same command may succeed when run again unchanged; a file system's error as
    /// [`FailureKind::of_io`] tells.
    pub fn kind(&self) -> FailureKind {
        match self {
            Error::Io { cause, .. } => FailureKind::of_io(cause),
            Error::Invalid(_) => FailureKind::Permanent,
            Error::NotNow(_) => FailureKind::Transient,
            Error::Child { kind, .. } => *kind,
            // Stopped from outside (a shutdown, the OOM killer): nothing about the command itself.
            Error::Killed { .. } => FailureKind::Transient,
        }
    }

    /// The failure as `--json` reports it.
    pub fn failure(&self) -> Failure {
        Failure { kind: self.kind(), message: self.to_string() }
    }
}

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
