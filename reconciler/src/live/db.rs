//! `$ROOT/live.db`: the game's events and the sampled history, in SQLite (WAL, versioned
//! migrations as the reconciler's own database). One writer, `left4me live`; the web app reads
//! it; a pass removes events older than the retention setting.

use std::collections::BTreeMap;
use std::path::Path;

use left4me_state::Name;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::db::{DbError, Result, fail, give_to_folder_owner, immediate, open_read_only, open_with};
use l4d2ctl::sqlite::set_up;

const MIGRATIONS: &[&str] = &[
    // 1: the game's events, who is on now, counters that retention never lowers, and samples
    // kept at three widths (30 s, 15 min, 1 h), each row the sums of the samples it holds.
    "CREATE TABLE game_events (
        id INTEGER PRIMARY KEY,
        server TEXT NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        player TEXT,
        steam_id TEXT,
        text TEXT
    );
    CREATE INDEX game_events_by_server ON game_events (server, id);
    CREATE TABLE players (
        server TEXT NOT NULL,
        steam_id TEXT NOT NULL,
        name TEXT NOT NULL,
        since TEXT NOT NULL,
        PRIMARY KEY (server, steam_id)
    ) WITHOUT ROWID;
    CREATE TABLE counters (
        server TEXT NOT NULL,
        kind TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (server, kind)
    ) WITHOUT ROWID;
    CREATE TABLE samples (
        server TEXT NOT NULL,
        width INTEGER NOT NULL,
        start INTEGER NOT NULL,
        n INTEGER NOT NULL,
        players_sum INTEGER NOT NULL,
        players_max INTEGER NOT NULL,
        cpu_sum REAL NOT NULL,
        cpu_n INTEGER NOT NULL,
        memory_max INTEGER,
        PRIMARY KEY (server, width, start)
    ) WITHOUT ROWID;",
    // 2: samples by width and time: every server's points of a width (the dashboard's one read)
    // and the dropping of what a width keeps no more (every 30 s) without reading the whole table;
    // events by time, so that a pass's trim of old ones is quick and holds the write lock briefly.
    "CREATE INDEX samples_by_width ON samples (width, start);
    CREATE INDEX game_events_by_time ON game_events (at);",
];

/// The widths samples are kept at, in seconds, and for how long each is kept: 30 s for 7 days,
/// 15 minutes for 8 days (the dashboard's 24 hours, a server's week), an hour for 90 days.
pub const WIDTHS: [(i64, i64); 3] = [(30, 7 * 86_400), (900, 8 * 86_400), (3_600, 90 * 86_400)];

/// The most players kept as on one server: more than L4D2 seats, and a bound on what a log that
/// invents players (a plugin's lines are signed too) can add.
pub const PLAYERS_KEPT: i64 = 64;

/// The counter of dropped log packets.
const DROPPED: &str = "dropped-packets";

/// What happened in a game, as its log said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GameEventKind {
    /// A client connected (`connected, address "…"`).
    Connected,
    /// It is in the game (`entered the game`).
    Entered,
    /// It left (`disconnected (reason "…")`).
    Disconnected,
    Say,
    SayTeam,
    /// A map was started (`Started map "…"`); its name is the text.
    MapStarted,
    RoundStarted,
    RoundEnded,
    /// The campaign, or a versus match, ended.
    CampaignEnded,
}

impl GameEventKind {
    pub const ALL: [GameEventKind; 9] = [
        GameEventKind::Connected,
        GameEventKind::Entered,
        GameEventKind::Disconnected,
        GameEventKind::Say,
        GameEventKind::SayTeam,
        GameEventKind::MapStarted,
        GameEventKind::RoundStarted,
        GameEventKind::RoundEnded,
        GameEventKind::CampaignEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GameEventKind::Connected => "connected",
            GameEventKind::Entered => "entered",
            GameEventKind::Disconnected => "disconnected",
            GameEventKind::Say => "say",
            GameEventKind::SayTeam => "say-team",
            GameEventKind::MapStarted => "map-started",
            GameEventKind::RoundStarted => "round-started",
            GameEventKind::RoundEnded => "round-ended",
            GameEventKind::CampaignEnded => "campaign-ended",
        }
    }

    pub fn parse(name: &str) -> Option<GameEventKind> {
        GameEventKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One event of one server, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameEvent {
    pub id: i64,
    pub server: Name,
    /// When it was received (RFC 3339, UTC, milliseconds).
    pub at: String,
    pub kind: GameEventKind,
    /// The player's name as the game said it, for a player's event.
    pub player: Option<String>,
    /// Their Steam ID as the log writes it (`STEAM_1:0:N`, `BOT`).
    pub steam_id: Option<String>,
    /// What they said, the map, the reason they left.
    pub text: Option<String>,
}

/// An event to keep: a [`GameEvent`] before it has an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub server: Name,
    pub at: String,
    pub kind: GameEventKind,
    pub player: Option<String>,
    pub steam_id: Option<String>,
    pub text: Option<String>,
}

/// Someone on a server now, as its log told of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Player {
    pub name: String,
    pub steam_id: String,
    /// When they came (RFC 3339).
    pub since: String,
}

/// One look at one server, every 30 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    /// Human players.
    pub players: u32,
    /// CPU used since the previous look, in percent of one core; None for a first look.
    pub cpu: Option<f64>,
    /// Memory in use, in bytes.
    pub memory: Option<u64>,
}

/// A chart's point: the samples of one stretch of time (`start`, `width` seconds) together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub start: i64,
    pub width: i64,
    /// Average human players.
    pub players: f64,
    pub players_max: u32,
    /// Average CPU, percent of one core; None when no sample of it had one.
    pub cpu: Option<f64>,
    /// The most memory any of its samples saw, in bytes.
    pub memory_max: Option<u64>,
}

/// Where `$ROOT`'s live database is: `$ROOT/live/live.db`.
pub fn path(root: &Path) -> std::path::PathBuf {
    root.join(l4d2ctl::host::LIVE_DIR).join(super::DB_FILE)
}

pub struct LiveDb {
    conn: Connection,
    path: String,
}

impl LiveDb {
    /// Opens (creating and migrating when needed) the database at `path`: `left4me live`'s.
    pub fn open(path: &Path) -> Result<LiveDb> {
        let shown = path.display().to_string();
        // `l4d2ctl install` makes `$ROOT/live/`; a database elsewhere (a test's) gets its folder.
        // Best effort: one that cannot be made is the open's failure, with its cause.
        if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(folder);
        }
        let conn = Connection::open(path).map_err(|cause| fail(None, &shown, cause))?;
        set_up(&conn, MIGRATIONS).map_err(|cause| fail(Some(&conn), &shown, cause))?;
        give_to_folder_owner(path);
        Ok(LiveDb { conn, path: shown })
    }

    /// Opens it for root to trim (a pass removing old events): the game's user owns it and may
    /// have put anything at its name, so it is never made, migrated or given away here, and a
    /// symlink at its name is not followed.
    pub fn open_to_trim(path: &Path) -> Result<LiveDb> {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NOFOLLOW | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let (conn, shown, version) = open_with(path, flags)?;
        if version != MIGRATIONS.len() as i64 {
            return Err(DbError::NotYet { path: shown });
        }
        Ok(LiveDb { conn, path: shown })
    }

    /// Opens it to read only (the web app): never made, never migrated; one that is not there
    /// yet, or older than this version, is [`DbError::NotYet`].
    pub fn open_read_only(path: &Path) -> Result<LiveDb> {
        let (conn, path) = open_read_only(path, MIGRATIONS)?;
        Ok(LiveDb { conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        move |cause| fail(Some(&self.conn), &self.path, cause)
    }

    fn transaction<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        immediate(&self.conn, f).map_err(self.err())
    }

    /// Keeps `events` in one transaction: each is added, its counter counted, and who is on
    /// follows (an `entered` adds the player, a `disconnected` removes them, a map or a server
    /// that started again is everyone's coming anew only as they enter again).
    pub fn add_events(&self, events: &[NewEvent]) -> Result<()> {
        self.transaction(|tx| {
            let mut add = tx.prepare_cached(
                "INSERT INTO game_events (server, at, kind, player, steam_id, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut count = tx.prepare_cached(
                "INSERT INTO counters (server, kind, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (server, kind) DO UPDATE SET count = count + 1",
            )?;
            let mut on = tx.prepare_cached(
                "INSERT INTO players (server, steam_id, name, since)
                 SELECT ?1, ?2, ?3, ?4 WHERE (SELECT count(*) FROM players WHERE server = ?1) < ?5
                    OR EXISTS (SELECT 1 FROM players WHERE server = ?1 AND steam_id = ?2)
                 ON CONFLICT (server, steam_id) DO UPDATE SET name = excluded.name",
            )?;
            let mut off = tx.prepare_cached("DELETE FROM players WHERE server = ?1 AND steam_id = ?2")?;
            for e in events {
                let server = e.server.as_str();
                add.execute(params![server, e.at, e.kind.as_str(), e.player, e.steam_id, e.text])?;
                count.execute(params![server, e.kind.as_str()])?;
                match (e.kind, &e.steam_id) {
                    (GameEventKind::Entered, Some(id)) => {
                        on.execute(params![server, id, e.player.as_deref().unwrap_or(""), e.at, PLAYERS_KEPT])?;
                    }
                    (GameEventKind::Disconnected, Some(id)) => {
                        off.execute(params![server, id])?;
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }

    /// Forgets who is on `server`: it started again, and nobody is on a server that just started.
    pub fn clear_players(&self, server: &Name) -> Result<()> {
        self.conn
            .execute("DELETE FROM players WHERE server = ?1", params![server.as_str()])
            .map(drop)
            .map_err(self.err())
    }

    /// `server`'s events after the id `after`, oldest first, at most `limit`.
    pub fn events_after(&self, server: &Name, after: i64, limit: usize) -> Result<Vec<GameEvent>> {
        let mut query = self
            .conn
            .prepare_cached(
                "SELECT id, server, at, kind, player, steam_id, text FROM game_events
                 WHERE server = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .map_err(self.err())?;
        let rows = query.query_map(params![server.as_str(), after, limit as i64], event_row).map_err(self.err())?;
        rows.filter_map(|row| row.transpose()).collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// `server`'s newest events, at most `limit`, oldest first.
    pub fn latest_events(&self, server: &Name, limit: usize) -> Result<Vec<GameEvent>> {
        let mut query = self
            .conn
            .prepare_cached(
                "SELECT id, server, at, kind, player, steam_id, text FROM game_events
                 WHERE server = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = query.query_map(params![server.as_str(), limit as i64], event_row).map_err(self.err())?;
        let mut events: Vec<GameEvent> =
            rows.filter_map(|row| row.transpose()).collect::<rusqlite::Result<_>>().map_err(self.err())?;
        events.reverse();
        Ok(events)
    }

    /// Who is on `server` now, in the order they came.
    pub fn players(&self, server: &Name) -> Result<Vec<Player>> {
        let mut query = self
            .conn
            .prepare_cached("SELECT name, steam_id, since FROM players WHERE server = ?1 ORDER BY since, steam_id")
            .map_err(self.err())?;
        let rows = query
            .query_map(params![server.as_str()], |r| {
                Ok(Player { name: r.get(0)?, steam_id: r.get(1)?, since: r.get(2)? })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// How many events of each kind each server has had, ever: counters for `/metrics`.
    pub fn counters(&self) -> Result<BTreeMap<(Name, GameEventKind), u64>> {
        let mut query = self.conn.prepare_cached("SELECT server, kind, count FROM counters").map_err(self.err())?;
        let rows = query
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(self.err())?;
        let mut counters = BTreeMap::new();
        for row in rows {
            let (server, kind, count) = row.map_err(self.err())?;
            if let (Ok(server), Some(kind)) = (Name::new(server), GameEventKind::parse(&kind)) {
                counters.insert((server, kind), count.max(0) as u64);
            }
        }
        Ok(counters)
    }

    /// Counts `n` more log packets `left4me live` dropped (no secret, a wrong one, not a log
    /// line, too long, not from this host): a counter of its own, under a server name no server
    /// can have, so that [`LiveDb::counters`] never shows it as a server's.
    pub fn count_dropped(&self, n: u64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO counters (server, kind, count) VALUES ('', ?1, ?2)
                 ON CONFLICT (server, kind) DO UPDATE SET count = count + excluded.count",
                params![DROPPED, n.min(i64::MAX as u64) as i64],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// How many log packets were dropped, ever.
    pub fn dropped(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count FROM counters WHERE server = '' AND kind = ?1", params![DROPPED], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|count| count.unwrap_or(0).max(0) as u64)
            .map_err(self.err())
    }

    /// Removes events received before `cutoff` (RFC 3339): the retention setting. Counters and
    /// who is on stay.
    pub fn forget_events_before(&self, cutoff: &str) -> Result<usize> {
        self.conn.execute("DELETE FROM game_events WHERE at < ?1", params![cutoff]).map_err(self.err())
    }

    /// Keeps one sample of each server, at every width, and drops what each width keeps no more.
    pub fn add_samples(&self, samples: &[(Name, Sample)]) -> Result<()> {
        self.transaction(|tx| {
            let mut put = tx.prepare_cached(
                "INSERT INTO samples (server, width, start, n, players_sum, players_max, cpu_sum, cpu_n, memory_max)
                 VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5, ?6, ?7)
                 ON CONFLICT (server, width, start) DO UPDATE SET
                    n = n + 1,
                    players_sum = players_sum + excluded.players_sum,
                    players_max = max(players_max, excluded.players_max),
                    cpu_sum = cpu_sum + excluded.cpu_sum,
                    cpu_n = cpu_n + excluded.cpu_n,
                    memory_max = CASE WHEN memory_max IS NULL THEN excluded.memory_max
                                      WHEN excluded.memory_max IS NULL THEN memory_max
                                      ELSE max(memory_max, excluded.memory_max) END",
            )?;
            let mut newest = 0;
            for (server, sample) in samples {
                newest = newest.max(sample.at);
                for (width, _) in WIDTHS {
                    let start = sample.at - sample.at.rem_euclid(width);
                    let memory = sample.memory.map(|bytes| bytes.min(i64::MAX as u64) as i64);
                    put.execute(params![
                        server.as_str(),
                        width,
                        start,
                        sample.players,
                        sample.cpu.unwrap_or(0.0),
                        i64::from(sample.cpu.is_some()),
                        memory
                    ])?;
                }
            }
            let mut drop_old = tx.prepare_cached("DELETE FROM samples WHERE width = ?1 AND start < ?2")?;
            for (width, kept) in WIDTHS {
                drop_old.execute(params![width, newest - kept])?;
            }
            Ok(())
        })
    }

    /// The points of every server at `width` from `since` (unix seconds) on, oldest first: one
    /// query for a dashboard of any size.
    pub fn points(&self, width: i64, since: i64) -> Result<BTreeMap<Name, Vec<Point>>> {
        let mut query = self
            .conn
            .prepare_cached(
                "SELECT server, start, n, players_sum, players_max, cpu_sum, cpu_n, memory_max FROM samples
                 WHERE width = ?1 AND start >= ?2 ORDER BY server, start",
            )
            .map_err(self.err())?;
        let rows = query.query_map(params![width, since], |r| point_row(r, width)).map_err(self.err())?;
        let mut points: BTreeMap<Name, Vec<Point>> = BTreeMap::new();
        for row in rows {
            let (server, point) = row.map_err(self.err())?;
            if let Ok(server) = Name::new(server) {
                points.entry(server).or_default().push(point);
            }
        }
        Ok(points)
    }

    /// One server's points at `width` from `since` on, oldest first.
    pub fn points_of(&self, server: &Name, width: i64, since: i64) -> Result<Vec<Point>> {
        let mut query = self
            .conn
            .prepare_cached(
                "SELECT server, start, n, players_sum, players_max, cpu_sum, cpu_n, memory_max FROM samples
                 WHERE server = ?1 AND width = ?2 AND start >= ?3 ORDER BY start",
            )
            .map_err(self.err())?;
        let rows =
            query.query_map(params![server.as_str(), width, since], |r| point_row(r, width)).map_err(self.err())?;
        rows.map(|row| row.map(|(_, point)| point)).collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// The newest sample time kept, if any (unix seconds).
    pub fn newest_sample(&self) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT max(start) FROM samples WHERE width = ?1", params![WIDTHS[0].0], |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }
}

/// An event row; one whose server or kind this version cannot read is left out.
fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<GameEvent>> {
    let (server, kind) = (Name::new(r.get::<_, String>(1)?), GameEventKind::parse(&r.get::<_, String>(3)?));
    let (Ok(server), Some(kind)) = (server, kind) else { return Ok(None) };
    Ok(Some(GameEvent {
        id: r.get(0)?,
        server,
        at: r.get(2)?,
        kind,
        player: r.get(4)?,
        steam_id: r.get(5)?,
        text: r.get(6)?,
    }))
}

fn point_row(r: &rusqlite::Row<'_>, width: i64) -> rusqlite::Result<(String, Point)> {
    let n: i64 = r.get(2)?;
    let cpu_n: i64 = r.get(6)?;
    let players_sum: i64 = r.get(3)?;
    let cpu_sum: f64 = r.get(5)?;
    let memory: Option<i64> = r.get(7)?;
    Ok((
        r.get(0)?,
        Point {
            start: r.get(1)?,
            width,
            players: players_sum as f64 / n.max(1) as f64,
            players_max: r.get::<_, i64>(4)?.clamp(0, i64::from(u32::MAX)) as u32,
            cpu: (cpu_n > 0).then(|| cpu_sum / cpu_n as f64),
            memory_max: memory.map(|m| m.max(0) as u64),
        },
    ))
}
