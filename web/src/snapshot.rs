//! What the pages show of the host, looked at in the background: every page and every live view
//! reads the latest snapshot, so a page costs no process, whatever the number of visitors.
//!
//! When the revision declares hosts, the snapshot is of all of them: this host's look, and the
//! latest answer of each other host (`hosts.rs`), merged into one list of servers; the desired
//! state it holds is the whole revision, every host's servers (owners, forms, pages need them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use l4d2ctl::api::InstanceStatus;
use left4me_state::{DesiredState, Name, Revision, Server};
use reconciler::db::{Db, Event, Reader};
use reconciler::engine::{self, Config, RevisionCache};
use reconciler::live::db::Point;
use reconciler::plan::{Plan, ServerSync, Sync};
use reconciler::remote::{HostStatus, Ssh};
use reconciler::report::{self, Health, ServerReport};
use tokio::sync::watch;

use crate::gamelog::GameLog;
use crate::hosts::{self, HostLook};
use crate::remote::{HostAt, other_host, other_hosts};

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
    /// The last valid revision read, with what it declares (every host's servers).
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
    /// This host's name (`LEFT4ME_HOST`); None for a host of a one-host repo.
    pub local_host: Option<Name>,
    /// The other declared hosts' latest looks (None: none has ended yet).
    pub hosts: BTreeMap<Name, Option<HostLook>>,
    /// The host each of `servers` was reported by (or, for a host that did not answer, is
    /// placed on); empty when the revision declares no hosts.
    pub server_host: BTreeMap<String, Name>,
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

    /// Whether the revision declares hosts (the pages then show which host each server is on).
    pub fn declares_hosts(&self) -> bool {
        self.desired.as_ref().is_some_and(|d| !d.hosts.is_empty())
    }

    /// The host `server` is on, when the revision declares hosts.
    pub fn host_of(&self, server: &str) -> Option<&Name> {
        self.server_host.get(server)
    }

    /// The other host `server` is placed on (or, not declared, only that host has), with its
    /// address from the revision; None for a server of this host.
    pub fn elsewhere(&self, server: &str) -> Option<HostAt> {
        let desired = self.desired.as_ref()?;
        let host = match desired.servers.get(server) {
            Some(declared) => declared.host.as_ref()?,
            None => self.server_host.get(server)?,
        };
        other_host(desired, self.local_host.as_ref(), host.as_str())
    }

    /// The other host of that name the revision declares, with its address; None for this host
    /// and for any name the revision does not declare.
    pub fn other_host(&self, name: &str) -> Option<HostAt> {
        other_host(self.desired.as_ref()?, self.local_host.as_ref(), name)
    }

    /// The latest answer of another host, when its last look got one.
    pub fn host_status(&self, host: &Name) -> Option<&HostStatus> {
        self.hosts.get(host)?.as_ref()?.status.as_ref().ok().map(|s| &**s)
    }
}

/// Looks at the host every [`INTERVAL`], and at once when poked (after a save), publishing each
/// look. Runs on its own thread: looking waits on git and `l4d2ctl observe`.
pub fn watch(
    config: Config,
    ssh: Ssh,
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
    let looks = hosts::Looks::default();
    let mut remote_cpu = RemoteCpu::default();
    let mut round = 0;
    loop {
        round += 1;
        let started = Instant::now();
        // The hosts of the revision last seen are asked now, beside this host's look; the
        // hosts of a new revision as soon as it is read.
        let known = kept.as_ref().map(|(_, d)| other_hosts(d, config.host.as_ref())).unwrap_or_default();
        looks.start(&ssh, &known, round);
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
        snapshot.local_host = config.host.clone();
        if snapshot.revision_error.is_some() {
            // An invalid commit changes nothing on the host: keep showing what runs.
            let last = publish.borrow();
            let here = |name: &str| last.server_host.get(name).is_none_or(|h| Some(h) == config.host.as_ref());
            snapshot.servers = last.servers.iter().filter(|r| here(&r.name)).cloned().collect();
            snapshot.instances =
                last.instances.iter().filter(|(n, _)| here(n.as_str())).map(|(n, i)| (n.clone(), i.clone())).collect();
            snapshot.cpu = last.cpu.iter().filter(|(n, _)| here(n.as_str())).map(|(n, c)| (n.clone(), *c)).collect();
        } else if let Some(taken) = snapshot.taken {
            snapshot.cpu = cpu.look(&snapshot.instances, taken);
        }
        let others = snapshot.desired.as_ref().map(|d| other_hosts(d, config.host.as_ref())).unwrap_or_default();
        looks.start(&ssh, &others, round);
        let latest = looks.latest(&others, started + hosts::WAIT);
        merge_hosts(&mut snapshot, latest, &mut remote_cpu);
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
            snapshot.servers = report::reports_of(&plan, &desired, &host.instances);
            let desired = keep(config, kept, &revision, desired);
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
                    let unknown =
                        ServerSync { sync: Sync::OutOfSync, message: "the host could not be looked at".into() };
                    snapshot.servers = desired
                        .servers
                        .values()
                        .map(|s| report::report(s.name.as_str(), &unknown, Some(s), None))
                        .collect();
                    let desired = keep(config, kept, &revision, desired);
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
/// `placed` is the revision as it concerns this host; a named host keeps the whole revision,
/// read once per revision, for the other hosts' servers are shown too.
fn keep(
    config: &Config,
    kept: &mut Option<(String, Arc<DesiredState>)>,
    revision: &Revision,
    placed: DesiredState,
) -> Arc<DesiredState> {
    let desired = match kept {
        Some((id, kept_desired)) if id == revision.id() => kept_desired.clone(),
        _ if config.host.is_none() => Arc::new(placed),
        _ => Arc::new(whole(config, revision).unwrap_or_else(|problem| {
            tracing::warn!("reading revision {} whole: {problem}; showing this host's servers only", revision.short());
            placed
        })),
    };
    *kept = Some((revision.id().to_owned(), desired.clone()));
    desired
}

/// Every host's part of `revision` (the engine's look keeps this host's only).
fn whole(config: &Config, revision: &Revision) -> Result<DesiredState, String> {
    let tree = left4me_state::read_revision(&config.state, revision, left4me_state::Limits::DEFAULT)
        .map_err(|e| e.to_string())?;
    left4me_state::validate(&tree).map_err(|problems| problems.to_string())
}

/// Each other host's CPU looks: when its last answer came, and the figures drawn from it.
type RemoteCpu = BTreeMap<Name, (Instant, CpuLooks, BTreeMap<Name, f64>)>;

/// Adds the other hosts' servers to this host's: each host's reports of the servers placed on
/// it (and of what only it has), its instances and their CPU; a server of a host that did not
/// answer is Unknown, with the reason. Rows are in host order, then by name.
fn merge_hosts(snapshot: &mut Snapshot, looks: BTreeMap<Name, Option<HostLook>>, remote_cpu: &mut RemoteCpu) {
    let Some(desired) = snapshot.desired.clone().filter(|d| !d.hosts.is_empty()) else { return };
    // This host's look names the servers moving away from it too: their rows are their new host's.
    let local = snapshot.local_host.clone();
    snapshot.servers.retain(|r| desired.servers.get(r.name.as_str()).is_none_or(|s| s.host == local));
    if let Some(local) = &local {
        for report in &snapshot.servers {
            snapshot.server_host.insert(report.name.clone(), local.clone());
        }
    }
    for (host, look) in &looks {
        let placed = || desired.servers.values().filter(move |s| s.host.as_ref() == Some(host));
        match look.as_ref().map(|l| (&l.status, l.at)) {
            Some((Ok(status), at)) => {
                merge_answer(snapshot, &desired, host, status, at, remote_cpu);
                let missing = missing_reason(host, status);
                for server in placed() {
                    if !snapshot.server_host.contains_key(server.name.as_str()) {
                        unknown(snapshot, host, server, &missing);
                    }
                }
            }
            Some((Err(reason), _)) => placed().for_each(|s| unknown(snapshot, host, s, reason)),
            None => placed().for_each(|s| unknown(snapshot, host, s, &format!("host {host} has not answered yet"))),
        }
    }
    remote_cpu.retain(|host, _| looks.contains_key(host));
    let order = |r: &ServerReport| (snapshot.server_host.get(&r.name).cloned(), r.name.clone());
    let mut servers = std::mem::take(&mut snapshot.servers);
    servers.sort_by_cached_key(order);
    snapshot.servers = servers;
    snapshot.hosts = looks;
}

/// One host's answer: its reports of the servers placed on it and of what only it has, their
/// instances, and their CPU between its last two answers.
fn merge_answer(
    snapshot: &mut Snapshot,
    desired: &DesiredState,
    host: &Name,
    status: &HostStatus,
    at: Instant,
    remote_cpu: &mut RemoteCpu,
) {
    for report in &status.servers {
        // A server placed elsewhere that this host still has is moving away: its row is its
        // new host's.
        let declared = desired.servers.get(report.name.as_str());
        if declared.is_some_and(|s| s.host.as_ref() != Some(host)) || snapshot.server_host.contains_key(&report.name) {
            continue;
        }
        snapshot.server_host.insert(report.name.clone(), host.clone());
        snapshot.servers.push(report.clone());
    }
    let ours = |name: &Name| snapshot.server_host.get(name.as_str()) == Some(host);
    let instances: BTreeMap<Name, InstanceStatus> =
        status.instances.iter().filter(|(n, _)| ours(n)).map(|(n, i)| (n.clone(), i.clone())).collect();
    let (seen_at, looks, cpu) =
        remote_cpu.entry(host.clone()).or_insert_with(|| (at, CpuLooks::default(), BTreeMap::new()));
    // The same answer as last time (the host did not answer since) keeps its figures.
    if *seen_at != at || looks.at.is_none() {
        *cpu = looks.look(&instances, at);
        *seen_at = at;
    }
    snapshot.cpu.extend(cpu.iter().map(|(n, c)| (n.clone(), *c)));
    snapshot.instances.extend(instances);
}

/// A row for a server of `host` whose state is not known, and why.
fn unknown(snapshot: &mut Snapshot, host: &Name, server: &Server, reason: &str) {
    let sync = ServerSync { sync: Sync::OutOfSync, message: reason.to_owned() };
    let mut report = report::report(server.name.as_str(), &sync, Some(server), None);
    report.health = Health::Unknown;
    report.health_message = reason.to_owned();
    snapshot.server_host.insert(report.name.clone(), host.clone());
    snapshot.servers.push(report);
}

/// Why a host that answered says nothing of a server placed on it.
fn missing_reason(host: &Name, status: &HostStatus) -> String {
    let head = status.head.as_deref().map_or("none", |h| h.get(..12).unwrap_or(h));
    match (&status.problem, &status.revision_error) {
        (Some(problem), _) => format!("host {host} cannot look at itself: {problem}"),
        (None, Some(_)) => format!("host {host} finds its revision ({head}) invalid for it and keeps what runs"),
        (None, None) => format!("host {host} has not taken this revision yet (it runs {head})"),
    }
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
