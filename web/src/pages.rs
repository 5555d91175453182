//! Pages that show: the dashboard, a server, blueprints, overlays, the plan, history, jobs,
//! `/health` and `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use left4me_state::{DesiredState, Name};
use minijinja::{Value, context};
use reconciler::report::ServerReport;
use serde::{Deserialize, Serialize};

use crate::App;
use crate::accounts::{Session, User};
use crate::auth::Auth;
use crate::snapshot::Snapshot;

/// What every signed-in page knows.
pub fn base(session: &Session, section: &str) -> Value {
    context! {
        user => context! { name => session.user.name.as_str(), admin => session.user.admin },
        csrf => session.csrf.clone(),
        section,
    }
}

/// Any serializable value, for a template.
pub fn v<T: Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// The names of the blueprints `user` may see.
pub fn visible_blueprints(snapshot: &Snapshot, user: &User) -> Vec<String> {
    let Some(desired) = &snapshot.desired else { return Vec::new() };
    desired.blueprints.values().filter(|b| may_see(user, Some(&b.owner))).map(|b| b.name.to_string()).collect()
}

/// Whether `user` may see a resource owned by `owner` (None: only the host has it).
pub fn may_see(user: &User, owner: Option<&Name>) -> bool {
    user.admin || owner.is_some_and(|owner| *owner == user.name)
}

/// One row of the server table.
#[derive(Serialize)]
pub struct Row<'a> {
    #[serde(flatten)]
    report: &'a ServerReport,
    owner: Option<&'a str>,
    blueprint: Option<&'a str>,
    desired_state: Option<&'static str>,
    connect: Option<String>,
}

/// The servers `user` may see, as table rows; `host` is the name the browser reached us by.
pub fn rows<'a>(snapshot: &'a Snapshot, user: &User, host: &str) -> Vec<Row<'a>> {
    snapshot.servers.iter().filter_map(|report| row(snapshot, report, user, host)).collect()
}

/// One server's row, when `user` may see it.
fn row<'a>(snapshot: &'a Snapshot, report: &'a ServerReport, user: &User, host: &str) -> Option<Row<'a>> {
    let declared = snapshot.desired.as_ref().and_then(|d| find(&d.servers, &report.name));
    let owner = declared.map(|s| &s.owner);
    may_see(user, owner).then(|| Row {
        report,
        owner: owner.map(Name::as_str),
        blueprint: declared.map(|s| s.blueprint.as_str()),
        desired_state: declared.map(|s| match s.state {
            left4me_state::PowerState::Running => "running",
            left4me_state::PowerState::Stopped => "stopped",
        }),
        connect: report.port.map(|port| format!("steam://connect/{host}:{port}")),
    })
}

/// Whether `user` may see the server `name`: declared and theirs, or (admins) on the host at all.
pub fn server_visible(snapshot: &Snapshot, user: &User, name: &str) -> bool {
    let declared = snapshot.desired.as_ref().and_then(|d| find(&d.servers, name));
    match declared {
        Some(server) => may_see(user, Some(&server.owner)),
        None => user.admin && snapshot.servers.iter().any(|report| report.name == name),
    }
}

fn find<'a, T>(map: &'a BTreeMap<Name, T>, name: &str) -> Option<&'a T> {
    map.get(name)
}

/// The host name the request came to, without a port: what players connect to.
pub fn request_host(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => name,
        _ => host,
    };
    host.chars().filter(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(*c)).collect()
}

/// The server table's rows as HTML, drawn once per look at the host for each (user, host name):
/// the dashboard and its live view are then a copy, however many people watch.
pub fn rows_html(app: &App, snapshot: &Arc<Snapshot>, user: &User, host: &str) -> Arc<str> {
    let key = (user.name.to_string(), user.admin, host.to_owned());
    {
        let cache = app.rows_cache.lock().expect("no holder of the rows cache panics");
        if let Some((drawn_from, drawn)) = cache.as_ref()
            && Arc::ptr_eq(drawn_from, snapshot)
            && let Some(html) = drawn.get(&key)
        {
            return html.clone();
        }
    }
    let rows = rows(snapshot, user, host);
    let blueprints = visible_blueprints(snapshot, user);
    let context = context! { rows => v(&rows), blueprints, user => context! { admin => user.admin } };
    let html: Arc<str> = app.render_fragment("server_rows.html", context).into();
    let mut cache = app.rows_cache.lock().expect("no holder of the rows cache panics");
    match cache.as_mut() {
        // The cache holds the snapshot it was drawn from, so that its address is never reused.
        Some((drawn_from, drawn)) if Arc::ptr_eq(drawn_from, snapshot) => {
            drawn.insert(key, html.clone());
        }
        _ => *cache = Some((snapshot.clone(), std::collections::HashMap::from([(key, html.clone())]))),
    }
    html
}

pub fn dashboard_context(app: &App, session: &Session, headers: &HeaderMap) -> Value {
    let snapshot = app.current();
    let host = request_host(headers);
    let rows = rows_html(app, &snapshot, &session.user, &host);
    let blueprints = visible_blueprints(&snapshot, &session.user);
    context! {
        ..base(session, "servers"),
        ..context! {
            rows => Value::from_safe_string(rows.to_string()),
            blueprints,
            revision_error => snapshot.revision_error.clone(),
            problem => snapshot.problem.clone(),
            last_pass => v(&snapshot.last_pass),
            head => snapshot.head.clone(),
            taken_at => snapshot.taken_at.clone(),
            looked => !snapshot.taken_at.is_empty(),
        }
    }
}

pub async fn dashboard(State(app): State<Arc<App>>, Auth(session): Auth, headers: HeaderMap) -> Response {
    app.freshen().await;
    app.render("dashboard.html", dashboard_context(&app, &session, &headers))
}

pub fn server_context(app: &App, session: &Session, name: &str, headers: &HeaderMap) -> Option<Value> {
    let snapshot = app.current();
    if !server_visible(&snapshot, &session.user, name) {
        return None;
    }
    let declared = snapshot.desired.as_ref().and_then(|d| find(&d.servers, name));
    let host = request_host(headers);
    let row = snapshot.servers.iter().find(|r| r.name == name).and_then(|r| row(&snapshot, r, &session.user, &host));
    let instance = find(&snapshot.instances, name);
    let server_cfg = snapshot.desired.as_ref().and_then(|d| rendered_cfg(d, name));
    let is_owner = declared.is_some_and(|s| s.owner == session.user.name);
    let history =
        if is_owner { app.accounts.rcon_history(&session.user, name, 50).unwrap_or_default() } else { vec![] };
    Some(context! {
        ..base(session, "servers"),
        ..context! {
            name,
            row => v(&row),
            declared => declared.map(|s| context! {
                owner => s.owner.as_str(), blueprint => s.blueprint.as_str(), port => s.port.number(),
                state => match s.state { left4me_state::PowerState::Running => "running", left4me_state::PowerState::Stopped => "stopped" },
                hostname => s.hostname.get().clone(), file => s.file.clone(),
            }),
            instance => v(instance),
            server_cfg,
            is_owner,
            rcon_history => history,
            head => snapshot.head.clone(),
            crash_loop => crash_loop(&snapshot, name),
            may_change => declared.is_some_and(|s| s.owner == session.user.name || session.user.admin),
        }
    })
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
    match server_context(&app, &session, &name, &headers) {
        Some(context) => app.render(
            "server.html",
            context! { ..context, ..context! { retry_asked => query.retry.as_deref() == Some("asked") } },
        ),
        None => app.not_found(),
    }
}

/// The Health of `name` while it is held back after crashing (`crash loop, next try in 4m20s`).
fn crash_loop<'a>(snapshot: &'a Snapshot, name: &str) -> Option<&'a str> {
    snapshot.plan.as_ref()?.crash_loops.get(name).map(String::as_str)
}

/// "Retry now": asks the reconciler to try a server held back after crashing at once, with a
/// request in `$ROOT/retries` — the service watches the folder, and the web app only reads the
/// reconciler's database. Whoever may change the server asks; a server not held is refused, as
/// there is nothing to cut short.
pub async fn retry(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    let snapshot = app.current();
    let Ok(server) = Name::new(name.as_str()) else { return app.not_found() };
    let declared = snapshot.desired.as_ref().and_then(|d| d.servers.get(&server));
    if !declared.is_some_and(|s| s.owner == session.user.name || session.user.admin) {
        return app.not_found();
    }
    if crash_loop(&snapshot, server.as_str()).is_none() {
        let message = format!(
            "{server} is not held back after crashing (or a retry is already asked for): there is nothing to \
             retry; the reconciler starts it whenever its revision wants it running."
        );
        return app.render_status(
            StatusCode::CONFLICT,
            "error.html",
            context! { ..base(&session, "servers"), ..context! { title => format!("{server} is not held back"), message } },
        );
    }
    let root = app.config.root.clone();
    let asking = server.clone();
    match tokio::task::spawn_blocking(move || reconciler::retries::ask(&root, &asking)).await {
        Ok(Ok(())) => {
            tracing::info!(user = %session.user.name, server = %server, "retry asked for");
            app.poke();
            Redirect::to(&format!("/servers/{server}?retry=asked")).into_response()
        }
        Ok(Err(e)) => {
            app.server_error(&format!("{e}; check that $ROOT/retries belongs to the user the web app runs as"))
        }
        Err(e) => app.server_error(&format!("asking for a retry of {server} was interrupted: {e}")),
    }
}

/// The server.cfg the revision renders for a server, its RCON password left out.
fn rendered_cfg(desired: &DesiredState, name: &str) -> Option<String> {
    let server = Name::new(name).ok()?;
    let spec = desired.instance_spec(&server)?;
    Some(spec.server_cfg(&spec.digest(), "(kept on the host, never shown)"))
}

#[derive(Deserialize)]
pub struct RconForm {
    command: String,
}

/// Runs one RCON command on the owner's server (`l4d2ctl rcon`) and shows its answer.
pub async fn rcon(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
    Form(form): Form<RconForm>,
) -> Response {
    let snapshot = app.current();
    let declared = snapshot.desired.as_ref().and_then(|d| find(&d.servers, &name));
    let Some(declared) = declared.filter(|s| s.owner == session.user.name || session.user.admin) else {
        return app.not_found();
    };
    let command = form.command.trim().to_owned();
    if command.is_empty() || command.len() > 510 || command.chars().any(|c| c.is_control()) {
        return rcon_answer(&command, "A command is one line of at most 510 characters.", true);
    }
    let _ = app.accounts.add_rcon(&session.user, &name, &command);
    let output = tokio::process::Command::new(&app.config.l4d2ctl)
        .args(["rcon", declared.name.as_str(), "--", &command])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(std::time::Duration::from_secs(10), output).await {
        Ok(Ok(output)) if output.status.success() => {
            rcon_answer(&command, String::from_utf8_lossy(&output.stdout).trim_end(), false)
        }
        Ok(Ok(output)) => rcon_answer(&command, String::from_utf8_lossy(&output.stderr).trim_end(), true),
        Ok(Err(e)) => rcon_answer(&command, &format!("cannot run l4d2ctl: {e}"), true),
        Err(_) => rcon_answer(&command, "the server did not answer within 10 s", true),
    }
}

fn rcon_answer(command: &str, answer: &str, failed: bool) -> Response {
    let class = if failed { "rcon-entry failed" } else { "rcon-entry" };
    let html = format!(
        "<div class=\"{class}\"><div class=\"rcon-command\">&gt; {}</div><pre>{}</pre></div>",
        escape(command),
        escape(answer)
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub async fn blueprints(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    let snapshot = app.current();
    let list: Vec<Value> = snapshot
        .desired
        .as_ref()
        .map(|d| {
            d.blueprints
                .values()
                .filter(|b| may_see(&session.user, Some(&b.owner)))
                .map(|b| {
                    let servers: Vec<String> =
                        d.servers.values().filter(|s| s.blueprint == b.name).map(|s| s.name.to_string()).collect();
                    context! {
                        name => b.name.to_string(), owner => b.owner.to_string(), file => b.file.clone(),
                        overlays => b.overlays.iter().map(Name::to_string).collect::<Vec<_>>(),
                        arguments => b.arguments.iter().map(|a| a.get().clone()).collect::<Vec<_>>(),
                        config => b.config.iter().map(|c| c.get().clone()).collect::<Vec<_>>(),
                        rollout => rollout_name(b.rollout),
                        servers,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    app.render("blueprints.html", context! { ..base(&session, "blueprints"), ..context! { blueprints => list } })
}

pub fn rollout_name(rollout: left4me_state::Rollout) -> &'static str {
    match rollout {
        left4me_state::Rollout::Immediate => "immediate",
        left4me_state::Rollout::WhenEmpty => "when-empty",
        left4me_state::Rollout::NextStart => "next-start",
    }
}

pub async fn overlays(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    let snapshot = app.current();
    let list: Vec<Value> = snapshot
        .desired
        .as_ref()
        .map(|d| {
            d.overlays
                .values()
                .map(|o| {
                    let files: Vec<String> = match &o.content {
                        left4me_state::OverlayContent::Files(files) => files.iter().map(|f| f.path.clone()).collect(),
                        left4me_state::OverlayContent::Script { .. } => vec!["build.sh".into()],
                        left4me_state::OverlayContent::Workshop(items) => {
                            items.iter().map(|i| format!("workshop item {}", i.get())).collect()
                        }
                    };
                    let folder = o.file.trim_end_matches("overlay.yaml").to_owned();
                    context! {
                        name => o.name.to_string(), file => o.file.clone(), folder,
                        kind => format!("{:?}", o.content.overlay_type()).to_lowercase(),
                        description => o.description.clone(), files, digest => o.digest.as_str().to_owned(),
                        // Another user's blueprints are theirs to know of.
                        used_by => d.blueprints.values()
                            .filter(|b| b.overlays.contains(&o.name) && may_see(&session.user, Some(&b.owner)))
                            .map(|b| b.name.to_string()).collect::<Vec<_>>(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    app.render("overlays.html", context! { ..base(&session, "overlays"), ..context! { overlays => list } })
}

/// What the next pass will do, with the rendered files' diffs, for the servers the user sees.
pub async fn plan(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    app.freshen().await;
    let snapshot = app.current();
    let Some(plan) = snapshot.plan.clone() else {
        return app.render(
            "plan.html",
            context! { ..base(&session, "plan"), ..context! { problem => snapshot.problem.clone(), revision_error => snapshot.revision_error.clone() } },
        );
    };
    let visible = |server: &str| {
        let owner = snapshot.desired.as_ref().and_then(|d| find(&d.servers, server)).map(|s| &s.owner);
        may_see(&session.user, owner)
    };
    let mut steps = Vec::new();
    for step in plan.steps.iter().filter(|s| visible(s.server.as_str())) {
        let diff = match &step.action {
            reconciler::plan::Action::Rerender { spec } | reconciler::plan::Action::Create { spec } => {
                let config = app.config.clone();
                let server = step.server.clone();
                let creating = matches!(step.action, reconciler::plan::Action::Create { .. });
                let current = if creating {
                    Ok(String::new())
                } else {
                    tokio::task::spawn_blocking(move || reconciler::engine::rendered(&config, &server))
                        .await
                        .unwrap_or_else(|e| Err(reconciler::engine::Error::Host(e.to_string())))
                };
                Some(match current {
                    Ok(current) => crate::edit::unified_diff(&current, &spec.to_json(), step.server.as_str()),
                    Err(e) => format!("(no diff: {e})"),
                })
            }
            _ => None,
        };
        steps.push(context! {
            server => step.server.to_string(), action => step.action.name(), reason => step.reason.clone(), diff,
        });
    }
    // The host's own parts, apart from any one server: for admins.
    let overlays: Vec<String> =
        if session.user.admin { plan.overlays.iter().map(Name::to_string).collect() } else { vec![] };
    let units: Vec<String> = if session.user.admin { plan.units.clone() } else { vec![] };
    let waiting: Vec<Value> = plan
        .waiting
        .iter()
        .filter(|(server, _)| visible(server.as_str()))
        .map(|(server, why)| context! { server => server.to_string(), why => why.clone() })
        .collect();
    app.render(
        "plan.html",
        context! {
            ..base(&session, "plan"),
            ..context! {
                steps, units, overlays, waiting, held => plan.held, head => snapshot.head.clone(),
                revision_error => snapshot.revision_error.clone(), problem => snapshot.problem.clone(),
            }
        },
    )
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
    let worker = app.clone();
    let user = session.user.clone();
    let commits = tokio::task::spawn_blocking(move || {
        let (limit, skip) = (HISTORY_PAGE + 1, page * HISTORY_PAGE);
        if user.admin {
            worker.repo.log(limit, skip)
        } else {
            crate::history::log(worker.repo.path(), &worker.config.branch, &user, limit, skip)
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
    let Some(revision) = app.repo.commit_id(&rev) else { return app.not_found() };
    let worker = app.clone();
    let user = session.user.clone();
    let shown = tokio::task::spawn_blocking(move || {
        crate::history::show(worker.repo.path(), &worker.config.branch, &user, &revision)
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

/// Whether `user` may see the jobs of `target` (a server, or an overlay for admins).
fn may_see_target(snapshot: &Snapshot, user: &User, target: &str) -> bool {
    let owner = snapshot.desired.as_ref().and_then(|d| find(&d.servers, target)).map(|s| &s.owner);
    may_see(user, owner)
}

pub async fn jobs(State(app): State<Arc<App>>, Auth(session): Auth, Query(query): Query<JobsQuery>) -> Response {
    let snapshot = app.current();
    let found = app.jobs.lock().expect("no holder of the jobs lock panics").jobs_matching(
        nonempty(&query.server),
        nonempty(&query.kind),
        nonempty(&query.state),
        500,
    );
    let jobs = match found {
        Ok(jobs) => jobs,
        Err(e) => return app.server_error(&e.to_string()),
    };
    let jobs: Vec<_> = jobs.into_iter().filter(|j| may_see_target(&snapshot, &session.user, &j.target)).collect();
    let jobs = match owners_jobs(&app, &session.user, jobs).await {
        Ok(jobs) => jobs.into_iter().take(200).collect::<Vec<_>>(),
        Err(e) => return app.server_error(&e),
    };
    app.render(
        "jobs.html",
        context! {
            ..base(&session, "jobs"),
            ..context! {
                jobs => v(&jobs),
                server => nonempty(&query.server), kind => nonempty(&query.kind), state => nonempty(&query.state),
                kinds => ["overlay", "build", "fetch", "release", "create", "rerender", "start", "stop", "restart", "delete"],
                states => ["queued", "running", "succeeded", "failed", "cancelled"],
            }
        },
    )
}

/// Of the jobs of servers that are `user`'s now, those run since each became theirs: a server
/// deleted and made again under its name by someone else is a new server, and the jobs of the
/// old one are not the new owner's. One walk of the history, whatever the number of jobs.
async fn owners_jobs(
    app: &Arc<App>,
    user: &User,
    jobs: Vec<reconciler::db::Job>,
) -> Result<Vec<reconciler::db::Job>, String> {
    if user.admin || jobs.is_empty() {
        return Ok(jobs);
    }
    let servers: std::collections::BTreeSet<String> = jobs.iter().map(|j| j.target.clone()).collect();
    let (worker, reader) = (app.clone(), user.clone());
    let since = tokio::task::spawn_blocking(move || {
        crate::history::OwnedSince::read(worker.repo.path(), &worker.config.branch, &reader, &servers)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(jobs.into_iter().filter(|j| since.covers(&j.target, j.revision.as_deref())).collect())
}

/// A job the user may see, or None.
pub async fn visible_job(app: &Arc<App>, user: &User, id: i64) -> Option<reconciler::db::Job> {
    let job = app.jobs.lock().expect("no holder of the jobs lock panics").job(id).ok().flatten()?;
    if !may_see_target(&app.current(), user, &job.target) {
        return None;
    }
    owners_jobs(app, user, vec![job]).await.ok()?.pop()
}

pub async fn job(State(app): State<Arc<App>>, Auth(session): Auth, Path(id): Path<i64>) -> Response {
    let Some(job) = visible_job(&app, &session.user, id).await else { return app.not_found() };
    let lines = app.jobs.lock().expect("no holder of the jobs lock panics").lines(id, 0).unwrap_or_default();
    let last_seq = lines.last().map(|l| l.seq).unwrap_or(0);
    let running = matches!(job.state.as_str(), "queued" | "running");
    app.render(
        "job.html",
        context! { ..base(&session, "jobs"), ..context! { job => v(&job), lines => v(&lines), last_seq, running } },
    )
}

/// For monitoring: 200 while the app can read its databases and the host has been looked at.
/// Why not is said in general words to anyone, and in full to a signed-in admin (and in the
/// log): the details name paths and programs of the host.
pub async fn health(State(app): State<Arc<App>>) -> Response {
    let snapshot = app.latest();
    let accounts = app.accounts.users().map(|_| ());
    if let Err(e) = &accounts {
        tracing::error!("health: {e}");
    }
    let looked = !snapshot.taken_at.is_empty();
    let status = if accounts.is_ok() && looked { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    // Whoever asks (a monitor, anyone) reads general words, and /health reads no session, so
    // that it costs what a monitor's poll should; the details are in the log and, for signed-in
    // users, on the dashboard.
    let accounts = accounts.err().map(|_| "the accounts database cannot be read".to_owned());
    let problem = snapshot.problem.as_ref().map(|_| "the host cannot be looked at".to_owned());
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "accounts": accounts,
        "host_looked_at": snapshot.taken_at,
        "problem": problem,
        "revision_error": snapshot.revision_error.is_some(),
    });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let snapshot = app.latest();
    let mut out = String::new();
    let mut by_sync: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_health: BTreeMap<String, u64> = BTreeMap::new();
    for report in &snapshot.servers {
        *by_sync.entry(format!("{:?}", report.sync)).or_default() += 1;
        *by_health.entry(format!("{:?}", report.health)).or_default() += 1;
    }
    out.push_str("# HELP left4me_servers Servers by sync status.\n# TYPE left4me_servers gauge\n");
    for sync in ["Synced", "OutOfSync", "Overridden", "Suspended"] {
        let _ = writeln!(out, "left4me_servers{{sync=\"{sync}\"}} {}", by_sync.get(sync).unwrap_or(&0));
    }
    out.push_str("# HELP left4me_servers_health Servers by health.\n# TYPE left4me_servers_health gauge\n");
    for health in ["Running", "Starting", "Degraded", "Stopped", "Failed", "Unknown"] {
        let _ = writeln!(out, "left4me_servers_health{{health=\"{health}\"}} {}", by_health.get(health).unwrap_or(&0));
    }
    out.push_str("# HELP left4me_players Human players on a server (A2S).\n# TYPE left4me_players gauge\n");
    out.push_str("# HELP left4me_max_players Player slots of a server (A2S).\n# TYPE left4me_max_players gauge\n");
    for report in &snapshot.servers {
        if let (Some(players), Some(max)) = (report.players, report.max_players) {
            let _ = writeln!(out, "left4me_players{{server=\"{}\"}} {players}", report.name);
            let _ = writeln!(out, "left4me_max_players{{server=\"{}\"}} {max}", report.name);
        }
    }
    let (events, counts) = {
        let db = app.jobs.lock().expect("no holder of the jobs lock panics");
        (db.events(100).unwrap_or_default(), db.job_counts().unwrap_or_default())
    };
    let passes: Vec<f64> = events
        .iter()
        .filter(|e| e.kind == "reconcile")
        .filter_map(|e| e.duration_ms)
        .map(|ms| ms as f64 / 1000.0)
        .collect();
    out.push_str(
        "# HELP left4me_reconcile_pass_seconds Reconcile pass durations (the latest 100 passes).\n# TYPE left4me_reconcile_pass_seconds summary\n",
    );
    let mut sorted = passes.clone();
    sorted.sort_by(f64::total_cmp);
    for q in [0.5, 0.9, 0.99] {
        if let Some(value) = quantile(&sorted, q) {
            let _ = writeln!(out, "left4me_reconcile_pass_seconds{{quantile=\"{q}\"}} {value}");
        }
    }
    let _ = writeln!(out, "left4me_reconcile_pass_seconds_sum {}", passes.iter().sum::<f64>());
    let _ = writeln!(out, "left4me_reconcile_pass_seconds_count {}", passes.len());
    out.push_str("# HELP left4me_jobs Jobs kept, by kind and outcome.\n# TYPE left4me_jobs gauge\n");
    for (kind, state, count) in counts {
        let _ = writeln!(out, "left4me_jobs{{kind=\"{kind}\",state=\"{state}\"}} {count}");
    }
    out.push_str(
        "# HELP left4me_revision_valid Whether the branch's commit is valid.\n# TYPE left4me_revision_valid gauge\n",
    );
    let _ = writeln!(out, "left4me_revision_valid {}", u8::from(snapshot.revision_error.is_none()));
    out.push_str("# HELP left4me_web_live_views Live views (server-sent event streams) open.\n# TYPE left4me_web_live_views gauge\n");
    let _ = writeln!(out, "left4me_web_live_views {}", app.streams.open());
    out.push_str("# HELP left4me_web_console_followers Server consoles followed (one l4d2ctl logs each).\n# TYPE left4me_web_console_followers gauge\n");
    let _ = writeln!(out, "left4me_web_console_followers {}", app.streams.followers());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(index).copied()
}
