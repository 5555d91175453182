//! The planner: a pure function from what a revision wants and what the host runs to the ordered
//! steps that make the host run the revision (docs/DESIGN.md §6). No I/O happens here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use l4d2ctl::api::{ActiveState, Game, InstanceStatus, LeftoverUnit, Override, Problem, Remedy};
use left4me_state::{DesiredState, Digest, InstanceSpec, Name, PowerState, Rollout};
use serde::{Deserialize, Serialize};

use crate::game::{self, Install, Want};

/// What the host runs: `l4d2ctl status --json`, by server.
pub type Observed = BTreeMap<Name, InstanceStatus>;

/// What a revision wants of one server, remembered from the last applied revision: a server
/// changed by hand is left alone until a revision wants something else of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wish {
    pub digest: Digest,
    pub state: PowerState,
}

/// Everything the planner looks at.
pub struct Inputs<'a> {
    pub desired: &'a DesiredState,
    pub observed: &'a Observed,
    /// Overlays materialised on the host, with the digest of their tree.
    pub overlays: &'a BTreeMap<Name, Digest>,
    /// Override markers of servers with no instance: created or deleted by hand.
    pub orphan_overrides: &'a BTreeMap<Name, Override>,
    /// What the last applied revision wanted of each server.
    pub previous: &'a BTreeMap<Name, Wish>,
    /// An operator confirmed the deletions of this revision.
    pub prune_confirmed: bool,
    /// What the host needs put right apart from its servers' own files.
    pub host: &'a HostRepairs,
    /// The game builds on the host and the branch's as last checked.
    pub game: &'a Game,
}

/// What the host needs put right apart from any server's own files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRepairs {
    /// The game's unit files that differ from what l4d2ctl renders, or are missing.
    pub units: Vec<Problem>,
    /// Units of servers with no instance that systemd still holds failed, running or enabled.
    pub leftover_units: Vec<LeftoverUnit>,
}

/// The steps of one pass, in the order they run, and where every server stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Unit files to write again (`l4d2ctl install --units-only`) before anything else, with why.
    #[serde(default)]
    pub units: Vec<String>,
    /// Overlays to write before any server step, because a server about to be rendered stacks them.
    pub overlays: Vec<Name>,
    pub steps: Vec<Step>,
    pub servers: BTreeMap<Name, ServerSync>,
    /// Servers whose rollout waits (for players to leave, for the next start).
    pub waiting: BTreeMap<Name, String>,
    /// Set when deletions are held until an operator confirms them.
    pub held: Option<String>,
    /// Servers whose start is held back after crashing, with their Health (`crashloop.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub crash_loops: BTreeMap<Name, String>,
    /// A base install from before builds, adopted as this build first of all (`l4d2ctl game adopt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<u64>,
    /// The game build installed before any server step, because servers are to run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<Install>,
    /// Installed builds removed after the servers' steps: nothing runs, stacks, pins or wants them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_builds: Vec<u64>,
    /// The build each declared server is to run, where one is known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub builds: BTreeMap<Name, u64>,
    /// The schedules' timers, all of them, when the host's differ (`schedules.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedules: Option<TimersPut>,
}

/// The host's schedule timers made to match the revision's schedules, one `l4d2ctl schedules put`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimersPut {
    /// Every schedule's timer, as the revision has them.
    pub timers: Vec<l4d2ctl::api::ScheduleTimer>,
    /// What differs, for the plan's reader and the job's log.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub server: Name,
    #[serde(flatten)]
    pub action: Action,
    /// Why, for the plan's reader and the job's log.
    pub reason: String,
}

/// One `l4d2ctl` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Drop a manual override that the revision supersedes.
    Release,
    /// Render an instance that does not exist yet.
    Create {
        spec: InstanceSpec,
        /// The game build it stacks; None leaves it to l4d2ctl (a host with no build known).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        build: Option<u64>,
    },
    /// Render an instance anew (its digest differs).
    Rerender {
        spec: InstanceSpec,
        /// The game build it stacks; None leaves it to l4d2ctl (a host with no build known).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        build: Option<u64>,
    },
    /// Render an instance again as it is, to put right what is broken or missing of it (its
    /// RCON password, its runtime folders).
    Repair {
        spec: InstanceSpec,
        /// The game build it stacks; None leaves it to l4d2ctl (a host with no build known).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        build: Option<u64>,
    },
    /// Put the data a server brought from the host it moved from in place, before it starts
    /// (`handover.rs`).
    Receive,
    Start,
    Stop,
    Restart,
    /// Stop the server and remove its instance (its data archived first).
    Delete,
    /// Delete it here because the revision places it on host `to`: its archive is recorded as
    /// `to`'s to take (`handover.rs`).
    MoveAway {
        to: Name,
    },
}

impl Action {
    /// The order of a pass: overrides released, then everything that frees ports, then renders,
    /// then the data of servers that moved here, then restarts, then starts — so a port moving
    /// between servers is released before it is taken, and each server's own steps keep their
    /// order.
    pub fn phase(&self) -> u8 {
        match self {
            Action::Release => 0,
            Action::Stop | Action::Delete | Action::MoveAway { .. } => 1,
            Action::Create { .. } | Action::Rerender { .. } | Action::Repair { .. } => 2,
            Action::Receive => 3,
            Action::Restart => 4,
            Action::Start => 5,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Release => "release",
            Action::Create { .. } => "create",
            Action::Rerender { .. } => "re-render",
            Action::Repair { .. } => "repair",
            Action::Receive => "receive",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Delete => "delete",
            Action::MoveAway { .. } => "move-away",
        }
    }
}

/// Where a server stands against the revision (Argo CD's sync status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sync {
    Synced,
    OutOfSync,
    /// Changed by hand; left alone until released or changed by a revision.
    Overridden,
    /// Held: its deletion waits for an operator's confirmation.
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSync {
    pub sync: Sync,
    pub message: String,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
            && self.overlays.is_empty()
            && self.units.is_empty()
            && self.adopt.is_none()
            && self.install.is_none()
            && self.remove_builds.is_empty()
            && self.schedules.is_none()
    }
}

/// Plans one pass. Deterministic: the same inputs give the same plan.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let mut steps = Vec::new();
    let mut servers = BTreeMap::new();
    let mut waiting = BTreeMap::new();
    let names: BTreeSet<&Name> = inputs.desired.servers.keys().chain(inputs.observed.keys()).collect();
    let mut deletions = Vec::new();
    let overlays = overlays_to_write(inputs);
    let builds = game::builds(inputs.desired, inputs.game, inputs.observed);

    for name in names {
        let desired = inputs.desired.servers.get(name);
        let observed = inputs.observed.get(name);
        // A marker on a server the revision does not have, or on one the host does not have,
        // is a hand change too: a deletion or a creation by hand is left alone like any other.
        let marker = observed.and_then(|o| o.override_marker.as_ref()).or_else(|| inputs.orphan_overrides.get(name));
        if let Some(marker) = marker
            && (desired.is_none() || observed.is_none())
            && !superseded(inputs, name)
        {
            let message = overridden(name, marker);
            servers.insert(name.clone(), ServerSync { sync: Sync::Overridden, message });
            continue;
        }
        let (sync, mut server_steps) = match (desired, observed) {
            (Some(_), None) if let Some(Want::Unavailable(why)) = builds.wants.get(name) => {
                (ServerSync { sync: Sync::OutOfSync, message: format!("not on the host yet: {why}") }, Vec::new())
            }
            (Some(server), None) => {
                let spec = server.spec().clone();
                let build = builds.wants.get(name).and_then(Want::build);
                let mut steps = Vec::new();
                if inputs.orphan_overrides.contains_key(name) {
                    steps.push(step(name, Action::Release, "the revision changes it since it was deleted by hand"));
                }
                steps.push(step(name, Action::Create { spec, build }, "declared, not on the host"));
                if server.state == PowerState::Running {
                    steps.push(step(name, Action::Start, "declared running"));
                }
                (ServerSync { sync: Sync::OutOfSync, message: "not on the host yet".into() }, steps)
            }
            (None, Some(_)) => {
                // A server placed on another host moves there: not a loss the prune guard holds.
                let (action, message) = match inputs.desired.elsewhere.get(name) {
                    Some(host) => (
                        Action::MoveAway { to: host.clone() },
                        format!("moves to host {host}, which takes its data from here"),
                    ),
                    None => {
                        deletions.push(name.clone());
                        (Action::Delete, "removed from the revision".to_owned())
                    }
                };
                (ServerSync { sync: Sync::OutOfSync, message: message.clone() }, vec![step(name, action, &message)])
            }
            (Some(_), Some(observed)) => {
                let want = builds.wants.get(name).cloned().unwrap_or(Want::Unknown);
                let (sync, steps, wait) = plan_server(inputs, name, observed, &want);
                if let Some(wait) = wait {
                    waiting.insert(name.clone(), wait);
                }
                (sync, steps)
            }
            (None, None) => unreachable!("every name comes from one side"),
        };
        steps.append(&mut server_steps);
        servers.insert(name.clone(), sync);
    }

    steps.extend(clear_leftover_units(inputs));
    let held = hold_prune(inputs, &deletions);
    if let Some(message) = &held {
        steps.retain(|s| s.action != Action::Delete);
        for name in &deletions {
            servers.insert(name.clone(), ServerSync { sync: Sync::Suspended, message: message.clone() });
        }
    }
    block_taken_ports(inputs, &mut steps, &mut servers);
    // A stable sort: within a phase, servers by name, each server's steps in the order made.
    steps.sort_by(|a, b| (a.action.phase(), &a.server).cmp(&(b.action.phase(), &b.server)));
    let units = inputs.host.units.iter().map(|problem| format!("{}: {}", problem.path, problem.cause)).collect();
    let wanted = builds.wants.iter().filter_map(|(name, want)| Some((name.clone(), want.build()?))).collect();
    Plan {
        units,
        overlays,
        steps,
        servers,
        waiting,
        held,
        crash_loops: BTreeMap::new(),
        adopt: builds.adopt,
        install: builds.install,
        remove_builds: builds.remove,
        builds: wanted,
        // The pass puts the schedules' timers beside the plan (`schedules::put`): they are no
        // server's, and the planner's inputs stay what they were.
        schedules: None,
    }
}

/// Units of servers with no instance (a deletion cut short by a power cut) are stopped,
/// disabled and cleared of their failed state by deleting the server again — unless it is
/// declared running, when it is created and started anyway, or was deleted by hand and is left
/// alone.
fn clear_leftover_units(inputs: &Inputs<'_>) -> Vec<Step> {
    inputs
        .host
        .leftover_units
        .iter()
        .filter(|leftover| !inputs.observed.contains_key(&leftover.name))
        .filter(|leftover| {
            inputs.desired.servers.get(&leftover.name).is_none_or(|server| server.state != PowerState::Running)
        })
        .filter(|leftover| !inputs.orphan_overrides.contains_key(&leftover.name) || superseded(inputs, &leftover.name))
        .map(|leftover| {
            let enabled = if leftover.enabled { ", enabled" } else { "" };
            let why = format!("{} is {}{enabled}, with no instance behind it", leftover.unit, leftover.active_state);
            step(&leftover.name, Action::Delete, &why)
        })
        .collect()
}

/// Servers whose plan hangs on how many humans play — running a render or build older than the
/// revision's, declared running, with a when-empty rollout — and whose look has not said: a
/// brief look asks no game, and a full one that A2S answered with no humans has not asked the
/// server's own console, which A2S may be hiding players from.
pub fn needs_query(inputs: &Inputs<'_>) -> Vec<Name> {
    inputs
        .desired
        .servers
        .iter()
        .filter(|(_, server)| server.state == PowerState::Running)
        .filter(|(_, server)| inputs.desired.blueprints[&server.blueprint].rollout == Rollout::WhenEmpty)
        .filter_map(|(name, server)| Some((name, server, inputs.observed.get(name)?)))
        .filter(|(name, server, observed)| {
            let digest = server.spec().digest();
            let wish = Wish { digest, state: server.state };
            let want = game::want(inputs.desired, inputs.game, inputs.desired.game_build(server));
            // Only an active unit's game is asked; a server left alone is not planned at all.
            observed.active_state == ActiveState::Active
                && (runs_old_render(observed, &wish.digest) || runs_old_build(observed, want.build()))
                && observed.query.as_ref().is_none_or(|query| query.humans.is_none() && query.human_players() == 0)
                && !left_alone(inputs, name, observed, &wish)
        })
        .map(|(name, _, _)| name.clone())
        .collect()
}

/// Whether a server changed by hand stays as it is: its override marker stands until a revision
/// wants something else of it than the last applied one did.
fn left_alone(inputs: &Inputs<'_>, name: &Name, observed: &InstanceStatus, wish: &Wish) -> bool {
    observed.override_marker.is_some() && !inputs.previous.get(name).is_some_and(|previous| previous != wish)
}

/// Whether a unit runs, or is on its way to (systemd's ActiveState).
fn is_running(observed: &InstanceStatus) -> bool {
    matches!(observed.active_state, ActiveState::Active | ActiveState::Activating | ActiveState::Reloading)
}

/// Whether a running server was started from another render than `digest`.
fn runs_old_render(observed: &InstanceStatus, digest: &Digest) -> bool {
    observed.started_digest.as_ref().is_some_and(|started| started != digest)
}

/// Whether a running server was started on another build than `build` (None: no build is known,
/// so none is old).
fn runs_old_build(observed: &InstanceStatus, build: Option<u64>) -> bool {
    build.is_some() && observed.started_build.is_some_and(|started| Some(started) != build)
}

/// A server cannot start on a port another server keeps: one that runs on it and is not stopped,
/// deleted or moved by this plan (a held deletion, an override, a rollout that waits).
fn block_taken_ports(inputs: &Inputs<'_>, steps: &mut Vec<Step>, servers: &mut BTreeMap<Name, ServerSync>) {
    let leaving = |name: &Name| {
        steps.iter().any(|s| {
            s.server == *name
                && matches!(s.action, Action::Stop | Action::Delete | Action::MoveAway { .. } | Action::Restart)
        })
    };
    let kept: BTreeMap<u16, &Name> = inputs
        .observed
        .iter()
        .filter(|(_, o)| is_running(o))
        .filter(|(name, _)| !leaving(name))
        .map(|(name, o)| (o.started_port.unwrap_or(o.port), name))
        .collect();
    let blocked: Vec<(Name, u16, Name)> = steps
        .iter()
        .filter(|s| s.action == Action::Start)
        .filter_map(|s| {
            let port = inputs.desired.servers.get(&s.server)?.port.number();
            let holder = kept.get(&port).filter(|holder| ***holder != s.server)?;
            Some((s.server.clone(), port, (*holder).clone()))
        })
        .collect();
    for (server, port, holder) in blocked {
        steps.retain(|s| !(s.server == server && s.action == Action::Start));
        let message =
            format!("port {port} is still used by {holder}, which keeps running; it starts once {holder} lets it go");
        servers.insert(server, ServerSync { sync: Sync::OutOfSync, message });
    }
}

/// The overlays to write (files), build (script) or fetch (workshop): those a declared server
/// stacks that are absent or different on the host.
fn overlays_to_write(inputs: &Inputs<'_>) -> Vec<Name> {
    let current =
        |name: &Name| inputs.overlays.get(name).is_some_and(|digest| *digest == inputs.desired.overlays[name].digest);
    let write: BTreeSet<Name> = inputs
        .desired
        .servers
        .values()
        .filter_map(|server| inputs.desired.blueprints.get(&server.blueprint))
        .flat_map(|blueprint| blueprint.overlays.iter())
        .filter(|name| !current(name))
        .cloned()
        .collect();
    write.into_iter().collect()
}

fn overridden(name: &Name, marker: &Override) -> String {
    format!(
        "changed by hand ({} by {} at {}); `l4d2ctl release {name}` hands it back",
        marker.what, marker.who, marker.when
    )
}

/// Whether the revision wants something of a server other than what the last applied revision
/// wanted: that supersedes a hand change. A server the revision does not declare is not changed.
fn superseded(inputs: &Inputs<'_>, name: &Name) -> bool {
    let Some(server) = inputs.desired.servers.get(name) else { return false };
    let digest = server.spec().digest();
    inputs.previous.get(name).is_some_and(|previous| *previous != Wish { digest, state: server.state })
}

fn step(server: &Name, action: Action, reason: &str) -> Step {
    Step { server: server.clone(), action, reason: reason.to_owned() }
}

/// A server that is declared and on the host: its sync, its steps, and what its rollout waits for.
fn plan_server(
    inputs: &Inputs<'_>,
    name: &Name,
    observed: &InstanceStatus,
    want: &Want,
) -> (ServerSync, Vec<Step>, Option<String>) {
    let server = &inputs.desired.servers[name];
    let spec = server.spec().clone();
    let digest = spec.digest();
    let wish = Wish { digest: digest.clone(), state: server.state };
    let mut steps = Vec::new();

    if let Some(marker) = &observed.override_marker {
        if left_alone(inputs, name, observed, &wish) {
            let message = format!(
                "changed by hand ({} by {} at {}); `l4d2ctl release {name}` hands it back",
                marker.what, marker.who, marker.when
            );
            return (ServerSync { sync: Sync::Overridden, message }, steps, None);
        }
        steps.push(step(name, Action::Release, "the revision changes it since it was changed by hand"));
    }

    // A build that cannot be had leaves the server on the one it has, and says why.
    let build = want.build().or(observed.rendered_build);
    render_steps(name, observed, &spec, build, &mut steps);
    let running = is_running(observed);
    let mut wait = match want {
        Want::Unavailable(why) => Some(why.clone()),
        Want::Build(_) | Want::Unknown => None,
    };
    match server.state {
        // Stopping: by itself, a crash on its way to systemd's restart (`Restart=on-failure`), or
        // by someone. A start now would be a try the crash loop never made, and one the start
        // limit refuses leaves the unit failed for a moment and then resets that limit: the
        // next look sees where it ended.
        PowerState::Running if observed.active_state == ActiveState::Deactivating => {
            wait.get_or_insert_with(|| "stopping; looked at again once it has stopped".to_owned());
        }
        PowerState::Running if !running => steps.push(step(name, Action::Start, "declared running")),
        PowerState::Running => {
            let rollout = inputs.desired.blueprints[&server.blueprint].rollout;
            if let Some(why) = roll_out(name, observed, &spec, want.build(), rollout, &mut steps) {
                wait = Some(why);
            }
            // Running but not enabled (started by hand with systemctl): enabled, so it also comes
            // back after a reboot — unless a stop and start on a new port does it already.
            if !observed.enabled && !steps.iter().any(|s| s.action == Action::Start) {
                steps.push(step(name, Action::Start, "declared running, not enabled"));
            }
        }
        PowerState::Stopped if running || observed.enabled => {
            steps.push(step(name, Action::Stop, "declared stopped"));
        }
        PowerState::Stopped => {}
    }
    let sync = if steps.is_empty() && wait.is_none() {
        ServerSync { sync: Sync::Synced, message: String::new() }
    } else {
        let mut reasons: Vec<&str> = steps.iter().map(|s| s.reason.as_str()).collect();
        reasons.extend(wait.as_deref());
        ServerSync { sync: Sync::OutOfSync, message: reasons.join("; ") }
    };
    (sync, steps, wait)
}

/// Renders a server again when its spec or its build changed, or to put right what of its
/// instance is broken.
fn render_steps(
    name: &Name,
    observed: &InstanceStatus,
    spec: &InstanceSpec,
    build: Option<u64>,
    steps: &mut Vec<Step>,
) {
    let rendered = observed.digest.as_ref() == Some(&spec.digest());
    let build_moves = build.is_some() && observed.rendered_build != build;
    // What rendering again puts right: a record that cannot be read, a missing runtime folder.
    let broken: Vec<String> = observed
        .problems
        .iter()
        .filter(|problem| problem.remedy == Remedy::Initialize)
        .map(|problem| format!("{}: {}", problem.path, problem.cause))
        .collect();
    let rerender = |why: &str| step(name, Action::Rerender { spec: spec.clone(), build }, why);
    match (rendered, broken.is_empty()) {
        (true, true) if build_moves => {
            let build = build.map(|b| b.to_string()).unwrap_or_default();
            steps.push(rerender(&format!("its game build moves to {build}")));
        }
        (true, true) => {}
        (false, true) => steps.push(rerender("its rendered spec changed")),
        (false, false) => steps.push(rerender(&format!("{}; rendered again", broken.join("; ")))),
        (true, false) => {
            let why = format!("{}; rendered again to put it right", broken.join("; "));
            steps.push(step(name, Action::Repair { spec: spec.clone(), build }, &why));
        }
    }
}

/// A running server that runs an older render or build than the revision's restarts by its
/// rollout (a stop and a start when its port moves too). Returns what it waits for instead.
fn roll_out(
    name: &Name,
    observed: &InstanceStatus,
    spec: &InstanceSpec,
    build: Option<u64>,
    rollout: Rollout,
    steps: &mut Vec<Step>,
) -> Option<String> {
    let old_render = runs_old_render(observed, &spec.digest());
    let old_build = runs_old_build(observed, build);
    if !old_render && !old_build {
        return None;
    }
    let moves = observed.started_port.unwrap_or(observed.port) != spec.port.number();
    // The words of a render's rollout stay as they were; a build alone says which build.
    let what = match (old_render, build) {
        (false, Some(build)) => Change::Build(build),
        _ => Change::Render,
    };
    match rollout_now(rollout, observed, what) {
        Ok(why) if moves => {
            steps.push(step(name, Action::Stop, &format!("{why}; its port moves")));
            steps.push(step(name, Action::Start, "on its new port"));
            None
        }
        Ok(why) => {
            steps.push(step(name, Action::Restart, &why));
            None
        }
        Err(why) => Some(why),
    }
}

/// What a rollout brings to a running server.
#[derive(Clone, Copy)]
enum Change {
    Render,
    Build(u64),
}

/// Whether a running server that runs an old render (or build) restarts now: Ok(why) or Err(what
/// it waits for). Players are RCON's count where the look asked it, else A2S's.
fn rollout_now(rollout: Rollout, observed: &InstanceStatus, change: Change) -> Result<String, String> {
    let prefix = match change {
        Change::Render => String::new(),
        Change::Build(build) => format!("onto build {build}: "),
    };
    match rollout {
        Rollout::Immediate => Ok(format!("{prefix}rollout immediate")),
        Rollout::NextStart => Err(match change {
            Change::Render => "the new render applies when the server next starts (rollout next-start)".into(),
            Change::Build(build) => format!("build {build} applies when the server next starts (rollout next-start)"),
        }),
        Rollout::WhenEmpty => match &observed.query {
            Some(query) if query.human_players() == 0 => Ok(format!("{prefix}rollout when-empty, and it is empty")),
            Some(query) => {
                let humans = query.human_players();
                let plural = if humans == 1 { "" } else { "s" };
                Err(format!("{prefix}waiting for {humans} player{plural} to leave (rollout when-empty)"))
            }
            None => Err(format!(
                "{prefix}waiting for the server to answer queries, to know it is empty (rollout when-empty)"
            )),
        },
    }
}

/// Deletions of every server, or of more than the configured share, wait for confirmation.
fn hold_prune(inputs: &Inputs<'_>, deletions: &[Name]) -> Option<String> {
    if deletions.is_empty() || inputs.prune_confirmed {
        return None;
    }
    let on_host = inputs.observed.len();
    let limit = u32::from(inputs.desired.settings.prune_limit_percent);
    let every = deletions.len() == on_host;
    let too_many = (deletions.len() as u32) * 100 > limit * on_host as u32;
    if !every && !too_many {
        return None;
    }
    let names: Vec<&str> = deletions.iter().map(Name::as_str).collect();
    let why = if every { "every server".to_owned() } else { format!("more than {limit}% of the servers") };
    Some(format!(
        "the revision would delete {why} ({} of {on_host}: {}); held until confirmed with `left4me apply --confirm-prune <revision>`",
        deletions.len(),
        names.join(", ")
    ))
}

impl fmt::Display for Plan {
    /// The human form of `left4me plan`: one line per step, then servers that wait or are held.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            writeln!(f, "nothing to do")?;
        }
        for unit in &self.units {
            writeln!(f, "{:<10} {unit}; written again", "units")?;
        }
        if let Some(build) = self.adopt {
            writeln!(f, "{:<10} {:<20} the base install from before builds is build {build}", "adopt", "game")?;
        }
        if let Some(install) = &self.install {
            writeln!(f, "{:<10} {:<20} {}", "install", format!("build {}", install.build), install.reason)?;
        }
        for overlay in &self.overlays {
            writeln!(f, "{:<10} {:<20} not on the host as the revision has it", "overlay", overlay.as_str())?;
        }
        if let Some(schedules) = &self.schedules {
            writeln!(f, "{:<10} {:<20} {}", "schedules", "host", schedules.reason)?;
        }
        for step in &self.steps {
            writeln!(f, "{:<10} {:<20} {}", step.action.name(), step.server.as_str(), step.reason)?;
        }
        for (name, wait) in &self.waiting {
            writeln!(f, "{:<10} {:<20} {wait}", "waiting", name.as_str())?;
        }
        for (name, health) in &self.crash_loops {
            let why = self.servers.get(name).map_or(health.as_str(), |server| server.message.as_str());
            writeln!(f, "{:<10} {:<20} {why}", "held", name.as_str())?;
        }
        for (name, server) in &self.servers {
            if server.sync == Sync::Overridden {
                writeln!(f, "{:<10} {:<20} {}", "overridden", name.as_str(), server.message)?;
            }
        }
        for build in &self.remove_builds {
            let what = format!("build {build}");
            writeln!(f, "{:<10} {what:<20} no server runs, stacks or wants it, and no blueprint pins it", "remove")?;
        }
        if let Some(held) = &self.held {
            writeln!(f, "held: {held}")?;
        }
        Ok(())
    }
}
