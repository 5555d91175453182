//! Jobs, their logs, reconcile events and the reconciler's memory, in SQLite
//! (`$ROOT/left4me.db`, WAL, versioned migrations; DESIGN.md §7).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use left4me_state::{Digest, Name, PowerState};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::plan::Wish;

/// Each migration moves the schema one version up; `PRAGMA user_version` is the version.
const MIGRATIONS: &[&str] = &[
    // 1: jobs with their output, events of reconcile passes, the reconciler's memory.
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        revision TEXT,
        trigger TEXT NOT NULL,
        state TEXT NOT NULL,
        queued_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        exit_code INTEGER
    );
    CREATE INDEX jobs_by_target ON jobs (target, id);
    CREATE TABLE job_lines (
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        at TEXT NOT NULL,
        stream TEXT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        revision TEXT,
        duration_ms INTEGER,
        steps INTEGER,
        message TEXT NOT NULL
    );
    CREATE TABLE wishes (server TEXT PRIMARY KEY, digest TEXT NOT NULL, state TEXT NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
];

#[derive(Debug, thiserror::Error)]
#[error("the database {path}: {cause}")]
pub struct DbError {
    path: String,
    cause: rusqlite::Error,
}

pub type Result<T> = std::result::Result<T, DbError>;

pub struct Db {
    conn: Connection,
    path: String,
}

/// A job: one step or operator action, with its trigger and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub target: String,
    pub revision: Option<String>,
    /// commit, drift, manual, retry, schedule.
    pub trigger: String,
    /// queued, running, succeeded, failed, cancelled.
    pub state: String,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLine {
    pub seq: i64,
    pub at: String,
    /// stdout or stderr.
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: String,
    pub kind: String,
    pub revision: Option<String>,
    pub duration_ms: Option<i64>,
    pub steps: Option<i64>,
    pub message: String,
}

impl Db {
    /// Opens (creating and migrating when needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Db> {
        let shown = path.display().to_string();
        let err = |cause| DbError { path: shown.clone(), cause };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        // In WAL mode NORMAL syncs at checkpoints, not at every commit: a power cut may lose the
        // last job lines, never the database. A job line per fsync would dominate a pass.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(err)?;
        let mut db = Db { conn, path: shown };
        db.migrate()?;
        give_to_folder_owner(path);
        Ok(db)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        move |cause| DbError { path: self.path.clone(), cause }
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(self.err())?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let path = self.path.clone();
            let tx = self.conn.transaction().map_err(|cause| DbError { path: path.clone(), cause })?;
            tx.execute_batch(sql).map_err(|cause| DbError { path: path.clone(), cause })?;
            tx.pragma_update(None, "user_version", index as i64 + 1)
                .map_err(|cause| DbError { path: path.clone(), cause })?;
            tx.commit().map_err(|cause| DbError { path, cause })?;
        }
        Ok(())
    }

    pub fn create_job(&self, kind: &str, target: &str, revision: Option<&str>, trigger: &str) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO jobs (kind, target, revision, trigger, state, queued_at) VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
                params![kind, target, revision, trigger, now()],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn start_job(&self, id: i64) -> Result<()> {
        self.conn
            .execute("UPDATE jobs SET state = 'running', started_at = ?2 WHERE id = ?1", params![id, now()])
            .map(drop)
            .map_err(self.err())
    }

    pub fn finish_job(&self, id: i64, exit_code: i32) -> Result<()> {
        let state = if exit_code == 0 { "succeeded" } else { "failed" };
        self.conn
            .execute(
                "UPDATE jobs SET state = ?2, finished_at = ?3, exit_code = ?4 WHERE id = ?1",
                params![id, state, now(), exit_code],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Appends one output line; written at once, so a reader sees a running job's log grow.
    pub fn append_line(&self, job: i64, stream: &str, line: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO job_lines (job_id, seq, at, stream, line)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_lines WHERE job_id = ?1), ?2, ?3, ?4)",
                params![job, now(), stream, line],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Ends jobs left queued or running by a pass that died (killed, a power cut): no pass runs
    /// while the caller holds the pass lock, so they can never finish. Returns how many.
    pub fn cancel_unfinished(&self) -> Result<usize> {
        let at = now();
        let mut stmt =
            self.conn.prepare("SELECT id FROM jobs WHERE state IN ('queued', 'running')").map_err(self.err())?;
        let ids: Vec<i64> = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.err())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.err())?;
        for id in &ids {
            self.append_line(*id, "reconciler", "the pass running this job ended before it (killed or powered off)")?;
            self.conn
                .execute("UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1", params![id, at])
                .map_err(self.err())?;
        }
        Ok(ids.len())
    }

    /// Removes the jobs that finished before `cutoff` (a [`stamp`]), their lines with them, and
    /// the events recorded before it; a job still queued or running stays whatever its age.
    /// Returns how many jobs and events went.
    pub fn forget_before(&mut self, cutoff: &str) -> Result<(usize, usize)> {
        let path = self.path.clone();
        let err = |cause| DbError { path: path.clone(), cause };
        let tx = self.conn.transaction().map_err(err)?;
        let jobs = tx
            .execute(
                "DELETE FROM jobs WHERE state NOT IN ('queued', 'running') AND COALESCE(finished_at, queued_at) < ?1",
                [cutoff],
            )
            .map_err(err)?;
        let events = tx.execute("DELETE FROM events WHERE at < ?1", [cutoff]).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok((jobs, events))
    }

    pub fn jobs(&self, limit: usize) -> Result<Vec<Job>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, kind, target, revision, trigger, state, queued_at, started_at, finished_at, exit_code
                 FROM jobs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(self.err())?;
        let rows = stmt.query_map([limit as i64], job_row).map_err(self.err())?;
        rows.collect::<std::result::Result<_, _>>().map_err(self.err())
    }

    /// The newest jobs that match every filter given.
    pub fn jobs_matching(
        &self,
        target: Option<&str>,
        kind: Option<&str>,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, kind, target, revision, trigger, state, queued_at, started_at, finished_at, exit_code
                 FROM jobs WHERE (?1 IS NULL OR target = ?1) AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR state = ?3)
                 ORDER BY id DESC LIMIT ?4",
            )
            .map_err(self.err())?;
        let rows = stmt.query_map(params![target, kind, state, limit as i64], job_row).map_err(self.err())?;
        rows.collect::<std::result::Result<_, _>>().map_err(self.err())
    }

    /// How many jobs there are of each kind and state.
    pub fn job_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state ORDER BY kind, state")
            .map_err(self.err())?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(self.err())?;
        rows.collect::<std::result::Result<_, _>>().map_err(self.err())
    }

    pub fn job(&self, id: i64) -> Result<Option<Job>> {
        self.conn
            .query_row(
                "SELECT id, kind, target, revision, trigger, state, queued_at, started_at, finished_at, exit_code
                 FROM jobs WHERE id = ?1",
                [id],
                job_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// The lines of a job after `after` (a sequence number; 0 for all).
    pub fn lines(&self, job: i64, after: i64) -> Result<Vec<JobLine>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at, stream, line FROM job_lines WHERE job_id = ?1 AND seq > ?2 ORDER BY seq")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![job, after], |r| {
                Ok(JobLine { seq: r.get(0)?, at: r.get(1)?, stream: r.get(2)?, line: r.get(3)? })
            })
            .map_err(self.err())?;
        rows.collect::<std::result::Result<_, _>>().map_err(self.err())
    }

    pub fn add_event(&self, event: &Event) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO events (at, kind, revision, duration_ms, steps, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![event.at, event.kind, event.revision, event.duration_ms, event.steps, event.message],
            )
            .map(drop)
            .map_err(self.err())
    }

    pub fn events(&self, limit: usize) -> Result<Vec<Event>> {
        let mut stmt = self
            .conn
            .prepare("SELECT at, kind, revision, duration_ms, steps, message FROM events ORDER BY id DESC LIMIT ?1")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(Event {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    revision: r.get(2)?,
                    duration_ms: r.get(3)?,
                    steps: r.get(4)?,
                    message: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<std::result::Result<_, _>>().map_err(self.err())
    }

    pub fn wishes(&self) -> Result<BTreeMap<Name, Wish>> {
        let mut stmt = self.conn.prepare("SELECT server, digest, state FROM wishes").map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(self.err())?;
        let mut wishes = BTreeMap::new();
        for row in rows {
            let (server, digest, state) = row.map_err(self.err())?;
            let (Ok(server), Ok(digest)) = (Name::new(server), serde_json::from_value::<Digest>(digest.into())) else {
                continue;
            };
            let state = if state == "stopped" { PowerState::Stopped } else { PowerState::Running };
            wishes.insert(server, Wish { digest, state });
        }
        Ok(wishes)
    }

    /// Replaces the remembered wishes with those of the revision just applied.
    pub fn set_wishes(&mut self, wishes: &BTreeMap<Name, Wish>) -> Result<()> {
        let path = self.path.clone();
        let err = |cause| DbError { path: path.clone(), cause };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM wishes", []).map_err(err)?;
        for (server, wish) in wishes {
            let state = match wish.state {
                PowerState::Running => "running",
                PowerState::Stopped => "stopped",
            };
            tx.execute(
                "INSERT INTO wishes (server, digest, state) VALUES (?1, ?2, ?3)",
                params![server.as_str(), wish.digest.as_str(), state],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(self.err())
    }

    pub fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(value) => self.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            ),
            None => self.conn.execute("DELETE FROM meta WHERE key = ?1", [key]),
        }
        .map(drop)
        .map_err(self.err())
    }
}

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        target: r.get(2)?,
        revision: r.get(3)?,
        trigger: r.get(4)?,
        state: r.get(5)?,
        queued_at: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        exit_code: r.get(9)?,
    })
}

/// A database root made in a folder that belongs to someone else — `$ROOT`, which belongs to the
/// user the web app runs as — is given to that owner with its WAL files, so that both can use
/// it. (SQLite itself gives the WAL files it makes later to the database's owner.)
pub fn give_to_folder_owner(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let Some(folder) =
        path.parent().and_then(|p| std::fs::metadata(if p.as_os_str().is_empty() { Path::new(".") } else { p }).ok())
    else {
        return;
    };
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(meta) = std::fs::metadata(&file)
            && (meta.uid(), meta.gid()) != (folder.uid(), folder.gid())
            && let Err(e) = std::os::unix::fs::chown(&file, Some(folder.uid()), Some(folder.gid()))
        {
            tracing::warn!("cannot give {} to the owner of its folder: {e}", file.display());
        }
    }
}

/// UTC now, RFC 3339 with milliseconds: log lines need finer times than seconds.
pub fn now() -> String {
    stamp(SystemTime::now())
}

/// A time as the database keeps it: UTC, RFC 3339 with milliseconds, so that text order is time
/// order.
pub fn stamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = l4d2ctl::overrides::rfc3339(UNIX_EPOCH + Duration::from_secs(since.as_secs()));
    format!("{}.{:03}Z", seconds.trim_end_matches('Z'), since.subsec_millis())
}
