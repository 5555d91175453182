//! The pages that show: the dashboard, a server, blueprints, overlays, the plan, the history
//! and one commit, jobs and one job.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

use crate::access;
use crate::app::App;
use crate::remote::HostAt;
use crate::session::Auth;
use crate::views::jobs::{Filter, JobsOf, jobs_of, visible_job, visible_jobs, visible_remote_job, visible_remote_jobs};
use crate::views::page::{base, v};
use crate::views::server::{RconHistory, server_context};
use crate::views::{catalog, dashboard, plan};
use axum::response::IntoResponse;
use left4me_state::Name;
use reconciler::remote::JobLog;

pub async fn dashboard(State(app): State<Arc<App>>, Auth(session): Auth, headers: HeaderMap) -> Response {
    app.freshen().await;
    let (context, rows) = dashboard::dashboard_context(&app, &session, &headers);
    app.render_sharing("dashboard.html", context, rows)
}

#[derive(Deserialize)]
pub struct ServerQuery {
    /// `asked`: back from asking for a retry.
    retry: Option<String>,
}

pub async fn server(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
    Query(query): Query<ServerQuery>,
    headers: HeaderMap,
) -> Response {
    app.freshen().await;
    let viewer = session.clone();
    // The owner's RCON history is read from the accounts database.
    let context = app.blocking(move |app| server_context(app, &viewer, &name, &headers, RconHistory::Read)).await;
    match context {
        Ok(Some(context)) => app.render(
            "server.html",
            context! { ..context, ..context! { retry_asked => query.retry.as_deref() == Some("asked") } },
        ),
        Ok(None) => app.not_found(),
        Err(e) => app.interrupted("drawing the server's page", &e),
    }
}

pub async fn blueprints(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    let list = catalog::blueprints(&app.current(), &session.user);
    app.render("blueprints.html", context! { ..base(&session, "blueprints"), ..context! { blueprints => list } })
}

pub async fn overlays(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    let list = catalog::overlays(&app.current(), &session.user);
    app.render("overlays.html", context! { ..base(&session, "overlays"), ..context! { overlays => list } })
}

/// What the next pass will do, with the rendered files' diffs, for the servers the user sees.
pub async fn plan(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    app.freshen().await;
    app.render("plan.html", plan::plan_context(&app, &session).await)
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    page: Option<usize>,
}

const HISTORY_PAGE: usize = 30;

/// The branch's commits, newest first; a user sees only those that touch their own objects or
/// the shared ones (see `history.rs`).
pub async fn history(State(app): State<Arc<App>>, Auth(session): Auth, Query(query): Query<HistoryQuery>) -> Response {
    let page = query.page.unwrap_or(0).min(10_000);
    let user = session.user.clone();
    let commits = app
        .blocking(move |app| {
            let (limit, skip) = (HISTORY_PAGE + 1, page * HISTORY_PAGE);
            if access::administers(&user) {
                app.repo.log(limit, skip)
            } else {
                crate::history::log(app.repo.path(), &app.config.branch, &user, limit, skip)
            }
        })
        .await;
    let mut commits = match commits {
        Ok(Ok(commits)) => commits,
        Ok(Err(e)) => return app.server_error(&e.to_string()),
        Err(e) => return app.server_error(&e.to_string()),
    };
    let more = commits.len() > HISTORY_PAGE;
    commits.truncate(HISTORY_PAGE);
    app.render(
        "history.html",
        context! {
            ..base(&session, "history"),
            ..context! { commits => v(&commits), page, more, previous => page.checked_sub(1) }
        },
    )
}

/// One commit of the branch with the diffs of the files the user may see; 404 for a commit
/// that is not on the branch or touches nothing of theirs, as for one that does not exist.
pub async fn commit(State(app): State<Arc<App>>, Auth(session): Auth, Path(rev): Path<String>) -> Response {
    let user = session.user.clone();
    let shown = app
        .blocking(move |app| {
            let Some(revision) = app.repo.commit_id(&rev) else { return Ok(None) };
            crate::history::show(app.repo.path(), &app.config.branch, &user, &revision)
        })
        .await;
    let (info, patch) = match shown {
        Ok(Ok(Some(shown))) => shown,
        Ok(Ok(None)) => return app.not_found(),
        Ok(Err(e)) => return app.server_error(&e.to_string()),
        Err(e) => return app.server_error(&e.to_string()),
    };
    app.render("commit.html", context! { ..base(&session, "history"), ..context! { commit => v(&info), patch } })
}

#[derive(Deserialize)]
pub struct JobsQuery {
    server: Option<String>,
    kind: Option<String>,
    state: Option<String>,
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

pub async fn jobs(State(app): State<Arc<App>>, Auth(session): Auth, Query(query): Query<JobsQuery>) -> Response {
    let user = session.user.clone();
    let filter = filter_of(&query);
    let found = app.blocking(move |app| visible_jobs(app, &user, &filter)).await;
    let jobs = match found {
        Ok(Ok(jobs)) => jobs,
        Ok(Err(e)) => return app.server_error(&e),
        Err(e) => return app.server_error(&e.to_string()),
    };
    jobs_page(&app, &session, &query, None, jobs, None)
}

fn filter_of(query: &JobsQuery) -> Filter {
    let owned = |value: &Option<String>| nonempty(value).map(str::to_owned);
    Filter { server: owned(&query.server), kind: owned(&query.kind), state: owned(&query.state) }
}

/// `/hosts/<host>/jobs`: another host's jobs, asked of it; this host's name shows this host's.
pub async fn host_jobs(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(host): Path<String>,
    Query(query): Query<JobsQuery>,
) -> Response {
    let host = match jobs_of(&app.current(), &host) {
        JobsOf::On(host) => host,
        JobsOf::Here => return jobs(State(app), Auth(session), Query(query)).await,
        JobsOf::Unknown => return app.unknown_host(&host),
    };
    let (user, filter, asked) = (session.user.clone(), filter_of(&query), host.clone());
    let found = app.blocking(move |app| visible_remote_jobs(app, &user, &asked, &filter)).await;
    let (jobs, problem) = match found {
        Ok(Ok(jobs)) => (jobs, None),
        Ok(Err(problem)) => (Vec::new(), Some(problem)),
        Err(e) => return app.interrupted("asking the host for its jobs", &e),
    };
    jobs_page(&app, &session, &query, Some(&host), jobs, problem)
}

/// The jobs page of this host (`on` None) or another; with hosts declared, it links each.
fn jobs_page(
    app: &App,
    session: &crate::accounts::Session,
    query: &JobsQuery,
    on: Option<&HostAt>,
    jobs: Vec<reconciler::db::Job>,
    problem: Option<String>,
) -> Response {
    let snapshot = app.current();
    let hosts: Vec<String> =
        snapshot.desired.as_ref().map_or(Vec::new(), |d| d.hosts.keys().map(Name::to_string).collect());
    let shown = on.map(|h| h.name.as_str()).or(snapshot.local_host.as_ref().map(|h| h.as_str()));
    app.render(
        "jobs.html",
        context! {
            ..base(session, "jobs"),
            ..context! {
                jobs => v(&jobs), hosts, shown, problem, on => on.map(|h| h.name.as_str()),
                local_host => snapshot.local_host.as_ref().map(|h| h.as_str()),
                server => nonempty(&query.server), kind => nonempty(&query.kind), state => nonempty(&query.state),
                kinds => ["overlay", "build", "fetch", "release", "create", "rerender", "start", "stop", "restart", "delete"],
                states => ["queued", "running", "succeeded", "failed", "cancelled"],
            }
        },
    )
}

#[derive(Deserialize)]
pub struct JobQuery {
    cancel: Option<String>,
}

pub async fn job(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(id): Path<i64>,
    Query(query): Query<JobQuery>,
) -> Response {
    let user = session.user.clone();
    let found = app
        .blocking(move |app| {
            let job = visible_job(app, &user, id)?;
            let lines = app.jobs.lock().expect("no holder of the jobs lock panics").lines(id, 0).unwrap_or_default();
            Some((job, lines))
        })
        .await;
    let (job, lines) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return app.not_found(),
        Err(e) => return app.interrupted("reading the job", &e),
    };
    let last_seq = lines.last().map(|l| l.seq).unwrap_or(0);
    let running = matches!(job.state.as_str(), "queued" | "running");
    let may_cancel = crate::access::may_cancel(&app.current(), &session.user, &job.target);
    let cancel_asked = query.cancel.as_deref() == Some("asked");
    app.render(
        "job.html",
        context! {
            ..base(&session, "jobs"),
            ..context! { job => v(&job), lines => v(&lines), last_seq, running, may_cancel, cancel_asked },
        },
    )
}

/// `/hosts/<host>/jobs/<id>`: a job of another host and its log, asked of it (and followed by
/// `/hosts/<host>/jobs/<id>/log` while it runs); this host's name goes to `/jobs/<id>`.
pub async fn host_job(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path((host, id)): Path<(String, i64)>,
) -> Response {
    let host = match jobs_of(&app.current(), &host) {
        JobsOf::On(host) => host,
        JobsOf::Here => return axum::response::Redirect::to(&format!("/jobs/{id}")).into_response(),
        JobsOf::Unknown => return app.unknown_host(&host),
    };
    let (user, asked) = (session.user.clone(), host.clone());
    let found = app.blocking(move |app| visible_remote_job(app, &user, &asked, id, 0)).await;
    let JobLog { job, lines } = match found {
        Ok(Ok(Some(log))) => log,
        Ok(Ok(None)) => return app.not_found(),
        Ok(Err(problem)) => {
            return app.render_status(
                axum::http::StatusCode::BAD_GATEWAY,
                "error.html",
                context! { ..base(&session, "jobs"), ..context! { title => format!("Host {} does not answer", host.name), message => problem } },
            );
        }
        Err(e) => return app.interrupted("asking the host for the job", &e),
    };
    let last_seq = lines.last().map(|l| l.seq).unwrap_or(0);
    let running = matches!(job.state.as_str(), "queued" | "running");
    app.render(
        "job.html",
        context! {
            ..base(&session, "jobs"),
            ..context! {
                job => v(&job), lines => v(&lines), last_seq, running, may_cancel => false, cancel_asked => false,
                on => host.name.as_str(),
            },
        },
    )
}

/// Entries on one page of the audit trail.
const AUDIT_PAGE: usize = 100;

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

/// `/audit`: the audit trail, newest first, a page at a time — every entry for an admin, the
/// entries of their own servers for anyone else.
pub async fn audit(State(app): State<Arc<App>>, Auth(session): Auth, Query(query): Query<AuditQuery>) -> Response {
    let user = session.user.clone();
    let before = query.before;
    let found = app
        .blocking(move |app| {
            let servers = access::audit_servers(&app.current(), &user);
            let scope = match &servers {
                None => l4d2ctl::audit::Scope::All,
                Some(servers) => l4d2ctl::audit::Scope::Servers(servers),
            };
            // One more than a page tells whether there is an older page.
            let filter = l4d2ctl::audit::Filter { scope, server: None, before, limit: AUDIT_PAGE + 1 };
            app.audit.entries(&filter)
        })
        .await;
    let mut entries = match found {
        Ok(Ok(entries)) => entries,
        Ok(Err(e)) => return app.server_error(&e.to_string()),
        Err(e) => return app.interrupted("reading the audit trail", &e),
    };
    let older = (entries.len() > AUDIT_PAGE).then(|| {
        entries.truncate(AUDIT_PAGE);
        entries.last().map(|e| e.id)
    });
    app.render(
        "audit.html",
        context! {
            ..base(&session, "audit"),
            ..context! { entries => v(&entries), older => older.flatten(), paged => before.is_some() }
        },
    )
}
