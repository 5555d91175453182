//! Users, sessions and RCON history, in the web app's own SQLite file (`$ROOT/web.db`): the
//! reconciler's database is only read.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{Output, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use left4me_state::Name;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
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
    #[error("the accounts database {path}: {cause}")]
    File { path: PathBuf, cause: std::io::Error },
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
    /// Counts the times sessions were ended (sign-out, a password change, a user disabled):
    /// an open live view looks again whether its session still lives each time it moves.
    ended: tokio::sync::watch::Sender<u64>,
}

impl Accounts {
    /// Opens the database, creating it readable by its owner only (it holds password hashes,
    /// session CSRF tokens and RCON history), and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Accounts> {
        let err = |cause| AccountError::Db { path: path.to_path_buf(), cause };
        let file_err = |cause| AccountError::File { path: path.to_path_buf(), cause };
        // SQLite gives the -wal and -shm files the database's own mode, whatever the umask: the
        // file is made (or made again) private before SQLite opens it.
        create_private(path).map_err(file_err)?;
        make_private(path).map_err(file_err)?;
        let conn = Connection::open(path).map_err(err)?;
        reconciler::db::set_up(&conn, MIGRATIONS).map_err(err)?;
        make_private(path).map_err(file_err)?;
        reconciler::db::give_to_folder_owner(path);
        Ok(Accounts { conn: Mutex::new(conn), path: path.to_path_buf(), ended: tokio::sync::watch::Sender::new(0) })
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
        if !password_matches(&hash, password.as_bytes()) || disabled {
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
        })?;
        self.sessions_ended();
        Ok(())
    }

    /// Disables or enables a user; disabling ends their sessions.
    pub fn set_disabled(&self, user: &User, disabled: bool) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE users SET disabled = ?2 WHERE id = ?1", params![user.id, disabled])?;
            if disabled {
                c.execute("DELETE FROM sessions WHERE user_id = ?1", [user.id])?;
            }
            Ok(())
        })?;
        self.sessions_ended();
        Ok(())
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
        self.with(|c| c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash]))?;
        self.sessions_ended();
        Ok(())
    }

    /// Whether the session of a token's hash is still live (it is not touched).
    pub fn session_lives(&self, token_hash: &str) -> Result<bool> {
        let now = unix_now();
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.seen_at >= ?2 AND s.created_at >= ?3 AND u.disabled = 0",
                params![token_hash, now - SESSION_IDLE, now - SESSION_MAX],
                |_| Ok(()),
            )
            .optional()
        })
        .map(|found| found.is_some())
    }

    /// Moves each time sessions end.
    pub fn session_ends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ended.subscribe()
    }

    fn sessions_ended(&self) {
        self.ended.send_modify(|count| *count += 1);
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

/// Creates the database file with mode 0600 when it does not exist yet.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Takes every access of group and others off the database and its `-wal` and `-shm` files (a
/// database made by an older version, or by hand, may be readable by all).
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let mode = match std::fs::metadata(&file) {
            Ok(meta) => meta.permissions().mode(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
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
    let (algorithm, version, params) = (Algorithm::default(), Version::default(), Params::default());
    let argon = Argon2::new(algorithm, version, params.clone());
    let hashed = (|| {
        let output = argon2_output(&argon, password.as_bytes(), salt.as_salt(), Params::DEFAULT_OUTPUT_LEN)?;
        Ok::<_, argon2::password_hash::Error>(PasswordHash {
            algorithm: algorithm.ident(),
            version: Some(version.into()),
            params: (&params).try_into()?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        })
    })();
    hashed.map(|hash| hash.to_string()).map_err(|e| AccountError::Invalid(format!("cannot hash the password: {e}")))
}

/// Whether `password` is the one a stored PHC string (`$argon2id$v=19$…`) was made of.
fn password_matches(stored: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed)) else {
        return false;
    };
    let Ok(version) = parsed.version.map(Version::try_from).transpose() else { return false };
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    // `Output`'s equality takes the same time wherever the bytes differ.
    argon2_output(&argon, password, salt, expected.len()).is_ok_and(|computed| computed == expected)
}

/// argon2's working memory (19 MiB of 1 KiB blocks), mapped from the kernel for one hash and
/// unmapped after it. Taken from the allocator for each hash, it left the process holding over a
/// hundred MiB per thread; kept per thread, 19 MiB for ever on every thread that ever hashed.
/// Unmapping gives it all back at once.
struct Memory {
    blocks: NonNull<Block>,
    len: usize,
}

impl Memory {
    fn map(len: usize) -> Option<Memory> {
        let bytes = NonZeroUsize::new(len.checked_mul(std::mem::size_of::<Block>())?)?;
        // SAFETY: a new anonymous private mapping at an address of the kernel's choosing: it
        // aliases nothing, and nothing else will ever reach it but through this value.
        let mapped =
            unsafe { mmap_anonymous(None, bytes, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_PRIVATE) };
        mapped.ok().map(|at| Memory { blocks: at.cast(), len })
    }
}

impl AsMut<[Block]> for Memory {
    fn as_mut(&mut self) -> &mut [Block] {
        // SAFETY: the mapping is `len` blocks long and page-aligned (more than a block's 64
        // bytes), the kernel fills it with zeros (all-zero words are a valid block), and `&mut
        // self` makes this the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_ptr(), self.len) }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of this length, unmapped once; no slice of it
        // outlives `as_mut`'s borrow of self.
        let _ = unsafe { munmap(self.blocks.cast(), self.len * std::mem::size_of::<Block>()) };
    }
}

/// An argon2 output of `len` bytes, computed in memory of its own that is given back after.
fn argon2_output(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    len: usize,
) -> argon2::password_hash::Result<Output> {
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    let blocks = argon.params().block_count();
    Output::init_with(len, |out| {
        // A hash of larger parameters than this program's own, or no mapping to be had: the
        // argon2 crate's own allocation.
        match Memory::map(blocks).filter(|_| blocks <= 2 * Params::DEFAULT_M_COST as usize) {
            Some(memory) => Ok(argon.hash_password_into_with_memory(password, salt, out, memory)?),
            None => Ok(argon.hash_password_into(password, salt, out)?),
        }
    })
}

/// 32 random bytes, hex.
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AccountError::Invalid(format!("no randomness: {e}")))?;
    Ok(crate::text::hex(&bytes))
}

fn sha256_hex(text: &str) -> String {
    crate::text::hex(&Sha256::digest(text.as_bytes()))
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
