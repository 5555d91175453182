//! What monitoring reads, without a session: `/health` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::views::metrics::{Counts, GameCounts, metrics_text};

/// For monitoring: 200 while the app can read its databases and the host has been looked at.
/// Why not is said in general words to everyone alike, reading no session: the details name paths
/// and programs of the host, so they are on the dashboard for signed-in users and in the log.
pub async fn health(State(app): State<Arc<App>>) -> Response {
    let snapshot = app.latest();
    let accounts = match app.blocking(|app| app.accounts.users().map(|_| ())).await {
        Ok(read) => read.map_err(|e| e.to_string()),
        Err(e) => Err(format!("reading the accounts database was interrupted: {e}")),
    };
    if let Err(e) = &accounts {
        tracing::error!("health: {e}");
    }
    let looked = !snapshot.taken_at.is_empty();
    let status = if accounts.is_ok() && looked { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    // Whoever asks (a monitor, anyone) reads general words, and /health reads no session, so
    // that it costs what a monitor's poll should; the details are in the log and, for signed-in
    // users, on the dashboard.
    let accounts = accounts.err().map(|_| "the accounts database cannot be read".to_owned());
    let problem = snapshot.problem.as_ref().map(|_| "the host cannot be looked at".to_owned());
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "accounts": accounts,
        "host_looked_at": snapshot.taken_at,
        "problem": problem,
        "revision_error": snapshot.revision_error.is_some(),
    });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let snapshot = app.latest();
    let read = app.blocking(|app| {
        let db = app.jobs.lock().expect("no holder of the jobs lock panics");
        (db.events(100).unwrap_or_default(), db.job_counts().unwrap_or_default())
    });
    let (events, jobs) = match read.await {
        Ok(read) => read,
        Err(e) => return app.interrupted("reading the reconciler's database", &e),
    };
    let game = app
        .blocking(|app| app.gamelog.read(|db| Ok(GameCounts { events: db.counters()?, dropped: db.dropped()? })))
        .await
        .ok()
        .flatten();
    let counts =
        Counts { events, jobs, live_views: app.streams.open(), console_followers: app.streams.followers(), game };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics_text(&snapshot, &counts))
        .into_response()
}
