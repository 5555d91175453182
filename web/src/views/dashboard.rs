//! The dashboard: the server table's rows (drawn once per look at the host for each user and
//! host name) and the page around them.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use left4me_state::Name;
use minijinja::{Value, context};
use reconciler::live::db::Point;
use reconciler::report::ServerReport;
use serde::Serialize;

use crate::access;
use crate::accounts::{Session, User};
use crate::app::{App, SHARED_MARK};
use crate::snapshot::Snapshot;
use crate::views::chart::{self, Frame, Scale, Series};
use crate::views::page::{base, v};

/// One row of the server table.
#[derive(Serialize)]
pub struct Row<'a> {
    #[serde(flatten)]
    report: &'a ServerReport,
    owner: Option<&'a str>,
    /// The host it runs on, when the revision declares hosts.
    host: Option<&'a str>,
    blueprint: Option<&'a str>,
    desired_state: Option<&'static str>,
    /// `<address>:<port>`, what players give the console's `connect`.
    address: Option<String>,
    /// The `steam://connect/` link to the same.
    connect: Option<String>,
    /// CPU in percent of one core, between the last two looks (`12%`).
    cpu: Option<String>,
    /// Memory in use now (`412 MiB`).
    memory: Option<String>,
    /// The last day's players as an SVG line; None while the host keeps no history.
    sparkline: Option<String>,
}

impl Row<'_> {
    /// The game build the revision has the server run, as its host planned it.
    pub fn desired_build(&self) -> Option<u64> {
        self.report.desired_build
    }
}

/// The servers `user` may see, as table rows; `host` is the address players connect to
/// ([`connect_host`]).
pub fn rows<'a>(snapshot: &'a Snapshot, user: &User, host: &str) -> Vec<Row<'a>> {
    snapshot.servers.iter().filter_map(|report| row(snapshot, report, user, host)).collect()
}

/// One server's row, when `user` may see it.
pub fn row<'a>(snapshot: &'a Snapshot, report: &'a ServerReport, user: &User, host: &str) -> Option<Row<'a>> {
    let declared = snapshot.desired.as_ref().and_then(|d| d.servers.get(report.name.as_str()));
    let owner = declared.map(|s| &s.owner);
    // Players reach a server of another host at the address the revision gives that host.
    let elsewhere = snapshot.elsewhere(&report.name);
    let host = elsewhere.as_ref().map_or(host, |h| h.address.as_str());
    access::may_see(user, owner).then(|| Row {
        report,
        owner: owner.map(Name::as_str),
        host: snapshot.host_of(&report.name).map(Name::as_str),
        blueprint: declared.map(|s| s.blueprint.as_str()),
        desired_state: declared.map(|s| power_state(s.state)),
        address: report.port.map(|port| endpoint(host, port)),
        connect: report.port.map(|port| format!("steam://connect/{}", endpoint(host, port))),
        cpu: snapshot.cpu.get(report.name.as_str()).map(|cpu| format!("{cpu:.0}%")),
        memory: snapshot
            .instances
            .get(report.name.as_str())
            .and_then(|i| i.resources.memory_bytes)
            .map(l4d2ctl::api::bytes_text),
        sparkline: match &elsewhere {
            // The sampled history is kept by the host the server runs on.
            Some(host) => Some(format!(r#"<span class="muted">kept on host {}</span>"#, host.name)),
            None => snapshot.history.as_ref().map(|history| sparkline(&report.name, history.get(report.name.as_str()))),
        },
    })
}

/// `host:port` as players give it to the console's `connect`; an IPv6 address in brackets, or
/// its port would read as part of it.
fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// A server's players over the last day, as the dashboard's row draws them.
fn sparkline(name: &str, points: Option<&Vec<Point>>) -> String {
    let (width, span) = crate::snapshot::HISTORY;
    let now = left4me_state::clock::unix_seconds(std::time::SystemTime::now()) as i64;
    let frame = Frame { from: now - span, to: now, step: width };
    let points = points.map_or(Vec::new(), |points| points.iter().map(|p| (p.start, p.players)).collect());
    if points.is_empty() {
        return r#"<span class="muted">no samples yet</span>"#.to_owned();
    }
    let series = Series { label: "players", points };
    chart::sparkline(&format!("{name}, players over the last 24 hours"), &series, frame, Scale::Count)
}

/// A power state as the pages and forms write it.
pub fn power_state(state: left4me_state::PowerState) -> &'static str {
    match state {
        left4me_state::PowerState::Running => "running",
        left4me_state::PowerState::Stopped => "stopped",
    }
}

/// The address players connect to: the host's public address (`LEFT4ME_PUBLIC_ADDRESS`), else
/// the address the revision declares for this host (`hosts/<name>.yaml`), else the host name the
/// browser reached the app at.
pub fn connect_host(app: &App, headers: &HeaderMap) -> String {
    if let Some(address) = &app.public_address {
        return address.as_str().to_owned();
    }
    let snapshot = app.latest();
    let declared = snapshot.local_host.as_ref().and_then(|here| snapshot.desired.as_ref()?.hosts.get(here));
    match declared {
        Some(host) => host.address.as_str().to_owned(),
        None => request_host(headers),
    }
}

/// The host name the request came to, without a port.
pub fn request_host(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => name,
        _ => host,
    };
    let shown: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(*c)).collect();
    // A DNS name is at most 253 characters: a longer Host is no host's, and each one would be
    // drawn and kept in the rows cache once more.
    if shown.is_empty() || shown.len() > 253 { "localhost".to_owned() } else { shown }
}

/// The server table's rows as HTML, drawn once per look at the host for each (user, host name):
/// the dashboard and its live view are then a copy, however many people watch.
pub fn rows_html(app: &App, snapshot: &Arc<Snapshot>, user: &User, host: &str) -> Arc<str> {
    let key = (user.name.to_string(), user.admin, host.to_owned());
    app.rows.get_or_draw(snapshot, key, || {
        let rows = rows(snapshot, user, host);
        let blueprints = access::visible_blueprints(snapshot, user);
        let hosts = snapshot.declares_hosts();
        let context = context! { rows => v(&rows), blueprints, hosts, user => context! { admin => user.admin } };
        app.render_fragment("server_rows.html", context).into()
    })
}

/// The dashboard's context, with [`SHARED_MARK`] where its rows go, and the rows: they are sent
/// as drawn for this look ([`App::render_sharing`]), not copied into each page.
pub fn dashboard_context(app: &App, session: &Session, headers: &HeaderMap) -> (Value, Arc<str>) {
    let snapshot = app.current();
    let host = connect_host(app, headers);
    let rows = rows_html(app, &snapshot, &session.user, &host);
    let blueprints = access::visible_blueprints(&snapshot, &session.user);
    let context = context! {
        ..base(session, "servers"),
        ..context! {
            rows => Value::from_safe_string(SHARED_MARK.to_owned()),
            blueprints,
            revision_error => snapshot.revision_error.clone(),
            problem => snapshot.problem.clone(),
            last_pass => v(&snapshot.last_pass),
            head => snapshot.head.clone(),
            taken_at => snapshot.taken_at.clone(),
            looked => !snapshot.taken_at.is_empty(),
            hosts => snapshot.declares_hosts().then(|| hosts(&snapshot)),
        }
    };
    (context, rows)
}

/// The declared hosts as the dashboard lists them: this one, and each other host's last look
/// (when it answered, its revision; or why it did not, and when it last did).
pub fn hosts(snapshot: &Snapshot) -> Vec<Value> {
    let Some(desired) = &snapshot.desired else { return Vec::new() };
    let short = |id: &Option<String>| id.as_deref().map(|id| id.get(..12).unwrap_or(id).to_owned());
    desired
        .hosts
        .values()
        .map(|host| {
            let name = host.name.as_str();
            if Some(&host.name) == snapshot.local_host.as_ref() {
                return context! { name, address => host.address.as_str(), here => true, answered => true,
                    head => short(&snapshot.head), taken_at => snapshot.taken_at.clone() };
            }
            match snapshot.hosts.get(&host.name).cloned().flatten() {
                Some(look) => match &look.status {
                    Ok(status) => context! { name, address => host.address.as_str(), answered => true,
                        head => short(&status.head), taken_at => look.taken_at.clone(),
                        problem => status.problem.clone().or(status.upstream_error.clone()),
                        revision_error => status.revision_error.is_some() },
                    Err(reason) => context! { name, address => host.address.as_str(), answered => false,
                        problem => reason.clone(), taken_at => look.taken_at.clone(), answered_at => look.answered_at.clone() },
                },
                None => context! { name, address => host.address.as_str(), answered => false, problem => "not answered yet" },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn an_ipv6_address_is_bracketed_once_and_the_others_are_left_as_they_are() {
        assert_eq!(endpoint("2001:db8::7", 27015), "[2001:db8::7]:27015");
        assert_eq!(endpoint("[::1]", 27015), "[::1]:27015", "a Host header's own brackets are kept");
        assert_eq!(endpoint("203.0.113.5", 27016), "203.0.113.5:27016");
        assert_eq!(endpoint("l4d2.example.org", 27017), "l4d2.example.org:27017");
    }
}
