//! Requests the web app makes of the service: `$ROOT/requests/<what>-<time>-<pid>-<n>.json`, one
//! small JSON file each (`{"version": 1, "what": "cancel", "job": 12, "who": "web alice", "at":
//! …}`; `backup` names a `server`, `restore` a `server` and a `backup`). The web only reads the
//! database, so it asks here, as it asks for retries in `retries/`; the service's watch takes
//! each request, checks it again (a job that exists, a server of the committed revision, a backup
//! that server has) and acts: a cancel at once, on the watch's own thread (a pass may be running
//! the job), a backup or restore as a job between passes.
//!
//! The game's user can write here, as the web app can: a request can ask only what the web could
//! (the web decides who may, through its access rule); what it names is checked before anything
//! is done, and a file that is not a request of this version is removed with a warning.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use left4me_state::Name;
use serde::{Deserialize, Serialize};

use crate::backups::{self, Operation};
use crate::db::{CancelAsked, Db};
use crate::engine::Config;

/// The folder under `$ROOT`.
pub const FOLDER: &str = "requests";

/// The version of the format this release writes and reads.
pub const VERSION: u32 = 1;

/// A request is a few hundred bytes; anything longer is no request.
const MAX_BYTES: u64 = 4096;

/// What a pass renames a request to once it has taken it.
const TAKEN: &str = ".taken-";

/// One request, as its file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub what: What,
    /// Who asked: `web <user>`.
    pub who: String,
    /// When (RFC 3339).
    pub at: String,
}

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "kebab-case")]
pub enum What {
    Cancel {
        job: i64,
    },
    Backup {
        server: Name,
    },
    Restore {
        server: Name,
        backup: String,
    },
    /// Fetch the upstream now: the control host saved a commit (`left4me remote`'s `fetch`).
    Fetch,
}

impl What {
    /// The first word of its file's name.
    fn word(&self) -> &'static str {
        match self {
            What::Cancel { .. } => "cancel",
            What::Backup { .. } => "backup",
            What::Restore { .. } => "restore",
            What::Fetch => "fetch",
        }
    }
}

/// `$ROOT/requests`.
pub fn folder(root: &Path) -> PathBuf {
    root.join(FOLDER)
}

/// Makes the folder when it is missing, given to `$ROOT`'s owner as the retries' is.
pub fn make_folder(root: &Path) -> Result<PathBuf, crate::retries::Error> {
    crate::retries::make_inbox(root, folder(root))
}

/// Asks the service for `what`, on behalf of the web user `user`: the file is written whole under
/// a dot name and renamed into place, so the service never reads half of one.
pub fn ask(root: &Path, what: What, user: &Name) -> Result<(), crate::retries::Error> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let folder = make_folder(root)?;
    let request = Request {
        version: VERSION,
        who: format!("web {user}"),
        at: left4me_state::clock::rfc3339(std::time::SystemTime::now()),
        what,
    };
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let name = format!(
        "{}-{millis}-{}-{}.json",
        request.what.word(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let (writing, path) = (folder.join(format!(".new-{name}")), folder.join(&name));
    let text = serde_json::to_vec(&request).expect("a request serializes");
    let error = |path: &Path| {
        let path = path.to_owned();
        move |cause| crate::retries::Error::new(&path, cause)
    };
    fs::write(&writing, text).map_err(error(&writing))?;
    fs::rename(&writing, &path).map_err(error(&path))
}

/// Whether `path` (from a watch on the folder) is a request just made; `cancels`: a cancel.
pub fn is_request(root: &Path, path: &Path, cancels: bool) -> bool {
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    path.parent() == Some(folder(root).as_path())
        && !name.starts_with('.')
        && (!cancels || name.starts_with("cancel-"))
        && path.exists()
}

/// Takes the requests in the folder (only the cancels, with `cancels`): each is renamed to its
/// taken name (so that of two takers one wins), read within its bound and removed. What cannot be
/// read as a request of this version is removed with a warning.
pub fn take(root: &Path, cancels: bool) -> Vec<Request> {
    let folder = folder(root);
    let read = match fs::read_dir(&folder) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!("cannot read the requests in {}: {e}", folder.display());
            return Vec::new();
        }
    };
    let mut names: Vec<String> = read.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut taken = Vec::new();
    for name in names {
        if name.starts_with('.') || (cancels && !name.starts_with("cancel-")) {
            continue;
        }
        let (path, held) = (folder.join(&name), folder.join(format!("{TAKEN}{name}")));
        if fs::rename(&path, &held).is_err() {
            continue; // Another taker was first, or it went.
        }
        let read = read_request(&held);
        if let Err(e) = fs::remove_file(&held).or_else(|_| fs::remove_dir_all(&held)) {
            tracing::warn!("cannot remove the request {}: {e}", held.display());
        }
        match read {
            Ok(request) => taken.push(request),
            Err(why) => tracing::warn!("{} is no request this service reads ({why}): removed", path.display()),
        }
    }
    taken
}

/// Reads one request: a regular file (no symlink followed) of at most [`MAX_BYTES`], of this
/// version, asked by a web user.
fn read_request(path: &Path) -> Result<Request, String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!("more than {MAX_BYTES} bytes"));
    }
    let request: Request = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if request.version != VERSION {
        return Err(format!("version {}, this service reads {VERSION}", request.version));
    }
    let user = request.who.strip_prefix("web ").map(Name::new);
    if !matches!(user, Some(Ok(_))) {
        return Err(format!("asked by {:?}, not by a web user", request.who));
    }
    Ok(request)
}

/// Does what a request asks, once checked; says in the log what came of it.
pub fn act(config: &Config, db: &mut Db, request: &Request) {
    let who = &request.who;
    match &request.what {
        What::Cancel { job } => match db.request_cancel(*job, who) {
            Ok(CancelAsked::Asked) => {
                tracing::info!(job, who, "cancel asked for");
                record_cancel(config, db, *job, who.strip_prefix("web ").unwrap_or(who), "web, by the reconciler");
            }
            Ok(CancelAsked::AlreadyAsked(by)) => tracing::info!(job, who, "cancel already asked for by {by}"),
            Ok(CancelAsked::Finished(state)) => {
                tracing::info!(job, who, "cancel of a job already {state}: nothing done")
            }
            Ok(CancelAsked::Unknown) => tracing::warn!(job, who, "cancel of a job that does not exist: nothing done"),
            Err(e) => tracing::error!(job, who, "cannot ask for the cancel: {e}"),
        },
        What::Backup { server } => run(config, db, server, &Operation::Backup, who),
        What::Restore { server, backup } => run(config, db, server, &Operation::Restore { id: backup.clone() }, who),
        // The service follows the upstream before its next pass when it takes one (`daemon.rs`).
        What::Fetch => tracing::info!(who, "a fetch of the upstream asked for"),
    }
}

/// A cancel asked in the audit trail, about the job's server when it is a job about one (its
/// owner sees the entry).
pub fn record_cancel(config: &Config, db: &Db, job: i64, who: &str, origin: &str) {
    let found = db.job(job).ok().flatten();
    let server = found
        .as_ref()
        .filter(|found| crate::alerts::ABOUT_A_SERVER.contains(&found.kind.as_str()))
        .map(|found| found.target.clone());
    let what = found.map_or_else(String::new, |found| format!(" ({} {})", found.kind, found.target));
    let entry = l4d2ctl::audit::Entry {
        who: who.to_owned(),
        action: "job-cancelled".to_owned(),
        server,
        detail: format!("job {job}{what}: cancelling asked for"),
        origin: origin.to_owned(),
    };
    l4d2ctl::audit::record_or_say(&config.root, &entry);
}

fn run(config: &Config, db: &mut Db, server: &Name, operation: &Operation, who: &str) {
    match backups::run(config, db, server, operation, who, |_| {}) {
        Ok(ran) if ran.end.succeeded() => tracing::info!(job = ran.job, %server, who, "{} done", operation.kind()),
        Ok(ran) => tracing::warn!(job = ran.job, %server, who, "{} did not succeed", operation.kind()),
        Err(e) => tracing::warn!(%server, who, "{} refused: {e}", operation.kind()),
    }
}
