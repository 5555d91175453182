//! What the live views (server-sent events, `handlers/events.rs`) share: their caps and the
//! console followers.
//!
//! Every live view holds a place among [`STREAMS`] (at most [`STREAMS_PER_USER`] of one user)
//! and ends when its session does. The viewers of one server's console share one follower, one
//! `l4d2ctl logs --follow` (a journalctl), which ends with its last viewer.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;

use crate::ctl;
use crate::remote::{self, HostAt};
use crate::text::escape;

/// Live views open at once, of one user and in all, and consoles followed at once.
pub const STREAMS_PER_USER: usize = 16;
pub const STREAMS: usize = 256;
pub const FOLLOWERS: usize = 32;
/// Console lines a viewer who joins a follower gets first (what journalctl printed first).
const BACKLOG: u32 = 200;

/// The open live views and the console followers.
#[derive(Default)]
pub struct Streams {
    /// Shared with each [`Slot`], which gives its place back here.
    open: Arc<Mutex<Open>>,
    followers: Mutex<HashMap<String, Weak<Follower>>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_user: HashMap<i64, usize>,
}

/// A live view's place, given back when the view ends.
pub struct Slot {
    open: Arc<Mutex<Open>>,
    user: i64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("no holder of the streams lock panics");
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

    /// A place for a live view of `user`, or why there is none.
    pub fn take(&self, user: i64) -> Result<Slot, Refused> {
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
        Ok(Slot { open: self.open.clone(), user })
    }

    /// The follower of a server's console, started (with `l4d2ctl`, or over ssh for a server
    /// of another host) when no one follows it yet. Names are the revision's, one server each
    /// whatever its host, so one follower serves a name.
    pub fn follower(&self, console: Console<'_>, name: &str) -> Result<Arc<Follower>, Refused> {
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
        let follower = Follower::start(console, name).map_err(Refused::Failed)?;
        followers.insert(name.to_owned(), Arc::downgrade(&follower));
        Ok(follower)
    }
}

/// Where a console is read: this host's `l4d2ctl`, or another host's `left4me remote`.
pub enum Console<'a> {
    Here(&'a std::path::Path),
    On(&'a reconciler::remote::Ssh, HostAt),
}

/// Why a live view is not opened.
pub enum Refused {
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
pub struct Follower {
    state: Mutex<FollowerState>,
    _child: tokio::process::Child,
}

struct FollowerState {
    backlog: VecDeque<Arc<str>>,
    /// None once the process's output ended: the viewers' streams then end too.
    lines: Option<broadcast::Sender<Arc<str>>>,
}

impl Follower {
    fn start(console: Console<'_>, name: &str) -> Result<Arc<Follower>, String> {
        // A console is followed only for a server the viewer may see: one declared, or on the
        // host, and so a valid name.
        let server = left4me_state::Name::new(name).map_err(|e| format!("the console of {name:?}: {e}"))?;
        let mut child = match console {
            Console::Here(l4d2ctl) => ctl::follow_logs(l4d2ctl, &server, BACKLOG)
                .map_err(|e| format!("cannot run {} logs: {e}", l4d2ctl.display()))?,
            Console::On(ssh, host) => remote::follow_logs(ssh, &host, &server, BACKLOG)
                .map_err(|e| format!("cannot ask host {} for the console: {e}", host.name))?,
        };
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
                if state.backlog.len() == BACKLOG as usize {
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
    pub fn view(self: Arc<Follower>) -> impl Stream<Item = Arc<str>> + Send + 'static {
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

/// An event stream, kept open through proxies with a comment every 15 s.
pub fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
