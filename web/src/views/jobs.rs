//! The jobs a user may see: of servers that are theirs, those run since each became theirs (a
//! server deleted and made again under its name by someone else is a new server). Everything
//! here reads the reconciler's database (or asks another host for its jobs) and the history, and
//! runs on the blocking pool.

use std::collections::BTreeSet;

use reconciler::db::Job;
use reconciler::remote::{Ask, JobLog, MAX_JOBS};

use crate::access;
use crate::accounts::User;
use crate::app::App;
use crate::history::OwnedSince;
use crate::remote::{self, ASK_TIMEOUT, HostAt};
use crate::snapshot::Snapshot;

/// Whose jobs a URL names: this host's (`/jobs`), or another declared host's
/// (`/hosts/<host>/jobs`).
pub enum JobsOf {
    Here,
    On(HostAt),
    /// A name the revision declares no host of: nothing is asked.
    Unknown,
}

/// The host `name` of a URL: this host, another declared host, or no host at all. The address
/// asked is the revision's, never the URL's.
pub fn jobs_of(snapshot: &Snapshot, name: &str) -> JobsOf {
    if snapshot.local_host.as_ref().is_some_and(|local| local.as_str() == name) {
        return JobsOf::Here;
    }
    snapshot.other_host(name).map_or(JobsOf::Unknown, JobsOf::On)
}

/// Jobs listed at most, of the 500 newest that match.
pub const LISTED: usize = 200;

/// What the jobs page filters on: a server, a kind, a state (each None: any).
pub struct Filter {
    pub server: Option<String>,
    pub kind: Option<String>,
    pub state: Option<String>,
}

/// The newest jobs that match `filter` and that `user` may see.
pub fn visible_jobs(app: &App, user: &User, filter: &Filter) -> Result<Vec<Job>, String> {
    let snapshot = app.current();
    let jobs = app
        .jobs
        .lock()
        .expect("no holder of the jobs lock panics")
        .jobs_matching(filter.server.as_deref(), filter.kind.as_deref(), filter.state.as_deref(), 500)
        .map_err(|e| e.to_string())?;
    let jobs: Vec<_> = jobs.into_iter().filter(|j| access::target_visible(&snapshot, user, &j.target)).collect();
    Ok(owners_jobs(app, user, jobs)?.into_iter().take(LISTED).collect())
}

/// The newest jobs of another host that match `filter` and that `user` may see. Err: why the
/// host gave none ("host c does not answer: …").
pub fn visible_remote_jobs(app: &App, user: &User, host: &HostAt, filter: &Filter) -> Result<Vec<Job>, String> {
    let snapshot = app.current();
    let jobs: Vec<Job> =
        remote::ask_json(&app.ssh, host, &Ask::Jobs { limit: MAX_JOBS }, ASK_TIMEOUT).map_err(|e| e.of(&host.name))?;
    let matches = |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
    let jobs: Vec<_> = jobs
        .into_iter()
        .filter(|j| {
            matches(&filter.server, &j.target) && matches(&filter.kind, &j.kind) && matches(&filter.state, &j.state)
        })
        .filter(|j| access::target_visible(&snapshot, user, &j.target))
        .collect();
    Ok(owners_jobs(app, user, jobs)?.into_iter().take(LISTED).collect())
}

/// A job of another host and its log lines after `after`, when the user may see it; Ok(None)
/// for a job that is not there or not theirs.
pub fn visible_remote_job(
    app: &App,
    user: &User,
    host: &HostAt,
    id: i64,
    after: i64,
) -> Result<Option<JobLog>, String> {
    let asked = Ask::Job { id, after };
    let log: JobLog = match remote::ask_json(&app.ssh, host, &asked, ASK_TIMEOUT) {
        Ok(log) => log,
        // "there is no job <id>": the host's own words, for a job it does not have.
        Err(remote::AskError::Refused(_)) => return Ok(None),
        Err(e) => return Err(e.of(&host.name)),
    };
    if !access::target_visible(&app.current(), user, &log.job.target) {
        return Ok(None);
    }
    let JobLog { job, lines } = log;
    Ok(owners_jobs(app, user, vec![job])?.pop().map(|job| JobLog { job, lines }))
}

/// A job the user may see, or None.
pub fn visible_job(app: &App, user: &User, id: i64) -> Option<Job> {
    let job = app.jobs.lock().expect("no holder of the jobs lock panics").job(id).ok().flatten()?;
    if !access::target_visible(&app.current(), user, &job.target) {
        return None;
    }
    owners_jobs(app, user, vec![job]).ok()?.pop()
}

/// Of the jobs of servers that are `user`'s now, those run since each became theirs. One walk
/// of the history, whatever the number of jobs.
fn owners_jobs(app: &App, user: &User, jobs: Vec<Job>) -> Result<Vec<Job>, String> {
    if access::administers(user) || jobs.is_empty() {
        return Ok(jobs);
    }
    let servers: BTreeSet<String> = jobs.iter().map(|j| j.target.clone()).collect();
    let since = OwnedSince::read(app.repo.path(), &app.config.branch, user, &servers).map_err(|e| e.to_string())?;
    Ok(jobs.into_iter().filter(|j| since.covers(&j.target, j.revision.as_deref())).collect())
}
