//! A server's page: what the revision declares of it, how it runs, its rendered server.cfg, and
//! (for its owner) the RCON history.

use axum::http::HeaderMap;
use l4d2ctl::api::{Resources, bytes_text};
use left4me_state::{DesiredState, Name};
use minijinja::{Value, context};
use reconciler::live::db::Point;

use crate::access;
use crate::accounts::Session;
use crate::app::App;
use crate::gamelog;
use crate::snapshot::Snapshot;
use crate::views::chart::{self, Frame, Scale, Series};
use crate::views::dashboard::{connect_host, power_state, row};
use crate::views::page::{base, v};

/// Whether a server's context carries its owner's RCON history (the page) or not (the live
/// status panel, which does not show it, and so reads no database).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RconHistory {
    Read,
    Left,
}

/// The context of the server `name`'s page; None when `session`'s user may not see it.
pub fn server_context(
    app: &App,
    session: &Session,
    name: &str,
    headers: &HeaderMap,
    history: RconHistory,
) -> Option<Value> {
    let snapshot = app.current();
    if !access::server_visible(&snapshot, &session.user, name) {
        return None;
    }
    let declared = snapshot.desired.as_ref().and_then(|d| d.servers.get(name));
    let host = connect_host(app, headers);
    let row = snapshot.servers.iter().find(|r| r.name == name).and_then(|r| row(&snapshot, r, &session.user, &host));
    let instance = snapshot.instances.get(name);
    let server_cfg = snapshot.desired.as_ref().and_then(|d| rendered_cfg(d, name));
    // A server of another host: its state is that host's answer, its history is kept there.
    let elsewhere = snapshot.elsewhere(name).map(|host| host.name);
    let desired_build = snapshot
        .plan
        .as_ref()
        .and_then(|plan| plan.builds.get(name).copied())
        .or_else(|| row.as_ref().and_then(|r| r.desired_build()));
    let is_owner = declared.is_some_and(|s| access::is_owner(&session.user, &s.owner));
    let charts = if history == RconHistory::Read && elsewhere.is_none() { charts(app, name) } else { None };
    let rcon_history = if is_owner && history == RconHistory::Read {
        app.accounts.rcon_history(&session.user, name, 50).unwrap_or_default()
    } else {
        vec![]
    };
    // The game's events are the page's, as the RCON history: the status panel reads none.
    let (players, game_events) = match (history, Name::new(name)) {
        (RconHistory::Read, Ok(server)) => app.gamelog.page(&server),
        _ => Default::default(),
    };
    Some(context! {
        ..base(session, "servers"),
        ..context! {
            name,
            host => snapshot.host_of(name).map(Name::as_str),
            elsewhere => elsewhere.as_ref().map(Name::as_str),
            row => v(&row),
            declared => declared.map(|s| context! {
                owner => s.owner.as_str(), blueprint => s.blueprint.as_str(), port => s.port.number(),
                state => power_state(s.state),
                hostname => s.hostname.get().clone(), file => s.file.clone(),
            }),
            instance => v(instance),
            resources => instance.map(|i| resources(&snapshot, name, &i.resources)),
            charts,
            build => instance.and_then(|i| i.build),
            desired_build,
            server_cfg,
            players => Value::from_safe_string(gamelog::players_html(&players)),
            game_events => Value::from_safe_string(gamelog::events_html(&game_events)),
            game_after => game_events.last().map_or(0, |e| e.id),
            is_owner,
            rcon_history,
            head => snapshot.head.clone(),
            crash_loop => crash_loop(&snapshot, name),
            may_change => declared.is_some_and(|s| access::may_change(&session.user, &s.owner)),
        }
    })
}

/// What a server's unit uses, as the page writes it: CPU between the last two looks, memory now
/// and at its peak since it started, tasks.
fn resources(snapshot: &Snapshot, name: &str, resources: &Resources) -> Value {
    let bytes = |value: Option<u64>| value.map(bytes_text);
    context! {
        cpu => snapshot.cpu.get(name).map(|cpu| format!("{cpu:.1}%")),
        cpu_time => resources.cpu_nsec.map(|_| resources.cpu_text()),
        memory => bytes(resources.memory_bytes),
        memory_peak => bytes(resources.memory_peak_bytes),
        tasks => resources.tasks,
    }
}

/// How far back a server's page charts go, and the width of their points.
pub const CHARTS: (i64, i64) = (3_600, 7 * 86_400);

/// A server's charts of the last week (players, CPU, memory) as SVG, from `$ROOT/live.db`; None
/// while there is no such database, or it cannot be read (said in the log).
fn charts(app: &App, name: &str) -> Option<Value> {
    let server = Name::new(name).ok()?;
    let (width, span) = CHARTS;
    let now = left4me_state::clock::unix_seconds(std::time::SystemTime::now()) as i64;
    // Through the app's one connection to live.db, as the server's events are.
    let points = app.gamelog.read(|db| db.points_of(&server, width, now - span))?;
    let frame = Frame { from: now - span, to: now, step: width };
    let line = |label, value: &dyn Fn(&Point) -> Option<f64>| Series {
        label,
        points: points.iter().filter_map(|p| Some((p.start, value(p)?))).collect(),
    };
    let players = [line("players", &|p| Some(p.players)), line("most players", &|p| Some(f64::from(p.players_max)))];
    let cpu = [line("CPU", &|p| p.cpu)];
    let memory = [line("memory", &|p| p.memory_max.map(|bytes| bytes as f64))];
    let svg = |title: &str, series: &[Series<'_>], scale| {
        Value::from_safe_string(chart::chart(&format!("{name}, {title} over the last 7 days"), series, frame, scale))
    };
    Some(context! {
        players => svg("players", &players, Scale::Count),
        cpu => svg("CPU (percent of one core)", &cpu, Scale::Percent),
        memory => svg("memory", &memory, Scale::Bytes),
        empty => points.is_empty(),
    })
}

/// The Health of `name` while it is held back after crashing (`crash loop, next try in 4m20s`).
pub fn crash_loop<'a>(snapshot: &'a Snapshot, name: &str) -> Option<&'a str> {
    snapshot.plan.as_ref()?.crash_loops.get(name).map(String::as_str)
}

/// The server.cfg the revision renders for a server, its secrets left out.
fn rendered_cfg(desired: &DesiredState, name: &str) -> Option<String> {
    let server = Name::new(name).ok()?;
    let spec = desired.instance_spec(&server)?;
    // The port is the host's; read once, as `left4me live` reads it once at its start.
    static LIVE_PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    let log_port =
        *LIVE_PORT.get_or_init(|| l4d2ctl::Host::from_env().map_or(l4d2ctl::host::LIVE_PORT, |host| host.live_port));
    let secrets = left4me_state::Secrets { rcon_password: "", log_secret: 0, log_port };
    Some(left4me_state::hide_secrets(&spec.server_cfg(&spec.digest(), &secrets)))
}
