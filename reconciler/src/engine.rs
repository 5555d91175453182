//! One reconcile pass: read the revision, observe the host, plan, apply through `l4d2ctl`
//! (`host.rs` runs it), recording every step as a job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use l4d2ctl::api;
pub use l4d2ctl::api::Detail;
use left4me_state::{AlertEvent, Checked, DesiredState, FileKind, Name, OverlayContent, Revision};

use crate::crashloop::{self, CrashLoop};
use crate::db::{Db, Event, now, stamp};
pub use crate::error::Error;
use crate::error::Retry;
use crate::host::{self, HostView, Jobs};
use crate::plan::{self, Action, Plan, Step, Wish};

/// Where the reconciler finds things.
#[derive(Debug, Clone)]
pub struct Config {
    /// `$ROOT`.
    pub root: PathBuf,
    /// The state repo (a git work tree; only its committed branch counts).
    pub state: PathBuf,
    pub branch: String,
    /// The l4d2ctl to run (`LEFT4ME_L4D2CTL`, else `l4d2ctl` on the PATH).
    pub l4d2ctl: PathBuf,
    /// Which of the revision's `hosts/` this is (`LEFT4ME_HOST`): only the servers placed on it
    /// are this host's to converge.
    pub host: Option<Name>,
}

impl Config {
    /// From `/etc/left4me/host.env` and the environment, as every left4me program reads them.
    pub fn from_env(state: Option<PathBuf>) -> Result<Config, Error> {
        let host = l4d2ctl::Host::from_env().map_err(|e| Error::Host(e.to_string()))?;
        let l4d2ctl = std::env::var_os("LEFT4ME_L4D2CTL").map(PathBuf::from).unwrap_or_else(|| "l4d2ctl".into());
        let state = state.unwrap_or_else(|| host.root.join("state"));
        Ok(Config { root: host.root, state, branch: "main".into(), l4d2ctl, host: host.name })
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("left4me.db")
    }

    /// Where servers moving in arrive (`handover.rs`).
    pub fn here(&self) -> crate::handover::Here<'_> {
        crate::handover::Here { root: &self.root, state: &self.state, host: self.host.as_ref() }
    }
}

/// An instance's rendered spec as the host has it (`l4d2ctl show`), for showing diffs.
pub fn rendered(config: &Config, server: &Name) -> Result<String, Error> {
    host::rendered(&config.l4d2ctl, server)
}

/// The last revision read, kept by the service so that a pass over an unchanged revision costs
/// one `git rev-parse` rather than reading the tree again.
#[derive(Default)]
pub struct RevisionCache {
    last: Option<(Revision, Checked)>,
    /// Whether the last `load` had to read the tree (two more git processes).
    read_tree: bool,
    /// Where the servers moving in came from, for the last revision planned.
    origins: crate::handover::Origins,
}

impl RevisionCache {
    /// What the last revision read desires of this host, when it was valid.
    pub fn desired(&self) -> Option<&DesiredState> {
        match &self.last {
            Some((_, Ok(desired))) => Some(desired),
            _ => None,
        }
    }
}

/// The committed revision of the state repo's branch, checked.
pub fn load(config: &Config, cache: &mut RevisionCache) -> Result<(Revision, Checked), Error> {
    let revision = left4me_state::resolve(&config.state, &config.branch)?;
    cache.read_tree = false;
    if let Some((cached, checked)) = &cache.last
        && *cached == revision
    {
        return Ok((revision, checked.clone()));
    }
    let tree = left4me_state::read_revision(&config.state, &revision, left4me_state::Limits::DEFAULT)?;
    let checked = left4me_state::placed(left4me_state::validate(&tree), config.host.as_ref());
    cache.last = Some((revision.clone(), checked.clone()));
    cache.read_tree = true;
    Ok((revision, checked))
}

/// Whether a plan whose `when-empty` rollout hangs on a server A2S shows empty asks its console
/// how many humans play (`l4d2ctl observe --count-humans`): a pass and a person's `left4me
/// status` do; the web's looks, every 2 s while watched, do not (each ask is a line in the
/// server's console), so a page may show as empty a server the pass finds is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Humans {
    Count,
    LeaveToA2s,
}

/// The plan for the current revision and host. None when the revision is invalid.
pub struct Planned {
    pub revision: Revision,
    pub desired: DesiredState,
    pub host: HostView,
    pub plan: Plan,
    /// `l4d2ctl observe` processes the plan took: two when a brief look was not enough.
    pub observations: usize,
    /// The servers held back after crashing, after this look at the host (`crashloop.rs`).
    pub crash_loops: BTreeMap<Name, CrashLoop>,
    /// The retries asked for that this plan took (`retries.rs`).
    pub retried: Vec<Name>,
}

/// Plans a pass from the branch's revision and a look at the host. A brief look ([`Detail`]) is
/// enough for a plan, unless a server's rollout waits for it to be empty: then the host is looked
/// at again in full, for the games' answers.
pub fn plan_pass(
    config: &Config,
    db: &Db,
    cache: &mut RevisionCache,
    confirm_prune: Option<&str>,
    detail: Detail,
    humans: Humans,
) -> Result<Result<Planned, (Revision, String)>, Error> {
    let (loaded, observed) = load_and_observe(config, cache, detail);
    let (revision, checked) = loaded?;
    let desired = match checked {
        Ok(desired) => desired,
        Err(diagnostics) => return Ok(Err((revision, diagnostics.to_string()))),
    };
    let mut host = observed?;
    if let Some(mismatch) = renamed(config, db, &host)? {
        return Ok(Err((revision, mismatch)));
    }
    let desired = crate::workshop::pinned(desired, &host.workshop);
    let previous = db.wishes()?;
    let confirmed = match confirm_prune {
        Some(rev) => left4me_state::resolve(&config.state, rev)? == revision,
        None => false,
    };
    let mut observations = 1;
    let asked = plan::needs_query(&host.inputs(&desired, &previous, confirmed));
    if humans == Humans::Count && !asked.is_empty() {
        host = host::observe_counting_humans(&config.l4d2ctl, asked)?;
        observations += 1;
    }
    let mut plan = plan::plan(&host.inputs(&desired, &previous, confirmed));
    plan.schedules = crate::schedules::put(&desired, &host.schedules);
    crate::handover::describe(config.here(), &revision, &mut cache.origins, &mut plan);
    let now = SystemTime::now();
    let retried = crate::retries::asked(&config.root);
    let crash_loops = crashloop::update(&db.crash_loops()?, &desired, &host.instances, &retried, now);
    crashloop::hold(&mut plan, &crashloop::holds(&crash_loops, now));
    Ok(Ok(Planned { revision, desired, host, plan, observations, crash_loops, retried }))
}

/// The host's name as its servers were made under (`host` in the database's meta, written by each
/// pass), against `LEFT4ME_HOST` now: a machine whose name changed while it holds servers — a
/// host.env copied from another host — would delete them all as moved away and start the other
/// host's, so nothing is changed and this says why. A host with no servers may take any name.
fn renamed(config: &Config, db: &Db, host: &HostView) -> Result<Option<String>, Error> {
    let recorded = db.meta(RECORDED_HOST)?;
    let now = config.host.as_ref().map(Name::to_string);
    if recorded.is_none() || recorded == now || host.instances.is_empty() {
        return Ok(None);
    }
    let was = recorded.unwrap_or_default();
    let now = now.unwrap_or_else(|| "no name".to_owned());
    Ok(Some(format!(
        "hosts/: this host's servers were made as host {was}, and LEFT4ME_HOST now says {now}: nothing is changed. \
         Set LEFT4ME_HOST={was} in /etc/left4me/host.env again; or, if this machine is to be {now}, delete its \
         servers first (`l4d2ctl delete <name>`)"
    )))
}

/// The meta key of the name this host's servers were made under.
const RECORDED_HOST: &str = "host";

/// Reads the revision and observes the host side by side: they are independent and both wait on
/// other processes. (An invalid revision wastes one observation; it is rare.)
fn load_and_observe(
    config: &Config,
    cache: &mut RevisionCache,
    detail: Detail,
) -> (Result<(Revision, Checked), Error>, Result<HostView, Error>) {
    std::thread::scope(|scope| {
        let observing = scope.spawn(|| host::observe(&config.l4d2ctl, detail));
        let loaded = load(config, cache);
        (loaded, observing.join().unwrap_or_else(|_| Err(Error::Host("observing the host panicked".into()))))
    })
}

/// What one pass did.
#[derive(Debug)]
pub struct PassOutcome {
    pub revision: Revision,
    pub steps: usize,
    /// Processes the pass started: git, the observation, one per step.
    pub processes: usize,
    pub failed: Vec<String>,
    /// When steps failed: [`Retry::Transient`] when one of them may pass by itself soon.
    pub retry: Option<Retry>,
    /// The revision was invalid: nothing was applied.
    pub invalid: Option<String>,
    /// The job of this pass's check of the game's build, when that check failed.
    pub failed_check: Option<i64>,
}

/// Runs one pass: nothing is applied from an invalid revision, one server's failure never stops
/// the others, every step is a job with its full output.
pub fn apply(
    config: &Config,
    db: &mut Db,
    cache: &mut RevisionCache,
    trigger: &str,
    confirm_prune: Option<&str>,
) -> Result<PassOutcome, Error> {
    // One pass at a time on a host, whoever starts it (the service, `left4me apply`).
    let _lock = l4d2ctl::host::pass_lock(&config.root, || {
        tracing::info!("waiting for another pass or an l4d2ctl write to end")
    })
    .map_err(Error::Lock)?;
    let outcome = pass(config, db, cache, trigger, confirm_prune);
    // A job never stays running once its pass has ended: ended now with the pass's error, or by
    // the next pass when the database cannot be written now.
    if let Err(error) = &outcome {
        db.abandon_unfinished(&error.to_string());
    }
    outcome
}

/// The pass itself, under the pass lock: settle the jobs a killed pass left, plan, run the
/// plan's jobs, record what came of them.
fn pass(
    config: &Config,
    db: &mut Db,
    cache: &mut RevisionCache,
    trigger: &str,
    confirm_prune: Option<&str>,
) -> Result<PassOutcome, Error> {
    db.cancel_unfinished()?;
    crate::schedule_run::settle(db)?;
    let started = Instant::now();
    // Taken before the look at the host, removed once recorded: a retry asked from now on is the
    // next pass's.
    let taken = crate::retries::take(&config.root);
    let crashed_before = db.crash_loops()?;
    let mut planned = match plan_pass(config, db, cache, confirm_prune, Detail::Brief, Humans::Count)? {
        Ok(planned) => planned,
        Err((revision, diagnostics)) => return record_invalid(db, revision, diagnostics, started),
    };
    db.set_meta("last_attempted", Some(planned.revision.id()))?;
    db.set_meta("revision_error", None)?;
    db.set_meta(RECORDED_HOST, config.host.as_ref().map(Name::as_str))?;
    let (read_tree, mut looks) = (cache.read_tree, planned.observations);
    // Steam is asked first, when that is due: the branch's build, the workshop's items.
    let game = check_game(config, db, &planned, trigger)?;
    let (checked, check_failures) = check_workshop(config, db, &planned, trigger)?;
    if game.asked || (checked > 0 && check_failures.is_empty()) {
        // What Steam said is planned on at once: a new build is installed, and an item updated
        // upstream (which shapes its overlay's digest) fetched, by this pass.
        planned = match plan_pass(config, db, cache, confirm_prune, Detail::Brief, Humans::Count)? {
            Ok(planned) => planned,
            Err((revision, diagnostics)) => return record_invalid(db, revision, diagnostics, started),
        };
        looks += planned.observations;
    }
    // Servers moving in bring their data first (`handover.rs`); one whose data is not in hand
    // yet waits, and the pass is tried again soon.
    let moving = crate::handover::prepare(config.here(), &planned.revision, &planned.desired, &mut planned.plan);
    let mut ran = run_plan(config, db, &planned, trigger)?;
    ran.failures.servers.extend(moving.into_iter().map(|target| {
        let what = planned.plan.servers.get(&target).map(|s| s.message.clone()).unwrap_or_default();
        Failure { target, what, retry: Retry::Transient }
    }));
    ran.processes += usize::from(game.asked);
    ran.failures.checks = check_failures;
    remember_wishes(db, &planned.desired, &ran.failures)?;
    record_tries(db, &mut planned.crash_loops, &planned.plan, &planned.desired)?;
    crate::alerts::crash_loops(db, &crashed_before, &planned.crash_loops, SystemTime::now())?;
    crate::retries::done(&config.root, &taken);
    // rev-parse, ls-tree and cat-file when the tree was read, the observations (again after a
    // workshop check that learnt something), the check and the jobs'.
    let processes = 1 + if read_tree { 2 } else { 0 } + looks + checked + ran.processes;
    let mut outcome = record_event(db, &planned, ran.failures, processes, started)?;
    outcome.failed_check = game.failed_job;
    forget_old(db, &config.root, planned.desired.settings.job_retention_days)?;
    Ok(outcome)
}

/// Records a revision that is invalid: attempted, with its diagnostics; nothing is applied.
fn record_invalid(
    db: &mut Db,
    revision: Revision,
    diagnostics: String,
    started: Instant,
) -> Result<PassOutcome, Error> {
    crate::alerts::revision_invalid(db, revision.id(), &diagnostics)?;
    db.set_meta("last_attempted", Some(revision.id()))?;
    db.set_meta("revision_error", Some(&diagnostics))?;
    db.add_event(&Event {
        at: now(),
        kind: "invalid".into(),
        revision: Some(revision.id().into()),
        duration_ms: Some(started.elapsed().as_millis() as i64),
        steps: Some(0),
        message: format!(
            "revision {} is invalid; nothing applied, the last good revision keeps running",
            revision.short()
        ),
    })?;
    let invalid = Some(diagnostics);
    Ok(PassOutcome { revision, steps: 0, processes: 0, failed: Vec::new(), retry: None, invalid, failed_check: None })
}

/// A job of a pass that did not succeed, or a server not rendered for another's failure.
struct Failure {
    target: Name,
    what: String,
    retry: Retry,
}

/// The failures of a pass, kept apart by what failed: the unit files' name no server, and an
/// overlay may share its name with a server.
#[derive(Default)]
struct Failures {
    /// Asking Steam about the workshop (a failed game check is its job's only, see [`Asked`]).
    checks: Vec<Failure>,
    units: Vec<Failure>,
    /// Adopting, installing or removing a game build.
    game: Vec<Failure>,
    overlays: Vec<Failure>,
    servers: Vec<Failure>,
}

impl Failures {
    /// The servers the revision did not reach.
    fn broken(&self) -> Vec<&Name> {
        self.servers.iter().map(|failure| &failure.target).collect()
    }

    fn all(&self) -> impl Iterator<Item = &Failure> {
        self.checks.iter().chain(&self.units).chain(&self.game).chain(&self.overlays).chain(&self.servers)
    }

    /// Transient when one of them may pass by itself soon; None when nothing failed.
    fn retry(&self) -> Option<Retry> {
        self.all().next()?;
        Some(if self.all().any(|failure| failure.retry == Retry::Transient) {
            Retry::Transient
        } else {
            Retry::Permanent
        })
    }
}

/// What running a plan did.
#[derive(Default)]
struct Ran {
    failures: Failures,
    /// The l4d2ctl processes it started: one per job, one for a phase of starts.
    processes: usize,
}

/// Runs a plan's jobs: the unit files first (every start after depends on them), then the
/// overlays, then each phase of the plan in order.
fn run_plan(config: &Config, db: &mut Db, planned: &Planned, trigger: &str) -> Result<Ran, Error> {
    let runner = Runner { l4d2ctl: &config.l4d2ctl, jobs: Mutex::new(db), revision: planned.revision.id(), trigger };
    let (plan, desired) = (&planned.plan, &planned.desired);
    let mut ran = Ran::default();
    if !plan.units.is_empty() {
        ran.failures.units = runner.run_side_by_side(vec![units_job(&plan.units)], &mut ran.processes)?;
    }
    if let Some(put) = &plan.schedules {
        let failed = runner.run_side_by_side(vec![schedules_job(put)], &mut ran.processes)?;
        ran.failures.units.extend(failed);
    }
    let unbuilt = runner.install_build(planned, &mut ran)?;
    let overlays = overlay_jobs(desired, &planned.host.workshop, &plan.overlays);
    ran.failures.overlays = runner.run_side_by_side(overlays, &mut ran.processes)?;
    ran.failures.servers = servers_stacking(desired, &ran.failures.overlays);
    ran.failures.servers.extend(unbuilt);
    for phase in phases(&plan.steps) {
        runner.run_phase(&phase, &mut ran)?;
    }
    runner.record_moves(planned, &ran.failures)?;
    let removals: Vec<Job> = plan
        .remove_builds
        .iter()
        .map(|build| {
            game_job(
                "remove",
                api::Command::GameRemove { build: *build },
                format!("build {build}: no server runs, stacks or wants it, and no blueprint pins it"),
            )
        })
        .collect();
    let failed = runner.run_side_by_side(removals, &mut ran.processes)?;
    ran.failures.game.extend(failed);
    Ok(ran)
}

/// The job that makes the host's schedule timers the revision's: every timer, one command.
fn schedules_job(put: &plan::TimersPut) -> Job {
    let input = serde_json::to_vec(&put.timers).expect("schedule timers always serialize");
    let target = Name::new("host").expect("host is a valid name");
    Job {
        kind: "schedules",
        target,
        command: api::Command::SchedulesPut,
        input: Some(input),
        reason: put.reason.clone(),
    }
}

/// A job about the host's game builds; its target is `game`.
fn game_job(kind: &'static str, command: api::Command, reason: String) -> Job {
    host_job(kind, "game", command, reason)
}

/// A job about the host rather than one server or overlay, with no input: its target is `host`
/// or `game`.
fn host_job(kind: &'static str, target: &'static str, command: api::Command, reason: String) -> Job {
    let target = Name::new(target).expect("host and game are valid names");
    Job { kind, target, command, input: None, reason }
}

/// Whether a pass asked Steam. A check that failed is its job's to tell, not the pass's: the
/// revision was applied all the same, and the check stays due, so the next pass (at the latest
/// the next resync) asks again.
struct Asked {
    asked: bool,
    /// The check's job, when it failed.
    failed_job: Option<i64>,
}

/// Asks Steam for the branch's build as a job of its own (`l4d2ctl game check`) when the last
/// check is older than `checkEvery`, of another branch, or none — or when a person asked
/// (`left4me game check`, trigger `check`) — and records a build newly published as an event.
fn check_game(config: &Config, db: &mut Db, planned: &Planned, trigger: &str) -> Result<Asked, Error> {
    let now = left4me_state::clock::unix_seconds(SystemTime::now());
    let game = &planned.host.game;
    let why = match crate::game::check_due(&planned.desired, game, now) {
        Some(why) => why,
        None if trigger == "check" => "asked for by `left4me game check`".to_owned(),
        None => return Ok(Asked { asked: false, failed_job: None }),
    };
    let branch = planned.desired.settings.game.branch.to_string();
    let runner = Runner { l4d2ctl: &config.l4d2ctl, jobs: Mutex::new(db), revision: planned.revision.id(), trigger };
    let (failure, end, job) =
        runner.run_ended(game_job("check", api::Command::GameCheck { branch: branch.clone() }, why))?;
    let before = crate::game::published(&planned.desired, game);
    if let Some(api::Outcome::GameChecked { published, .. }) = end.outcome
        && before != Some(published)
    {
        let was = before.map(|b| format!(" (was {b})")).unwrap_or_default();
        let installed = if game.installed.contains(&published) { "; it is installed" } else { "" };
        let message = format!("build {published} available on the {branch} branch{was}{installed}");
        runner.event(planned, message.clone())?;
        runner.jobs.lock().expect("no worker panics").add_notice(AlertEvent::BuildAvailable, None, &message)?;
    }
    if let Some(failure) = &failure {
        tracing::warn!(
            job = failure.what,
            "asking Steam for the {branch} branch's build failed; asked again next pass"
        );
    }
    Ok(Asked { asked: true, failed_job: failure.map(|_| job) })
}

/// The job that writes the unit files again.
fn units_job(why: &[String]) -> Job {
    host_job("units", "host", api::Command::InstallUnits, format!("{}; written again", why.join("; ")))
}

/// Asks Steam about the revision's workshop items and collections (`l4d2ctl workshop check`, one
/// job) when that is due (`workshop::check_due`): before the overlays are planned, since what
/// Steam says shapes their digests. Returns the processes it ran (none, or the check) and its
/// failure. A failed check changes nothing: the overlays stay as the last check had them, and
/// the next pass asks again.
fn check_workshop(
    config: &Config,
    db: &mut Db,
    planned: &Planned,
    trigger: &str,
) -> Result<(usize, Vec<Failure>), Error> {
    let now = left4me_state::clock::unix_seconds(SystemTime::now());
    let (items, collections) = crate::workshop::wanted(&planned.desired);
    let reason = match crate::workshop::check_due(&planned.desired, &planned.host.workshop, now) {
        Some(reason) => reason,
        // `left4me game check` asks about the workshop too, when the revision has any of it.
        None if trigger == "check" && !(items.is_empty() && collections.is_empty()) => {
            "asked for by `left4me game check`".to_owned()
        }
        None => return Ok((0, Vec::new())),
    };
    let command = api::Command::WorkshopCheck { items, collections };
    let job = host_job("check", "host", command, format!("{reason}; Steam is asked about the workshop"));
    let runner = Runner { l4d2ctl: &config.l4d2ctl, jobs: Mutex::new(db), revision: planned.revision.id(), trigger };
    let mut processes = 0;
    let failures = runner.run_side_by_side(vec![job], &mut processes)?;
    Ok((processes, failures))
}

/// A job per overlay to write (files), build (script), fetch (workshop items, at the versions
/// last checked) or unpack (archives).
fn overlay_jobs(desired: &DesiredState, workshop: &api::WorkshopDetails, overlays: &[Name]) -> Vec<Job> {
    overlays
        .iter()
        .map(|overlay| {
            let (name, digest) = (overlay.clone(), desired.overlays[overlay].digest.clone());
            let (kind, command, input, reason) = match &desired.overlays[overlay].content {
                OverlayContent::Files(_) => (
                    "overlay",
                    api::Command::OverlayPut { name, digest },
                    Some(overlay_tar(desired, overlay)),
                    "its files changed in the revision",
                ),
                OverlayContent::Script { build } => (
                    "build",
                    api::Command::OverlayBuild { name, digest },
                    Some(build.clone()),
                    "its build.sh changed in the revision",
                ),
                OverlayContent::Workshop { .. } => {
                    let items = crate::workshop::items(&desired.overlays[overlay], workshop);
                    (
                        "fetch",
                        api::Command::OverlayFetch { name, digest, items },
                        None,
                        "its workshop items changed in the revision or on Steam",
                    )
                }
                OverlayContent::Archive(sources) => (
                    "unpack",
                    api::Command::OverlayArchive { name, digest },
                    Some(serde_json::to_vec(sources).expect("archive sources always serialize")),
                    "its archives changed in the revision",
                ),
            };
            Job { kind, target: overlay.clone(), command, input, reason: reason.into() }
        })
        .collect()
}

/// The servers stacking an overlay that could not be written: they must not be rendered
/// against it.
fn servers_stacking(desired: &DesiredState, overlay_failures: &[Failure]) -> Vec<Failure> {
    desired
        .servers
        .iter()
        .filter_map(|(server, declared)| {
            let stacks = &desired.blueprints[&declared.blueprint].overlays;
            let failed = overlay_failures.iter().find(|failure| stacks.contains(&failure.target))?;
            Some(Failure {
                target: server.clone(),
                what: format!("{server} (its overlay {} was not written)", failed.target),
                retry: failed.retry,
            })
        })
        .collect()
}

/// The plan's steps cut into phases, in order: within a phase, steps of different servers run
/// side by side (a server has at most one step per phase), as systemd starts units.
fn phases(steps: &[Step]) -> Vec<Vec<&Step>> {
    let mut phases: Vec<Vec<&Step>> = Vec::new();
    for step in steps {
        match phases.last_mut() {
            Some(phase) if phase[0].action.phase() == step.action.phase() => phase.push(step),
            _ => phases.push(vec![step]),
        }
    }
    phases
}

/// The job of one step of the plan.
fn step_job(step: &Step) -> Job {
    let name = step.server.clone();
    let (command, input) = match &step.action {
        Action::Release => (api::Command::Release { name }, None),
        Action::Create { spec, build } | Action::Rerender { spec, build } | Action::Repair { spec, build } => {
            (api::Command::Initialize { name, build: *build }, Some(spec.to_json().into_bytes()))
        }
        Action::Start => (api::Command::Start { names: vec![name] }, None),
        Action::Stop => (api::Command::Stop { name }, None),
        Action::Restart => (api::Command::Restart { name }, None),
        Action::Delete => (api::Command::Delete { name, moving_to: None }, None),
        Action::MoveAway { to } => (api::Command::Delete { name, moving_to: Some(to.clone()) }, None),
        Action::Receive => (api::Command::Receive { name }, None),
    };
    Job { kind: step.action.name(), target: step.server.clone(), command, input, reason: step.reason.clone() }
}

/// Remembers what the revision wanted of each server; a server whose steps failed keeps the wish
/// it had: the revision did not reach it.
fn remember_wishes(db: &mut Db, desired: &DesiredState, failures: &Failures) -> Result<(), Error> {
    let broken = failures.broken();
    let previous = db.wishes()?;
    let wishes: BTreeMap<Name, Wish> = desired
        .servers
        .iter()
        .filter_map(|(name, server)| {
            if broken.contains(&name) {
                return previous.get(name).map(|wish| (name.clone(), wish.clone()));
            }
            let digest = server.spec().digest();
            Some((name.clone(), Wish { digest, state: server.state }))
        })
        .collect();
    db.set_wishes(&wishes)?;
    Ok(())
}

/// Counts every start planned as a try, whatever its job's outcome (or a failed step before it):
/// the next pass sees whether the unit stayed up.
fn record_tries(
    db: &mut Db,
    crash_loops: &mut BTreeMap<Name, CrashLoop>,
    plan: &Plan,
    desired: &DesiredState,
) -> Result<(), Error> {
    let tried: Vec<Name> = plan
        .steps
        .iter()
        .filter(|step| matches!(step.action, Action::Start | Action::Restart))
        .map(|step| step.server.clone())
        .collect();
    crashloop::started(crash_loops, desired, &tried, SystemTime::now());
    db.set_crash_loops(crash_loops)?;
    Ok(())
}

/// Records the pass's event (and `last_applied` when nothing failed), and says what it did.
fn record_event(
    db: &mut Db,
    planned: &Planned,
    failures: Failures,
    processes: usize,
    started: Instant,
) -> Result<PassOutcome, Error> {
    let (plan, revision) = (&planned.plan, &planned.revision);
    let failed: Vec<String> = failures.all().map(|failure| failure.what.clone()).collect();
    let game = usize::from(plan.adopt.is_some()) + usize::from(plan.install.is_some()) + plan.remove_builds.len();
    let steps = usize::from(!plan.units.is_empty())
        + usize::from(plan.schedules.is_some())
        + game
        + plan.overlays.len()
        + plan.steps.len();
    let elapsed = started.elapsed();
    if failed.is_empty() {
        db.set_meta("last_applied", Some(revision.id()))?;
    }
    let message = match (steps, failed.is_empty()) {
        // A pass with no step may still have failed: the workshop check runs before any.
        (0, true) => {
            format!("Reconciliation finished in {} ms: nothing to do ({processes} processes)", elapsed.as_millis())
        }
        (_, true) => {
            format!("Reconciliation finished in {} ms: {steps} steps ({processes} processes)", elapsed.as_millis())
        }
        (_, false) => format!(
            "Reconciliation finished in {} ms: {steps} steps, failed: {}",
            elapsed.as_millis(),
            failed.join(", ")
        ),
    };
    db.add_event(&Event {
        at: now(),
        kind: "reconcile".into(),
        revision: Some(revision.id().into()),
        duration_ms: Some(elapsed.as_millis() as i64),
        steps: Some(steps as i64),
        message,
    })?;
    let retry = failures.retry();
    Ok(PassOutcome { revision: revision.clone(), steps, processes, failed, retry, invalid: None, failed_check: None })
}

/// Removes jobs, events and audit entries older than the retention setting, at most once an hour:
/// a pass with nothing to do should not scan the job table. An audit trail that cannot be opened
/// is logged; it fails no pass.
fn forget_old(db: &mut Db, root: &std::path::Path, days: u32) -> Result<(), Error> {
    let now = SystemTime::now();
    let hour_ago = stamp(now - Duration::from_secs(3600));
    if db.meta("forgotten_at")?.is_some_and(|at| at > hour_ago) {
        return Ok(());
    }
    let cutoff = stamp(now - Duration::from_secs(u64::from(days) * 86_400));
    let (jobs, events) = db.forget_before(&cutoff)?;
    if jobs + events > 0 {
        tracing::info!(jobs, events, days, "removed jobs and events older than the retention setting");
    }
    let audit_cutoff = left4me_state::clock::unix_seconds(now).saturating_sub(u64::from(days) * 86_400);
    match l4d2ctl::audit::Audit::open(root).and_then(|audit| audit.forget_before(audit_cutoff)) {
        Ok(0) => {}
        Ok(entries) => tracing::info!(entries, days, "removed audit entries older than the retention setting"),
        Err(e) => tracing::warn!("{e}"),
    }
    forget_game_events(root, &cutoff, days);
    db.set_meta("forgotten_at", Some(&stamp(now)))?;
    Ok(())
}

/// Removes the game's events older than the retention setting from `$ROOT/live.db`, when
/// `left4me live` has made it; a database that cannot be opened is logged, as the audit trail's.
fn forget_game_events(root: &std::path::Path, cutoff: &str, days: u32) {
    let path = crate::live::db::path(root);
    if !path.exists() {
        return;
    }
    match crate::live::db::LiveDb::open_to_trim(&path).and_then(|live| live.forget_events_before(cutoff)) {
        Ok(0) => {}
        Ok(events) => tracing::info!(events, days, "removed game events older than the retention setting"),
        Err(e) => tracing::warn!("{e}"),
    }
}

/// A tar of a files overlay's tree, made from the validated revision.
fn overlay_tar(desired: &DesiredState, name: &Name) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    if let OverlayContent::Files(files) = &desired.overlays[name].content {
        for file in files {
            let mut header = tar::Header::new_gnu();
            match &file.kind {
                FileKind::Regular { data, executable } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(data.len() as u64);
                    header.set_mode(if *executable { 0o755 } else { 0o644 });
                    header.set_mtime(0);
                    builder
                        .append_data(&mut header, &file.path, data.as_slice())
                        .expect("writing a tar to memory does not fail");
                }
                FileKind::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    header.set_mode(0o777);
                    header.set_mtime(0);
                    builder
                        .append_link(&mut header, &file.path, target)
                        .expect("writing a tar to memory does not fail");
                }
            }
        }
    }
    builder.into_inner().expect("writing a tar to memory does not fail")
}

/// One `l4d2ctl` command of a pass, to run as a job.
struct Job {
    kind: &'static str,
    target: Name,
    command: api::Command,
    input: Option<Vec<u8>>,
    reason: String,
}

/// At most this many `l4d2ctl` commands run at once.
const WORKERS: usize = 8;

/// Runs a pass's jobs, each recorded with the revision and trigger of the pass.
struct Runner<'a> {
    l4d2ctl: &'a std::path::Path,
    jobs: Jobs<'a>,
    revision: &'a str,
    trigger: &'a str,
}

impl Runner<'_> {
    /// Runs one phase of the plan; a server whose earlier step failed is skipped. Starts, and
    /// stops, go to systemd together, one transaction, as a plain `systemctl start` (`stop`) of
    /// the same units would: systemd then starts (stops) them side by side.
    fn run_phase(&self, phase: &[&Step], ran: &mut Ran) -> Result<(), Error> {
        let broken: Vec<Name> = ran.failures.broken().into_iter().cloned().collect();
        let steps = phase.iter().filter(|step| !broken.contains(&step.server));
        let together =
            [Action::Start, Action::Stop].into_iter().find(|action| phase.iter().all(|s| s.action == *action));
        let failures = if let Some(action) = together.filter(|_| phase.len() > 1) {
            let servers: Vec<(Name, &str)> = steps.map(|step| (step.server.clone(), step.reason.as_str())).collect();
            if servers.is_empty() {
                return Ok(());
            }
            ran.processes += 1;
            self.together(&action, &servers)?
        } else {
            self.run_side_by_side(steps.map(|step| step_job(step)).collect(), &mut ran.processes)?
        };
        ran.failures.servers.extend(failures);
        Ok(())
    }

    /// Runs jobs side by side, at most [`WORKERS`] at once (each is mostly waiting on systemd),
    /// counting the processes started: one per job. After an error (the database cannot be
    /// written) no job starts: the pass ends on it.
    fn run_side_by_side(&self, jobs: Vec<Job>, processes: &mut usize) -> Result<Vec<Failure>, Error> {
        *processes += jobs.len();
        let queue = Mutex::new(jobs.into_iter());
        let failures = Mutex::new(Vec::new());
        let errors = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..WORKERS {
                scope.spawn(|| {
                    while errors.lock().expect("no worker panics").is_empty() {
                        let Some(job) = queue.lock().expect("no worker panics").next() else { break };
                        match self.run(job) {
                            Ok(None) => {}
                            Ok(Some(failure)) => failures.lock().expect("no worker panics").push(failure),
                            Err(e) => errors.lock().expect("no worker panics").push(e),
                        }
                    }
                });
            }
        });
        match errors.into_inner().expect("no worker panics").into_iter().next() {
            Some(error) => Err(error),
            None => Ok(failures.into_inner().expect("no worker panics")),
        }
    }

    /// Records `job` as queued, with why, and runs it. Returns its failure, if it failed.
    fn run(&self, job: Job) -> Result<Option<Failure>, Error> {
        self.run_ended(job).map(|(failure, _, _)| failure)
    }

    /// [`Runner::run`], with how the job ended (what it said it did) and its id.
    fn run_ended(&self, job: Job) -> Result<(Option<Failure>, host::JobEnd, i64), Error> {
        let id = self.queue(job.kind, &job.target, &job.reason)?;
        let end = host::run_job(self.l4d2ctl, &self.jobs, id, &job.command, job.input)?;
        // A job someone cancelled did what they asked: no alert of it.
        if !end.succeeded() && end.cancelled.is_none() {
            self.tell_failed(id, job.kind, &job.target, end.code)?;
        }
        let failure = (!end.succeeded()).then(|| Failure {
            what: format!("{} {}", job.kind, job.target),
            target: job.target,
            retry: end.retry,
        });
        Ok((failure, end, id))
    }

    /// An event of the pass about the game's builds.
    fn event(&self, planned: &Planned, message: String) -> Result<(), Error> {
        let db = self.jobs.lock().expect("no worker panics");
        let event = Event {
            at: now(),
            kind: "build".into(),
            revision: Some(planned.revision.id().into()),
            duration_ms: None,
            steps: None,
            message,
        };
        db.add_event(&event).map_err(Error::from)
    }

    /// Adopts a base install from before builds and installs the build servers are to run, each
    /// a job, before anything stacks them. Returns the servers that cannot be rendered for a
    /// build that was not installed.
    fn install_build(&self, planned: &Planned, ran: &mut Ran) -> Result<Vec<Failure>, Error> {
        let plan = &planned.plan;
        if let Some(build) = plan.adopt {
            let why = format!("the base install from before builds is build {build}; adopted, no download");
            let failed =
                self.run_side_by_side(vec![game_job("adopt", api::Command::GameAdopt, why)], &mut ran.processes)?;
            ran.failures.game.extend(failed);
        }
        let Some(install) = &plan.install else { return Ok(Vec::new()) };
        ran.processes += 1;
        let command = api::Command::Install { branch: install.branch.clone() };
        let (failure, end, _) = self.run_ended(game_job("install", command, install.reason.clone()))?;
        let Some(failure) = failure else {
            if let Some(api::Outcome::Installed { build: Some(build), downloaded: true, .. }) = end.outcome {
                self.event(planned, format!("build {build} installed beside the running builds"))?;
            }
            return Ok(Vec::new());
        };
        let servers = plan
            .builds
            .iter()
            .filter(|(_, build)| **build == install.build)
            .map(|(server, build)| Failure {
                target: server.clone(),
                what: format!("{server} (its build {build} was not installed)"),
                retry: failure.retry,
            })
            .collect();
        ran.failures.game.push(failure);
        Ok(servers)
    }

    /// Records each server a restart or start of this pass moved onto another build.
    fn record_moves(&self, planned: &Planned, failures: &Failures) -> Result<(), Error> {
        let broken = failures.broken();
        for step in &planned.plan.steps {
            let server = &step.server;
            let Some(build) = planned.plan.builds.get(server) else { continue };
            let was = planned.host.instances.get(server).and_then(|observed| observed.started_build);
            let moved = matches!(step.action, Action::Restart | Action::Start)
                && was.is_some_and(|was| was != *build)
                && !broken.contains(&server);
            if moved {
                let was = was.map(|was| was.to_string()).unwrap_or_default();
                self.event(planned, format!("{server} moved to build {build} (from {was})"))?;
            }
        }
        Ok(())
    }

    /// Starts (stops) several servers with one `l4d2ctl start a b …` (`stop a b …`), a job per
    /// server, each with its step's reason.
    fn together(&self, action: &Action, servers: &[(Name, &str)]) -> Result<Vec<Failure>, Error> {
        let names: Vec<Name> = servers.iter().map(|(server, _)| server.clone()).collect();
        let (kind, command) = match action {
            Action::Stop => ("stop", api::Command::StopAll { names }),
            _ => ("start", api::Command::Start { names }),
        };
        let jobs = servers
            .iter()
            .map(|(server, reason)| Ok((server.clone(), self.queue(kind, server, reason)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let ends = host::together(self.l4d2ctl, &self.jobs, &jobs, &command)?;
        for ((server, id), end) in jobs.iter().zip(&ends) {
            if !end.succeeded() {
                self.tell_failed(*id, kind, server, end.code)?;
            }
        }
        Ok(servers
            .iter()
            .map(|(server, _)| server)
            .zip(ends)
            .filter(|(_, end)| !end.succeeded())
            .map(|(server, end)| Failure { target: server.clone(), what: format!("{kind} {server}"), retry: end.retry })
            .collect())
    }

    /// Raises the notice of a job that failed, for the alerts.
    fn tell_failed(&self, id: i64, kind: &str, target: &Name, code: i32) -> Result<(), Error> {
        let db = self.jobs.lock().expect("no worker panics");
        crate::alerts::job_failed(&db, id, kind, target, code).map_err(Error::from)
    }

    /// A new queued job, with why it runs as its first line.
    fn queue(&self, kind: &str, target: &Name, reason: &str) -> Result<i64, Error> {
        let db = self.jobs.lock().expect("no worker panics");
        let id = db.create_job(kind, target.as_str(), Some(self.revision), self.trigger)?;
        db.append_line(id, "plan", reason)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::forget_game_events;
    use crate::live::db::{GameEventKind, LiveDb, NewEvent};

    #[test]
    fn a_pass_trims_the_games_events_and_makes_no_live_db() {
        let root = tempfile::tempdir().unwrap();
        forget_game_events(root.path(), "2026-12-01T00:00:00.000Z", 30);
        let path = crate::live::db::path(root.path());
        assert!(!path.exists(), "a pass leaves live.db to left4me live");
        let db = LiveDb::open(&path).unwrap();
        let server = left4me_state::Name::new("coop-1").unwrap();
        let event = |at: &str| NewEvent {
            server: server.clone(),
            at: at.to_owned(),
            kind: GameEventKind::RoundStarted,
            player: None,
            steam_id: None,
            text: None,
        };
        db.add_events(&[event("2026-11-01T00:00:00.000Z"), event("2026-12-01T10:00:00.000Z")]).unwrap();
        forget_game_events(root.path(), "2026-12-01T00:00:00.000Z", 30);
        let left: Vec<String> = db.events_after(&server, 0, 10).unwrap().into_iter().map(|e| e.at).collect();
        assert_eq!(left, ["2026-12-01T10:00:00.000Z"]);
    }
}
