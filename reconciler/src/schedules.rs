//! The schedules in a pass (pure): the revision's schedules against the timers the host has, and
//! the one `l4d2ctl schedules put` that makes them match; and what a run does to each server of a
//! schedule (`left4me schedule run`, `schedule_run.rs`), decided from the revision and a look.

use l4d2ctl::api::{self, InstalledTimer, InstanceStatus, ScheduleTimer};
use left4me_state::{DesiredState, Name, PowerState, Schedule, ScheduleAction};

use crate::plan::TimersPut;

/// A marker's `who` when a schedule wrote it: `schedule <name>`.
pub const MARKER_PREFIX: &str = "schedule ";

/// Every schedule's timer, as the revision has them, by name.
pub fn timers(desired: &DesiredState) -> Vec<ScheduleTimer> {
    desired
        .schedules
        .values()
        .map(|schedule| ScheduleTimer { name: schedule.name.clone(), calendar: schedule.at.as_str().to_owned() })
        .collect()
}

/// The put that makes the host's timers the revision's, or None when they are already: every
/// schedule's timer there at its calendar and enabled, and no other.
pub fn put(desired: &DesiredState, installed: &[InstalledTimer]) -> Option<TimersPut> {
    let timers = timers(desired);
    let mut differ = Vec::new();
    for timer in &timers {
        match installed.iter().find(|on_host| on_host.name == timer.name) {
            None => differ.push(format!("{} is new", timer.name)),
            Some(on_host) => match &on_host.calendar {
                None => differ.push(format!("{}'s timer is not as l4d2ctl writes it", timer.name)),
                Some(calendar) if *calendar != timer.calendar => {
                    differ.push(format!("{} moves from {calendar:?} to {:?}", timer.name, timer.calendar))
                }
                Some(_) if !on_host.enabled => differ.push(format!("{}'s timer is not enabled", timer.name)),
                Some(_) => {}
            },
        }
    }
    for on_host in installed.iter().filter(|on_host| !timers.iter().any(|timer| timer.name == on_host.name)) {
        differ.push(format!("{} is no longer in the revision", on_host.name));
    }
    (!differ.is_empty()).then(|| TimersPut { timers, reason: format!("schedules' timers: {}", differ.join("; ")) })
}

/// What a run of a schedule does to one of its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// These writes, in order; `running` when the server plays now (it may be waited on to
    /// empty, and warned).
    Act { commands: Vec<api::Command>, running: bool },
    /// Nothing to do, and nothing wrong (a stopped server's restart).
    Nothing(String),
    /// It cannot run on this server now: a notice says so.
    Skip(String),
}

/// A server of a schedule, as the revision declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: Name,
    pub state: PowerState,
    /// How many of its backups are kept (its blueprint's `spec.backups.keep`).
    pub keep: u32,
}

/// Each server a schedule acts on, as the revision declares them, in name order.
pub fn targets(desired: &DesiredState, schedule: &Schedule) -> Vec<Target> {
    desired
        .schedule_servers(schedule)
        .into_iter()
        .map(|server| Target { name: server.name.clone(), state: server.state, keep: desired.backups_keep(server) })
        .collect()
}

/// What a run of `schedule` does to `server` as the host has it (None: no instance yet).
///
/// A start or stop that departs from what the revision declares leaves an override marker naming
/// the schedule (`--schedule`), so the next pass does not undo it; one that returns the server to
/// what the revision declares releases a marker a schedule left, handing it back to the passes.
/// A server changed by hand is left alone by a restart, start or stop, as passes leave it.
pub fn decide(schedule: &Schedule, server: &Target, observed: Option<&InstanceStatus>) -> Decision {
    let name = &server.name;
    let Some(observed) = observed else {
        return Decision::Skip(format!("{name} is not on the host yet (the next pass makes it)"));
    };
    let running = observed.active_state.is_running();
    let marker = observed.override_marker.as_ref();
    let by_schedule = marker.is_some_and(|marker| marker.who.starts_with(MARKER_PREFIX));
    let by_hand = marker.filter(|_| !by_schedule);
    let changes_what_runs =
        matches!(schedule.action, ScheduleAction::Restart | ScheduleAction::Start | ScheduleAction::Stop);
    if let (Some(marker), true) = (by_hand, changes_what_runs) {
        return Decision::Skip(format!(
            "{name} was changed by hand ({} by {} at {}); left alone until `l4d2ctl release {name}`",
            marker.what, marker.who, marker.when
        ));
    }
    let for_schedule =
        |write: api::Command| api::Command::ForSchedule { schedule: schedule.name.clone(), write: Box::new(write) };
    let release = by_schedule.then(|| api::Command::Release { name: name.clone() });
    let declared_running = server.state == PowerState::Running;
    let commands = match &schedule.action {
        ScheduleAction::Restart if !running => {
            return Decision::Nothing(format!("{name} is not running; nothing to restart"));
        }
        ScheduleAction::Restart => vec![api::Command::Restart { name: name.clone() }],
        ScheduleAction::Command(_) if !running => {
            return Decision::Nothing(format!("{name} is not running; the command is not sent"));
        }
        ScheduleAction::Command(command) => vec![api::Command::Rcon { name: name.clone(), command: command.clone() }],
        ScheduleAction::Backup => vec![api::Command::Backup {
            name: name.clone(),
            keep: Some(server.keep),
            reason: format!("{MARKER_PREFIX}{}", schedule.name),
        }],
        ScheduleAction::Start if declared_running => {
            release.into_iter().chain([api::Command::Start { names: vec![name.clone()] }]).collect()
        }
        ScheduleAction::Start => vec![for_schedule(api::Command::Start { names: vec![name.clone()] })],
        ScheduleAction::Stop if declared_running => vec![for_schedule(api::Command::Stop { name: name.clone() })],
        ScheduleAction::Stop => std::iter::once(api::Command::Stop { name: name.clone() }).chain(release).collect(),
    };
    Decision::Act { commands, running }
}

/// Whether a run says its warnings: only before a restart or stop of servers that play, acting at
/// once (`when: always`). With `when: empty` the server is acted on once nobody plays, so there is
/// nobody to warn.
pub fn warns(schedule: &Schedule) -> bool {
    schedule.warn.is_some()
        && schedule.when == left4me_state::When::Always
        && matches!(schedule.action, ScheduleAction::Restart | ScheduleAction::Stop)
}

/// The schedule's name for a job, an event or a notice: `schedule nightly: restart at …`.
pub fn describe(schedule: &Schedule) -> String {
    let action = match &schedule.action {
        ScheduleAction::Command(command) => format!("command {command:?}"),
        action => action.name().to_owned(),
    };
    let when = match schedule.when {
        left4me_state::When::Always => "at once".to_owned(),
        left4me_state::When::Empty => format!("once empty, within {}", seconds(schedule.within)),
    };
    format!("schedule {}: {action} at {:?}, {when}", schedule.name, schedule.at.as_str())
}

/// A period as a person writes it: `2h`, `90m`, `45s`.
pub fn seconds(secs: u64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The servers a schedule names that the revision does not declare (a blueprint's are always
/// declared): said in the run's log, as validation refuses none of them.
pub fn missing(desired: &DesiredState, schedule: &Schedule) -> Vec<Name> {
    match &schedule.servers {
        left4me_state::ScheduleServers::Named(names) => {
            names.iter().filter(|name| !desired.servers.contains_key(*name)).cloned().collect()
        }
        left4me_state::ScheduleServers::Blueprint(_) => Vec::new(),
    }
}
