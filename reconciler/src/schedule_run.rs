//! `left4me schedule run <name>`: one run of a schedule, started by its timer
//! (`left4me-schedule@<name>.service`). It reads the branch's committed revision as a pass does,
//! records a job (kind `schedule`, trigger `schedule`) whose lines say what happens to each
//! server, waits for servers to empty or warns their players, and runs each write as a job of its
//! own through `host.rs`, holding the host's pass lock only while it acts, never while it waits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use l4d2ctl::api::{self, Detail, InstanceStatus};
use left4me_state::{AlertEvent, DesiredState, Name, Revision, Schedule, When};

use crate::db::{Db, Event, now};
use crate::error::Error;
use crate::host::{self, Jobs};
use crate::schedules::{self, Decision, Target};

/// Where a run finds things: the reconciler's own settings.
pub struct Where<'a> {
    pub root: &'a Path,
    pub state: &'a Path,
    pub branch: &'a str,
    pub l4d2ctl: &'a Path,
    /// This host's name (`LEFT4ME_HOST`): a schedule acts only on the servers placed here.
    pub host: Option<&'a Name>,
}

/// How often a `when: empty` run asks whether its servers have emptied.
pub const POLL: Duration = Duration::from_secs(10);

/// How long a console command waits for a server that runs but does not answer yet (it is
/// starting: a run missed while the host was off comes at boot, beside the servers' starts).
const CONSOLE_WAIT: Duration = Duration::from_secs(90);

/// Where a running schedule holds its lock: on `/run`, so a run the host's end cut short holds
/// none after a boot.
const RUN_LOCKS: &str = "/run/left4me";

/// How a run went.
#[derive(Debug)]
pub enum Ran {
    /// The revision has no such schedule (any more): nothing was done.
    Gone(String),
    /// The run's job, and the servers whose action failed.
    Done { job: i64, failed: Vec<Name> },
}

/// Runs the schedule `name` once.
pub fn run(at: &Where, name: &Name) -> Result<Ran, Error> {
    let _alive = hold_run_lock(name)?;
    let mut db = Db::open(&at.root.join("left4me.db"))?;
    settle(&db)?;
    let (revision, checked) = left4me_state::load_revision(at.state, at.branch)?;
    let desired = match left4me_state::placed(checked, at.host) {
        Ok(desired) => desired,
        Err(diagnostics) => return invalid(&db, name, &revision, diagnostics.len()),
    };
    let Some(schedule) = desired.schedules.get(name) else {
        return Ok(Ran::Gone(format!(
            "schedule {name} is not in revision {} of the state repo; nothing to do (the next pass removes its timer)",
            revision.short()
        )));
    };
    let job = db.create_job("schedule", name.as_str(), Some(revision.id()), "schedule")?;
    db.start_job(job)?;
    let run = Run { at, schedule, desired: &desired, revision: &revision, job, db: Mutex::new(&mut db) };
    let outcome = run.servers();
    let failed = match &outcome {
        Ok(failed) => failed.clone(),
        Err(error) => {
            let _ = run.db().append_line(job, "reconciler", &format!("the run ended on an error: {error}"));
            Vec::new()
        }
    };
    let code = i32::from(!failed.is_empty() || outcome.is_err());
    run.db().finish_job(job, code)?;
    outcome.map(|failed| Ran::Done { job, failed })
}

/// Ends the jobs of schedule runs that nothing runs any more (killed, the host went down): a
/// run holds its lock for as long as it lives. Passes call it too; it costs nothing while no
/// run's job is unfinished.
pub fn settle(db: &Db) -> Result<(), Error> {
    for (job, schedule) in db.unfinished_runs()? {
        let alive = Name::new(&schedule)
            .ok()
            .and_then(|name| l4d2ctl::fsutil::try_lock(&run_lock(&name)).ok())
            .is_some_and(|lock| lock.is_none());
        if !alive {
            db.cancel_job(job, "the run of this schedule ended before its job did (killed, or the host went down)")?;
        }
    }
    Ok(())
}

fn run_lock(name: &Name) -> PathBuf {
    Path::new(RUN_LOCKS).join(format!("schedule-{name}.lock"))
}

/// The lock a run holds for its whole length; a second run of the same schedule is refused
/// (its timer never starts one, systemd runs a unit once at a time; a person might).
fn hold_run_lock(name: &Name) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    std::fs::create_dir_all(RUN_LOCKS).map_err(|e| Error::Host(format!("cannot make {RUN_LOCKS}: {e}")))?;
    match l4d2ctl::fsutil::try_lock(&run_lock(name)) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(Error::Host(format!("schedule {name} is running already; `left4me jobs` shows its job"))),
        Err(e) => Err(Error::Host(e.to_string())),
    }
}

/// A run on an invalid revision does nothing, and says so.
fn invalid(db: &Db, name: &Name, revision: &Revision, problems: usize) -> Result<Ran, Error> {
    let job = db.create_job("schedule", name.as_str(), Some(revision.id()), "schedule")?;
    db.start_job(job)?;
    let message = format!(
        "schedule {name}: revision {} is invalid ({problems} problems, `left4me validate`); this run does nothing",
        revision.short()
    );
    db.append_line(job, "reconciler", &message)?;
    db.add_notice(AlertEvent::ScheduleSkipped, None, &message)?;
    db.finish_job(job, 1)?;
    Ok(Ran::Done { job, failed: Vec::new() })
}

/// One run of one schedule.
struct Run<'a> {
    at: &'a Where<'a>,
    schedule: &'a Schedule,
    desired: &'a DesiredState,
    revision: &'a Revision,
    job: i64,
    db: Jobs<'a>,
}

/// A server the run acts on, and the writes it takes.
struct Acting {
    target: Target,
    commands: Vec<api::Command>,
    running: bool,
}

impl<'a> Run<'a> {
    fn db(&self) -> MutexGuard<'_, &'a mut Db> {
        self.db.lock().expect("the run's database is held by one thread at a time")
    }

    /// A line of the run's job, and of its unit's journal.
    fn line(&self, text: &str) -> Result<(), Error> {
        tracing::info!("{text}");
        self.db().append_line(self.job, "schedule", text).map_err(Error::from)
    }

    /// Acts on each server of the schedule; returns those whose action failed.
    fn servers(&self) -> Result<Vec<Name>, Error> {
        self.line(&schedules::describe(self.schedule))?;
        for name in schedules::missing(self.desired, self.schedule) {
            self.line(&format!("{name}: not declared by the revision; left out"))?;
        }
        let targets = schedules::targets(self.desired, self.schedule);
        if targets.is_empty() {
            self.line("no server of the revision is named by this schedule; nothing to do")?;
            return Ok(Vec::new());
        }
        if self.schedule.warn.is_some() && !schedules::warns(self.schedule) {
            self.line("its warnings are not said: they are for players about to be cut off by a restart or stop at once (when: always)")?;
        }
        let view = host::observe(self.at.l4d2ctl, Detail::Brief)?;
        let mut acting = Vec::new();
        for target in targets {
            match schedules::decide(self.schedule, &target, view.instances.get(&target.name)) {
                Decision::Act { commands, running } => acting.push(Acting { target, commands, running }),
                Decision::Nothing(why) => self.line(&why)?,
                Decision::Skip(why) => self.skip(&target.name, &why)?,
            }
        }
        let mut failed = Vec::new();
        match self.schedule.when {
            When::Always => {
                if schedules::warns(self.schedule) {
                    self.warn(&acting)?;
                }
                for server in &acting {
                    self.act(server, &mut failed)?;
                }
            }
            When::Empty => self.when_empty(acting, &mut failed)?,
        }
        let message = match failed.is_empty() {
            true => format!("schedule {}: ran", self.schedule.name),
            false => format!("schedule {}: failed on {}", self.schedule.name, join(&failed)),
        };
        self.event(message)?;
        Ok(failed)
    }

    /// Says each warning, at its time before the action, to the servers that play; returns at
    /// the time of the action. The first comes when the timer fires: the action follows the
    /// calendar's time by the longest `before`.
    fn warn(&self, acting: &[Acting]) -> Result<(), Error> {
        let Some(warning) = &self.schedule.warn else { return Ok(()) };
        let playing: Vec<&Name> = acting.iter().filter(|a| a.running).map(|a| &a.target.name).collect();
        let longest = warning.before.iter().copied().max().unwrap_or(0);
        if playing.is_empty() || longest == 0 {
            return Ok(());
        }
        let fired = Instant::now();
        let mut before = warning.before.clone();
        before.sort_unstable_by(|a, b| b.cmp(a));
        for ahead in before {
            sleep_until(fired + Duration::from_secs(longest - ahead));
            let said = say_text(&warning.text(ahead));
            for name in &playing {
                let command = api::Command::Rcon { name: (*name).clone(), command: format!("say {said}") };
                match host::text(self.at.l4d2ctl, &command) {
                    Ok(_) => self.line(&format!("{name}: said {said} ({} before)", schedules::seconds(ahead)))?,
                    Err(e) => self.line(&format!("{name}: could not say the warning: {e}"))?,
                }
            }
        }
        sleep_until(fired + Duration::from_secs(longest));
        Ok(())
    }

    /// `when: empty`: acts on each server once nobody plays on it, asking every 10 s, up to
    /// `within` from the start; a server still played on then is skipped.
    fn when_empty(&self, acting: Vec<Acting>, failed: &mut Vec<Name>) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(self.schedule.within);
        let (at_once, mut waiting): (Vec<Acting>, Vec<Acting>) = acting.into_iter().partition(|a| !a.running);
        for server in &at_once {
            self.act(server, failed)?;
        }
        let mut told = BTreeSet::new();
        let mut last = BTreeMap::new();
        while !waiting.is_empty() {
            let names: Vec<Name> = waiting.iter().map(|a| a.target.name.clone()).collect();
            let view = match host::observe_counting_humans(self.at.l4d2ctl, names) {
                Ok(view) => Some(view),
                Err(e) => {
                    self.line(&format!("cannot look at the host now: {e}; asking again"))?;
                    None
                }
            };
            let mut still = Vec::new();
            for server in waiting {
                let status = view.as_ref().and_then(|view| view.instances.get(&server.target.name));
                match view.as_ref().map(|_| self.empty_now(&server, status)) {
                    Some(Emptied::Act(server)) => self.act(&server, failed)?,
                    Some(Emptied::Done(why)) => self.line(&why)?,
                    Some(Emptied::Wait(server, why)) => {
                        if told.insert(server.target.name.clone()) {
                            self.line(&format!("{why}; waiting up to {}", schedules::seconds(self.schedule.within)))?;
                        }
                        last.insert(server.target.name.clone(), why);
                        still.push(server);
                    }
                    None => still.push(server),
                }
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for server in &waiting {
                    let within = schedules::seconds(self.schedule.within);
                    let why = match last.get(&server.target.name) {
                        Some(why) => format!("did not empty within {within} (last seen: {why})"),
                        None => format!("did not empty within {within} (the host could not be looked at)"),
                    };
                    self.skip(&server.target.name, &why)?;
                }
                break;
            }
            sleep_until(deadline.min(Instant::now() + POLL));
        }
        Ok(())
    }

    /// What a look says of a server waited on.
    fn empty_now(&self, server: &Acting, status: Option<&InstanceStatus>) -> Emptied {
        let name = &server.target.name;
        match schedules::decide(self.schedule, &server.target, status) {
            Decision::Nothing(why) | Decision::Skip(why) => Emptied::Done(format!("{why} (since the run began)")),
            Decision::Act { commands, running: false } => {
                Emptied::Act(Acting { target: server.target.clone(), commands, running: false })
            }
            Decision::Act { commands, running: true } => {
                let acting = Acting { target: server.target.clone(), commands, running: true };
                match status.and_then(|s| s.query.as_ref()).map(|query| query.human_players()) {
                    Some(0) => Emptied::Act(acting),
                    Some(humans) => Emptied::Wait(acting, format!("{name}: {humans} human players")),
                    None => Emptied::Wait(acting, format!("{name}: not answering queries, so who plays is unknown")),
                }
            }
        }
    }

    /// Runs a server's writes, each a job, holding the pass lock meanwhile; a failed one ends
    /// that server's.
    fn act(&self, server: &Acting, failed: &mut Vec<Name>) -> Result<(), Error> {
        let name = &server.target.name;
        if server.commands.iter().any(|command| matches!(command, api::Command::Rcon { .. })) {
            self.wait_for_console(name)?;
        }
        let _lock = l4d2ctl::host::pass_lock(self.at.root, || tracing::info!("waiting for a pass to end"))
            .map_err(Error::Lock)?;
        for command in &server.commands {
            let kind = kind_of(command);
            let sub = {
                let db = self.db();
                let sub = db.create_job(kind, name.as_str(), Some(self.revision.id()), "schedule")?;
                db.append_line(sub, "plan", &format!("schedule {} (job {})", self.schedule.name, self.job))?;
                sub
            };
            let end = host::run_job(self.at.l4d2ctl, &self.db, sub, command, None)?;
            if !end.succeeded() {
                self.line(&format!("{name}: {kind} failed (job {sub}, `left4me jobs {sub}`)"))?;
                failed.push(name.clone());
                return Ok(());
            }
            self.line(&format!("{name}: {kind} done (job {sub})"))?;
        }
        Ok(())
    }

    /// Waits, up to [`CONSOLE_WAIT`], until a running server answers queries, so that its console
    /// takes the command; one that never does is sent it all the same, and l4d2ctl says why it
    /// failed.
    fn wait_for_console(&self, name: &Name) -> Result<(), Error> {
        let deadline = Instant::now() + CONSOLE_WAIT;
        let mut told = false;
        loop {
            let answers = host::observe(self.at.l4d2ctl, Detail::Full)
                .ok()
                .is_some_and(|view| view.instances.get(name).is_some_and(|status| status.query.is_some()));
            if answers || Instant::now() >= deadline {
                return Ok(());
            }
            if !told {
                self.line(&format!("{name}: not answering queries yet (starting?); waiting for its console"))?;
                told = true;
            }
            sleep_until(deadline.min(Instant::now() + Duration::from_secs(2)));
        }
    }

    /// A server the run leaves out: a line, an event and a notice for the alerts.
    fn skip(&self, name: &Name, why: &str) -> Result<(), Error> {
        let message = format!("schedule {}: {name} skipped: {why}", self.schedule.name);
        self.line(&format!("{name}: skipped: {why}"))?;
        self.event(message.clone())?;
        self.db().add_notice(AlertEvent::ScheduleSkipped, Some(name), &message).map_err(Error::from)
    }

    fn event(&self, message: String) -> Result<(), Error> {
        let event = Event {
            at: now(),
            kind: "schedule".into(),
            revision: Some(self.revision.id().into()),
            duration_ms: None,
            steps: None,
            message,
        };
        self.db().add_event(&event).map_err(Error::from)
    }
}

/// A waited-on server, after a look.
enum Emptied {
    Act(Acting),
    Wait(Acting, String),
    Done(String),
}

/// The kind of a write's job.
fn kind_of(command: &api::Command) -> &'static str {
    match command {
        api::Command::ForSchedule { write, .. } => kind_of(write),
        api::Command::Restart { .. } => "restart",
        api::Command::Start { .. } => "start",
        api::Command::Stop { .. } | api::Command::StopAll { .. } => "stop",
        api::Command::Release { .. } => "release",
        api::Command::Backup { .. } => "backup",
        api::Command::Rcon { .. } => "command",
        _ => "schedule",
    }
}

/// A warning as one quoted word of the console: `"…"`. Inside quotes a `;` is no command
/// separator; a `"` would end the quote, so it becomes `'`, and control characters a space.
pub fn say_text(text: &str) -> String {
    let inner: String = text
        .chars()
        .map(|c| {
            if c == '"' {
                '\''
            } else if c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    format!("\"{inner}\"")
}

fn join(names: &[Name]) -> String {
    names.iter().map(Name::as_str).collect::<Vec<_>>().join(", ")
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

#[cfg(test)]
mod tests {
    use super::say_text;

    #[test]
    fn a_warning_is_one_quoted_word_of_the_console() {
        assert_eq!(say_text("Server restarts in 1 minute(s)"), "\"Server restarts in 1 minute(s)\"");
        assert_eq!(say_text("bye\"; quit; say \"x"), "\"bye'; quit; say 'x\"");
        assert_eq!(say_text("two\nlines"), "\"two lines\"");
    }
}
