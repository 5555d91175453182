//! Live views over server-sent events: the server table, a server's status, its console log
//! (the journal, through `l4d2ctl logs --follow`) and a job's log as it grows.
//!
//! Every live view holds a place among [`STREAMS`] (at most [`STREAMS_PER_USER`] of one user)
//! and ends when its session does. The viewers of one server's console share one follower, one
//! `l4d2ctl logs --follow` (a journalctl), which ends with its last viewer.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;

use crate::App;
use crate::accounts::Session;
use crate::auth::Auth;
use crate::pages::{escape, request_host, rows_html, server_context, server_visible, visible_job};

/// Live views open at once, of one user and in all, and consoles followed at once.
pub const STREAMS_PER_USER: usize = 16;
pub const STREAMS: usize = 256;
pub const FOLLOWERS: usize = 32;
/// Console lines a viewer who joins a follower gets first (what journalctl printed first).
const BACKLOG: usize = 200;

/// The open live views and the console followers.
#[derive(Default)]
pub struct Streams {
    open: Mutex<Open>,
    followers: Mutex<HashMap<String, Weak<Follower>>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_user: HashMap<i64, usize>,
}

/// A live view's place, given back when the view ends.
struct Slot {
    app: Arc<App>,
    user: i64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.app.streams.open.lock().expect("no holder of the streams lock panics");
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_user.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_user.remove(&self.user);
            }
        }
    }
}

impl Streams {
    /// Live views open now.
    pub fn open(&self) -> usize {
        self.open.lock().expect("no holder of the streams lock panics").total
    }

    /// Consoles followed now.
    pub fn followers(&self) -> usize {
        self.followers
            .lock()
            .expect("no holder of the followers lock panics")
            .values()
            .filter(|f| f.strong_count() > 0)
            .count()
    }

    fn take(&self, app: &Arc<App>, user: i64) -> Result<Slot, Refused> {
        let mut open = self.open.lock().expect("no holder of the streams lock panics");
        let mine = open.by_user.get(&user).copied().unwrap_or(0);
        if mine >= STREAMS_PER_USER {
            return Err(Refused::Busy(format!(
                "You have {STREAMS_PER_USER} live views open, as many as one user may. Close some pages or tabs of this site, then reload this one."
            )));
        }
        if open.total >= STREAMS {
            return Err(Refused::Busy(format!(
                "The app has {STREAMS} live views open, as many as it serves at once. Reload this page in a minute."
            )));
        }
        open.total += 1;
        *open.by_user.entry(user).or_default() += 1;
        Ok(Slot { app: app.clone(), user })
    }

    /// The follower of a server's console, started when no one follows it yet.
    fn follower(&self, app: &App, name: &str) -> Result<Arc<Follower>, Refused> {
        let mut followers = self.followers.lock().expect("no holder of the followers lock panics");
        followers.retain(|_, f| f.strong_count() > 0);
        if let Some(follower) = followers.get(name).and_then(Weak::upgrade)
            && follower.lives()
        {
            return Ok(follower);
        }
        if followers.len() >= FOLLOWERS {
            return Err(Refused::Busy(format!(
                "{FOLLOWERS} server consoles are followed at once, as many as the app follows. Reload this page in a minute."
            )));
        }
        let follower = Follower::start(app, name).map_err(Refused::Failed)?;
        followers.insert(name.to_owned(), Arc::downgrade(&follower));
        Ok(follower)
    }
}

/// Why a live view is not opened.
enum Refused {
    /// Past a cap: 429, and what to do.
    Busy(String),
    /// The console's follower cannot be started: said in the console, as its one line.
    Failed(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Busy(message) => {
                (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "60")], message).into_response()
            }
            Refused::Failed(problem) => {
                tracing::error!("{problem}");
                let event = Event::default()
                    .event("line")
                    .data(format!("<div class=\"log-problem\">{}</div>", escape(&problem)));
                sse(stream::once(async move { Ok(event) }))
            }
        }
    }
}

/// One `l4d2ctl logs --follow` of a server, its lines sent to every viewer; the process ends
/// when the last viewer leaves (the follower is dropped and its child killed).
struct Follower {
    state: Mutex<FollowerState>,
    _child: tokio::process::Child,
}

struct FollowerState {
    backlog: VecDeque<Arc<str>>,
    /// None once the process's output ended: the viewers' streams then end too.
    lines: Option<broadcast::Sender<Arc<str>>>,
}

impl Follower {
    fn start(app: &App, name: &str) -> Result<Arc<Follower>, String> {
        let mut child = tokio::process::Command::new(&app.config.l4d2ctl)
            .args(["logs", name, "--lines", &BACKLOG.to_string(), "--follow"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {} logs: {e}", app.config.l4d2ctl.display()))?;
        let stdout = child.stdout.take().ok_or("l4d2ctl logs gave no output")?;
        let (lines, _) = broadcast::channel(1024);
        let state = FollowerState { backlog: VecDeque::new(), lines: Some(lines) };
        let follower = Arc::new(Follower { state: Mutex::new(state), _child: child });
        let weak = Arc::downgrade(&follower);
        tokio::spawn(async move {
            let mut output = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = output.next_line().await {
                let Some(follower) = weak.upgrade() else { return };
                let html: Arc<str> = format!("<div>{}</div>", escape(&line)).into();
                let mut state = follower.state.lock().expect("no holder of a follower's lock panics");
                if state.backlog.len() == BACKLOG {
                    state.backlog.pop_front();
                }
                state.backlog.push_back(html.clone());
                if let Some(lines) = &state.lines {
                    let _ = lines.send(html);
                }
            }
            if let Some(follower) = weak.upgrade() {
                follower.state.lock().expect("no holder of a follower's lock panics").lines = None;
            }
        });
        Ok(follower)
    }

    fn lives(&self) -> bool {
        self.state.lock().expect("no holder of a follower's lock panics").lines.is_some()
    }

    /// The lines so far and the ones to come, as one viewer's stream; it keeps the follower.
    fn view(self: Arc<Follower>) -> impl Stream<Item = Arc<str>> + Send + 'static {
        let (backlog, receiver) = {
            let state = self.state.lock().expect("no holder of a follower's lock panics");
            (state.backlog.iter().cloned().collect::<Vec<_>>(), state.lines.as_ref().map(broadcast::Sender::subscribe))
        };
        let coming = stream::unfold((receiver, self), |(receiver, follower)| async move {
            let mut receiver = receiver?;
            loop {
                match receiver.recv().await {
                    Ok(line) => return Some((line, (Some(receiver), follower))),
                    // A viewer too slow for the console misses lines, never the whole stream.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        stream::iter(backlog).chain(coming)
    }
}

fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

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
        if !matches!(app.accounts.session_lives(&token_hash), Ok(true)) {
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
    let slot = match app.streams.take(&app, session.user.id) {
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
    let host = request_host(&headers);
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
    if !server_visible(&app.current(), &session.user, &name) {
        return app.not_found();
    }
    let drawing = session.clone();
    redrawn(app, &session, "status", move |app| {
        let context = server_context(app, &drawing, &name, &headers)?;
        Some(app.render_fragment("server_status.html", context))
    })
}

/// The server's console: the last lines of its journal, then each new one.
pub async fn server_log(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    if !server_visible(&app.current(), &session.user, &name) {
        return app.not_found();
    }
    let slot = match app.streams.take(&app, session.user.id) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let follower = match app.streams.follower(&app, &name) {
        Ok(follower) => follower,
        Err(refused) => return refused.into_response(),
    };
    let lines = follower.view().map(|html| Ok(Event::default().event("line").data(&*html)));
    live(&app, &session, slot, lines)
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
    if visible_job(&app, &session.user, id).await.is_none() {
        return app.not_found();
    }
    let slot = match app.streams.take(&app, session.user.id) {
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
    live(&app, &session, slot, stream)
}
