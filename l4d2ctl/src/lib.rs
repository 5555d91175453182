//! `l4d2ctl`: the host side of left4me. It renders instances, installs units, mounts overlays,
//! starts and stops game servers through systemd, and reports what runs (DESIGN.md §5).
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
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    /// A child process failed; its stderr has been passed through, its exit code is kept.
    #[error("{command} failed with exit code {code}")]
    Child { command: String, code: i32 },
}

impl Error {
    pub fn io(path: impl AsRef<Path>, cause: std::io::Error) -> Error {
        Error::Io { path: path.as_ref().display().to_string(), cause }
    }

    /// The exit code `l4d2ctl` ends with: a failed child's own, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Child { code, .. } => *code,
            _ => 1,
        }
    }
}
