//! The SQLite databases of left4me's programs (the reconciler's, the web app's, the audit trail):
//! how a connection is readied, and how a schema moves up.

use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

/// How long a connection waits for another's write (a pass's, a migration's) before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Readies a connection to a database of a left4me program (the reconciler's, the web app's, the
/// audit trail): it waits
/// for other connections (a pass, a migration) rather than failing, runs in WAL, and has the
/// `migrations` it lacks. Any number of processes may set up a fresh database at once: one
/// migrates, the others wait for it and find the work done.
pub fn set_up(conn: &Connection, migrations: &[&str]) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Switching a fresh database to WAL takes it whole, and SQLite answers "locked" at once
    // rather than waiting when another connection is there first: wait here.
    when_free(|| {
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        Ok(())
    })?;
    // In WAL mode NORMAL syncs at checkpoints, not at every commit: a power cut may lose the
    // last job lines, never the database. A job line per fsync would dominate a pass.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(conn, migrations)
}

/// Moves the schema up to `migrations`. The version is read again inside a write transaction
/// (`BEGIN IMMEDIATE`): of several processes opening a fresh database at once, the first
/// migrates and the others, waiting on its lock, find the work done.
pub fn migrate(conn: &Connection, migrations: &[&str]) -> rusqlite::Result<()> {
    let current = |conn: &Connection| conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0));
    when_free(|| {
        // Most opens find the schema current: no write lock for them.
        if current(conn)? >= migrations.len() as i64 {
            return Ok(());
        }
        let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let version = current(&tx)?;
        for (index, sql) in migrations.iter().enumerate().skip(version.max(0) as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
        }
        tx.commit()
    })
}

/// Runs `f` again while SQLite answers "busy" without having waited (it does when waiting could
/// deadlock two connections, as when both want to switch a fresh database to WAL), up to
/// [`BUSY_TIMEOUT`].
fn when_free(mut f: impl FnMut() -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match f() {
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}
