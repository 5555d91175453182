//! Users, sessions and RCON history, in the web app's own SQLite file (`$ROOT/web.db`): the
//! reconciler's database is only read.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use left4me_state::Name;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// Each migration moves the schema one version up; `PRAGMA user_version` is the version.
const MIGRATIONS: &[&str] = &["CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        hash TEXT NOT NULL,
        admin INTEGER NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        seen_at INTEGER NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE TABLE rcon_history (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        server TEXT NOT NULL,
        command TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX rcon_history_by_server ON rcon_history (user_id, server, id);"];

/// A session ends after this long without a request, and after `SESSION_MAX` whatever happens.
pub const SESSION_IDLE: i64 = 7 * 86_400;
pub const SESSION_MAX: i64 = 30 * 86_400;
/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the accounts database {path}: {cause}")]
    Db { path: PathBuf, cause: rusqlite::Error },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, AccountError>;

#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub name: Name,
    pub email: String,
    pub admin: bool,
    pub disabled: bool,
}

/// A signed-in request's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: String,
    pub user: User,
    pub csrf: String,
}

pub struct Accounts {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Accounts {
    pub fn open(path: &Path) -> Result<Accounts> {
        let err = |cause| AccountError::Db { path: path.to_path_buf(), cause };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(migration).map_err(err)?;
            tx.pragma_update(None, "user_version", index as i64 + 1).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        reconciler::db::give_to_folder_owner(path);
        Ok(Accounts { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().expect("no holder of the accounts lock panics");
        f(&conn).map_err(|cause| AccountError::Db { path: self.path.clone(), cause })
    }

    /// Adds a user. The name is a resource owner's name (`metadata.owner`).
    pub fn create_user(&self, name: &str, email: Option<&str>, password: &str, admin: bool) -> Result<User> {
        let name = Name::new(name).map_err(|e| AccountError::Invalid(format!("user name {name:?}: {e}")))?;
        let email = match email {
            Some(email) => check_email(email)?,
            None => format!("{name}@left4me.invalid"),
        };
        check_password(password)?;
        if self.user_by_name(name.as_str())?.is_some() {
            return Err(AccountError::Invalid(format!("a user named {name} exists already")));
        }
        let hash = hash_password(password)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO users (name, email, hash, admin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name.as_str(), email, hash, admin, unix_now()],
            )
        })?;
        self.user_by_name(name.as_str())?.ok_or_else(|| AccountError::Invalid("the new user vanished".into()))
    }

    pub fn users(&self) -> Result<Vec<User>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT id, name, email, admin, disabled FROM users ORDER BY name")?;
            let rows = stmt.query_map([], user_row)?;
            rows.collect::<rusqlite::Result<Vec<Option<User>>>>().map(|u| u.into_iter().flatten().collect())
        })
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        self.with(|c| {
            c.query_row("SELECT id, name, email, admin, disabled FROM users WHERE name = ?1", [name], user_row)
                .optional()
                .map(Option::flatten)
        })
    }

    /// The user whose name and password these are, if enabled; None otherwise. Takes about as
    /// long for a name that does not exist, so the answer's time tells nothing.
    pub fn verify(&self, name: &str, password: &str) -> Result<Option<User>> {
        let row: Option<(String, bool)> = self.with(|c| {
            c.query_row("SELECT hash, disabled FROM users WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })?;
        let Some((hash, disabled)) = row else {
            let _ = hash_password(password);
            return Ok(None);
        };
        let ok = PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok());
        if !ok || disabled {
            return Ok(None);
        }
        self.user_by_name(name)
    }

    /// Sets a password and ends every session of the user but `keep`.
    pub fn set_password(&self, user: &User, password: &str, keep: Option<&str>) -> Result<()> {
        check_password(password)?;
        let hash = hash_password(password)?;
        self.with(|c| {
            c.execute("UPDATE users SET hash = ?2 WHERE id = ?1", params![user.id, hash])?;
            c.execute(
                "DELETE FROM sessions WHERE user_id = ?1 AND token_hash IS NOT ?2",
                params![user.id, keep.unwrap_or("")],
            )
        })
        .map(drop)
    }

    /// Disables or enables a user; disabling ends their sessions.
    pub fn set_disabled(&self, user: &User, disabled: bool) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE users SET disabled = ?2 WHERE id = ?1", params![user.id, disabled])?;
            if disabled {
                c.execute("DELETE FROM sessions WHERE user_id = ?1", [user.id])?;
            }
            Ok(())
        })
    }

    /// Starts a session; returns the cookie's token (only its hash is stored) and the session.
    pub fn start_session(&self, user: &User) -> Result<(String, Session)> {
        let token = random_token()?;
        let csrf = random_token()?;
        let token_hash = sha256_hex(&token);
        let now = unix_now();
        self.with(|c| {
            c.execute(
                "DELETE FROM sessions WHERE seen_at < ?1 OR created_at < ?2",
                params![now - SESSION_IDLE, now - SESSION_MAX],
            )?;
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_at, seen_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![token_hash, user.id, csrf, now],
            )
        })?;
        Ok((token, Session { token_hash, user: user.clone(), csrf }))
    }

    /// The live session of a cookie's token, touched; None when it ended or never was.
    pub fn session(&self, token: &str) -> Result<Option<Session>> {
        let token_hash = sha256_hex(token);
        let now = unix_now();
        let found = self.with(|c| {
            c.query_row(
                "SELECT u.id, u.name, u.email, u.admin, u.disabled, s.csrf, s.seen_at FROM sessions s
                 JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.seen_at >= ?2 AND s.created_at >= ?3 AND u.disabled = 0",
                params![token_hash, now - SESSION_IDLE, now - SESSION_MAX],
                |r| Ok((user_row(r)?, r.get::<_, String>(5)?, r.get::<_, i64>(6)?)),
            )
            .optional()
        })?;
        let Some((Some(user), csrf, seen_at)) = found else { return Ok(None) };
        // Touching at most once a minute keeps page loads free of writes.
        if now - seen_at > 60 {
            self.with(|c| {
                c.execute("UPDATE sessions SET seen_at = ?2 WHERE token_hash = ?1", params![token_hash, now])
            })?;
        }
        Ok(Some(Session { token_hash, user, csrf }))
    }

    pub fn end_session(&self, token_hash: &str) -> Result<()> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])).map(drop)
    }

    pub fn add_rcon(&self, user: &User, server: &str, command: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO rcon_history (user_id, server, command, at) VALUES (?1, ?2, ?3, ?4)",
                params![user.id, server, command, unix_now()],
            )
        })
        .map(drop)
    }

    /// The user's latest commands to a server, newest last.
    pub fn rcon_history(&self, user: &User, server: &str, limit: usize) -> Result<Vec<String>> {
        let mut commands = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT command FROM rcon_history WHERE user_id = ?1 AND server = ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![user.id, server, limit as i64], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        commands.reverse();
        Ok(commands)
    }
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<User>> {
    let name: String = r.get(1)?;
    // A name that is not a valid owner cannot have been written by this program.
    Ok(Name::new(name).ok().map(|name| User {
        id: r.get(0).unwrap_or_default(),
        name,
        email: r.get(2).unwrap_or_default(),
        admin: r.get(3).unwrap_or_default(),
        disabled: r.get(4).unwrap_or_default(),
    }))
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(AccountError::Invalid(format!("the password is shorter than {MIN_PASSWORD} characters")));
    }
    if password.len() > 1024 {
        return Err(AccountError::Invalid("the password is longer than 1024 bytes".into()));
    }
    Ok(())
}

/// An e-mail address as a commit's author carries it: no angle brackets or line breaks.
pub fn check_email(email: &str) -> Result<String> {
    let email = email.trim();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c));
    if !ok {
        return Err(AccountError::Invalid(format!("{email:?} is not an e-mail address")));
    }
    Ok(email.to_owned())
}

fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AccountError::Invalid(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Invalid(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AccountError::Invalid(format!("cannot hash the password: {e}")))
}

/// 32 random bytes, hex.
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AccountError::Invalid(format!("no randomness: {e}")))?;
    Ok(crate::hex(&bytes))
}

fn sha256_hex(text: &str) -> String {
    crate::hex(&Sha256::digest(text.as_bytes()))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
