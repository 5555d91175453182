//! One reconcile pass: read the revision, observe the host, plan, apply through `l4d2ctl`,
//! recording every step as a job.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

pub use l4d2ctl::api::Detail;
use l4d2ctl::api::{Observation, Problem};
use left4me_state::{Checked, DesiredState, Digest, FileKind, Name, OverlayContent, Revision};

use crate::crashloop::{self, CrashLoop};
use crate::db::{Db, DbError, Event, now, stamp};
use crate::plan::{self, Action, HostRepairs, Inputs, Observed, Plan, Wish};

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
}

impl Config {
    /// From `/etc/left4me/host.env` and the environment, as every left4me program reads them.
    pub fn from_env(state: Option<PathBuf>) -> Result<Config, Error> {
        let host = l4d2ctl::Host::from_env().map_err(|e| Error::Host(e.to_string()))?;
        let l4d2ctl = std::env::var_os("LEFT4ME_L4D2CTL").map(PathBuf::from).unwrap_or_else(|| "l4d2ctl".into());
        let state = state.unwrap_or_else(|| host.root.join("state"));
        Ok(Config { root: host.root, state, branch: "main".into(), l4d2ctl })
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("left4me.db")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Host(String),
    #[error(transparent)]
    Load(#[from] left4me_state::LoadError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    L4d2ctl(String),
}

impl Error {
    /// Whether it comes of a full disk: the database cannot grow.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Db(e) if e.is_disk_full())
    }
}

/// What the host runs and holds.
pub struct HostView {
    pub instances: Observed,
    pub overlays: BTreeMap<Name, Digest>,
    /// Override markers of servers with no instance (made or deleted by hand).
    pub overrides: BTreeMap<Name, l4d2ctl::api::Override>,
    /// Unit files changed by hand or missing, units left behind by deleted servers.
    pub repairs: HostRepairs,
    /// Files of the host apart from any server that could not be used (an overlay's digest).
    pub problems: Vec<Problem>,
}

impl HostView {
    /// What the planner looks at, with this view of the host.
    fn inputs<'a>(
        &'a self,
        desired: &'a DesiredState,
        previous: &'a BTreeMap<Name, Wish>,
        prune_confirmed: bool,
    ) -> Inputs<'a> {
        Inputs {
            desired,
            observed: &self.instances,
            overlays: &self.overlays,
            orphan_overrides: &self.overrides,
            previous,
            prune_confirmed,
            host: &self.repairs,
        }
    }
}

/// Observes the host in one `l4d2ctl observe`, whatever the number of servers; a brief
/// observation asks systemd less and no game its A2S answer ([`Detail`]).
pub fn observe(config: &Config, detail: Detail) -> Result<HostView, Error> {
    let args: &[&str] = match detail {
        Detail::Full => &["observe"],
        Detail::Brief => &["observe", "--brief"],
    };
    let observed: Observation = l4d2ctl_json(config, args)?;
    Ok(HostView {
        instances: observed.instances.into_iter().map(|s| (s.name.clone(), s)).collect(),
        overlays: observed.overlays.into_iter().map(|o| (o.name, o.digest)).collect(),
        overrides: observed.overrides.into_iter().map(|o| (o.name, o.marker)).collect(),
        repairs: HostRepairs { units: observed.units, leftover_units: observed.leftover_units },
        problems: observed.problems,
    })
}

fn l4d2ctl_json<T: serde::de::DeserializeOwned>(config: &Config, args: &[&str]) -> Result<T, Error> {
    let output = Command::new(&config.l4d2ctl)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::L4d2ctl(format!("cannot run {}: {e}", config.l4d2ctl.display())))?;
    if !output.status.success() {
        return Err(Error::L4d2ctl(format!(
            "l4d2ctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| Error::L4d2ctl(format!("l4d2ctl {} answered something unexpected: {e}", args.join(" "))))
}

/// An instance's rendered spec as the host has it (`l4d2ctl show`), for showing diffs.
pub fn rendered(config: &Config, server: &Name) -> Result<String, Error> {
    let record: serde_json::Value = l4d2ctl_json(config, &["show", server.as_str()])?;
    let spec: left4me_state::InstanceSpec = serde_json::from_value(record["spec"].clone())
        .map_err(|e| Error::L4d2ctl(format!("l4d2ctl show {server}: {e}")))?;
    Ok(spec.to_json())
}

/// The last revision read, kept by the service so that a pass over an unchanged revision costs
/// one `git rev-parse` rather than reading the tree again.
#[derive(Default)]
pub struct RevisionCache {
    last: Option<(Revision, Checked)>,
    /// Whether the last `load` had to read the tree (two more git processes).
    read_tree: bool,
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
    let checked = left4me_state::validate(&tree);
    cache.last = Some((revision.clone(), checked.clone()));
    cache.read_tree = true;
    Ok((revision, checked))
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
) -> Result<Result<Planned, (Revision, String)>, Error> {
    // Reading the revision and observing the host are independent and both wait on other
    // processes: done side by side. (An invalid revision wastes one observation; it is rare.)
    let (loaded, observed) = std::thread::scope(|scope| {
        let observing = scope.spawn(|| observe(config, detail));
        let loaded = load(config, cache);
        (loaded, observing.join().unwrap_or_else(|_| Err(Error::Host("observing the host panicked".into()))))
    });
    let (revision, checked) = loaded?;
    let desired = match checked {
        Ok(desired) => desired,
        Err(diagnostics) => return Ok(Err((revision, diagnostics.to_string()))),
    };
    let mut host = observed?;
    let previous = db.wishes()?;
    let confirmed = match confirm_prune {
        Some(rev) => left4me_state::resolve(&config.state, rev)? == revision,
        None => false,
    };
    let mut observations = 1;
    if detail == Detail::Brief && !plan::needs_query(&host.inputs(&desired, &previous, confirmed)).is_empty() {
        host = observe(config, Detail::Full)?;
        observations += 1;
    }
    let mut plan = plan::plan(&host.inputs(&desired, &previous, confirmed));
    let now = SystemTime::now();
    let retried = crate::retries::asked(&config.root);
    let crash_loops = crashloop::update(&db.crash_loops()?, &desired, &host.instances, &retried, now);
    crashloop::hold(&mut plan, &crashloop::holds(&crash_loops, now));
    Ok(Ok(Planned { revision, desired, host, plan, observations, crash_loops, retried }))
}

/// What one pass did.
#[derive(Debug)]
pub struct PassOutcome {
    pub revision: Revision,
    pub steps: usize,
    /// Processes the pass started: git, the observation, one per step.
    pub processes: usize,
    pub failed: Vec<String>,
    /// The revision was invalid: nothing was applied.
    pub invalid: Option<String>,
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
    .map_err(|e| Error::Host(e.to_string()))?;
    let outcome = pass(config, db, cache, trigger, confirm_prune);
    // A job never stays running once its pass has ended: ended now with the pass's error, or by
    // the next pass when the database cannot be written now.
    if let Err(error) = &outcome {
        db.abandon_unfinished(&error.to_string());
    }
    outcome
}

fn pass(
    config: &Config,
    db: &mut Db,
    cache: &mut RevisionCache,
    trigger: &str,
    confirm_prune: Option<&str>,
) -> Result<PassOutcome, Error> {
    db.cancel_unfinished()?;
    let started = Instant::now();
    // Taken before the look at the host, removed once recorded: a retry asked from now on is the
    // next pass's.
    let taken = crate::retries::take(&config.root);
    let planned = match plan_pass(config, db, cache, confirm_prune, Detail::Brief)? {
        Ok(planned) => planned,
        Err((revision, diagnostics)) => {
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
            return Ok(PassOutcome {
                revision,
                steps: 0,
                processes: 0,
                failed: Vec::new(),
                invalid: Some(diagnostics),
            });
        }
    };
    let Planned { revision, desired, plan, observations, mut crash_loops, .. } = planned;
    db.set_meta("last_attempted", Some(revision.id()))?;
    db.set_meta("revision_error", None)?;
    let rev = Some(revision.id());

    let shared = Mutex::new(&mut *db);
    let failures = Mutex::new(Vec::new());
    // Unit files first: every start after depends on them. (Their failure is kept apart: it names
    // no server.)
    let unit_failures = Mutex::new(Vec::new());
    let mut spawned = 0;
    if !plan.units.is_empty() {
        let job = Job {
            kind: "units",
            target: Name::new("host").expect("host is a valid name"),
            args: vec!["install".into(), "--units-only".into()],
            input: None,
            reason: format!("{}; written again", plan.units.join("; ")),
        };
        spawned += run_parallel(config, &shared, &unit_failures, vec![job], rev, trigger)?;
    }
    // Overlays first, then each phase of the plan in order; within a phase, steps of different
    // servers run side by side (a server has at most one step per phase), as systemd starts units.
    let overlay_jobs: Vec<Job> = plan
        .overlays
        .iter()
        .map(|overlay| {
            let digest = desired.overlays[overlay].digest.to_string();
            let mut args = vec!["overlay".into(), String::new(), overlay.to_string(), "--digest".into(), digest];
            let (kind, verb, input, reason) = match &desired.overlays[overlay].content {
                OverlayContent::Files(_) => {
                    ("overlay", "put", Some(overlay_tar(&desired, overlay)), "its files changed in the revision")
                }
                OverlayContent::Script { build } => {
                    ("build", "build", Some(build.clone()), "its build.sh changed in the revision")
                }
                OverlayContent::Workshop(items) => {
                    args.extend(items.iter().flat_map(|item| ["--item".to_owned(), item.get().to_string()]));
                    ("fetch", "fetch", None, "its workshop items changed in the revision")
                }
            };
            args[1] = verb.into();
            Job { kind, target: overlay.clone(), args, input, reason: reason.into() }
        })
        .collect();
    spawned += run_parallel(config, &shared, &failures, overlay_jobs, rev, trigger)?;
    // A server stacking an overlay that could not be written must not be rendered against it.
    // (Overlay failures are kept apart: an overlay may share its name with a server.)
    let overlay_failures: Vec<(Name, String)> = std::mem::take(&mut *failures.lock().expect("no worker panics"));
    for (server, declared) in &desired.servers {
        let stacks = &desired.blueprints[&declared.blueprint].overlays;
        if let Some((overlay, _)) = overlay_failures.iter().find(|(o, _)| stacks.contains(o)) {
            failures
                .lock()
                .expect("no worker panics")
                .push((server.clone(), format!("{server} (its overlay {overlay} was not written)")));
        }
    }
    let mut phases: Vec<Vec<&plan::Step>> = Vec::new();
    for step in &plan.steps {
        match phases.last_mut() {
            Some(phase) if phase[0].action.phase() == step.action.phase() => phase.push(step),
            _ => phases.push(vec![step]),
        }
    }
    for phase in phases {
        let broken: Vec<Name> =
            failures.lock().expect("no worker panics").iter().map(|(name, _): &(Name, String)| name.clone()).collect();
        // Starts go to systemd together, one transaction, as a plain `systemctl start` of the
        // same units would: systemd then starts them side by side.
        if phase.len() > 1 && phase.iter().all(|step| step.action == Action::Start) {
            let servers: Vec<Name> =
                phase.iter().map(|step| step.server.clone()).filter(|name| !broken.contains(name)).collect();
            if !servers.is_empty() {
                run_starts(config, &shared, &failures, &servers, rev, trigger)?;
                spawned += 1;
            }
            continue;
        }
        let jobs = phase
            .into_iter()
            .filter(|step| !broken.contains(&step.server))
            .map(|step| {
                let name = step.server.to_string();
                let (args, input): (Vec<String>, Option<Vec<u8>>) = match &step.action {
                    Action::Release => (vec!["release".into(), name], None),
                    Action::Create { spec } | Action::Rerender { spec } | Action::Repair { spec } => {
                        (vec!["initialize".into(), name, "-f".into(), "-".into()], Some(spec.to_json().into_bytes()))
                    }
                    Action::Start => (vec!["start".into(), name], None),
                    Action::Stop => (vec!["stop".into(), name], None),
                    Action::Restart => (vec!["restart".into(), name], None),
                    Action::Delete => (vec!["delete".into(), name], None),
                };
                Job { kind: step.action.name(), target: step.server.clone(), args, input, reason: step.reason.clone() }
            })
            .collect();
        spawned += run_parallel(config, &shared, &failures, jobs, rev, trigger)?;
    }
    let failures = failures.into_inner().expect("no worker panics");
    let broken: Vec<&Name> = failures.iter().map(|(name, _)| name).collect();
    let unit_failures = unit_failures.into_inner().expect("no worker panics");
    let failed: Vec<String> =
        unit_failures.iter().chain(&overlay_failures).chain(&failures).map(|(_, what)| what.clone()).collect();

    // A server whose steps failed keeps the wish it had: the revision did not reach it.
    let previous = db.wishes()?;
    let wishes: BTreeMap<Name, Wish> = desired
        .servers
        .iter()
        .filter_map(|(name, server)| {
            if broken.contains(&name) {
                return previous.get(name).map(|wish| (name.clone(), wish.clone()));
            }
            let digest = desired.instance_spec(name).expect("a declared server renders").digest();
            Some((name.clone(), Wish { digest, state: server.state }))
        })
        .collect();
    db.set_wishes(&wishes)?;
    // Every start planned is a try, whatever its job's outcome (or a failed step before it): the
    // next pass sees whether the unit stayed up.
    let tried: Vec<Name> = plan
        .steps
        .iter()
        .filter(|step| matches!(step.action, Action::Start | Action::Restart))
        .map(|step| step.server.clone())
        .collect();
    crashloop::started(&mut crash_loops, &desired, &tried, SystemTime::now());
    db.set_crash_loops(&crash_loops)?;
    crate::retries::done(&config.root, &taken);
    let steps = usize::from(!plan.units.is_empty()) + plan.overlays.len() + plan.steps.len();
    // rev-parse, ls-tree and cat-file when the tree was read, the observations, and the steps':
    // one each, but one for a phase of starts.
    let processes = 1 + if cache.read_tree { 2 } else { 0 } + observations + spawned;
    let elapsed = started.elapsed();
    if failed.is_empty() {
        db.set_meta("last_applied", Some(revision.id()))?;
    }
    let message = match (steps, failed.is_empty()) {
        (0, _) => {
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
    forget_old(db, desired.settings.job_retention_days)?;
    Ok(PassOutcome { revision, steps, processes, failed, invalid: None })
}

/// Removes jobs and events older than the retention setting, at most once an hour: a pass with
/// nothing to do should not scan the job table.
fn forget_old(db: &mut Db, days: u32) -> Result<(), Error> {
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
    db.set_meta("forgotten_at", Some(&stamp(now)))?;
    Ok(())
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
    args: Vec<String>,
    input: Option<Vec<u8>>,
    reason: String,
}

/// At most this many `l4d2ctl` commands run at once.
const WORKERS: usize = 8;

/// Runs jobs side by side, recording each job's failure as (target, what failed). Returns the
/// processes it started: one per job.
fn run_parallel(
    config: &Config,
    db: &Mutex<&mut Db>,
    failures: &Mutex<Vec<(Name, String)>>,
    jobs: Vec<Job>,
    rev: Option<&str>,
    trigger: &str,
) -> Result<usize, Error> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter());
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    // After an error (the database cannot be written) no job starts: the pass ends.
                    if !errors.lock().expect("no worker panics").is_empty() {
                        break;
                    }
                    let Some(job) = queue.lock().expect("no worker panics").next() else { break };
                    let result = (|| {
                        let id = {
                            let db = db.lock().expect("no worker panics");
                            let id = db.create_job(job.kind, job.target.as_str(), rev, trigger)?;
                            db.append_line(id, "plan", &job.reason)?;
                            id
                        };
                        let args: Vec<&str> = job.args.iter().map(String::as_str).collect();
                        run_job(config, db, id, &args, job.input)
                    })();
                    match result {
                        Ok(0) => {}
                        Ok(_) => failures
                            .lock()
                            .expect("no worker panics")
                            .push((job.target.clone(), format!("{} {}", job.kind, job.target))),
                        Err(e) => errors.lock().expect("no worker panics").push(e),
                    }
                }
            });
        }
    });
    match errors.into_inner().expect("no worker panics").into_iter().next() {
        Some(error) => Err(error),
        None => Ok(count),
    }
}

/// Starts several servers with one `l4d2ctl start a b …`: a job per server, each given the lines
/// about it (`<name>: …`) and the lines about none in particular.
fn run_starts(
    config: &Config,
    db: &Mutex<&mut Db>,
    failures: &Mutex<Vec<(Name, String)>>,
    servers: &[Name],
    rev: Option<&str>,
    trigger: &str,
) -> Result<(), Error> {
    let mut jobs = Vec::with_capacity(servers.len());
    {
        let db = db.lock().expect("no worker panics");
        for server in servers {
            let id = db.create_job("start", server.as_str(), rev, trigger)?;
            db.append_line(id, "plan", "declared running")?;
            db.start_job(id)?;
            jobs.push((server, id));
        }
    }
    let mut args = vec!["--reconciler".to_owned(), "start".to_owned()];
    args.extend(servers.iter().map(|s| s.to_string()));
    let output = Command::new(&config.l4d2ctl).args(&args).stdin(Stdio::null()).output();
    let db = db.lock().expect("no worker panics");
    let (stdout, stderr) = match &output {
        Ok(output) => {
            (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
        }
        Err(e) => (String::new(), format!("cannot run {}: {e}", config.l4d2ctl.display())),
    };
    let end = output.as_ref().ok().and_then(|output| ended(Ok(output.status)).1);
    // Every job is ended, even when its lines cannot be written: the first error is returned.
    let mut first_error = None;
    for (server, id) in &jobs {
        let mut keep = |written: Result<(), DbError>| {
            if let Err(e) = written {
                first_error.get_or_insert(e);
            }
        };
        keep(db.append_line(*id, "command", &format!("l4d2ctl {}", args.join(" "))));
        let prefix = format!("{server}: ");
        let mut started = false;
        for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            for line in text.lines() {
                let about = servers.iter().find(|s| line.starts_with(&format!("{s}: ")));
                if about.is_none() || line.starts_with(&prefix) {
                    keep(db.append_line(*id, stream, line));
                }
                started |= line == format!("{server}: started");
            }
        }
        if let Some(end) = &end {
            keep(db.append_line(*id, "stderr", end));
        }
        keep(db.finish_job(*id, if started { 0 } else { 1 }));
        if !started {
            failures.lock().expect("no worker panics").push(((*server).clone(), format!("start {server}")));
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// Runs `l4d2ctl --reconciler <args>` as job `job`, every output line into the job's log as it
/// comes. Returns the exit code.
fn run_job(
    config: &Config,
    db: &Mutex<&mut Db>,
    job: i64,
    args: &[&str],
    input: Option<Vec<u8>>,
) -> Result<i32, Error> {
    let db = |f: &dyn Fn(&Db) -> Result<(), DbError>| f(&db.lock().expect("no worker panics"));
    db(&|db| db.start_job(job))?;
    db(&|db| db.append_line(job, "command", &format!("l4d2ctl {}", args.join(" "))))?;
    let mut child = match Command::new(&config.l4d2ctl)
        .arg("--reconciler")
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            db(&|db| db.append_line(job, "stderr", &format!("cannot run {}: {e}", config.l4d2ctl.display())))?;
            db(&|db| db.finish_job(job, 127))?;
            return Ok(127);
        }
    };
    let writer = match (child.stdin.take(), input) {
        (Some(mut stdin), Some(input)) => Some(std::thread::spawn(move || stdin.write_all(&input))),
        _ => None,
    };
    let (tx, rx) = mpsc::channel();
    let readers: Vec<_> = [
        ("stdout", Box::new(child.stdout.take().expect("stdout was piped")) as Box<dyn std::io::Read + Send>),
        ("stderr", Box::new(child.stderr.take().expect("stderr was piped"))),
    ]
    .into_iter()
    .map(|(stream, pipe)| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send((stream, line)).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    // A line that cannot be written (a full disk) does not stop the job: its output is still
    // read to the end, so that it never blocks on a full pipe, and it is waited for, so that it
    // never lingers as a zombie; the job is ended and the first error returned.
    let mut first_error = None;
    for (stream, line) in rx {
        if first_error.is_none()
            && let Err(e) = db(&|db| db.append_line(job, stream, &line))
        {
            first_error = Some(e);
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let (code, end) = ended(child.wait());
    if let Some(end) = &end
        && let Err(e) = db(&|db| db.append_line(job, "stderr", end))
    {
        first_error.get_or_insert(e);
    }
    let finished = db(&|db| db.finish_job(job, code));
    match first_error {
        Some(e) => Err(e.into()),
        None => finished.map(|()| code).map_err(Error::from),
    }
}

/// The exit code a job ends with and, when l4d2ctl did not end by itself, a line that says how
/// it ended: a process killed by a signal leaves no message of its own, and a shell's 128 + N
/// says nothing to a reader.
fn ended(status: std::io::Result<std::process::ExitStatus>) -> (i32, Option<String>) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(signal)) => {
                (128 + signal, Some(format!("l4d2ctl was killed by {}", l4d2ctl::signal_name(signal))))
            }
            (None, None) => (128, Some(format!("l4d2ctl ended without an exit code ({status})"))),
        },
        Err(e) => (128, Some(format!("cannot learn how l4d2ctl ended: {e}"))),
    }
}
