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
use crate::engine::{self, Config};
use crate::error::{Error, Retry};

/// What starts a pass, as recorded on its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Commit,
    Drift,
    /// A failed pass tried again, or a retry asked for (`retries.rs`).
    Retry,
    /// A backup or restore asked for by the web (`requests.rs`), run before the pass.
    Request,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Commit => "commit",
            Trigger::Drift => "drift",
            Trigger::Retry => "retry",
            Trigger::Request => "request",
        }
    }
}

/// The longest wait between retries of a failing pass.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The least time between two fetches of the upstream that were asked for (`fetch`).
const FETCH_ASKED_GAP: Duration = Duration::from_secs(1);
/// The first retry of a failing pass.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);

/// An upstream repository the state repo follows, fast-forward only.
pub struct Upstream {
    pub url: String,
    pub every: Duration,
}

/// Runs until killed. Returns only when it cannot go on (the database or the repo is gone).
pub fn run(config: &Config, resync: Duration, upstream: Option<Upstream>) -> Result<(), Error> {
    let mut said = Said { last: None, resync };
    let db = Db::open(&config.db_path()).map_err(|e| {
        let error = Error::from(e);
        // The service ends on it, and systemd starts it again (Restart=always).
        said.failed(config, &error, Retry::Transient);
        error
    })?;
    let (_watcher, triggers) = watch(config)?;
    tracing::info!(state = %config.state.display(), resync_seconds = resync.as_secs(), "watching the state repo");
    notify("READY=1");
    let mut service = Service {
        config,
        db,
        said,
        resync,
        upstream,
        cache: engine::RevisionCache::default(),
        backoff: Backoff::default(),
        last_revision: None,
        next_fetch: Instant::now(),
        fetch_asked: false,
        last_asked: Instant::now().checked_sub(FETCH_ASKED_GAP).unwrap_or_else(Instant::now),
        nudged: std::collections::BTreeSet::new(),
    };
    // Alerts are delivered beside the passes, never by them: a receiver that hangs holds no pass.
    let alerts = crate::alerts::spawn(crate::alerts::Delivery {
        db: config.db_path(),
        state: config.state.clone(),
        l4d2ctl: config.l4d2ctl.clone(),
        settings: crate::alerts::Settings::from_env(),
    });
    let mut trigger = Trigger::Commit;
    loop {
        service.take_requests();
        service.follow_when_due();
        if trigger == Trigger::Commit {
            service.nudge_hosts();
        }
        let retry_at = service.pass(trigger).map(|wait| Instant::now() + wait);
        if trigger == Trigger::Commit {
            service.nudge_added();
        }
        alerts.wake();
        trigger = service.next_trigger(&triggers, retry_at)?;
    }
}

/// Watches the state repo's refs and the folder of retries asked for: what they report comes on
/// the receiver, for as long as the watcher is kept.
fn watch(config: &Config) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<Trigger>), Error> {
    let (tx, rx) = mpsc::channel::<Trigger>();
    let git_dir = git_dir(&config.state);
    // A retry asked for is a file made in this folder, as the web app or `left4me retry` makes it.
    let requests = crate::retries::make_folder(&config.root).map_err(|e| Error::Host(e.to_string()))?;
    let inbox = crate::requests::make_folder(&config.root).map_err(|e| Error::Host(e.to_string()))?;
    let mut cancels = Cancels { config: config.clone(), db: None };
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
        } else if event.paths.iter().any(|p| crate::requests::is_request(&root, p, true)) {
            // A cancel is acted on here and now: the job it names may be running in a pass.
            cancels.take_cancels();
        } else if event.paths.iter().any(|p| crate::requests::is_request(&root, p, false)) {
            let _ = tx.send(Trigger::Request);
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
    watcher
        .watch(&inbox, RecursiveMode::NonRecursive)
        .map_err(|e| Error::Host(format!("cannot watch {}: {e}", inbox.display())))?;
    Ok((watcher, rx))
}

/// The cancels the web asks for, acted on by the watch's thread with a connection of its own.
struct Cancels {
    config: Config,
    db: Option<Db>,
}

impl Cancels {
    fn take_cancels(&mut self) {
        if self.db.is_none() {
            match Db::open(&self.config.db_path()) {
                Ok(db) => self.db = Some(db),
                Err(e) => return tracing::error!("cannot take the cancels asked for: {e}"),
            }
        }
        let Some(db) = &mut self.db else { return };
        for request in crate::requests::take(&self.config.root, true) {
            crate::requests::act(&self.config, db, &request);
        }
    }
}

/// The service between its passes.
struct Service<'a> {
    config: &'a Config,
    db: Db,
    said: Said,
    resync: Duration,
    upstream: Option<Upstream>,
    cache: engine::RevisionCache,
    backoff: Backoff,
    last_revision: Option<String>,
    next_fetch: Instant,
    /// A fetch was asked for and not taken yet; when the last one asked for was taken.
    fetch_asked: bool,
    last_asked: Instant,
    /// The hosts told to fetch the newest commit (the control host's, `nudge_hosts`).
    nudged: std::collections::BTreeSet<left4me_state::Name>,
}

impl Service<'_> {
    /// When the upstream is next fetched: at its interval, or sooner when a fetch was asked for —
    /// at most one asked for a second, whoever asks (an ask is a request file, which the game's
    /// user could write as fast as it likes).
    fn fetch_due(&self) -> Instant {
        match self.fetch_asked {
            true => self.next_fetch.min(self.last_asked + FETCH_ASKED_GAP),
            false => self.next_fetch,
        }
    }

    /// Fetches the upstream when it is time to.
    fn follow_when_due(&mut self) {
        if let Some(upstream) = &self.upstream
            && Instant::now() >= self.fetch_due()
        {
            follow(self.config, &self.db, upstream);
            self.next_fetch = Instant::now() + upstream.every;
            if self.fetch_asked {
                (self.fetch_asked, self.last_asked) = (false, Instant::now());
            }
        }
    }

    /// On the control host (one that follows no upstream, of a revision that declares hosts):
    /// tells every other host to fetch the branch's new revision now, whoever made it (a web save,
    /// a push) — before this host's own pass, with the hosts the revision read last declares, and
    /// after it any host the new revision adds (`nudge_added`). Each ask runs on a thread of its
    /// own, bounded, never waited for; a host that does not answer fetches at its next interval.
    fn nudge_hosts(&mut self) {
        if self.upstream.is_some() {
            return;
        }
        let others = self.other_hosts();
        self.nudged = others.iter().map(|host| host.name.clone()).collect();
        for host in others {
            std::thread::spawn(move || crate::remote::nudge(&host));
        }
    }

    /// The other hosts the last revision read declares (none: it declares no hosts, or was
    /// invalid).
    fn other_hosts(&self) -> Vec<crate::remote::HostAt> {
        self.cache.desired().map(|d| crate::remote::other_hosts(d, self.config.host.as_ref())).unwrap_or_default()
    }

    /// After a pass: the hosts its revision declares that were not told to fetch before it.
    fn nudge_added(&mut self) {
        if self.upstream.is_some() {
            return;
        }
        for host in self.other_hosts() {
            if self.nudged.insert(host.name.clone()) {
                std::thread::spawn(move || crate::remote::nudge(&host));
            }
        }
    }

    /// Runs the backups and restores the web asked for, one job each, before the pass: each
    /// holds the pass lock for the second or so it takes.
    fn take_requests(&mut self) {
        for request in crate::requests::take(&self.config.root, false) {
            if request.what == crate::requests::What::Fetch {
                self.fetch_asked = true;
            }
            crate::requests::act(self.config, &mut self.db, &request);
        }
    }

    /// Runs a pass and says how it went. Returns how long to wait before trying it again
    /// without a trigger: None waits for a trigger or the resync.
    fn pass(&mut self, trigger: Trigger) -> Option<Duration> {
        let started = Instant::now();
        let result = engine::apply(self.config, &mut self.db, &mut self.cache, trigger.name(), None);
        let wait = self.backoff.after(Ended::of(&result));
        match &result {
            Ok(outcome) => self.tell_outcome(outcome, started, wait),
            Err(error) => self.tell_failure(error, wait),
        }
        wait
    }

    fn tell_outcome(&mut self, outcome: &engine::PassOutcome, started: Instant, wait: Option<Duration>) {
        let changed = self.last_revision.as_deref() != Some(outcome.revision.id());
        self.last_revision = Some(outcome.revision.id().to_owned());
        self.said.pass(self.config, outcome, wait.is_some());
        let revision = outcome.revision.short();
        if let Some(diagnostics) = &outcome.invalid {
            tracing::warn!(revision, "invalid revision, nothing applied:\n{diagnostics}");
        } else if outcome.failed.is_empty() {
            if outcome.steps > 0 || changed {
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(revision, steps = outcome.steps, ms, "reconciled");
            }
        } else if let Some(wait) = wait {
            tracing::warn!(revision, failed = ?outcome.failed, retry_in = ?wait, "steps failed");
        } else {
            let resync_seconds = self.resync.as_secs();
            tracing::warn!(
                revision,
                failed = ?outcome.failed,
                resync_seconds,
                "steps failed, and will not pass by themselves: tried again at the next commit, retry asked for or resync"
            );
        }
    }

    fn tell_failure(&mut self, error: &Error, wait: Option<Duration>) {
        match wait {
            Some(wait) => tracing::error!(retry_in = ?wait, "pass failed: {error}"),
            None => tracing::error!(
                resync_seconds = self.resync.as_secs(),
                "pass failed: {error}; it will not pass by itself: tried again at the next commit, retry asked for or resync"
            ),
        }
        self.said.failed(self.config, error, error.retry());
    }

    /// Waits for the next reason to run, then takes every other one that came meanwhile.
    /// Fetching the upstream is not a pass: a fast-forward moves the ref, which the watch reports.
    fn next_trigger(
        &mut self,
        triggers: &mpsc::Receiver<Trigger>,
        retry_at: Option<Instant>,
    ) -> Result<Trigger, Error> {
        let next_resync = Instant::now() + self.resync;
        loop {
            let mut deadline = retry_at.map_or(next_resync, |r| r.min(next_resync));
            if self.upstream.is_some() {
                deadline = deadline.min(self.fetch_due());
            }
            match triggers.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(first) => return Ok(burst(first, triggers)),
                Err(RecvTimeoutError::Timeout) if retry_at.is_some_and(|r| r <= Instant::now()) => {
                    return Ok(Trigger::Retry);
                }
                Err(RecvTimeoutError::Timeout) if next_resync <= Instant::now() => return Ok(Trigger::Drift),
                Err(RecvTimeoutError::Timeout) => self.follow_when_due(),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Host("the watch on the state repo ended".into()));
                }
            }
        }
    }
}

/// Takes the rest of a burst (a push moves several refs) into one pass: a commit among them
/// names it.
fn burst(first: Trigger, triggers: &mpsc::Receiver<Trigger>) -> Trigger {
    let mut trigger = first;
    while let Ok(next) = triggers.try_recv() {
        if next == Trigger::Commit {
            trigger = next;
        }
    }
    trigger
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

/// How a pass ended, as the retry policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Converged,
    /// The revision is invalid: only a commit changes that.
    Invalid,
    /// Steps failed; transient when one of them may pass by itself soon.
    StepsFailed(Retry),
    /// The pass ended on an error.
    Failed(Retry),
}

impl Ended {
    fn of(result: &Result<engine::PassOutcome, Error>) -> Ended {
        match result {
            Ok(outcome) if outcome.invalid.is_some() => Ended::Invalid,
            Ok(outcome) => outcome.retry.map_or(Ended::Converged, Ended::StepsFailed),
            Err(error) => Ended::Failed(error.retry()),
        }
    }
}

/// The retry policy, as kube-runtime's `error_policy` answers each error with an action: what
/// may pass by itself soon (a busy database, a full disk being freed, a killed l4d2ctl) is tried
/// again after [`FIRST_BACKOFF`], doubling up to [`MAX_BACKOFF`]; what will not (a broken host
/// config, l4d2ctl missing, a revision that cannot be read, an invalid one) waits for the next
/// trigger or the resync rather than hammering the host. Only a pass that converges resets it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: FIRST_BACKOFF }
    }
}

impl Backoff {
    /// How long to wait, after a pass that ended so, before trying it again without a trigger;
    /// None waits for a trigger or the resync.
    fn after(&mut self, ended: Ended) -> Option<Duration> {
        match ended {
            Ended::Converged => {
                self.next = FIRST_BACKOFF;
                None
            }
            Ended::Invalid | Ended::StepsFailed(Retry::Permanent) | Ended::Failed(Retry::Permanent) => None,
            Ended::StepsFailed(Retry::Transient) | Ended::Failed(Retry::Transient) => {
                let wait = self.next;
                self.next = (self.next * 2).min(MAX_BACKOFF);
                Some(wait)
            }
        }
    }
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
    /// The service's resync, which tries again what will not pass by itself.
    resync: Duration,
}

impl Said {
    /// `retrying`: failed steps are tried again soon (they may pass by themselves).
    fn pass(&mut self, config: &Config, outcome: &engine::PassOutcome, retrying: bool) {
        let revision = outcome.revision.short();
        let message = if outcome.invalid.is_some() {
            format!("Revision {revision} is invalid; the last good revision keeps running")
        } else if outcome.failed.is_empty() {
            format!("Converged to {revision}")
        } else if retrying {
            format!("Steps failed at {revision}: {}; retrying", outcome.failed.join(", "))
        } else {
            format!("Steps failed at {revision}: {}; {}", outcome.failed.join(", "), self.waiting())
        };
        self.say(config, "ok", message, None);
    }

    /// `retry`: whether the service tries again soon.
    fn failed(&mut self, config: &Config, error: &Error, retry: Retry) {
        let disk = Disk::of(&config.root);
        let mut message = match &disk {
            Some(disk) if error.is_disk_full() || disk.is_full() => {
                format!("Disk full: {disk}; passes fail: {error}")
            }
            _ => format!("Passes fail: {error}"),
        };
        if retry == Retry::Permanent {
            message = format!("{message}; {}", self.waiting());
        }
        self.say(config, "failing", message, Some(error));
    }

    /// What the service does after a failure that will not pass by itself.
    fn waiting(&self) -> String {
        format!(
            "this will not pass by itself: tried again at the next commit, retry asked for or resync (every {} s)",
            self.resync.as_secs()
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(waits: &[Option<Duration>]) -> Vec<Option<u64>> {
        waits.iter().map(|wait| wait.map(|w| w.as_secs())).collect()
    }

    #[test]
    fn a_transient_failure_is_retried_sooner_then_later_up_to_a_minute() {
        let mut backoff = Backoff::default();
        let waits: Vec<_> = (0..8).map(|_| backoff.after(Ended::Failed(Retry::Transient))).collect();
        assert_eq!(seconds(&waits), [2, 4, 8, 16, 32, 60, 60, 60].map(Some));
        // Failed steps that may pass by themselves go on from there.
        assert_eq!(backoff.after(Ended::StepsFailed(Retry::Transient)), Some(MAX_BACKOFF));
    }

    #[test]
    fn a_permanent_failure_waits_for_a_trigger_or_the_resync() {
        let mut backoff = Backoff::default();
        for ended in [Ended::Failed(Retry::Permanent), Ended::StepsFailed(Retry::Permanent), Ended::Invalid] {
            assert_eq!(backoff.after(ended), None, "{ended:?}");
        }
        // It says nothing of whether what failed before it has passed: the backoff goes on.
        backoff.after(Ended::Failed(Retry::Transient));
        backoff.after(Ended::Failed(Retry::Permanent));
        assert_eq!(backoff.after(Ended::Failed(Retry::Transient)), Some(Duration::from_secs(4)));
    }

    #[test]
    fn a_pass_that_converges_starts_the_backoff_over() {
        let mut backoff = Backoff::default();
        backoff.after(Ended::Failed(Retry::Transient));
        backoff.after(Ended::Failed(Retry::Transient));
        assert_eq!(backoff.after(Ended::Converged), None);
        assert_eq!(backoff.after(Ended::StepsFailed(Retry::Transient)), Some(FIRST_BACKOFF));
    }
}
