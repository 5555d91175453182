//! The audit trail: who did what to the host, when and from where, in one SQLite table
//! (`$ROOT/audit.db`). Written by root (l4d2ctl by hand, the reconciler) and by the web app, which
//! runs as the game's user: the file is that user's, mode 0660, so neither locks the other out.
//!
//! Recording never stops what it records: [`record_by_hand`] says on stderr that an entry could
//! not be written and the command goes on (docs/ARCHITECTURE.md, Decisions).

use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use left4me_state::Name;
use left4me_state::clock::{rfc3339, unix_seconds};
use rusqlite::{Connection, OpenFlags, params_from_iter};
use serde::Serialize;

/// The file in `$ROOT`.
pub const FILE: &str = "audit.db";

/// Each migration moves the schema one version up; `PRAGMA user_version` is the version.
const MIGRATIONS: &[&str] = &["CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        server TEXT,
        detail TEXT NOT NULL,
        origin TEXT NOT NULL
    );
    CREATE INDEX audit_server ON audit (server, id);
    CREATE INDEX audit_at ON audit (at);"];

/// The longest detail kept; an RCON command is at most 510 bytes, the rest is shorter.
const MAX_DETAIL: usize = 1024;

/// What is hidden of a command that mentions a password.
pub const HIDDEN: &str = "<hidden>";

/// One thing done, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The person: a web user, or the Unix user behind sudo.
    pub who: String,
    /// What, as one word: `sign-in`, `rcon`, `stop`, `user-created`, …
    pub action: String,
    /// The server it was about, if any.
    pub server: Option<String>,
    /// The rest: the command sent (passwords hidden), the user made, …
    pub detail: String,
    /// From where: `web 203.0.113.7`, `l4d2ctl`, `l4d2ctl over ssh from 198.51.100.2`,
    /// `left4me-web` (its `create-user`).
    pub origin: String,
}

/// An entry as the table keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    pub id: i64,
    /// UTC, RFC 3339.
    pub at: String,
    pub who: String,
    pub action: String,
    pub server: Option<String>,
    pub detail: String,
    pub origin: String,
}

/// Which entries a reader may see.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every entry (an admin, the host's operator).
    All,
    /// Only entries about these servers (an owner's own).
    Servers(&'a [Name]),
}

/// Which entries to read: newest first, at most `limit`, older than `before` (an id) if given.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    pub scope: Scope<'a>,
    pub server: Option<&'a str>,
    pub before: Option<i64>,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit trail {}: {cause}", path.display())]
    Sqlite { path: PathBuf, cause: rusqlite::Error },
    #[error("the audit trail {}: {cause}", path.display())]
    File { path: PathBuf, cause: std::io::Error },
}

/// The open audit trail.
pub struct Audit {
    conn: Connection,
    path: PathBuf,
}

impl Audit {
    /// Opens `$ROOT/audit.db` (`root`), making it when it is not there.
    pub fn open(root: &Path) -> Result<Audit, AuditError> {
        let path = root.join(FILE);
        let file_err = |cause| AuditError::File { path: path.clone(), cause };
        prepare(&path, root).map_err(file_err)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let err = |cause| AuditError::Sqlite { path: path.clone(), cause };
        let conn = Connection::open_with_flags(&path, flags).map_err(err)?;
        crate::sqlite::set_up(&conn, MIGRATIONS).map_err(err)?;
        Ok(Audit { conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
        |cause| AuditError::Sqlite { path: self.path.clone(), cause }
    }

    /// Writes one entry; its id.
    pub fn record(&self, entry: &Entry) -> Result<i64, AuditError> {
        let at = i64::try_from(unix_seconds(SystemTime::now())).unwrap_or(i64::MAX);
        self.conn
            .execute(
                "INSERT INTO audit (at, who, action, server, detail, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    at,
                    bounded(&entry.who),
                    bounded(&entry.action),
                    entry.server.as_deref().map(bounded),
                    bounded(&entry.detail),
                    bounded(&entry.origin)
                ],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The entries `filter` lets through, newest first.
    pub fn entries(&self, filter: &Filter<'_>) -> Result<Vec<Recorded>, AuditError> {
        let mut sql = String::from("SELECT id, at, who, action, server, detail, origin FROM audit WHERE 1");
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Scope::Servers(servers) = filter.scope {
            if servers.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(&format!(" AND server IN ({})", vec!["?"; servers.len()].join(", ")));
            values.extend(servers.iter().map(|s| s.to_string().into()));
        }
        if let Some(server) = filter.server {
            sql.push_str(" AND server = ?");
            values.push(server.to_owned().into());
        }
        if let Some(before) = filter.before {
            sql.push_str(" AND id < ?");
            values.push(before.into());
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        values.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
        let mut statement = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = statement
            .query_map(params_from_iter(values), |r| {
                let at: i64 = r.get(1)?;
                Ok(Recorded {
                    id: r.get(0)?,
                    at: rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64)),
                    who: r.get(2)?,
                    action: r.get(3)?,
                    server: r.get(4)?,
                    detail: r.get(5)?,
                    origin: r.get(6)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Removes the entries older than `cutoff` (Unix seconds); how many.
    pub fn forget_before(&self, cutoff: u64) -> Result<usize, AuditError> {
        let cutoff = i64::try_from(cutoff).unwrap_or(i64::MAX);
        self.conn.execute("DELETE FROM audit WHERE at < ?1", [cutoff]).map_err(self.err())
    }
}

/// Records what a person did through l4d2ctl by hand (`who`: the person behind sudo, `origin`:
/// this shell); a trail that cannot be written is said on stderr and the command goes on.
pub fn record_by_hand(root: &Path, action: &str, server: Option<&Name>, detail: &str) {
    let entry = Entry {
        who: crate::overrides::operator(),
        action: action.to_owned(),
        server: server.map(Name::to_string),
        detail: detail.to_owned(),
        origin: shell_origin(),
    };
    record_or_say(root, &entry);
}

/// Records `entry`; a trail that cannot be written is said on stderr, and that is all.
pub fn record_or_say(root: &Path, entry: &Entry) {
    if let Err(e) = Audit::open(root).and_then(|audit| audit.record(entry)) {
        eprintln!("l4d2ctl: {} of {} is not in the audit trail: {e}", entry.action, entry.who);
    }
}

/// Where a command by hand comes from: the program (`l4d2ctl`, `left4me-web`) on this host, and
/// the SSH client it was run over when there is one.
pub fn shell_origin() -> String {
    let program = std::env::args_os()
        .next()
        .and_then(|arg| Path::new(&arg).file_name().map(|name| name.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "l4d2ctl".to_owned());
    match std::env::var("SSH_CLIENT").ok().as_deref().and_then(|c| c.split_whitespace().next()) {
        Some(address) => format!("{} over ssh from {}", bounded(&program), bounded(address)),
        None => bounded(&program),
    }
}

/// A console line as recorded: each of its commands (split at `;` outside quotes, as the engine
/// splits them) that mentions a password anywhere — `rcon_password`, `sv_password`,
/// `sm_...password`, an alias setting one — or a secret (`sv_setsteamaccount`'s login token, a
/// word `token`, `secret` or `key`: `sm_api_key`) keeps only its first word.
pub fn redact(line: &str) -> String {
    let mut commands = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            ';' if !in_quotes => commands.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    commands.push(current);
    let shown: Vec<String> = commands
        .iter()
        .map(|command| {
            if !secret(command) {
                return command.clone();
            }
            let trimmed = command.trim_start();
            let lead = &command[..command.len() - trimmed.len()];
            let first = trimmed.split_whitespace().next().unwrap_or_default();
            format!("{lead}{first} {HIDDEN}")
        })
        .collect();
    shown.join(";")
}

/// The words that make a command's arguments secret.
const SECRET_WORDS: [&str; 4] = ["token", "secret", "key", "sv_setsteamaccount"];

fn secret(command: &str) -> bool {
    let lower = command.to_ascii_lowercase();
    lower.contains("password")
        || lower.contains("sv_setsteamaccount")
        || lower.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| SECRET_WORDS.contains(&word))
}

/// A value as stored: at most [`MAX_DETAIL`] bytes, cut at a character.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_DETAIL {
        return text.to_owned();
    }
    let mut end = MAX_DETAIL;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Makes the file if it is not there, mode 0660, and (as root) gives it to the owner of `$ROOT`,
/// the game's user, through its own descriptor: a symlink planted at its name is refused, never
/// followed. SQLite gives the -wal and -shm files it makes the database's mode and owner.
fn prepare(path: &Path, root: &Path) -> std::io::Result<()> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o660)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("is not a regular file"));
    }
    // A hard link the game's user made to a file of root's (where the kernel lets it) would be
    // handed to it below.
    if meta.nlink() != 1 {
        return Err(std::io::Error::other(format!(
            "has {} links, and left4me makes it with one; remove it (and look at who linked it)",
            meta.nlink()
        )));
    }
    if nix::unistd::geteuid().is_root() {
        let folder = fs::metadata(root)?;
        if (meta.uid(), meta.gid()) != (folder.uid(), folder.gid()) {
            std::os::unix::fs::fchown(&file, Some(folder.uid()), Some(folder.gid()))?;
        }
    }
    if meta.permissions().mode() & 0o777 != 0o660 && meta.uid() == nix::unistd::geteuid().as_raw() {
        file.set_permissions(fs::Permissions::from_mode(0o660))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_mentioning_a_password_keeps_only_its_first_word() {
        for (line, shown) in [
            ("status", "status"),
            ("rcon_password hunter2", "rcon_password <hidden>"),
            ("RCON_PASSWORD hunter2", "RCON_PASSWORD <hidden>"),
            ("sv_password \"a b\"", "sv_password <hidden>"),
            ("say hi; sv_password x; status", "say hi; sv_password <hidden>; status"),
            ("sm_setpassword x", "sm_setpassword <hidden>"),
            ("alias go \"rcon_password x\"", "alias <hidden>"),
            ("say \"a;rcon_password x\"", "say <hidden>"),
            ("\"sv_password\" secret", "\"sv_password\" <hidden>"),
            ("say no secrets here", "say no secrets here"),
            ("sv_setsteamaccount 0123ABCD", "sv_setsteamaccount <hidden>"),
            ("echo a; SV_SETSTEAMACCOUNT 0123ABCD", "echo a; SV_SETSTEAMACCOUNT <hidden>"),
            ("sm_api_key hunter2", "sm_api_key <hidden>"),
            ("sm_cvar steam_token hunter2", "sm_cvar <hidden>"),
            ("sm_cvar my_secret hunter2", "sm_cvar <hidden>"),
            ("say keyboard tokens", "say keyboard tokens"),
        ] {
            assert_eq!(redact(line), shown, "{line:?}");
            if shown != line {
                assert!(!redact(line).contains("hunter2") && !redact(line).contains(" x"), "{line:?}");
            }
        }
    }

    fn entry(server: &str) -> Entry {
        Entry {
            who: "ada".into(),
            action: "stop".into(),
            server: Some(server.into()),
            detail: "stop by hand".into(),
            origin: "l4d2ctl".into(),
        }
    }

    #[test]
    fn entries_are_read_by_scope_and_page_and_forgotten_by_age() {
        let root = tempfile::tempdir().unwrap();
        let audit = Audit::open(root.path()).unwrap();
        let ids: Vec<i64> = ["a", "b", "a", "c"].iter().map(|s| audit.record(&entry(s)).unwrap()).collect();
        let (a, c) = (Name::new("a").unwrap(), Name::new("c").unwrap());
        let (a_and_c, just_a, none) = ([a.clone(), c], [a], []);
        let read = |scope, before, limit| {
            let filter = Filter { scope, server: None, before, limit };
            audit.entries(&filter).unwrap().iter().map(|e| e.id).collect::<Vec<_>>()
        };
        assert_eq!(read(Scope::All, None, 10), [ids[3], ids[2], ids[1], ids[0]], "newest first");
        assert_eq!(read(Scope::Servers(&a_and_c), None, 10), [ids[3], ids[2], ids[0]]);
        assert_eq!(read(Scope::Servers(&just_a), Some(ids[2]), 10), [ids[0]], "older than an id");
        assert_eq!(read(Scope::Servers(&none), None, 10), Vec::<i64>::new(), "no servers, no entries");
        assert_eq!(read(Scope::All, None, 2), [ids[3], ids[2]]);
        let now = unix_seconds(SystemTime::now());
        assert_eq!(audit.forget_before(now - 86_400).unwrap(), 0, "nothing is a day old");
        assert_eq!(audit.forget_before(now + 60).unwrap(), 4);
        assert!(read(Scope::All, None, 10).is_empty());
    }

    #[test]
    fn a_symlink_planted_at_the_trail_is_refused_and_its_target_untouched() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("precious");
        fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, root.path().join(FILE)).unwrap();
        let error = Audit::open(root.path()).err().expect("a symlink is not opened");
        assert!(error.to_string().contains("audit.db"), "{error}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode, 0o660, "the target's mode is not changed");
    }

    #[test]
    fn a_trail_of_more_than_one_link_is_refused_and_left_as_it_is() {
        let root = tempfile::tempdir().unwrap();
        let precious = root.path().join("precious");
        fs::write(&precious, "keep me").unwrap();
        fs::set_permissions(&precious, fs::Permissions::from_mode(0o600)).unwrap();
        fs::hard_link(&precious, root.path().join(FILE)).unwrap();
        let error = Audit::open(root.path()).err().expect("a hard link is not opened").to_string();
        assert!(error.contains("audit.db") && error.contains("links"), "{error}");
        assert_eq!(fs::read_to_string(&precious).unwrap(), "keep me");
        assert_eq!(fs::metadata(&precious).unwrap().permissions().mode() & 0o777, 0o600, "its mode is not changed");
    }

    #[test]
    fn the_trail_is_made_0660() {
        let root = tempfile::tempdir().unwrap();
        drop(Audit::open(root.path()).unwrap());
        let mode = fs::metadata(root.path().join(FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
    }

    #[test]
    fn long_values_are_cut_at_a_character() {
        let long = "é".repeat(MAX_DETAIL);
        let kept = bounded(&long);
        assert!(kept.len() <= MAX_DETAIL + "…".len(), "{}", kept.len());
        assert!(kept.ends_with('…'));
    }
}
