//! A server's backups and restores as jobs: `left4me backup`, `left4me restore` and the web's
//! requests (`requests.rs`, run by the service). Each is a job queued at once (so that it can be
//! seen and cancelled while it waits), run once its process holds the pass lock — no pass acts on
//! the server meanwhile — as `l4d2ctl backup` or `l4d2ctl restore`, its progress lines into the
//! job's log. The committed revision says which servers there are and how many backups each
//! keeps; a failed backup raises a notice (`backup-failed`) for the alerts.

use std::sync::Mutex;
use std::time::Duration;

use l4d2ctl::api;
use left4me_state::{AlertEvent, DesiredState, Name, Revision};

use crate::db::Db;
use crate::engine::{self, Config};
use crate::error::Error;
use crate::host::{self, JobEnd};

/// What is asked of a server's backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// A backup now, the oldest beyond the blueprint's `backups.keep` removed.
    Backup,
    /// The backup `id` put back (the server stopped, its data kept as one more backup first).
    Restore { id: String },
}

impl Operation {
    /// The job's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Restore { .. } => "restore",
        }
    }
}

/// How often a job that waits for the pass lock looks at the lock and at its cancelling.
const WAIT_LOOK: Duration = Duration::from_millis(250);

/// What a backup or restore job came to.
#[derive(Debug)]
pub struct Ran {
    pub job: i64,
    pub end: JobEnd,
}

/// Checks what is asked against the committed revision (and, for a restore, the server's
/// backups), then queues it as a job of `trigger` (`manual`, `web alice`) and runs it once this
/// process holds the pass lock. `queued` is told the job's id as soon as it is queued.
pub fn run(
    config: &Config,
    db: &mut Db,
    server: &Name,
    operation: &Operation,
    trigger: &str,
    queued: impl FnOnce(i64),
) -> Result<Ran, Error> {
    let (revision, desired) = committed(config)?;
    let keep = declared_keep(&desired, server, &revision)?;
    if let Operation::Restore { id } = operation {
        backup_of(config, server, id)?;
    }
    let job = db.queue_waiting_job(operation.kind(), server.as_str(), Some(revision.id()), trigger)?;
    db.append_line(job, "plan", &reason(operation, trigger, keep))?;
    queued(job);
    let Some(_lock) = wait_for_pass_lock(config, db, job)? else {
        let who = db.begin_job(job)?.unwrap_or_default();
        return Ok(Ran { job, end: cancelled_before(who) });
    };
    let command = match operation {
        Operation::Backup => api::Command::Backup { name: server.clone(), keep: Some(keep), reason: trigger.into() },
        Operation::Restore { id } => api::Command::Restore { name: server.clone(), id: id.clone() },
    };
    let end = host::run_job(&config.l4d2ctl, &Mutex::new(&mut *db), job, &command, None)?;
    if *operation == Operation::Backup && !end.succeeded() && end.cancelled.is_none() {
        let message = format!("the backup of {server} failed; its log is `left4me jobs {job}`");
        db.add_notice(AlertEvent::BackupFailed, Some(server), &message)?;
    }
    record(config, trigger, server, operation, job, &end);
    Ok(Ran { job, end })
}

/// The run in the audit trail: who asked (`manual`: the person at the host; `web <user>`), what
/// of which server, and how the job ended. A trail that cannot be written stops nothing.
fn record(config: &Config, trigger: &str, server: &Name, operation: &Operation, job: i64, end: &host::JobEnd) {
    let (who, origin) = match trigger.strip_prefix("web ") {
        Some(user) => (user.to_owned(), "web, by the reconciler".to_owned()),
        None => (l4d2ctl::overrides::operator(), l4d2ctl::audit::shell_origin()),
    };
    let outcome = if end.succeeded() {
        "succeeded"
    } else if end.cancelled.is_some() {
        "cancelled"
    } else {
        "failed"
    };
    let detail = match operation {
        Operation::Backup => format!("job {job} {outcome}"),
        Operation::Restore { id } => format!("backup {id}: job {job} {outcome}"),
    };
    let entry = l4d2ctl::audit::Entry {
        who,
        action: operation.kind().to_owned(),
        server: Some(server.to_string()),
        detail,
        origin,
    };
    l4d2ctl::audit::record_or_say(&config.root, &entry);
}

/// The backups of a declared server, newest first.
pub fn list(config: &Config, server: &Name) -> Result<Vec<api::Backup>, Error> {
    let (revision, desired) = committed(config)?;
    declared_keep(&desired, server, &revision)?;
    host::backups(&config.l4d2ctl, server)
}

/// The backup `id` of `server`, as `l4d2ctl backups` lists it; refused when it has none so named.
pub fn backup_of(config: &Config, server: &Name, id: &str) -> Result<api::Backup, Error> {
    let backups = host::backups(&config.l4d2ctl, server)?;
    backups.into_iter().find(|backup| backup.id == id).ok_or_else(|| {
        Error::Refused(format!("{server} has no backup {id:?}; `left4me backups {server}` lists the ones it has"))
    })
}

/// The branch's committed revision, which must be valid: it says which servers there are and
/// what each keeps.
fn committed(config: &Config) -> Result<(Revision, DesiredState), Error> {
    let (revision, checked) = engine::load(config, &mut engine::RevisionCache::default())?;
    match checked {
        Ok(desired) => Ok((revision, desired)),
        Err(_) => Err(Error::Refused(format!(
            "revision {} is invalid (`left4me validate` lists why): fix it first, it says how many backups \
             each server keeps",
            revision.short()
        ))),
    }
}

/// How many backups `server` keeps, when the revision declares it.
fn declared_keep(desired: &DesiredState, server: &Name, revision: &Revision) -> Result<u32, Error> {
    match desired.servers.get(server) {
        Some(declared) => Ok(desired.backups_keep(declared)),
        None => Err(Error::Refused(format!("{server} is not a server of revision {}", revision.short()))),
    }
}

fn reason(operation: &Operation, trigger: &str, keep: u32) -> String {
    match operation {
        Operation::Backup => format!("a backup asked for ({trigger}); the newest {keep} are kept"),
        Operation::Restore { id } => format!(
            "restore of backup {id} asked for ({trigger}): the server stops, its current data is kept as one more \
             backup, then it starts again if it ran"
        ),
    }
}

/// Waits for the pass lock, looking every [`WAIT_LOOK`] whether the job was cancelled meanwhile:
/// None when it was (the job never starts).
fn wait_for_pass_lock(config: &Config, db: &Db, job: i64) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, Error> {
    loop {
        if db.cancel_requested(job)?.is_some() {
            return Ok(None);
        }
        if let Some(lock) = l4d2ctl::host::try_pass_lock(&config.root).map_err(Error::Lock)? {
            return Ok(Some(lock));
        }
        std::thread::sleep(WAIT_LOOK);
    }
}

fn cancelled_before(who: String) -> JobEnd {
    JobEnd { code: 1, retry: crate::error::Retry::Permanent, outcome: None, cancelled: Some(who) }
}
