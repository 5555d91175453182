//! `/metrics`: the servers by sync status and health, players, what their units use, reconcile passes, jobs, the
//! revision's validity and the live views, in Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use left4me_state::Name;
use reconciler::db::Event;
use reconciler::live::db::GameEventKind;

use crate::snapshot::Snapshot;

/// What `/metrics` reads besides the snapshot: the latest events and the job counts from the
/// reconciler's database, and the live views open.
pub struct Counts {
    pub events: Vec<Event>,
    pub jobs: Vec<(String, String, i64)>,
    pub live_views: usize,
    pub console_followers: usize,
    /// `live.db`'s counters: each server's events by kind, and the log packets dropped.
    pub game: Option<GameCounts>,
}

/// What `/metrics` shows of the game's log.
pub struct GameCounts {
    pub events: BTreeMap<(Name, GameEventKind), u64>,
    pub dropped: u64,
}

/// `/metrics` in Prometheus text format.
pub fn metrics_text(snapshot: &Snapshot, counts: &Counts) -> String {
    let mut out = String::new();
    let mut by_sync: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_health: BTreeMap<String, u64> = BTreeMap::new();
    for report in &snapshot.servers {
        *by_sync.entry(format!("{:?}", report.sync)).or_default() += 1;
        *by_health.entry(format!("{:?}", report.health)).or_default() += 1;
    }
    out.push_str("# HELP left4me_servers Servers by sync status.\n# TYPE left4me_servers gauge\n");
    for sync in ["Synced", "OutOfSync", "Overridden", "Suspended"] {
        let _ = writeln!(out, "left4me_servers{{sync=\"{sync}\"}} {}", by_sync.get(sync).unwrap_or(&0));
    }
    out.push_str("# HELP left4me_servers_health Servers by health.\n# TYPE left4me_servers_health gauge\n");
    for health in ["Running", "Starting", "Degraded", "Stopped", "Failed", "Unknown"] {
        let _ = writeln!(out, "left4me_servers_health{{health=\"{health}\"}} {}", by_health.get(health).unwrap_or(&0));
    }
    if !snapshot.hosts.is_empty() {
        out.push_str("# HELP left4me_host_up Whether another host answered its last look (over ssh).\n# TYPE left4me_host_up gauge\n");
        for (host, look) in &snapshot.hosts {
            let up = look.as_ref().is_some_and(|l| l.status.is_ok());
            let _ = writeln!(out, "left4me_host_up{{host=\"{host}\"}} {}", u8::from(up));
        }
    }
    out.push_str("# HELP left4me_players Human players on a server (A2S).\n# TYPE left4me_players gauge\n");
    out.push_str("# HELP left4me_max_players Player slots of a server (A2S).\n# TYPE left4me_max_players gauge\n");
    for report in &snapshot.servers {
        if let (Some(players), Some(max)) = (report.players, report.max_players) {
            let _ = writeln!(out, "left4me_players{{server=\"{}\"}} {players}", report.name);
            let _ = writeln!(out, "left4me_max_players{{server=\"{}\"}} {max}", report.name);
        }
    }
    resources(&mut out, snapshot);
    let passes: Vec<f64> = counts
        .events
        .iter()
        .filter(|e| e.kind == "reconcile")
        .filter_map(|e| e.duration_ms)
        .map(|ms| ms as f64 / 1000.0)
        .collect();
    out.push_str(
        "# HELP left4me_reconcile_pass_seconds Reconcile pass durations (the latest 100 passes).\n# TYPE left4me_reconcile_pass_seconds summary\n",
    );
    let mut sorted = passes.clone();
    sorted.sort_by(f64::total_cmp);
    for q in [0.5, 0.9, 0.99] {
        if let Some(value) = quantile(&sorted, q) {
            let _ = writeln!(out, "left4me_reconcile_pass_seconds{{quantile=\"{q}\"}} {value}");
        }
    }
    let _ = writeln!(out, "left4me_reconcile_pass_seconds_sum {}", passes.iter().sum::<f64>());
    let _ = writeln!(out, "left4me_reconcile_pass_seconds_count {}", passes.len());
    out.push_str("# HELP left4me_jobs Jobs kept, by kind and outcome.\n# TYPE left4me_jobs gauge\n");
    for (kind, state, count) in &counts.jobs {
        let _ = writeln!(out, "left4me_jobs{{kind=\"{kind}\",state=\"{state}\"}} {count}");
    }
    out.push_str(
        "# HELP left4me_revision_valid Whether the branch's commit is valid.\n# TYPE left4me_revision_valid gauge\n",
    );
    let _ = writeln!(out, "left4me_revision_valid {}", u8::from(snapshot.revision_error.is_none()));
    out.push_str("# HELP left4me_web_live_views Live views (server-sent event streams) open.\n# TYPE left4me_web_live_views gauge\n");
    let _ = writeln!(out, "left4me_web_live_views {}", counts.live_views);
    out.push_str("# HELP left4me_web_console_followers Server consoles followed (one l4d2ctl logs each).\n# TYPE left4me_web_console_followers gauge\n");
    let _ = writeln!(out, "left4me_web_console_followers {}", counts.console_followers);
    if let Some(game) = &counts.game {
        game_text(&mut out, game);
    }
    out
}

/// What each server's unit uses, as systemd counts it; a server it does not count is left out.
fn resources(out: &mut String, snapshot: &Snapshot) {
    type Measure = fn(&l4d2ctl::api::Resources) -> Option<f64>;
    let measures: [(&str, &str, &str, Measure); 4] = [
        ("left4me_server_cpu_seconds_total", "counter", "CPU time a server's unit used since it started.", |r| {
            r.cpu_nsec.map(|nsec| nsec as f64 / 1e9)
        }),
        ("left4me_server_memory_bytes", "gauge", "Memory a server's unit uses now.", |r| {
            r.memory_bytes.map(|b| b as f64)
        }),
        ("left4me_server_memory_peak_bytes", "gauge", "The most memory a server's unit used since it started.", |r| {
            r.memory_peak_bytes.map(|b| b as f64)
        }),
        ("left4me_server_tasks", "gauge", "Processes and threads of a server's unit.", |r| r.tasks.map(|n| n as f64)),
    ];
    for (name, kind, help, measure) in measures {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (server, instance) in &snapshot.instances {
            if let Some(value) = measure(&instance.resources) {
                let _ = writeln!(out, "{name}{{server=\"{server}\"}} {value}");
            }
        }
    }
}

/// The game's log: players who entered and chat lines per server, and the packets dropped.
fn game_text(out: &mut String, game: &GameCounts) {
    for (metric, help, kinds) in [
        ("left4me_game_joins_total", "Players who entered the game.", &[GameEventKind::Entered][..]),
        ("left4me_game_chat_messages_total", "Chat lines said.", &[GameEventKind::Say, GameEventKind::SayTeam]),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        let mut by_server: BTreeMap<&Name, u64> = BTreeMap::new();
        for ((server, kind), count) in &game.events {
            if kinds.contains(kind) {
                *by_server.entry(server).or_default() += count;
            }
        }
        for (server, count) in by_server {
            let _ = writeln!(out, "{metric}{{server=\"{server}\"}} {count}");
        }
    }
    out.push_str("# HELP left4me_game_log_dropped_packets_total Log packets dropped: no secret, a wrong one, not from this host, not a log line.\n# TYPE left4me_game_log_dropped_packets_total counter\n");
    let _ = writeln!(out, "left4me_game_log_dropped_packets_total {}", game.dropped);
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_servers_unit_use_is_exported_and_what_systemd_does_not_count_is_left_out() {
        let status = |name: &str, resources: serde_json::Value| -> l4d2ctl::api::InstanceStatus {
            serde_json::from_value(serde_json::json!({
                "name": name, "unit": format!("left4me-server@{name}.service"), "active_state": "active",
                "sub_state": "running", "enabled": true, "main_pid": 7, "restarts": 0, "result": "success",
                "mounted": true, "port": 27015, "digest": "", "override": null, "query": null,
                "resources": resources,
            }))
            .expect("a status as l4d2ctl prints it")
        };
        let mut snapshot = Snapshot::default();
        for s in [
            status(
                "a",
                serde_json::json!({"cpu_nsec": 2_500_000_000u64, "memory_bytes": 1024, "memory_peak_bytes": 4096, "tasks": 9}),
            ),
            status("b", serde_json::json!({})),
        ] {
            snapshot.instances.insert(s.name.clone(), s);
        }
        let counts = Counts { events: vec![], jobs: vec![], live_views: 0, console_followers: 0, game: None };
        let text = metrics_text(&snapshot, &counts);
        for line in [
            "# TYPE left4me_server_cpu_seconds_total counter",
            "left4me_server_cpu_seconds_total{server=\"a\"} 2.5",
            "left4me_server_memory_bytes{server=\"a\"} 1024",
            "left4me_server_memory_peak_bytes{server=\"a\"} 4096",
            "left4me_server_tasks{server=\"a\"} 9",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(!text.contains("server=\"b\""), "{text}");
    }
}
