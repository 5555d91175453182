//! `l4d2ctl status`: what runs, in one `systemctl show` for all instances and one UDP socket for
//! all A2S queries, however many there are — or, for a plan, one `systemctl list-units` and no
//! query at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, UNIX_EPOCH};

use left4me_state::Name;
use serde::{Deserialize, Serialize};

use crate::host::{Host, unit_name};
use crate::overrides::{self, Override};
use crate::{Error, a2s, instance, mount, systemd};

/// How long status waits for game servers to answer their A2S query.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(700);

/// The status of one instance: the contract the reconciler and the web read (`status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: Name,
    pub unit: String,
    /// systemd's ActiveState: active, activating, deactivating, inactive, failed.
    pub active_state: String,
    /// systemd's SubState: running, start-pre, auto-restart, dead, …
    pub sub_state: String,
    /// When the unit entered its current state (RFC 3339), if it ever changed state.
    pub since: Option<String>,
    /// Enabled units start at boot.
    pub enabled: bool,
    pub main_pid: Option<u32>,
    /// Restarts systemd made since the unit was started.
    pub restarts: u32,
    /// systemd's Result of the last run: success, exit-code, signal, start-limit-hit, …
    pub result: String,
    /// Whether the overlay is mounted on the instance's merged tree.
    pub mounted: bool,
    pub port: u16,
    /// The digest of the rendered spec.
    pub digest: String,
    /// The digest the server was started with, while its unit runs: a server rendered anew
    /// since it started runs the old render until it restarts.
    pub started_digest: Option<String>,
    /// The port the server was started on, while its unit runs (a render may have moved it since).
    pub started_port: Option<u16>,
    /// Set when someone changed this server by hand; the reconciler leaves it alone.
    #[serde(rename = "override")]
    pub override_marker: Option<Override>,
    /// The game server's own A2S_INFO answer, when it gave one in time.
    pub query: Option<QueryInfo>,
}

/// What the game server says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryInfo {
    pub name: String,
    pub map: String,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
}

/// How much a status asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Everything: systemd's restarts, main PID, result and timestamps of each unit, and each
    /// running game's own A2S answer (waiting up to [`QUERY_TIMEOUT`] for it).
    Full,
    /// What a plan needs, quickly: each unit's state from one `systemctl list-units` and whether
    /// it is enabled; no A2S query, no restarts, main PID, result or timestamps.
    Brief,
}

const PROPERTIES: &[&str] = &["ActiveState", "SubState", "StateChangeTimestamp", "MainPID", "NRestarts", "Result"];

/// The status of the named instances, or of every instance.
pub fn status(host: &Host, only: Option<&Name>, detail: Detail) -> Result<Vec<InstanceStatus>, Error> {
    let names = match only {
        Some(name) => {
            if instance::read_record(host, name)?.is_none() {
                return Err(Error::Invalid(format!("{name} is not initialized on this host")));
            }
            vec![name.clone()]
        }
        None => instance::list(host)?,
    };
    let units: Vec<String> = names.iter().map(unit_name).collect();
    let mut shown = match detail {
        Detail::Full => systemd::show_loaded("left4me-server@*.service", PROPERTIES)?,
        Detail::Brief => systemd::list_loaded("left4me-server@*.service")?,
    };
    let mounts = mount::mount_points()?;

    let mut statuses = Vec::with_capacity(names.len());
    // Whether a unit is enabled is its symlink, as `start` makes it: systemd's own UnitFileState
    // of a loaded unit is what it read when it last looked, and `enable --no-reload` does not
    // make it look again.
    let enabled = enabled_on_disk();
    for (name, unit) in names.iter().zip(units) {
        let Some(record) = instance::read_record(host, name)? else { continue };
        // A unit systemd has not loaded is stopped.
        let props = shown.remove(&unit).unwrap_or_else(|| {
            BTreeMap::from([
                ("ActiveState".to_owned(), "inactive".to_owned()),
                ("SubState".to_owned(), "dead".to_owned()),
            ])
        });
        let get = |key: &str| props.get(key).cloned().unwrap_or_default();
        let is_enabled = enabled.contains(&unit);
        let running = matches!(get("ActiveState").as_str(), "active" | "activating" | "reloading" | "deactivating");
        let started: Option<serde_json::Value> = running
            .then(|| std::fs::read_to_string(host.instance(name).started()).ok())
            .flatten()
            .and_then(|text| serde_json::from_str(&text).ok());
        statuses.push(InstanceStatus {
            name: name.clone(),
            unit,
            active_state: get("ActiveState"),
            sub_state: get("SubState"),
            since: timestamp(&get("StateChangeTimestamp")),
            enabled: is_enabled,
            main_pid: get("MainPID").parse().ok().filter(|pid| *pid != 0),
            restarts: get("NRestarts").parse().unwrap_or(0),
            result: get("Result"),
            mounted: mounts.contains(&host.instance(name).merged()),
            port: record.spec.port.number(),
            digest: record.digest.to_string(),
            started_digest: started.as_ref().and_then(|s| s["digest"].as_str().map(str::to_owned)),
            started_port: started.as_ref().and_then(|s| s["port"].as_u64()).and_then(|p| u16::try_from(p).ok()),
            override_marker: overrides::read(host, name)?,
            query: None,
        });
    }

    // A running server answers on the port it started on, which a later render may have moved.
    let queried = |s: &InstanceStatus| SocketAddr::from((Ipv4Addr::LOCALHOST, s.started_port.unwrap_or(s.port)));
    if detail == Detail::Brief {
        return Ok(statuses);
    }
    let targets: Vec<SocketAddr> = statuses.iter().filter(|s| s.active_state == "active").map(queried).collect();
    let mut answers: HashMap<SocketAddr, a2s::Info> = a2s::query_info_many(&targets, QUERY_TIMEOUT);
    for status in &mut statuses {
        if status.active_state != "active" {
            continue;
        }
        if let Some(info) = answers.remove(&queried(status)) {
            status.query = Some(QueryInfo {
                name: info.name,
                map: info.map,
                players: info.players,
                max_players: info.max_players,
                bots: info.bots,
            });
        }
    }
    Ok(statuses)
}

/// The units `systemctl enable` linked into a target (what `start` does), from the symlinks.
fn enabled_on_disk() -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir("/etc/systemd/system") else { return BTreeSet::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
        .filter_map(|wants| std::fs::read_dir(wants.path()).ok())
        .flat_map(|links| links.flatten().map(|link| link.file_name().to_string_lossy().into_owned()))
        .collect()
}

/// systemd's `@<seconds>` (from `--timestamp=unix`) or an empty value → RFC 3339.
fn timestamp(value: &str) -> Option<String> {
    let secs: u64 = value.strip_prefix('@')?.parse().ok()?;
    Some(overrides::rfc3339(UNIX_EPOCH + Duration::from_secs(secs)))
}

/// The human table of `l4d2ctl status`.
pub fn table(statuses: &[InstanceStatus]) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "STATE".into(),
        "ENABLED".into(),
        "PORT".into(),
        "PLAYERS".into(),
        "MAP".into(),
        "RESTARTS".into(),
        "NOTE".into(),
    ]];
    for s in statuses {
        let (players, map) = match &s.query {
            Some(q) => (format!("{}/{}", q.players, q.max_players), q.map.clone()),
            None => ("-".into(), "-".into()),
        };
        let note = match &s.override_marker {
            Some(o) => format!("overridden by {} ({} at {})", o.who, o.what, o.when),
            None if s.active_state == "active" && s.query.is_none() => "not answering queries".into(),
            None => String::new(),
        };
        rows.push([
            s.name.to_string(),
            format!("{}/{}", s.active_state, s.sub_state),
            if s.enabled { "yes" } else { "no" }.into(),
            s.port.to_string(),
            players,
            map,
            s.restarts.to_string(),
            note,
        ]);
    }
    let widths: Vec<usize> = (0..8).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
