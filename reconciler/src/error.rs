//! What a pass (or the service) can fail on, and whether trying again soon may help: the service
//! retries a transient failure with backoff and waits for the next trigger after a permanent one
//! (`daemon.rs`).

use std::path::PathBuf;

use left4me_state::LoadError;
use rusqlite::ErrorCode;

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host's settings or folders cannot be used (a broken `host.env`, a folder that cannot
    /// be made or watched).
    #[error("{0}")]
    Host(String),
    /// The host's pass lock cannot be taken.
    #[error(transparent)]
    Lock(l4d2ctl::Error),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// l4d2ctl cannot be started.
    #[error("cannot run {}: {cause}", program.display())]
    Spawn { program: PathBuf, cause: std::io::Error },
    /// An l4d2ctl read (`observe`, `show`) ended without its answer.
    #[error("l4d2ctl {command} failed: {stderr}")]
    Failed { command: String, stderr: String, end: End },
    /// An l4d2ctl read answered something that is not what this reconciler reads.
    #[error("{what}: {cause}")]
    Unexpected { what: String, cause: serde_json::Error },
    /// Following the upstream failed (a fetch, a fast-forward): the next fetch tries again.
    #[error("{0}")]
    Upstream(String),
    /// What a person asked cannot be done as asked (a server the revision does not declare, a
    /// backup it does not have): nothing was changed.
    #[error("{0}")]
    Refused(String),
}

/// How a failed l4d2ctl ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It exited with this code; l4d2ctl's codes do not say whether trying again helps.
    Code(i32),
    /// It was killed by this signal (the service stopping, the OOM killer): nothing was wrong
    /// with what it was asked.
    Signal(i32),
    /// How it ended cannot be learned.
    Unknown,
}

impl End {
    /// The exit code a job ends with: a shell's 128 + N for a signal.
    pub fn code(self) -> i32 {
        match self {
            End::Code(code) => code,
            End::Signal(signal) => 128 + signal,
            End::Unknown => 128,
        }
    }

    /// Whether trying again soon may help: l4d2ctl says no more than that it failed, which is as
    /// likely systemd busy as anything, and a killed one was asked nothing wrong.
    pub fn retry(self) -> Retry {
        Retry::Transient
    }
}

/// Whether trying again soon may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It may pass by itself soon: a busy or locked database, a full disk (until space is
    /// freed), a lock held, a process killed, systemd busy.
    Transient,
    /// It will not pass by itself: a broken host config, l4d2ctl missing, a revision that cannot
    /// be read. Someone has to change something, and that change (a commit, a retry asked for)
    /// or the resync starts the next pass.
    Permanent,
}

impl From<l4d2ctl::api::FailureKind> for Retry {
    /// As l4d2ctl says of a write that failed as a whole.
    fn from(kind: l4d2ctl::api::FailureKind) -> Retry {
        match kind {
            l4d2ctl::api::FailureKind::Transient => Retry::Transient,
            l4d2ctl::api::FailureKind::Permanent => Retry::Permanent,
        }
    }
}

impl Error {
    /// Whether it comes of a full disk: the database cannot grow.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Db(e) if e.is_disk_full())
    }

    /// Whether trying again soon may help.
    pub fn retry(&self) -> Retry {
        match self {
            Error::Host(_) => Retry::Permanent,
            Error::Lock(l4d2ctl::Error::Io { cause, .. }) | Error::Spawn { cause, .. } => io_retry(cause),
            Error::Lock(error) => Retry::from(error.kind()),
            Error::Load(error) => load_retry(error),
            Error::Db(error) => db_retry(error),
            Error::Failed { end, .. } => end.retry(),
            // A reconciler and an l4d2ctl of different versions: installing them is a change.
            Error::Unexpected { .. } => Retry::Permanent,
            Error::Upstream(_) => Retry::Transient,
            Error::Refused(_) => Retry::Permanent,
        }
    }
}

fn load_retry(error: &LoadError) -> Retry {
    match error {
        LoadError::Stopped { .. } => Retry::Transient,
        LoadError::Io { cause, .. } => io_retry(cause),
        // No commit yet, a broken repo, a file over the limit: a commit is the change that helps.
        LoadError::NotADirectory(_)
        | LoadError::GitMissing(_)
        | LoadError::UnknownRevision { .. }
        | LoadError::Git { .. }
        | LoadError::TooLarge { .. } => Retry::Permanent,
    }
}

fn db_retry(error: &DbError) -> Retry {
    match error {
        // The reconciler makes it on its first pass.
        DbError::NotYet { .. } => Retry::Transient,
        _ if error.is_disk_full() => Retry::Transient,
        DbError::Sqlite { cause, os, .. } => match (cause.sqlite_error_code(), os) {
            (Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::OperationInterrupted), _) => {
                Retry::Transient
            }
            (_, Some(errno)) => io_retry(&std::io::Error::from_raw_os_error(*errno)),
            _ => Retry::Permanent,
        },
    }
}

/// As l4d2ctl tells an OS error, so a step and a pass failing on the same cause are retried alike.
fn io_retry(error: &std::io::Error) -> Retry {
    Retry::from(l4d2ctl::api::FailureKind::of_io(error))
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn sqlite(code: i32, os: Option<i32>) -> Error {
        let cause = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        Error::Db(DbError::Sqlite { path: "/var/lib/left4me/left4me.db".into(), cause, os })
    }

    fn spawn(errno: i32) -> Error {
        Error::Spawn { program: "/usr/bin/l4d2ctl".into(), cause: io::Error::from_raw_os_error(errno) }
    }

    fn lock(errno: i32) -> Error {
        Error::Lock(l4d2ctl::Error::io("/var/lib/left4me/left4me.lock", io::Error::from_raw_os_error(errno)))
    }

    fn load(error: LoadError) -> Error {
        Error::Load(error)
    }

    #[test]
    fn failures_that_pass_by_themselves_are_transient() {
        use rusqlite::ffi;
        let transient = [
            ("a busy database", sqlite(ffi::SQLITE_BUSY, None)),
            ("a locked database", sqlite(ffi::SQLITE_LOCKED, None)),
            ("a full disk", sqlite(ffi::SQLITE_FULL, Some(nix::libc::ENOSPC))),
            ("a full quota", sqlite(ffi::SQLITE_IOERR, Some(nix::libc::EDQUOT))),
            ("a database not made yet", Error::Db(DbError::NotYet { path: "left4me.db".into() })),
            ("a lock file on a full disk", lock(nix::libc::ENOSPC)),
            ("a lock interrupted", lock(nix::libc::EINTR)),
            ("no process to be had", spawn(nix::libc::EAGAIN)),
            ("an l4d2ctl being replaced", spawn(nix::libc::ETXTBSY)),
            (
                "l4d2ctl killed",
                Error::Failed { command: "observe --brief".into(), stderr: String::new(), end: End::Signal(9) },
            ),
            (
                "systemd busy",
                Error::Failed {
                    command: "observe --brief".into(),
                    stderr: "systemctl list-units failed with exit code 1".into(),
                    end: End::Code(1),
                },
            ),
            (
                "git interrupted",
                load(LoadError::Stopped {
                    repo: "state".into(),
                    command: "rev-parse".into(),
                    signal: "SIGTERM".into(),
                }),
            ),
        ];
        for (what, error) in transient {
            assert_eq!(error.retry(), Retry::Transient, "{what}: {error}");
        }
    }

    #[test]
    fn failures_someone_has_to_fix_are_permanent() {
        use rusqlite::ffi;
        let permanent = [
            ("a broken host config", Error::Host("LEFT4ME_ROOT=relative is not an absolute path".into())),
            ("l4d2ctl missing", spawn(nix::libc::ENOENT)),
            ("l4d2ctl not executable", spawn(nix::libc::EACCES)),
            ("a lock file that cannot be made", lock(nix::libc::EACCES)),
            ("a corrupt database", sqlite(ffi::SQLITE_CORRUPT, None)),
            ("a read-only database", sqlite(ffi::SQLITE_READONLY, None)),
            ("a database that cannot be opened", sqlite(ffi::SQLITE_CANTOPEN, Some(nix::libc::EACCES))),
            (
                "an l4d2ctl of another version",
                Error::Unexpected {
                    what: "l4d2ctl observe answered something unexpected".into(),
                    cause: serde_json::from_str::<u8>("{}").unwrap_err(),
                },
            ),
            (
                "no commit yet",
                load(LoadError::UnknownRevision { repo: "state".into(), rev: "main".into(), stderr: String::new() }),
            ),
            (
                "a broken repo",
                load(LoadError::Git { repo: "state".into(), command: "ls-tree".into(), stderr: "bad object".into() }),
            ),
            ("git missing", load(LoadError::GitMissing(io::Error::from_raw_os_error(nix::libc::ENOENT)))),
            ("a file over the limit", load(LoadError::TooLarge { object: "maps.tar".into(), size: 2, limit: 1 })),
            (
                "a work tree that cannot be read",
                load(LoadError::Io { path: "state".into(), cause: io::Error::from_raw_os_error(nix::libc::EACCES) }),
            ),
        ];
        for (what, error) in permanent {
            assert_eq!(error.retry(), Retry::Permanent, "{what}: {error}");
        }
    }
}
