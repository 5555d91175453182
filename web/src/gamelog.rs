//! The game's log as the web app reads it: `$ROOT/live.db`, opened read-only when it is there
//! (`left4me live` makes it), and drawn for a server's page — who is on, who came and went, the
//! chat.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use left4me_state::Name;
use reconciler::live::db::{GameEvent, GameEventKind, LiveDb, Player};

use crate::text::escape;

/// How many events a server's page shows when it opens, and a live view sends at once.
pub const EVENTS_SHOWN: usize = 50;

/// `live.db`, opened on first use: a web app started before `left4me live` reads it once it is
/// there. The server pages read their events and charts through the app's one; the snapshot
/// thread reads the dashboard's history through one of its own.
pub struct GameLog {
    path: PathBuf,
    db: Mutex<Option<LiveDb>>,
}

impl GameLog {
    pub fn new(root: &Path) -> GameLog {
        GameLog { path: reconciler::live::db::path(root), db: Mutex::new(None) }
    }

    /// Runs `read` on the database; None when it is not there yet or cannot be read.
    pub fn read<T>(&self, read: impl FnOnce(&LiveDb) -> reconciler::db::Result<T>) -> Option<T> {
        let mut db = self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if db.is_none() {
            *db = LiveDb::open_read_only(&self.path).ok();
        }
        match read(db.as_ref()?) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::warn!("{e}");
                // Opened again next time: the file may have been made anew.
                *db = None;
                None
            }
        }
    }

    /// Who is on `server` and its latest events, for its page.
    pub fn page(&self, server: &Name) -> (Vec<Player>, Vec<GameEvent>) {
        self.read(|db| Ok((db.players(server)?, db.latest_events(server, EVENTS_SHOWN)?))).unwrap_or_default()
    }
}

/// The rows of the table of who is on.
pub fn players_html(players: &[Player]) -> String {
    if players.is_empty() {
        return "<tr class=\"muted\"><td colspan=\"3\">Nobody is on.</td></tr>".into();
    }
    let mut html = String::new();
    for p in players {
        html.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            escape(&p.name),
            escape(&p.steam_id),
            escape(&shown_time(&p.since))
        ));
    }
    html
}

/// The items of the list of what happened, oldest first.
pub fn events_html(events: &[GameEvent]) -> String {
    let mut html = String::new();
    for e in events {
        let who = e.player.as_deref().map(escape).unwrap_or_default();
        let text = e.text.as_deref().map(escape).unwrap_or_default();
        let what = match e.kind {
            GameEventKind::Connected => format!("<b>{who}</b> connected"),
            GameEventKind::Entered => format!("<b>{who}</b> entered the game"),
            GameEventKind::Disconnected => format!("<b>{who}</b> left ({text})"),
            GameEventKind::Say => format!("<b>{who}</b>: {text}"),
            GameEventKind::SayTeam => format!("<b>{who}</b> (team): {text}"),
            GameEventKind::MapStarted => format!("map {text} started"),
            GameEventKind::RoundStarted => "round started".into(),
            GameEventKind::RoundEnded => "round ended".into(),
            GameEventKind::CampaignEnded => "campaign ended".into(),
        };
        html.push_str(&format!(
            "<li class=\"game {}\" data-id=\"{}\"><span class=\"at\">{}</span> {what}</li>",
            e.kind.as_str(),
            e.id,
            escape(&shown_time(&e.at))
        ));
    }
    html
}

/// `2026-12-01T19:00:00.123Z` as `2026-12-01 19:00:00`.
fn shown_time(at: &str) -> String {
    at.get(..19).unwrap_or(at).replacen('T', " ", 1)
}
