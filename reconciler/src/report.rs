//! What `left4me status` and the web show: per server Sync and Health, side by side.

use std::time::SystemTime;

use l4d2ctl::api::InstanceStatus;
use left4me_state::{DesiredState, PowerState, Server};
use serde::{Deserialize, Serialize};

use crate::engine::Planned;
use crate::plan::{Observed, Plan, ServerSync, Sync};

/// How long a running server may go without answering queries (a map change, a workshop
/// download) before it is Degraded rather than Starting.
pub const QUERY_GRACE_SECONDS: u64 = 60;

/// How a server is doing, apart from whether it matches the revision (Argo CD's health).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Running,
    Starting,
    Degraded,
    Stopped,
    Failed,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerReport {
    pub name: String,
    pub sync: Sync,
    pub sync_message: String,
    pub health: Health,
    pub health_message: String,
    pub port: Option<u16>,
    pub players: Option<u8>,
    pub max_players: Option<u8>,
    pub map: Option<String>,
    /// The game build it runs (or, stopped, the one its next start stacks).
    #[serde(default)]
    pub build: Option<u64>,
    /// The build the revision has it run.
    #[serde(default)]
    pub desired_build: Option<u64>,
}

/// The health of a server from what the host reports about it; what of its files the host could
/// not use is told after it.
pub fn health(desired: Option<&Server>, observed: Option<&InstanceStatus>) -> (Health, String) {
    let now = left4me_state::clock::unix_seconds(SystemTime::now());
    let (health, mut message) = health_at(desired, observed, now);
    for problem in observed.map(|o| o.problems.as_slice()).unwrap_or_default() {
        message.push_str(&format!("; {problem}"));
    }
    (health, message)
}

/// [`health`] at `now` (Unix seconds). A running game that does not answer is given its grace
/// from its last answer — a stopped process, a map change — or from its start when it has not
/// answered since.
fn health_at(desired: Option<&Server>, observed: Option<&InstanceStatus>, now: u64) -> (Health, String) {
    let Some(observed) = observed else {
        return (Health::Unknown, "not on the host".into());
    };
    let wanted_running = desired.is_some_and(|d| d.state == PowerState::Running);
    match observed.active_state.as_str() {
        "failed" => {
            (Health::Failed, format!("the unit failed ({}) after {} restarts", observed.result, observed.restarts))
        }
        "activating" | "reloading" => (Health::Starting, format!("starting ({})", observed.sub_state)),
        "deactivating" => (Health::Stopped, "stopping".into()),
        "active" => match &observed.query {
            Some(q) => (Health::Running, format!("{} on {}, {}/{} players", q.name, q.map, q.players, q.max_players)),
            None => {
                let seconds = |at: &Option<String>| at.as_deref().and_then(left4me_state::clock::parse_rfc3339);
                let (since, answered) = (seconds(&observed.since), seconds(&observed.last_answer));
                // An answer before the unit's last start says nothing about this run.
                let answered = answered.filter(|at| since.is_none_or(|since| *at >= since));
                match answered.or(since) {
                    Some(from) if now.saturating_sub(from) < QUERY_GRACE_SECONDS => match answered {
                        Some(at) => (
                            Health::Starting,
                            format!("running, not answering queries for {} s (a map change?)", now.saturating_sub(at)),
                        ),
                        None => (Health::Starting, "running, not answering queries yet".into()),
                    },
                    Some(from) => (
                        Health::Degraded,
                        format!("running, but not answering queries for {} s", now.saturating_sub(from)),
                    ),
                    None => (
                        Health::Degraded,
                        format!("running, but not answering queries for over {QUERY_GRACE_SECONDS} s"),
                    ),
                }
            }
        },
        // Health is the live state; whether it should run is Sync's to say.
        _ if wanted_running => (Health::Stopped, "stopped, though declared running".into()),
        _ => (Health::Stopped, "stopped".into()),
    }
}

/// Every server of a plan: what the revision declares and what the host has.
pub fn reports(planned: &Planned) -> Vec<ServerReport> {
    reports_of(&planned.plan, &planned.desired, &planned.host.instances)
}

/// Every server of `plan`, from the revision it was made for and the host it was made on.
pub fn reports_of(plan: &Plan, desired: &DesiredState, observed: &Observed) -> Vec<ServerReport> {
    let mut reports = Vec::with_capacity(plan.servers.len());
    for (name, sync) in &plan.servers {
        let desired = desired.servers.get(name);
        let observed = observed.get(name);
        let sync = match plan.waiting.get(name) {
            Some(wait) => &ServerSync { sync: Sync::OutOfSync, message: wait.clone() },
            None => sync,
        };
        let mut report = report(name.as_str(), sync, desired, observed);
        report.desired_build = plan.builds.get(name).copied();
        if let Some(crash_loop) = plan.crash_loops.get(name) {
            report.health = Health::Failed;
            report.health_message = format!("{crash_loop}; {}", report.health_message);
        }
        reports.push(report);
    }
    reports
}

pub fn report(
    name: &str,
    sync: &ServerSync,
    desired: Option<&Server>,
    observed: Option<&InstanceStatus>,
) -> ServerReport {
    let (health, health_message) = health(desired, observed);
    let query = observed.and_then(|o| o.query.as_ref());
    ServerReport {
        name: name.to_owned(),
        sync: sync.sync,
        sync_message: sync.message.clone(),
        health,
        health_message,
        port: desired.map(|d| d.port.number()).or(observed.map(|o| o.port)),
        players: query.map(|q| q.players),
        max_players: query.map(|q| q.max_players),
        map: query.map(|q| q.map.clone()),
        build: observed.and_then(|o| o.build),
        desired_build: None,
    }
}
