//! Live views over server-sent events: the server table, a server's status, its console log
//! (the journal, through `l4d2ctl logs --follow`) and a job's log as it grows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::App;
use crate::auth::Auth;
use crate::pages::{escape, request_host, rows_html, server_context, server_visible, visible_job};

fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// An event each time the host is looked at and `draw` draws something new; ends when `draw`
/// has nothing (the thing is gone or no longer visible).
fn redrawn(
    app: Arc<App>,
    event: &'static str,
    draw: impl Fn(&App) -> Option<String> + Send + Sync + 'static,
) -> Response {
    let mut changes = app.snapshot.clone();
    changes.mark_unchanged();
    let draw = Arc::new(draw);
    let stream = stream::unfold((changes, String::new()), move |(mut changes, last)| {
        let (app, draw) = (app.clone(), draw.clone());
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
    sse(stream)
}

/// The dashboard's table body, again each time it changes.
pub async fn dashboard_events(State(app): State<Arc<App>>, Auth(session): Auth, headers: HeaderMap) -> Response {
    let host = request_host(&headers);
    redrawn(app, "servers", move |app| Some(rows_html(app, &app.current(), &session.user, &host).to_string()))
}

/// A server's status panel, again each time it changes.
pub async fn server_events(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !server_visible(&app.current(), &session.user, &name) {
        return app.not_found();
    }
    redrawn(app, "status", move |app| {
        let context = server_context(app, &session, &name, &headers)?;
        Some(app.render_fragment("server_status.html", context))
    })
}

/// The server's console: the last lines of its journal, then each new one.
pub async fn server_log(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    if !server_visible(&app.current(), &session.user, &name) {
        return app.not_found();
    }
    let child = tokio::process::Command::new(&app.config.l4d2ctl)
        .args(["logs", &name, "--lines", "200", "--follow"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            let event = Event::default()
                .event("line")
                .data(format!("<div class=\"log-problem\">cannot run l4d2ctl logs: {}</div>", escape(&e.to_string())));
            return sse(stream::once(async move { Ok(event) }));
        }
    };
    let Some(stdout) = child.stdout.take() else { return app.server_error("l4d2ctl logs gave no output") };
    let lines = BufReader::new(stdout).lines();
    // The child lives as long as the stream: a closed page ends journalctl.
    let stream = stream::unfold((lines, child), |(mut lines, child)| async move {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let event = Event::default().event("line").data(format!("<div>{}</div>", escape(&line)));
                Some((Ok(event), (lines, child)))
            }
            _ => None,
        }
    });
    sse(stream)
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
    if visible_job(&app, &session.user, id).is_none() {
        return app.not_found();
    }
    let after = query.after.unwrap_or(0);
    // SQLite tells no one of new rows: the server looks four times a second, the browser waits.
    let stream = stream::unfold((app, after, false), move |(app, mut after, finished)| async move {
        if finished {
            return None;
        }
        loop {
            let (lines, job) = {
                let db = app.jobs.lock().expect("no holder of the jobs lock panics");
                (db.lines(id, after).unwrap_or_default(), db.job(id).ok().flatten())
            };
            if !lines.is_empty() {
                let mut html = String::new();
                for line in &lines {
                    html.push_str(&format!(
                        "<div class=\"line {}\"><span class=\"at\">{}</span> {}</div>",
                        escape(&line.stream),
                        escape(line.at.get(11..23).unwrap_or(&line.at)),
                        escape(&line.line)
                    ));
                }
                after = lines.last().map(|l| l.seq).unwrap_or(after);
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
    sse(stream)
}
