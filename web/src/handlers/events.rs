//! The live views, over server-sent events: the server table, a server's status, its console
//! log (the journal, through the shared followers of `live.rs`) and a job's log as it grows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use crate::access;
use crate::accounts::Session;
use crate::app::App;
use crate::gamelog::{EVENTS_SHOWN, events_html, players_html};
use crate::live::{Console, Slot, sse};
use crate::remote::{self, ASK_TIMEOUT};
use crate::session::Auth;
use crate::text::escape;
use crate::views::dashboard::{connect_host, rows_html};
use crate::views::jobs::{JobsOf, jobs_of, visible_job, visible_remote_job};
use crate::views::server::{RconHistory, server_context};
use reconciler::remote::{Ask, JobLog};

/// A live view of `session` in its place: it ends when the session ends (a sign-out, a
/// password change elsewhere, the user disabled) or expires.
fn live(
    app: &Arc<App>,
    session: &Session,
    slot: Slot,
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    let ended = session_ended(app.clone(), session.token_hash.clone());
    sse(stream.take_until(ended).map(move |event| {
        let _place = &slot;
        event
    }))
}

/// Resolves once the session of `token_hash` is no longer live: looked at each time sessions
/// end anywhere, and every minute (for expiry).
async fn session_ended(app: Arc<App>, token_hash: String) {
    let mut ends = app.accounts.session_ends();
    loop {
        let asked = token_hash.clone();
        let lives = app.blocking(move |app| app.accounts.session_lives(&asked)).await;
        if !matches!(lives, Ok(Ok(true))) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), ends.changed()).await;
    }
}

/// An event each time the host is looked at and `draw` draws something new; ends when `draw`
/// has nothing (the thing is gone or no longer visible).
fn redrawn(
    app: Arc<App>,
    session: &Session,
    event: &'static str,
    draw: impl Fn(&App) -> Option<String> + Send + Sync + 'static,
) -> Response {
    let slot = match app.streams.take(session.user.id) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let mut changes = app.snapshot.clone();
    changes.mark_unchanged();
    let draw = Arc::new(draw);
    let drawer = app.clone();
    let stream = stream::unfold((changes, String::new()), move |(mut changes, last)| {
        let (app, draw) = (drawer.clone(), draw.clone());
        async move {
            loop {
                changes.changed().await.ok()?;
                let html = draw(&app)?;
                if html != last {
                    return Some((Ok(Event::default().event(event).data(html.clone())), (changes, html)));
                }
            }
        }
    });
    live(&app, session, slot, stream)
}

/// The dashboard's table body, again each time it changes.
pub async fn dashboard_events(State(app): State<Arc<App>>, Auth(session): Auth, headers: HeaderMap) -> Response {
    let host = connect_host(&app, &headers);
    let user = session.user.clone();
    redrawn(app, &session, "servers", move |app| Some(rows_html(app, &app.current(), &user, &host).to_string()))
}

/// A server's status panel, again each time it changes.
pub async fn server_events(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !access::server_visible(&app.current(), &session.user, &name) {
        return app.not_found();
    }
    let drawing = session.clone();
    redrawn(app, &session, "status", move |app| {
        // The status panel shows no RCON history: none is read for it.
        let context = server_context(app, &drawing, &name, &headers, RconHistory::Left)?;
        Some(app.render_fragment("server_status.html", context))
    })
}

/// The server's console: the last lines of its journal, then each new one.
pub async fn server_log(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    if !access::server_visible(&app.current(), &session.user, &name) {
        return app.not_found();
    }
    let slot = match app.streams.take(session.user.id) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    // A server of another host is followed there, over ssh; the address is the revision's.
    let console = match app.current().elsewhere(&name) {
        Some(host) => Console::On(&app.ssh, host),
        None => Console::Here(&app.config.l4d2ctl),
    };
    let follower = match app.streams.follower(console, &name) {
        Ok(follower) => follower,
        Err(refused) => return refused.into_response(),
    };
    let lines = follower.view().map(|html| Ok(Event::default().event("line").data(&*html)));
    live(&app, &session, slot, lines)
}

/// A server's game as it goes on: the events after `after` (`game`, list items to add) and who
/// is on (`players`, the table's rows) when either changed. live.db tells no one of new rows:
/// it is read once a second while someone watches.
pub async fn server_game(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
    Query(query): Query<AfterQuery>,
) -> Response {
    let server = match left4me_state::Name::new(name.clone()) {
        Ok(server) if access::server_visible(&app.current(), &session.user, &name) => server,
        _ => return app.not_found(),
    };
    let slot = match app.streams.take(session.user.id) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let start = (app.clone(), query.after.unwrap_or(0), None::<String>, Vec::<Event>::new());
    let stream = stream::unfold(start, move |(app, mut after, mut shown, mut queued)| {
        let server = server.clone();
        async move {
            loop {
                if let Some(event) = queued.pop() {
                    return Some((Ok(event), (app, after, shown, queued)));
                }
                let asked = server.clone();
                let read = app.blocking(move |app| {
                    app.gamelog.read(|db| Ok((db.events_after(&asked, after, EVENTS_SHOWN)?, db.players(&asked)?)))
                });
                if let Ok(Some((events, players))) = read.await {
                    let players = players_html(&players);
                    // Sent last (popped first), so a page sees who is on before what led to it.
                    if let Some(last) = events.last() {
                        after = last.id;
                        queued.push(Event::default().event("game").data(events_html(&events)));
                    }
                    if shown.as_ref() != Some(&players) {
                        queued.push(Event::default().event("players").data(&players));
                        shown = Some(players);
                    }
                }
                if queued.is_empty() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
    .boxed();
    live(&app, &session, slot, stream)
}

#[derive(Deserialize)]
pub struct AfterQuery {
    after: Option<i64>,
}

/// A job's log from line `after` on, growing while the job runs; ends with a `done` event.
pub async fn job_log(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(id): Path<i64>,
    Query(query): Query<AfterQuery>,
) -> Response {
    let user = session.user.clone();
    if !matches!(app.blocking(move |app| visible_job(app, &user, id).is_some()).await, Ok(true)) {
        return app.not_found();
    }
    let slot = match app.streams.take(session.user.id) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let after = query.after.unwrap_or(0);
    // SQLite tells no one of new rows: the server looks four times a second, the browser waits.
    let stream = stream::unfold((app.clone(), after, false), move |(app, mut after, finished)| async move {
        if finished {
            return None;
        }
        loop {
            let read = app.blocking(move |app| {
                let db = app.jobs.lock().expect("no holder of the jobs lock panics");
                (db.lines(id, after).unwrap_or_default(), db.job(id).ok().flatten())
            });
            let (lines, job) = read.await.unwrap_or_default();
            if let Some(last) = lines.last() {
                let html = lines_html(&lines);
                after = last.seq;
                return Some((Ok(Event::default().event("line").data(html)), (app, after, false)));
            }
            let done = job.as_ref().is_none_or(|j| !matches!(j.state.as_str(), "queued" | "running"));
            if done {
                let state = job.map(|j| j.state).unwrap_or_else(|| "gone".into());
                let event = Event::default()
                    .event("done")
                    .data(format!("<span class=\"badge {0}\">{0}</span>", escape(&state)));
                return Some((Ok(event), (app, after, true)));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .boxed();
    live(&app, &session, slot, stream)
}

/// A job of another host: its log from line `after` on, asked of the host every second while
/// the job runs (each ask reuses the shared connection); ends with a `done` event.
pub async fn host_job_log(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path((host, id)): Path<(String, i64)>,
    Query(query): Query<AfterQuery>,
) -> Response {
    let host = match jobs_of(&app.current(), &host) {
        JobsOf::On(host) => host,
        JobsOf::Here => return job_log(State(app), Auth(session), Path(id), Query(query)).await,
        JobsOf::Unknown => return app.unknown_host(&host),
    };
    let after = query.after.unwrap_or(0);
    let (user, asked) = (session.user.clone(), host.clone());
    let first = app.blocking(move |app| visible_remote_job(app, &user, &asked, id, after)).await;
    let Ok(Ok(Some(first))) = first else { return app.not_found() };
    let slot = match app.streams.take(session.user.id) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let start = (app.clone(), after, Some(first), false);
    let stream = stream::unfold(start, move |(app, mut after, mut log, finished)| {
        let host = host.clone();
        async move {
            if finished {
                return None;
            }
            loop {
                let Some(JobLog { job, lines }) = log.take() else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let asked = Ask::Job { id, after };
                    let host = host.clone();
                    let read =
                        app.blocking(move |app| remote::ask_json::<JobLog>(&app.ssh, &host, &asked, ASK_TIMEOUT));
                    // A host that does not answer for a moment is asked again.
                    log = read.await.ok().and_then(Result::ok);
                    continue;
                };
                if let Some(last) = lines.last() {
                    after = last.seq;
                    let event = Event::default().event("line").data(lines_html(&lines));
                    return Some((Ok(event), (app, after, None, false)));
                }
                if !matches!(job.state.as_str(), "queued" | "running") {
                    let event = Event::default()
                        .event("done")
                        .data(format!("<span class=\"badge {0}\">{0}</span>", escape(&job.state)));
                    return Some((Ok(event), (app, after, None, true)));
                }
            }
        }
    })
    .boxed();
    live(&app, &session, slot, stream)
}

/// A job's log lines as the job page shows them.
fn lines_html(lines: &[reconciler::db::JobLine]) -> String {
    let mut html = String::new();
    for line in lines {
        html.push_str(&format!(
            "<div class=\"line {}\"><span class=\"at\">{}</span> {}</div>",
            escape(&line.stream),
            escape(line.at.get(11..23).unwrap_or(&line.at)),
            escape(&line.line)
        ));
    }
    html
}
