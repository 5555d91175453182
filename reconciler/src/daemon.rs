//! `left4me run`: the reconciler as a service. A new commit is acted on at once (a watch on the
//! state repo's refs), and so is a retry asked for (a watch on `$ROOT/retries`); drift is caught
//! by a periodic resync, failures are retried with capped exponential backoff; triggers are
//! coalesced and one pass runs at a time.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::engine::{self, Config, Error};

/// What starts a pass, as recorded on its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Commit,
    Drift,
    /// A failed pass tried again, or a retry asked for (`retries.rs`).
    Retry,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Commit => "commit",
            Trigger::Drift => "drift",
            Trigger::Retry => "retry",
        }
    }
}

/// The longest wait between retries of a failing pass.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The first retry of a failing pass.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);

/// Runs until killed. Returns only when it cannot go on (the database or the repo is gone).
/// An upstream repository the state repo follows, fast-forward only.
pub struct Upstream {
    pub url: String,
    pub every: Duration,
}

pub fn run(config: &Config, resync: Duration, upstream: Option<Upstream>) -> Result<(), Error> {
    let mut said = Said::default();
    let mut db = Db::open(&config.db_path()).map_err(|e| {
        let error = Error::from(e);
        said.failed(config, &error);
        error
    })?;
    let (tx, rx) = mpsc::channel::<Trigger>();
    let git_dir = git_dir(&config.state);
    // A retry asked for is a file made in this folder, as the web app or `left4me retry` makes it.
    let requests = crate::retries::make_folder(&config.root).map_err(|e| Error::Host(e.to_string()))?;
    let root = config.root.clone();
    // Ref updates (a commit, a push, a fast-forward) rename files under .git: watch the folder
    // itself for packed-refs and HEAD, and refs/ below it.
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the repo (each pass does) opens refs too: only writes count.
        let writes = |e: &notify::Event| !matches!(e.kind, notify::EventKind::Access(_) | notify::EventKind::Other);
        let Ok(event) = event.map_err(drop) else { return };
        if !writes(&event) {
            return;
        }
        if event.paths.iter().any(|p| moves_a_ref(p)) {
            let _ = tx.send(Trigger::Commit);
        } else if event.paths.iter().any(|p| crate::retries::is_request(&root, p)) {
            // A pass taking or removing requests is no request.
            let _ = tx.send(Trigger::Retry);
        }
    })
    .map_err(|e| Error::Host(format!("cannot watch the state repo: {e}")))?;
    watcher
        .watch(&git_dir, RecursiveMode::NonRecursive)
        .and_then(|()| watcher.watch(&git_dir.join("refs"), RecursiveMode::Recursive))
        .map_err(|e| Error::Host(format!("cannot watch {}: {e}", git_dir.display())))?;
    watcher
        .watch(&requests, RecursiveMode::NonRecursive)
        .map_err(|e| Error::Host(format!("cannot watch {}: {e}", requests.display())))?;
    tracing::info!(state = %config.state.display(), resync_seconds = resync.as_secs(), "watching the state repo");
    notify("READY=1");

    let mut last_revision: Option<String> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut trigger = Trigger::Commit;
    let mut cache = engine::RevisionCache::default();
    let mut next_fetch = Instant::now();
    loop {
        if let Some(upstream) = &upstream
            && Instant::now() >= next_fetch
        {
            follow(config, &db, upstream);
            next_fetch = Instant::now() + upstream.every;
        }
        let started = Instant::now();
        let retry_at = match engine::apply(config, &mut db, &mut cache, trigger.name(), None) {
            Ok(outcome) => {
                let changed = last_revision.as_deref() != Some(outcome.revision.id());
                last_revision = Some(outcome.revision.id().to_owned());
                said.pass(config, &outcome);
                if let Some(diagnostics) = &outcome.invalid {
                    tracing::warn!(
                        revision = outcome.revision.short(),
                        "invalid revision, nothing applied:\n{diagnostics}"
                    );
                    None
                } else if outcome.failed.is_empty() {
                    if outcome.steps > 0 || changed {
                        tracing::info!(
                            revision = outcome.revision.short(),
                            steps = outcome.steps,
                            ms = started.elapsed().as_millis() as u64,
                            "reconciled"
                        );
                    }
                    backoff = FIRST_BACKOFF;
                    None
                } else {
                    tracing::warn!(revision = outcome.revision.short(), failed = ?outcome.failed, retry_in = ?backoff, "steps failed");
                    Some(retry(&mut backoff))
                }
            }
            Err(error) => {
                tracing::error!("pass failed: {error}");
                said.failed(config, &error);
                Some(retry(&mut backoff))
            }
        };
        let next_resync = Instant::now() + resync;

        // Wait for the next reason to run, then take every other one that came meanwhile. Fetching
        // the upstream is not a pass: a fast-forward moves the ref, which the watch reports.
        trigger = loop {
            let mut deadline = retry_at.map_or(next_resync, |r| r.min(next_resync));
            if upstream.is_some() {
                deadline = deadline.min(next_fetch);
            }
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(first) => {
                    // Take the rest of a burst (a push moves several refs) into this one pass: a
                    // commit among them names it.
                    let mut trigger = first;
                    while let Ok(next) = rx.try_recv() {
                        if next == Trigger::Commit {
                            trigger = next;
                        }
                    }
                    break trigger;
                }
                Err(RecvTimeoutError::Timeout) if retry_at.is_some_and(|r| r <= Instant::now()) => {
                    break Trigger::Retry;
                }
                Err(RecvTimeoutError::Timeout) if next_resync <= Instant::now() => break Trigger::Drift,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(upstream) = &upstream {
                        follow(config, &db, upstream);
                        next_fetch = Instant::now() + upstream.every;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Host("the watch on the state repo ended".into()));
                }
            }
        };
    }
}

/// Whether a changed path can move the branch: a ref, packed-refs or HEAD, once written — git
/// writes `<ref>.lock` and renames it into place, so the lock file itself is not yet a change,
/// and the index, objects and logs never are.
fn moves_a_ref(path: &Path) -> bool {
    let text = path.to_string_lossy();
    if text.ends_with(".lock") {
        return false;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name == "HEAD" || name == "packed-refs" || text.contains("/refs/")
}

/// Fetches the upstream and records what it found: a rewritten history is refused and shown in
/// `left4me status` until the upstream is fixed.
fn follow(config: &Config, db: &Db, upstream: &Upstream) {
    let result = crate::upstream::follow(&config.state, &upstream.url, &config.branch);
    let error = match &result {
        Ok(crate::upstream::Followed::FastForwarded { to }) => {
            tracing::info!(to = &to[..to.len().min(12)], "fast-forwarded to the upstream");
            None
        }
        Ok(crate::upstream::Followed::Rewritten { local, upstream: theirs }) => Some(format!(
            "the upstream's history was rewritten: {} is at {}, the upstream at {}, which does not contain it; \
             left4me follows fast-forwards only — fix the upstream, or reset {} by hand",
            config.branch,
            &local[..local.len().min(12)],
            &theirs[..theirs.len().min(12)],
            config.branch
        )),
        Ok(_) => None,
        Err(e) => Some(format!("cannot follow the upstream {}: {e}", upstream.url)),
    };
    if let Some(error) = &error {
        tracing::warn!("{error}");
    }
    if let Err(e) = db.set_meta("upstream_error", error.as_deref()) {
        tracing::error!("{e}");
    }
}

/// When to retry a failed pass; each retry waits twice as long, up to [`MAX_BACKOFF`].
fn retry(backoff: &mut Duration) -> Instant {
    let at = Instant::now() + *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    at
}

/// `.git` of a work tree, or the repository itself when it is bare.
fn git_dir(repo: &Path) -> PathBuf {
    let dot_git = repo.join(".git");
    if dot_git.is_dir() { dot_git } else { repo.to_path_buf() }
}

/// Tells systemd something (`READY=1`, `STATUS=…`), when started by it (Type=notify).
fn notify(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(sender) = std::os::unix::net::UnixDatagram::unbound() else { return };
    let bytes = socket.as_encoded_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        // An abstract socket address.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| sender.send_to_addr(message.as_bytes(), &addr))
        }
        None => sender.send_to(message.as_bytes(), Path::new(&socket)),
    };
    if let Err(e) = sent {
        tracing::warn!("cannot tell systemd {message:?}: {e}");
    }
}

/// Where the service says how its passes go, beside its `STATUS=`: on /run, a tmpfs, so that it
/// is said even when the database cannot be written (a full disk), and read by `left4me status`.
pub const STATUS_FILE: &str = "/run/left4me/status.json";

/// How the service's passes go, as it last said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// When it last changed.
    pub since: String,
    pub pid: u32,
    /// `ok`, or `failing` while passes end on an error.
    pub state: String,
    /// The `STATUS=` line.
    pub message: String,
    /// The error passes end on.
    pub error: Option<String>,
    /// Passes fail because $ROOT's disk is full.
    pub disk_full: bool,
    /// $ROOT's file system when it was said.
    pub disk: Option<Disk>,
}

impl ServiceStatus {
    /// The status the service last said; None when it never did since boot (or cannot be read).
    pub fn read() -> Option<ServiceStatus> {
        serde_json::from_slice(&std::fs::read(STATUS_FILE).ok()?).ok()
    }
}

/// The size and free space of a file system (statvfs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub path: String,
    pub size_bytes: u64,
    /// Free for anyone to write.
    pub free_bytes: u64,
    pub used_percent: u8,
}

impl Disk {
    pub fn of(path: &Path) -> Option<Disk> {
        let stat = nix::sys::statvfs::statvfs(path).ok()?;
        let block = stat.fragment_size() as u64;
        let size_bytes = stat.blocks() as u64 * block;
        let free_bytes = stat.blocks_available() as u64 * block;
        let used = size_bytes.saturating_sub(stat.blocks_free() as u64 * block);
        let used_percent = if size_bytes == 0 { 0 } else { (used * 100).div_ceil(size_bytes).min(100) as u8 };
        Some(Disk { path: path.display().to_string(), size_bytes, free_bytes, used_percent })
    }

    /// Nothing is left to write.
    pub fn is_full(&self) -> bool {
        self.free_bytes == 0
    }
}

impl std::fmt::Display for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} has {} free of {} ({}% used)",
            self.path,
            bytes(self.free_bytes),
            bytes(self.size_bytes),
            self.used_percent
        )
    }
}

/// A size as people read it: `0 B`, `512 KiB`, `63.9 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// What the service last said, so that it says it again only when it changes.
#[derive(Default)]
struct Said {
    last: Option<(String, String)>,
}

impl Said {
    fn pass(&mut self, config: &Config, outcome: &engine::PassOutcome) {
        let revision = outcome.revision.short();
        let message = if outcome.invalid.is_some() {
            format!("Revision {revision} is invalid; the last good revision keeps running")
        } else if outcome.failed.is_empty() {
            format!("Converged to {revision}")
        } else {
            format!("Steps failed at {revision}: {}; retrying", outcome.failed.join(", "))
        };
        self.say(config, "ok", message, None);
    }

    fn failed(&mut self, config: &Config, error: &Error) {
        let disk = Disk::of(&config.root);
        let message = match &disk {
            Some(disk) if error.is_disk_full() || disk.is_full() => {
                format!("Disk full: {disk}; passes fail: {error}")
            }
            _ => format!("Passes fail: {error}"),
        };
        self.say(config, "failing", message, Some(error));
    }

    fn say(&mut self, config: &Config, state: &str, message: String, error: Option<&Error>) {
        let key = (state.to_owned(), message.clone());
        if self.last.as_ref() == Some(&key) {
            return;
        }
        notify(&format!("STATUS={message}"));
        let disk = Disk::of(&config.root);
        let status = ServiceStatus {
            since: crate::db::now(),
            pid: std::process::id(),
            state: state.to_owned(),
            disk_full: error.is_some_and(Error::is_disk_full) || disk.as_ref().is_some_and(Disk::is_full),
            error: error.map(ToString::to_string),
            message,
            disk,
        };
        match write_status(&status) {
            Ok(()) => self.last = Some(key),
            Err(e) => tracing::warn!("cannot write {STATUS_FILE}: {e}"),
        }
    }
}

/// Writes the status file whole: a reader sees the old one or the new one, never a part.
fn write_status(status: &ServiceStatus) -> std::io::Result<()> {
    let path = Path::new(STATUS_FILE);
    let folder = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(folder)?;
    let temporary = folder.join(format!(".status.json.{}", std::process::id()));
    std::fs::write(&temporary, serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?)?;
    std::fs::rename(&temporary, path)
}
