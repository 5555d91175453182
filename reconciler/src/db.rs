//! Jobs, their logs, reconcile events and the reconciler's memory, in SQLite
//! (`$ROOT/left4me.db`, WAL, versioned migrations; docs/DESIGN.md §7).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LockResult, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use left4me_state::{AlertEvent, Digest, Name, PowerState};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::crashloop::CrashLoop;
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
    // 2: servers held back after crashing (times in ms since the epoch).
    "CREATE TABLE crash_loops (
        server TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        next_try INTEGER NOT NULL,
        started INTEGER,
        digest TEXT NOT NULL,
        state TEXT NOT NULL
    );",
    // 3: notices for the alerts: what happened, of which kind, about which server, delivered or not.
    "CREATE TABLE notices (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        server TEXT,
        message TEXT NOT NULL
    );",
    // 4: cancelling jobs: who asked, and the process that waits to run a job queued outside a
    // pass (a backup, a restore), which a pass leaves queued while that process lives.
    "ALTER TABLE jobs ADD COLUMN cancel_requested_by TEXT;
    ALTER TABLE jobs ADD COLUMN runner_pid INTEGER;",
];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database {path}: {cause}{}", os_error(.os))]
    Sqlite {
        path: String,
        cause: rusqlite::Error,
        /// The OS error under a full disk or a failed read or write (errno).
        os: Option<i32>,
    },
    #[error(
        "the database {path} is not there yet: the reconciler makes it on its first pass \
         (is left4me-reconciler.service running?)"
    )]
    NotYet { path: String },
}

fn os_error(os: &Option<i32>) -> String {
    os.map(|errno| format!(" ({})", std::io::Error::from_raw_os_error(errno))).unwrap_or_default()
}

impl DbError {
    /// Whether the disk (or the user's quota) is full: the database cannot grow.
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Sqlite { cause, os, .. } => {
                cause.sqlite_error_code() == Some(ErrorCode::DiskFull)
                    || matches!(*os, Some(errno) if errno == nix::libc::ENOSPC || errno == nix::libc::EDQUOT)
            }
            DbError::NotYet { .. } => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, DbError>;

pub struct Db {
    conn: Connection,
    path: String,
    /// Ends of jobs that could not be written when they happened (a full disk), written by the
    /// next [`Db::cancel_unfinished`] with their true outcome.
    unrecorded: RefCell<Vec<Unrecorded>>,
    /// Why the last pass of this process ended with jobs unfinished, when it could not say so.
    abandoned: RefCell<Option<String>>,
}

struct Unrecorded {
    job: i64,
    exit_code: i32,
    at: String,
    why: String,
}

/// The reconciler's database as another program reads it (the web app): opened read-only and
/// never migrated. Until the reconciler has made it, an empty one stands in (no jobs yet); each
/// [`Reader::lock`] looks again.
pub struct Reader {
    path: PathBuf,
    db: Mutex<Db>,
    /// The stand-in is in use.
    empty: AtomicBool,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader> {
        let (db, empty) = match Db::open_read_only(path) {
            Ok(db) => (db, false),
            Err(DbError::NotYet { .. }) => (Db::empty(path)?, true),
            Err(e) => return Err(e),
        };
        Ok(Reader { path: path.to_owned(), db: Mutex::new(db), empty: AtomicBool::new(empty) })
    }

    /// The database, the reconciler's own once it is there.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, Db>> {
        let mut db = self.db.lock()?;
        if self.empty.load(Ordering::Relaxed) {
            match Db::open_read_only(&self.path) {
                Ok(real) => {
                    *db = real;
                    self.empty.store(false, Ordering::Relaxed);
                }
                Err(DbError::NotYet { .. }) => {}
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(db)
    }
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

/// Something an alert may be told: raised where it happens (a pass, a job, a schedule's run), and
/// delivered later by the alerts, so raising one never waits on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub id: i64,
    pub at: String,
    pub kind: AlertEvent,
    pub server: Option<Name>,
    pub message: String,
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

pub use l4d2ctl::sqlite::set_up;
use l4d2ctl::sqlite::{BUSY_TIMEOUT, migrate};

impl Db {
    /// Opens (creating and migrating when needed) the database at `path`. Any number of
    /// processes may open a fresh database at once: one migrates, the others wait for it.
    pub fn open(path: &Path) -> Result<Db> {
        let shown = path.display().to_string();
        let conn = Connection::open(path).map_err(|cause| fail(None, &shown, cause))?;
        let err = |cause| fail(Some(&conn), &shown, cause);
        set_up(&conn, MIGRATIONS).map_err(err)?;
        let db = Db::with(conn, shown);
        give_to_folder_owner(path);
        Ok(db)
    }

    /// Opens the database at `path` to read it only: never made, never migrated. One that is not
    /// there yet, or not yet made up to this version, is [`DbError::NotYet`].
    pub fn open_read_only(path: &Path) -> Result<Db> {
        let (conn, shown) = open_read_only(path, MIGRATIONS)?;
        Ok(Db::with(conn, shown))
    }

    /// An empty database in memory, shown as `path`: what a reader sees before the reconciler
    /// has made its own.
    fn empty(path: &Path) -> Result<Db> {
        let shown = path.display().to_string();
        let conn = Connection::open_in_memory().map_err(|cause| fail(None, &shown, cause))?;
        migrate(&conn, MIGRATIONS).map_err(|cause| fail(Some(&conn), &shown, cause))?;
        Ok(Db::with(conn, shown))
    }

    fn with(conn: Connection, path: String) -> Db {
        Db { conn, path, unrecorded: RefCell::new(Vec::new()), abandoned: RefCell::new(None) }
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        move |cause| fail(Some(&self.conn), &self.path, cause)
    }

    /// Runs `f` in a transaction, committed when it returns Ok.
    fn transaction<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        immediate(&self.conn, f).map_err(self.err())
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

    /// Records a job's end. When that cannot be written (a full disk), the end is kept and
    /// written by the next [`Db::cancel_unfinished`], at the time it happened.
    pub fn finish_job(&self, id: i64, exit_code: i32) -> Result<()> {
        let at = now();
        let result = self.record_end(id, exit_code, &at);
        if let Err(e) = &result {
            self.unrecorded.borrow_mut().push(Unrecorded { job: id, exit_code, at, why: e.to_string() });
        }
        result
    }

    fn record_end(&self, id: i64, exit_code: i32, at: &str) -> Result<()> {
        let state = if exit_code == 0 { "succeeded" } else { "failed" };
        self.conn
            .execute(
                "UPDATE jobs SET state = ?2, finished_at = ?3, exit_code = ?4 WHERE id = ?1",
                params![id, state, at, exit_code],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Ends the jobs a pass of this process left unfinished because it ended on `error`, saying
    /// so; when even that cannot be written, the next [`Db::cancel_unfinished`] says it.
    pub fn abandon_unfinished(&self, error: &str) {
        let why = format!("the pass running this job ended on an error before the job did: {error}");
        *self.abandoned.borrow_mut() = Some(why);
        if let Err(e) = self.cancel_unfinished() {
            tracing::warn!("cannot end the jobs of the failed pass yet: {e}");
        }
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

    /// Ends jobs left queued or running by a pass that died (killed, a power cut) or failed: no
    /// pass runs while the caller holds the pass lock, so they can never finish. A job whose end
    /// could not be written when it came is given that end; the others are cancelled with the
    /// reason. Returns how many were cancelled.
    pub fn cancel_unfinished(&self) -> Result<usize> {
        let late: Vec<Unrecorded> = std::mem::take(&mut *self.unrecorded.borrow_mut());
        for (index, end) in late.iter().enumerate() {
            let written = self
                .append_line(
                    end.job,
                    "reconciler",
                    &format!("this end is written late: it could not be when it came ({})", end.why),
                )
                .and_then(|()| self.record_end(end.job, end.exit_code, &end.at));
            if let Err(e) = written {
                self.unrecorded.borrow_mut().extend(late.into_iter().skip(index));
                return Err(e);
            }
        }
        let at = now();
        let mut stmt = self
            .conn
            // A schedule's run outlives passes (it may wait hours for players to leave): its job is
            // ended by `schedule_run::settle` once nothing runs it.
            .prepare(
                "SELECT id, state, runner_pid FROM jobs WHERE state IN ('queued', 'running') AND kind <> 'schedule'",
            )
            .map_err(self.err())?;
        let unfinished: Vec<(i64, String, Option<i32>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.err())?;
        // A job queued by a process that waits for the pass lock to run it is that process's.
        let ids: Vec<i64> = unfinished
            .into_iter()
            .filter(|(_, state, runner)| !(state == "queued" && runner.is_some_and(waits_elsewhere)))
            .map(|(id, _, _)| id)
            .collect();
        let why = self
            .abandoned
            .borrow()
            .clone()
            .unwrap_or_else(|| "the pass running this job ended before it (killed or powered off)".into());
        for id in &ids {
            self.append_line(*id, "reconciler", &why)?;
            self.conn
                .execute("UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1", params![id, at])
                .map_err(self.err())?;
        }
        *self.abandoned.borrow_mut() = None;
        Ok(ids.len())
    }

    /// The schedule runs whose job is unfinished: (job, schedule).
    pub fn unfinished_runs(&self) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, target FROM jobs WHERE state IN ('queued', 'running') AND kind = 'schedule'")
            .map_err(self.err())?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.err())?;
        rows.collect::<std::result::Result<_, _>>().map_err(self.err())
    }

    /// Ends one unfinished job as cancelled, saying why.
    pub fn cancel_job(&self, id: i64, why: &str) -> Result<()> {
        self.append_line(id, "reconciler", why)?;
        self.conn
            .execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, now()],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Removes the jobs that finished before `cutoff` (a [`stamp`]), their lines with them, and
    /// the events recorded before it; a job still queued or running stays whatever its age.
    /// Returns how many jobs and events went.
    pub fn forget_before(&mut self, cutoff: &str) -> Result<(usize, usize)> {
        self.transaction(|tx| {
            let jobs = tx.execute(
                "DELETE FROM jobs WHERE state NOT IN ('queued', 'running') AND COALESCE(finished_at, queued_at) < ?1",
                [cutoff],
            )?;
            let events = tx.execute("DELETE FROM events WHERE at < ?1", [cutoff])?;
            // Notices are delivered within seconds; one as old as this is long delivered.
            tx.execute("DELETE FROM notices WHERE at < ?1", [cutoff])?;
            Ok((jobs, events))
        })
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

    /// A job's last line of output (stdout or stderr), which usually says why it failed.
    pub fn last_output(&self, job: i64) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT line FROM job_lines WHERE job_id = ?1 AND stream IN ('stdout', 'stderr') ORDER BY seq DESC LIMIT 1",
                [job],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
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

    /// Raises a notice of this kind, about this server (None: the host).
    pub fn add_notice(&self, kind: AlertEvent, server: Option<&Name>, message: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO notices (at, kind, server, message) VALUES (?1, ?2, ?3, ?4)",
                params![now(), kind.as_str(), server.map(Name::as_str), message],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// The notices after `after` (an id), oldest first, at most `limit`.
    pub fn notices_after(&self, after: i64, limit: usize) -> Result<Vec<Notice>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, at, kind, server, message FROM notices WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(self.err())?;
        let mut notices = Vec::new();
        for row in rows {
            let (id, at, kind, server, message): (i64, String, String, Option<String>, String) =
                row.map_err(self.err())?;
            // A kind or server this release does not know (written by a newer one) is passed over.
            let Some(kind) = AlertEvent::parse(&kind) else { continue };
            let server = match server.map(Name::new).transpose() {
                Ok(server) => server,
                Err(_) => continue,
            };
            notices.push(Notice { id, at, kind, server, message });
        }
        Ok(notices)
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
            wishes.insert(server, Wish { digest, state: power_state(&state) });
        }
        Ok(wishes)
    }

    /// Replaces the remembered wishes with those of the revision just applied.
    pub fn set_wishes(&mut self, wishes: &BTreeMap<Name, Wish>) -> Result<()> {
        self.transaction(|tx| {
            tx.execute("DELETE FROM wishes", [])?;
            for (server, wish) in wishes {
                tx.execute(
                    "INSERT INTO wishes (server, digest, state) VALUES (?1, ?2, ?3)",
                    params![server.as_str(), wish.digest.as_str(), power_name(wish.state)],
                )?;
            }
            Ok(())
        })
    }

    /// The servers held back after crashing, as the last pass left them.
    pub fn crash_loops(&self) -> Result<BTreeMap<Name, CrashLoop>> {
        let mut stmt = self
            .conn
            .prepare("SELECT server, failures, next_try, started, digest, state FROM crash_loops")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(self.err())?;
        let mut loops = BTreeMap::new();
        for row in rows {
            let (server, failures, next_try, started, digest, state) = row.map_err(self.err())?;
            let (Ok(server), Ok(digest)) = (Name::new(server), serde_json::from_value::<Digest>(digest.into())) else {
                continue;
            };
            let wish = Wish { digest, state: power_state(&state) };
            loops.insert(server, CrashLoop { failures, next_try: time(next_try), started: started.map(time), wish });
        }
        Ok(loops)
    }

    /// Replaces the crash loops with those a pass leaves.
    pub fn set_crash_loops(&self, loops: &BTreeMap<Name, CrashLoop>) -> Result<()> {
        self.transaction(|tx| {
            tx.execute("DELETE FROM crash_loops", [])?;
            for (server, held) in loops {
                tx.execute(
                    "INSERT INTO crash_loops (server, failures, next_try, started, digest, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        server.as_str(),
                        held.failures,
                        millis(held.next_try),
                        held.started.map(millis),
                        held.wish.digest.as_str(),
                        power_name(held.wish.state)
                    ],
                )?;
            }
            Ok(())
        })
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

/// What came of asking to cancel a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAsked {
    /// Asked now: whoever runs the job ends it at its next look (a queued job never starts).
    Asked,
    /// Someone asked already (who).
    AlreadyAsked(String),
    /// The job ended before (how: succeeded, failed, cancelled); nothing changed.
    Finished(String),
    /// There is no such job.
    Unknown,
}

/// Cancelling jobs: asked by a person (`left4me jobs cancel`, the web's request), acted on by
/// whoever runs the job (`host::run_job`), which looks every quarter of a second.
impl Db {
    /// Asks for the job `id` to be cancelled, by `who` (`manual`, `web alice`).
    pub fn request_cancel(&self, id: i64, who: &str) -> Result<CancelAsked> {
        self.transaction(|tx| {
            let found: Option<(String, Option<String>)> = tx
                .query_row("SELECT state, cancel_requested_by FROM jobs WHERE id = ?1", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            Ok(match found {
                None => CancelAsked::Unknown,
                Some((state, _)) if !matches!(state.as_str(), "queued" | "running") => CancelAsked::Finished(state),
                Some((_, Some(by))) => CancelAsked::AlreadyAsked(by),
                Some(_) => {
                    tx.execute("UPDATE jobs SET cancel_requested_by = ?2 WHERE id = ?1", params![id, who])?;
                    CancelAsked::Asked
                }
            })
        })
    }

    /// Who asked for the job to be cancelled, if anyone did.
    pub fn cancel_requested(&self, id: i64) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT cancel_requested_by FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }

    /// A new queued job that this process runs once it holds the pass lock: a pass started
    /// meanwhile leaves it queued for as long as this process lives.
    pub fn queue_waiting_job(&self, kind: &str, target: &str, revision: Option<&str>, trigger: &str) -> Result<i64> {
        let id = self.create_job(kind, target, revision, trigger)?;
        self.conn
            .execute("UPDATE jobs SET runner_pid = ?2 WHERE id = ?1", params![id, std::process::id()])
            .map_err(self.err())?;
        Ok(id)
    }

    /// Starts the queued job `id` unless its cancelling was asked for: then it is ended
    /// cancelled, never started, and who asked is returned.
    pub fn begin_job(&self, id: i64) -> Result<Option<String>> {
        let started = self
            .conn
            .execute(
                "UPDATE jobs SET state = 'running', started_at = ?2 WHERE id = ?1 AND cancel_requested_by IS NULL",
                params![id, now()],
            )
            .map_err(self.err())?;
        if started > 0 {
            return Ok(None);
        }
        let who = self.cancel_requested(id)?.unwrap_or_default();
        self.end_cancelled(id, None, &who)?;
        Ok(Some(who))
    }

    /// Ends the job `id` cancelled at the request of `who`, with its l4d2ctl's exit code when it
    /// ran, its last line naming who cancelled it.
    pub fn end_cancelled(&self, id: i64, exit_code: Option<i32>, who: &str) -> Result<()> {
        let said = match exit_code {
            Some(_) => format!("cancelled by {who}: its l4d2ctl was stopped, and what it was changing stays as it was"),
            None => format!("cancelled by {who} before it started"),
        };
        self.append_line(id, "reconciler", &said)?;
        self.conn
            .execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?2, exit_code = ?3 WHERE id = ?1",
                params![id, now(), exit_code],
            )
            .map(drop)
            .map_err(self.err())
    }
}

/// Whether the process `pid`, which queued a job to run it, lives and is not this one (whose
/// pass settles what it left itself).
fn waits_elsewhere(pid: i32) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    pid as u32 != std::process::id() && matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(nix::errno::Errno::EPERM))
}

/// A database error, with the OS error under it where SQLite has one: a full disk is always
/// ENOSPC (SQLite reports it as SQLITE_FULL and keeps no errno), a failed read or write the
/// errno of the call that failed.
/// Runs `f` in a write transaction taken at once (`BEGIN IMMEDIATE`), committed when it returns
/// Ok: a writer waits for another's lock at its start, never half-way.
pub(crate) fn immediate<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// A connection to the database at `path` opened with `flags` (never made by it), waiting for
/// other connections' locks, with its schema version (`PRAGMA user_version`) and the path as
/// messages show it.
pub(crate) fn open_with(path: &Path, flags: OpenFlags) -> Result<(Connection, String, i64)> {
    let shown = path.display().to_string();
    let conn = Connection::open_with_flags(path, flags).map_err(|cause| fail(None, &shown, cause))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|cause| fail(Some(&conn), &shown, cause))?;
    let version = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|cause| fail(Some(&conn), &shown, cause))?;
    Ok((conn, shown, version))
}

/// A connection that reads the database at `path` only, once it is there with every one of
/// `migrations` (else [`DbError::NotYet`]), and the path as messages show it.
pub(crate) fn open_read_only(path: &Path, migrations: &[&str]) -> Result<(Connection, String)> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(DbError::NotYet { path: shown });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let (conn, shown, version) = open_with(path, flags)?;
    if version < migrations.len() as i64 {
        return Err(DbError::NotYet { path: shown });
    }
    Ok((conn, shown))
}

pub(crate) fn fail(conn: Option<&Connection>, path: &str, cause: rusqlite::Error) -> DbError {
    let os = match cause.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => Some(nix::libc::ENOSPC),
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => conn.and_then(|conn| {
            // SAFETY: the handle is this open connection's, used on this thread only, and
            // sqlite3_system_errno only reads a field of it.
            let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
            (errno != 0).then_some(errno)
        }),
        _ => None,
    };
    DbError::Sqlite { path: path.to_owned(), cause, os }
}

fn power_name(state: PowerState) -> &'static str {
    match state {
        PowerState::Running => "running",
        PowerState::Stopped => "stopped",
    }
}

fn power_state(name: &str) -> PowerState {
    if name == "stopped" { PowerState::Stopped } else { PowerState::Running }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn time(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64)
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
/// it. (SQLite itself gives the WAL files it makes later to the database's owner.) That owner may
/// rename and replace what is in its folder: only a regular file with one name is given, with
/// `lchown`, which changes a symlink swapped in meanwhile (to `/etc/shadow`) and never what it
/// points at. The file is not opened: closing a descriptor of a database file would drop every
/// lock SQLite holds on it in this process (POSIX locks belong to the process, not the
/// descriptor), and a write of another connection could be lost.
pub fn give_to_folder_owner(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(owner) = std::fs::symlink_metadata(folder) else { return };
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(meta) = std::fs::symlink_metadata(&file) else { continue };
        if !meta.file_type().is_file() || meta.nlink() != 1 || (meta.uid(), meta.gid()) == (owner.uid(), owner.gid()) {
            continue;
        }
        if let Err(e) = std::os::unix::fs::lchown(&file, Some(owner.uid()), Some(owner.gid())) {
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
    let seconds = left4me_state::clock::rfc3339(UNIX_EPOCH + Duration::from_secs(since.as_secs()));
    format!("{}.{:03}Z", seconds.trim_end_matches('Z'), since.subsec_millis())
}
