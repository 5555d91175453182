//! `l4d2ctl status`: what runs, in one `systemctl show` for all instances and one UDP socket for
//! all A2S queries, however many there are — or, for a plan, one `systemctl list-units` and no
//! query at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use left4me_state::{Digest, Name};

use crate::api::{
    ActiveState, Detail, InstanceStatus, LeftoverUnit, Observation, OrphanOverride, Override, Problem, QueryInfo,
    Remedy, Resources, bytes_text, parse_digest,
};
use crate::error::Error;
use crate::host::{Host, unit_name};
use crate::{a2s, builds, instance, overlay, overrides, record, running, schedules, systemd, units};

/// How long status waits for game servers to answer their A2S query.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(700);

const PROPERTIES: &[&str] = &[
    "ActiveState",
    "SubState",
    "StateChangeTimestamp",
    "MainPID",
    "NRestarts",
    "Result",
    "CPUUsageNSec",
    "MemoryCurrent",
    "TasksCurrent",
    "ControlGroup",
];

/// Looks at the whole host: one `systemctl` call for the units, whatever their number.
pub fn observe(host: &Host, detail: Detail) -> Result<Observation, Error> {
    let look = look(host, None, detail)?;
    let instances = look.statuses;
    let is_instance = |name: &Name| instances.iter().any(|i| i.name == *name);
    let mut leftover = BTreeMap::new();
    for (unit, props) in look.unclaimed {
        let active = ActiveState::from(props.get("ActiveState").map_or("", String::as_str));
        if let Some(name) = server_of(&unit).filter(|name| !is_instance(name))
            && active != ActiveState::Inactive
        {
            let enabled = look.enabled.contains(&unit);
            leftover.insert(unit.clone(), LeftoverUnit { name, unit, active_state: active, enabled });
        }
    }
    for unit in &look.enabled {
        if let Some(name) = server_of(unit).filter(|name| !is_instance(name)) {
            leftover.entry(unit.clone()).or_insert_with(|| LeftoverUnit {
                name,
                unit: unit.clone(),
                active_state: ActiveState::Inactive,
                enabled: true,
            });
        }
    }
    let (overlays, mut problems) = overlay::list(host)?;
    let mut overrides = Vec::new();
    for name in overrides::names(host)?.into_iter().filter(|name| !is_instance(name)) {
        if let Some(marker) = marker(host, &name, &mut problems) {
            overrides.push(OrphanOverride { name, marker });
        }
    }
    let workshop = crate::workshop::read(host, &mut problems);
    Ok(Observation {
        units: units::drift(host)?,
        leftover_units: leftover.into_values().collect(),
        instances,
        overlays,
        overrides,
        problems,
        game: builds::game(host)?,
        workshop,
        schedules: schedules::installed(host)?,
    })
}

/// The status of the named instances, or of every instance.
pub fn status(host: &Host, only: Option<&Name>, detail: Detail) -> Result<Vec<InstanceStatus>, Error> {
    Ok(look(host, only, detail)?.statuses)
}

/// What one look at systemd found: the instances' statuses, the units it holds that are no
/// instance's, and the enabled units.
struct Look {
    statuses: Vec<InstanceStatus>,
    unclaimed: BTreeMap<String, BTreeMap<String, String>>,
    enabled: BTreeSet<String>,
}

fn look(host: &Host, only: Option<&Name>, detail: Detail) -> Result<Look, Error> {
    let names = match only {
        Some(name) => {
            if !host.instance(name).record().exists() {
                return Err(Error::Invalid(format!("{name} is not initialized on this host")));
            }
            vec![name.clone()]
        }
        None => record::list(host)?,
    };
    let units: Vec<String> = names.iter().map(unit_name).collect();
    let mut shown = match detail {
        Detail::Full => systemd::show_loaded("left4me-server@*.service", PROPERTIES)?,
        Detail::Brief => systemd::list_loaded("left4me-server@*.service")?,
    };

    let mut statuses = Vec::with_capacity(names.len());
    // Whether a unit is enabled is its symlink, as `start` makes it: systemd's own UnitFileState
    // of a loaded unit is what it read when it last looked, and `enable --no-reload` does not
    // make it look again.
    let enabled = enabled_on_disk();
    let root = nix::unistd::geteuid().is_root();
    // The build a record or a start that names none stands for: one small file or two.
    let unnamed = builds::unnamed(host);
    for (name, unit) in names.iter().zip(units) {
        let paths = host.instance(name);
        let mut problems = Vec::new();
        // A record that cannot be read is this server's problem only: it is reported with an
        // unknown render (no digest, no port), which a pass renders again.
        let record = match record::load(&paths.record()) {
            Ok(Some(record)) => Some(record),
            // Removed since the listing: not an instance any more.
            Ok(None) => continue,
            Err(cause) => {
                problems.push(Problem::new(paths.record(), cause, Remedy::Initialize));
                None
            }
        };
        problems.extend(check_files(&paths));
        problems.extend(record.as_ref().and_then(|r| crate::limits::drift(host, name, &r.spec.resources)));
        // A unit systemd has not loaded is stopped.
        let props = shown.remove(&unit).unwrap_or_else(|| {
            BTreeMap::from([
                ("ActiveState".to_owned(), "inactive".to_owned()),
                ("SubState".to_owned(), "dead".to_owned()),
            ])
        });
        let get = |key: &str| props.get(key).cloned().unwrap_or_default();
        let is_enabled = enabled.contains(&unit);
        let active_state = ActiveState::from(get("ActiveState"));
        let started = if active_state.is_running() { started(&paths, &mut problems) } else { None };
        let rendered_build = record.as_ref().and_then(|r| r.build.or(unnamed));
        let started_build = started.as_ref().and_then(|s| s.build.or(unnamed));
        let build = if active_state.is_running() { started_build } else { rendered_build };
        // Only root may look into a game's own namespace; anyone else is told whether it runs.
        let mounted = active_state.is_running()
            && if root { running::tree(host, name).is_some() } else { running::is_running(name).unwrap_or(false) };
        statuses.push(InstanceStatus {
            name: name.clone(),
            unit,
            active_state,
            sub_state: get("SubState"),
            since: timestamp(&get("StateChangeTimestamp")),
            enabled: is_enabled,
            main_pid: get("MainPID").parse().ok().filter(|pid| *pid != 0),
            restarts: get("NRestarts").parse().unwrap_or(0),
            result: get("Result"),
            mounted,
            port: record.as_ref().map_or(0, |r| r.spec.port.number()),
            digest: record.as_ref().map(|r| r.digest.clone()),
            started_digest: started.as_ref().and_then(|s| s.digest.clone()),
            started_port: started.as_ref().and_then(|s| s.port),
            override_marker: marker(host, name, &mut problems),
            query: None,
            last_answer: None,
            build,
            rendered_build,
            started_build,
            problems,
            resources: resources(&props),
        });
    }

    if detail == Detail::Full {
        query(host, &mut statuses, only.is_none());
    }
    Ok(Look { statuses, unclaimed: shown, enabled })
}

/// Asks every active game for its A2S answer, over one socket, and keeps the time of each
/// answer, so that a game that stops answering is given its grace from its last answer.
fn query(host: &Host, statuses: &mut [InstanceStatus], every: bool) {
    // A running server answers on the port it started on, which a later render may have moved.
    let queried = |s: &InstanceStatus| SocketAddr::from((Ipv4Addr::LOCALHOST, s.started_port.unwrap_or(s.port)));
    let asked = |s: &InstanceStatus| s.active_state == ActiveState::Active && queried(s).port() != 0;
    let targets: Vec<SocketAddr> = statuses.iter().filter(|s| asked(s)).map(queried).collect();
    let mut answers: HashMap<SocketAddr, a2s::Info> = a2s::query_info_many(&targets, QUERY_TIMEOUT);
    let mut answered = answers::read(host);
    let now = left4me_state::clock::unix_seconds(SystemTime::now());
    let mut any = false;
    for status in statuses.iter_mut() {
        if asked(status)
            && let Some(info) = answers.remove(&queried(status))
        {
            status.query = Some(QueryInfo {
                name: info.name,
                map: info.map,
                players: info.players,
                max_players: info.max_players,
                bots: info.bots,
                humans: None,
            });
            answered.insert(status.name.to_string(), now);
            any = true;
        }
        // The file is the game user's to write: a time past now is no answer seen.
        status.last_answer = answered
            .get(status.name.as_str())
            .filter(|secs| **secs <= now)
            .map(|secs| left4me_state::clock::rfc3339(UNIX_EPOCH + Duration::from_secs(*secs)));
    }
    if any {
        // Servers gone from the host leave the file with the next full look at all of them.
        if every {
            answered.retain(|name, _| statuses.iter().any(|s| s.name.as_str() == name));
        }
        answers::write(host, &answered);
    }
}

/// The times of the games' last A2S answers, `$ROOT/answers.json` (`{"coop-1": <unix seconds>}`):
/// one file for all servers, written once per look, in `$ROOT`, where both root (the CLI, the
/// reconciler) and the game's user (the web app's looks) may replace it.
mod answers {
    use std::collections::BTreeMap;

    use crate::fsutil::{Owner, write_atomic};
    use crate::host::Host;

    pub fn read(host: &Host) -> BTreeMap<String, u64> {
        // A file cut short or never written knows no answer; the next answer writes it anew.
        // A file the game's user may have written anything into: read within bounds (a time a
        // server takes is under 100 bytes), and only if it is a file.
        crate::fsutil::read_bounded(&path(host), 4 << 20)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Best effort: a look by a user who may not write `$ROOT` still answers.
    pub fn write(host: &Host, answered: &BTreeMap<String, u64>) {
        let Ok(game) = Owner::user(&host.user) else { return };
        let json = serde_json::to_vec(answered).expect("a map of numbers always serializes");
        let _ = write_atomic(&path(host), &json, 0o644, game);
    }

    fn path(host: &Host) -> std::path::PathBuf {
        host.root.join("answers.json")
    }
}

/// The runtime folders a start mounts over, and the RCON password `initialize` made: a folder
/// removed by hand, a password file emptied, are this server's problems, put right by rendering
/// it again.
fn check_files(paths: &crate::host::InstancePaths) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !paths.runtime.is_dir() {
        problems.push(Problem::new(&paths.runtime, "is missing", Remedy::Initialize));
    } else {
        for dir in [paths.upper(), paths.work(), paths.merged()] {
            if !dir.is_dir() {
                problems.push(Problem::new(&dir, "is missing", Remedy::Initialize));
            }
        }
    }
    let password = paths.rcon_password();
    match std::fs::read_to_string(&password) {
        Ok(text) if instance::is_password(text.trim()) => {}
        Ok(_) => problems.push(Problem::new(&password, "holds no password", Remedy::Initialize)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            problems.push(Problem::new(&password, "is missing", Remedy::Initialize))
        }
        // The web app's user may not read it on a host installed before it could.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !nix::unistd::geteuid().is_root() => {}
        Err(e) => problems.push(Problem::new(&password, e, Remedy::Initialize)),
    }
    problems
}

/// What a running server started with, as `started.json` records it.
pub struct Started {
    pub digest: Option<Digest>,
    pub port: Option<u16>,
    /// None: it started on the base install from before builds.
    pub build: Option<u64>,
}

/// What a running server started with (`started.json`). One that cannot be read is reported and
/// taken as unknown until the next start writes it again.
pub fn started(paths: &crate::host::InstancePaths, problems: &mut Vec<Problem>) -> Option<Started> {
    let path = paths.started();
    match std::fs::read_to_string(&path) {
        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value) => Some(Started {
                digest: value["digest"].as_str().and_then(|text| parse_digest(text).ok()),
                port: value["port"].as_u64().and_then(|port| u16::try_from(port).ok()),
                build: value["build"].as_u64(),
            }),
            Err(e) => {
                problems.push(Problem::new(&path, e, Remedy::NextStart));
                None
            }
        },
        Err(e) => {
            problems.extend(Problem::unreadable(&path, &e, Remedy::NextStart));
            None
        }
    }
}

/// A server's override marker. One that cannot be read still marks a change by hand (markers
/// are written before the change): respected, and reported.
fn marker(host: &Host, name: &Name, problems: &mut Vec<Problem>) -> Option<Override> {
    let path = host.override_marker(name);
    match overrides::load(&path) {
        Ok(marker) => marker,
        Err(cause) => {
            problems.push(Problem::new(&path, cause, Remedy::Release));
            Some(overrides::unreadable(&path))
        }
    }
}

/// The server of a unit `left4me-server@<name>.service`.
fn server_of(unit: &str) -> Option<Name> {
    Name::new(unit.strip_prefix("left4me-server@")?.strip_suffix(".service")?).ok()
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

/// What a unit uses, from its `systemctl show` properties (a brief look has none of them) and its
/// cgroup's `memory.peak` (systemd 252 has no `MemoryPeak` property): a file read, no process.
fn resources(props: &BTreeMap<String, String>) -> Resources {
    let count = |key: &str| props.get(key).and_then(|value| counted(value));
    let peak = props.get("ControlGroup").and_then(|group| memory_peak(Path::new(CGROUPS), group));
    Resources {
        cpu_nsec: count("CPUUsageNSec"),
        memory_bytes: count("MemoryCurrent"),
        memory_peak_bytes: peak,
        tasks: count("TasksCurrent"),
    }
}

const CGROUPS: &str = "/sys/fs/cgroup";

/// A count systemd shows: `[not set]` (no accounting, a stopped unit) and u64::MAX (what it
/// prints for "unknown" in some versions) are None.
fn counted(value: &str) -> Option<u64> {
    value.trim().parse().ok().filter(|n| *n != u64::MAX)
}

/// The most memory the cgroup `group` (`/system.slice/…`) under `cgroups` used: its `memory.peak`
/// (cgroup v2), or on a host still on v1 its memory controller's `memory.max_usage_in_bytes`.
/// None when neither is there (a stopped unit, a kernel before 5.19) or the group is not a plain
/// path below.
fn memory_peak(cgroups: &Path, group: &str) -> Option<u64> {
    let relative = Path::new(group.strip_prefix('/')?);
    if group.len() < 2 || !relative.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
        return None;
    }
    let v2 = cgroups.join(relative).join("memory.peak");
    let v1 = cgroups.join("memory").join(relative).join("memory.max_usage_in_bytes");
    [v2, v1].iter().find_map(|file| counted(std::str::from_utf8(&crate::fsutil::read_bounded(file, 64)?).ok()?))
}

/// systemd's `@<seconds>` (from `--timestamp=unix`) or an empty value → RFC 3339.
fn timestamp(value: &str) -> Option<String> {
    let secs: u64 = value.strip_prefix('@')?.parse().ok()?;
    Some(left4me_state::clock::rfc3339(UNIX_EPOCH + Duration::from_secs(secs)))
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
        "CPU".into(),
        "MEMORY".into(),
        "TASKS".into(),
        "NOTE".into(),
    ]];
    for s in statuses {
        let (players, map) = match &s.query {
            Some(q) => (format!("{}/{}", q.players, q.max_players), q.map.clone()),
            None => ("-".into(), "-".into()),
        };
        let mut notes: Vec<String> = s.problems.iter().map(ToString::to_string).collect();
        match &s.override_marker {
            Some(o) => notes.push(format!("overridden by {} ({} at {})", o.who, o.what, o.when)),
            None if s.active_state == ActiveState::Active && s.query.is_none() => notes.push(match &s.last_answer {
                Some(at) => format!("not answering queries (last answer at {at})"),
                None => "not answering queries".into(),
            }),
            None => {}
        }
        let note = notes.join("; ");
        rows.push([
            s.name.to_string(),
            format!("{}/{}", s.active_state, s.sub_state),
            if s.enabled { "yes" } else { "no" }.into(),
            s.port.to_string(),
            players,
            map,
            s.restarts.to_string(),
            s.resources.cpu_text(),
            memory_text(&s.resources),
            s.resources.tasks.map_or("-".into(), |n| n.to_string()),
            note,
        ]);
    }
    let widths: Vec<usize> = (0..11).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Memory now and its peak: `412 MiB/530 MiB`.
fn memory_text(resources: &Resources) -> String {
    match (resources.memory_bytes, resources.memory_peak_bytes) {
        (None, _) => "-".into(),
        (Some(now), None) => bytes_text(now),
        (Some(now), Some(peak)) => format!("{}/{}", bytes_text(now), bytes_text(peak)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn what_systemd_does_not_count_is_unknown_not_zero() {
        let shown = props(&[
            ("CPUUsageNSec", "[not set]"),
            ("MemoryCurrent", "18446744073709551615"),
            ("TasksCurrent", "7"),
            ("ControlGroup", ""),
        ]);
        let r = resources(&shown);
        assert_eq!((r.cpu_nsec, r.memory_bytes, r.memory_peak_bytes, r.tasks), (None, None, None, Some(7)));
        assert_eq!(resources(&props(&[("ActiveState", "active")])), Resources::default());
    }

    #[test]
    fn the_peak_is_read_from_the_units_cgroup_and_nowhere_else() {
        let root = tempfile::tempdir().unwrap();
        let group = root.path().join("system.slice/left4me-server@a.service");
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(group.join("memory.peak"), "123456\n").unwrap();
        std::fs::write(root.path().join("memory.peak"), "99\n").unwrap();
        assert_eq!(memory_peak(root.path(), "/system.slice/left4me-server@a.service"), Some(123456));
        assert_eq!(memory_peak(root.path(), "/system.slice/left4me-server@b.service"), None);
        let v1 = root.path().join("memory/system.slice/left4me-server@b.service");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.max_usage_in_bytes"), "4096\n").unwrap();
        assert_eq!(memory_peak(root.path(), "/system.slice/left4me-server@b.service"), Some(4096));
        for escaping in ["/system.slice/../..", "/..", "/", "system.slice/left4me-server@a.service", ""] {
            assert_eq!(memory_peak(root.path(), escaping), None, "{escaping}");
        }
    }

    #[test]
    fn the_table_shows_cpu_time_memory_and_tasks() {
        let resources = Resources {
            cpu_nsec: Some(754_000_000_000),
            memory_bytes: Some(412 << 20),
            memory_peak_bytes: Some(530 << 20),
            tasks: Some(23),
        };
        assert_eq!(resources.cpu_text(), "12m34s");
        assert_eq!(memory_text(&resources), "412 MiB/530 MiB");
        assert_eq!(Resources { cpu_nsec: Some(1_500_000_000), ..resources }.cpu_text(), "1.5s");
        assert_eq!(Resources::default().cpu_text(), "-");
        assert_eq!(memory_text(&Resources::default()), "-");
        assert_eq!(bytes_text(1536), "1.5 KiB");
    }
}
