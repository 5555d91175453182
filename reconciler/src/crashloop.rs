//! Servers that keep crashing are held back between tries, as Kubernetes' CrashLoopBackOff holds
//! a container: systemd restarts a crashing game a few times (`StartLimitBurst`) and then leaves
//! its unit failed; a pass would start it again at every resync, for ever. Instead each crash in
//! a row doubles the wait before the next start, from 10 s up to 5 minutes, and ten minutes up
//! forgets the crashes. Pure: the state comes from the database, the time from the caller.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use l4d2ctl::api::ActiveState;
use left4me_state::{DesiredState, Name, PowerState};

use crate::plan::{Action, Observed, Plan, ServerSync, Sync, Wish};

/// The wait after the first crash.
pub const FIRST_WAIT: Duration = Duration::from_secs(10);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Up this long after a start, a server's crashes are forgotten.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// One server's crashes, as the last pass left them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashLoop {
    /// Crashes in a row: starts of a pass that ended with the unit failed.
    pub failures: u32,
    /// No start before this.
    pub next_try: SystemTime,
    /// When a pass last started it; None while it is held, failed.
    pub started: Option<SystemTime>,
    /// What the revision wanted of it then: a revision that wants something else tries at once.
    pub wish: Wish,
}

/// A start held back, for the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub failures: u32,
    pub retry_in: Duration,
}

/// The wait after `failures` crashes in a row.
pub fn wait(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_WAIT * 2u32.pow(doublings)).min(MAX_WAIT)
}

/// The crash loops after a look at the host. A crash is a unit found failed after a pass
/// started it. A loop is forgotten when the server is no longer declared running, the revision
/// wants something else of it, someone asked to retry it, its unit is no longer failed while
/// held (reset by hand, `l4d2ctl release`, a reboot), or it has been up [`RESET_AFTER`].
pub fn update(
    loops: &BTreeMap<Name, CrashLoop>,
    desired: &DesiredState,
    observed: &Observed,
    retried: &[Name],
    now: SystemTime,
) -> BTreeMap<Name, CrashLoop> {
    let mut kept = BTreeMap::new();
    for (name, crash) in loops {
        let (Some(wish), Some(observed)) = (wish(desired, name), observed.get(name)) else { continue };
        if wish != crash.wish || retried.contains(name) {
            continue;
        }
        let failed = observed.active_state == ActiveState::Failed;
        let next = match crash.started {
            Some(_) if failed => {
                let failures = crash.failures.saturating_add(1);
                CrashLoop { failures, next_try: now + wait(failures), started: None, wish }
            }
            Some(started) if now.duration_since(started).is_ok_and(|up| up >= RESET_AFTER) => continue,
            Some(_) => crash.clone(),
            None if failed => crash.clone(),
            None => continue,
        };
        kept.insert(name.clone(), next);
    }
    kept
}

/// The loops once a pass has started `servers`: each start is a try to count.
pub fn started(loops: &mut BTreeMap<Name, CrashLoop>, desired: &DesiredState, servers: &[Name], now: SystemTime) {
    for name in servers {
        let Some(wish) = wish(desired, name) else { continue };
        let crash =
            loops.entry(name.clone()).or_insert_with(|| CrashLoop { failures: 0, next_try: now, started: None, wish });
        crash.started = Some(now);
    }
}

/// The starts to hold back now.
pub fn holds(loops: &BTreeMap<Name, CrashLoop>, now: SystemTime) -> BTreeMap<Name, Held> {
    loops
        .iter()
        .filter(|(_, crash)| crash.started.is_none())
        .filter_map(|(name, crash)| {
            let retry_in = crash.next_try.duration_since(now).ok().filter(|wait| !wait.is_zero())?;
            Some((name.clone(), Held { failures: crash.failures, retry_in }))
        })
        .collect()
}

/// Holds back the planned start of each server of `holds`, and says why: in its Sync, and as
/// its Health (`crash loop, next try in 4m20s`).
pub fn hold(plan: &mut Plan, holds: &BTreeMap<Name, Held>) {
    let held: Vec<(Name, Held)> = plan
        .steps
        .iter()
        .filter(|step| step.action == Action::Start)
        .filter_map(|step| Some((step.server.clone(), *holds.get(&step.server)?)))
        .collect();
    for (name, Held { failures, retry_in }) in held {
        plan.steps.retain(|step| !(step.server == name && step.action == Action::Start));
        let retry_in = short(retry_in);
        let message = format!(
            "held after {failures} crash{} in a row; next try in {retry_in}; `left4me retry {name}` or \
             `l4d2ctl release {name}` tries now",
            if failures == 1 { "" } else { "es" }
        );
        plan.servers.insert(name.clone(), ServerSync { sync: Sync::OutOfSync, message });
        plan.crash_loops.insert(name, format!("crash loop, next try in {retry_in}"));
    }
}

/// A wait as people read it: `45s`, `4m20s`, `5m`; whole seconds, rounded up.
pub fn short(wait: Duration) -> String {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    match (seconds / 60, seconds % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s:02}s"),
    }
}

/// What the revision wants of a server it declares running.
fn wish(desired: &DesiredState, name: &Name) -> Option<Wish> {
    let server = desired.servers.get(name).filter(|server| server.state == PowerState::Running)?;
    let digest = desired.instance_spec(name)?.digest();
    Some(Wish { digest, state: server.state })
}
