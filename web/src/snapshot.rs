//! What the pages show of the host, looked at in the background: every page and every live view
//! reads the latest snapshot, so a page costs no process, whatever the number of visitors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use l4d2ctl::api::InstanceStatus;
use left4me_state::{DesiredState, Name, Revision};
use reconciler::db::{Db, Event, Reader};
use reconciler::engine::{self, Config, RevisionCache};
use reconciler::live::db::Point;
use reconciler::plan::{Plan, ServerSync, Sync};
use reconciler::report::{self, ServerReport};
use tokio::sync::watch;

use crate::gamelog::GameLog;

/// How often the host is looked at while someone is watching (a page or a live view in the
/// last [`WATCHED`]), and while no one is: an idle web app costs the host next to nothing, and
/// the first page after a quiet spell asks for a fresh look at once.
pub const INTERVAL: Duration = Duration::from_secs(2);
pub const IDLE_INTERVAL: Duration = Duration::from_secs(60);
pub const WATCHED: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Snapshot {
    /// When it was taken (RFC 3339), and on this process's clock.
    pub taken_at: String,
    pub taken: Option<Instant>,
    /// The branch's commit.
    pub head: Option<String>,
    /// The last valid revision read, with what it declares.
    pub revision: Option<String>,
    pub desired: Option<Arc<DesiredState>>,
    /// Diagnostics of the branch's commit when it is invalid.
    pub revision_error: Option<String>,
    /// What kept the host from being looked at (no commit yet, l4d2ctl missing).
    pub problem: Option<String>,
    pub servers: Vec<ServerReport>,
    pub plan: Option<Plan>,
    pub instances: BTreeMap<Name, InstanceStatus>,
    pub last_pass: Option<Event>,
    pub last_applied: Option<String>,
    /// How long looking took, in ms.
    pub took_ms: u128,
    /// Each running server's CPU between the look before and this one, in percent of one core.
    pub cpu: BTreeMap<Name, f64>,
    /// Every server's points of the last day ([`HISTORY`]), from `$ROOT/live.db`; None while
    /// there is no such database (the sampler has not run on this host).
    pub history: Option<Arc<Histories>>,
}

/// Every server's points, oldest first.
pub type Histories = BTreeMap<Name, Vec<Point>>;

/// The dashboard's history: a day of 15-minute points, read again at most every 30 s (the
/// sampler adds to it no more often), in one query for every server.
pub const HISTORY: (i64, i64) = (900, 86_400);
const HISTORY_READ_EVERY: Duration = Duration::from_secs(30);

impl Snapshot {
    /// The owner of a server, from the revision; None for a server only the host has.
    pub fn owner(&self, server: &str) -> Option<&Name> {
        let desired = self.desired.as_ref()?;
        desired.servers.get(server).map(|s| &s.owner)
    }
}

/// Looks at the host every [`INTERVAL`], and at once when poked (after a save), publishing each
/// look. Runs on its own thread: looking waits on git and `l4d2ctl observe`.
pub fn watch(
    config: Config,
    pokes: Receiver<()>,
    publish: watch::Sender<Arc<Snapshot>>,
    watched: Arc<std::sync::Mutex<Instant>>,
) {
    let mut cache = RevisionCache::default();
    let mut kept: Option<(String, Arc<DesiredState>)> = None;
    // One connection for the watcher's life, opened (again) when it cannot be. Read-only: the
    // reconciler alone makes and migrates its database; until it has, an empty one stands in.
    let mut db: Option<Reader> = None;
    let mut cpu = CpuLooks::default();
    let mut history = History::new(&config);
    loop {
        let mut problem = None;
        if db.is_none() {
            db = Reader::open(&config.db_path()).map_err(|e| problem = Some(e.to_string())).ok();
        }
        let mut snapshot = match &db {
            Some(db) => look(&config, &db.lock().unwrap_or_else(PoisonError::into_inner), &mut cache, &mut kept),
            None => Snapshot {
                taken_at: reconciler::db::now(),
                taken: Some(Instant::now()),
                problem,
                ..Snapshot::default()
            },
        };
        if snapshot.revision_error.is_some() {
            // An invalid commit changes nothing on the host: keep showing what runs.
            let last = publish.borrow();
            snapshot.servers = last.servers.clone();
            snapshot.instances = last.instances.clone();
            snapshot.cpu = last.cpu.clone();
        } else if let Some(taken) = snapshot.taken {
            snapshot.cpu = cpu.look(&snapshot.instances, taken);
        }
        snapshot.history = history.read();
        // Said in the log once each time it changes: `/health` says it only in general words.
        if let Some(problem) = &snapshot.problem
            && publish.borrow().problem.as_ref() != Some(problem)
        {
            tracing::warn!("the host cannot be looked at: {problem}");
        }
        if publish.send(Arc::new(snapshot)).is_err() {
            return;
        }
        let last_watched = *watched.lock().expect("no holder of the watched lock panics");
        let wait = if last_watched.elapsed() < WATCHED { INTERVAL } else { IDLE_INTERVAL };
        match pokes.recv_timeout(wait) {
            // Several pokes at once are one look.
            Ok(()) => while pokes.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn look(
    config: &Config,
    db: &Db,
    cache: &mut RevisionCache,
    kept: &mut Option<(String, Arc<DesiredState>)>,
) -> Snapshot {
    let started = Instant::now();
    let mut snapshot = Snapshot { taken_at: reconciler::db::now(), taken: Some(started), ..Snapshot::default() };
    snapshot.last_pass = db.events(1).ok().and_then(|events| events.into_iter().next());
    snapshot.last_applied = db.meta("last_applied").ok().flatten();
    match engine::plan_pass(config, db, cache, None, engine::Detail::Full, engine::Humans::LeaveToA2s) {
        Ok(Ok(planned)) => {
            let engine::Planned { revision, desired, host, plan, .. } = planned;
            let desired = keep(kept, &revision, desired);
            snapshot.servers = report::reports_of(&plan, &desired, &host.instances);
            snapshot.head = Some(revision.id().to_owned());
            snapshot.revision = Some(revision.id().to_owned());
            snapshot.desired = Some(desired);
            snapshot.plan = Some(plan);
            snapshot.instances = host.instances;
        }
        Ok(Err((revision, diagnostics))) => invalid(&mut snapshot, kept, &revision, diagnostics),
        Err(e) => {
            snapshot.problem = Some(e.to_string());
            // What the revision declares is shown even when the host cannot be looked at
            // (l4d2ctl missing, a broken install); the revision was read into the cache.
            match engine::load(config, cache) {
                Ok((revision, Ok(desired))) => {
                    let desired = keep(kept, &revision, desired);
                    let unknown =
                        ServerSync { sync: Sync::OutOfSync, message: "the host could not be looked at".into() };
                    snapshot.servers = desired
                        .servers
                        .values()
                        .map(|s| report::report(s.name.as_str(), &unknown, Some(s), None))
                        .collect();
                    snapshot.head = Some(revision.id().to_owned());
                    snapshot.revision = Some(revision.id().to_owned());
                    snapshot.desired = Some(desired);
                }
                Ok((revision, Err(diagnostics))) => invalid(&mut snapshot, kept, &revision, diagnostics.to_string()),
                Err(_) => {}
            }
        }
    }
    snapshot.took_ms = started.elapsed().as_millis();
    snapshot
}

/// The desired state of `revision`, shared with earlier snapshots while the revision is the same.
fn keep(
    kept: &mut Option<(String, Arc<DesiredState>)>,
    revision: &Revision,
    desired: DesiredState,
) -> Arc<DesiredState> {
    let desired = match kept {
        Some((id, kept_desired)) if id == revision.id() => kept_desired.clone(),
        _ => Arc::new(desired),
    };
    *kept = Some((revision.id().to_owned(), desired.clone()));
    desired
}

/// An invalid branch head: its problems, and the last valid revision's servers.
fn invalid(
    snapshot: &mut Snapshot,
    kept: &Option<(String, Arc<DesiredState>)>,
    revision: &Revision,
    diagnostics: String,
) {
    snapshot.head = Some(revision.id().to_owned());
    snapshot.revision_error = Some(diagnostics);
    if let Some((id, desired)) = kept {
        snapshot.revision = Some(id.clone());
        snapshot.desired = Some(desired.clone());
    }
}

/// The CPU time of each running server at the previous look that saw the host, and when: a CPU
/// percentage is the difference of two looks over the time between them (2 s apart while someone
/// watches, a minute when no one does).
#[derive(Default)]
struct CpuLooks {
    previous: BTreeMap<Name, (u64, Option<u32>)>,
    at: Option<Instant>,
}

impl CpuLooks {
    fn look(&mut self, instances: &BTreeMap<Name, InstanceStatus>, at: Instant) -> BTreeMap<Name, f64> {
        let now: BTreeMap<Name, (u64, Option<u32>)> = instances
            .iter()
            .filter_map(|(name, i)| Some((name.clone(), (i.resources.cpu_nsec?, i.main_pid))))
            .collect();
        let elapsed = self.at.map_or(0.0, |before| at.saturating_duration_since(before).as_nanos() as f64);
        let cpu = now
            .iter()
            .filter(|_| elapsed > 0.0)
            .filter_map(|(name, (nsec, pid))| {
                // Started again since (another main process, a CPU time that went down): no figure.
                let (before, before_pid) = self.previous.get(name)?;
                let used = nsec.checked_sub(*before).filter(|_| before_pid == pid)?;
                Some((name.clone(), used as f64 / elapsed * 100.0))
            })
            .collect();
        (self.previous, self.at) = (now, Some(at));
        cpu
    }
}

/// The dashboard's history as last read, and the read-only connection it is read through.
struct History {
    live: GameLog,
    read: Option<(Instant, Arc<Histories>)>,
}

impl History {
    fn new(config: &Config) -> History {
        History { live: GameLog::new(&config.root), read: None }
    }

    /// The last day's points of every server: read again when 30 s old; None while there is no
    /// live.db. A read that fails keeps the last one (and the database is opened again next time).
    fn read(&mut self) -> Option<Arc<Histories>> {
        if let Some((at, points)) = &self.read
            && at.elapsed() < HISTORY_READ_EVERY
        {
            return Some(points.clone());
        }
        let now = left4me_state::clock::unix_seconds(std::time::SystemTime::now()) as i64;
        match self.live.read(|db| db.points(HISTORY.0, now - HISTORY.1)) {
            Some(points) => {
                let points = Arc::new(points);
                self.read = Some((Instant::now(), points.clone()));
                Some(points)
            }
            None => self.read.as_ref().map(|(_, points)| points.clone()),
        }
    }
}
