//! The jobs a user may see: of servers that are theirs, those run since each became theirs (a
//! server deleted and made again under its name by someone else is a new server). Everything
//! here reads the reconciler's database and the history, and runs on the blocking pool.

use std::collections::BTreeSet;

use reconciler::db::Job;

use crate::access;
use crate::accounts::User;
use crate::app::App;
use crate::history::OwnedSince;

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
