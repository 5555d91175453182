//! A server's backups, for its owner and admins: the list (`l4d2ctl backups --json`), "Back up
//! now", a restore previewed and confirmed, a download; and a job's Cancel. What changes the host
//! is asked of the service with a request in `$ROOT/requests/` (`reconciler::requests`): the web
//! only reads the reconciler's database. Anyone else's server, a backup the listing does not name
//! and a job not theirs answer 404, as what does not exist.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use l4d2ctl::api::Backup;
use left4me_state::Name;
use minijinja::context;
use reconciler::requests::What;
use serde::Deserialize;

use crate::access;
use crate::accounts::Session;
use crate::app::App;
use crate::ctl;
use crate::handlers::stream;
use crate::remote::{self, HostAt};
use crate::session::Auth;
use crate::views::jobs::visible_job;
use crate::views::page::{base, v};
use reconciler::remote::Ask;

#[derive(Deserialize)]
pub struct Asked {
    asked: Option<String>,
}

/// The backups of a server, with "Back up now", Restore and Download.
pub async fn list(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
    Query(query): Query<Asked>,
) -> Response {
    let Some(server) = backed_up(&app, &session, &name) else { return app.not_found() };
    let elsewhere = app.current().elsewhere(&name);
    let on = elsewhere.as_ref().map(|h| h.name.to_string());
    let listing = app.blocking(move |app| backups_of(app, &server, elsewhere)).await;
    let (backups, problem) = match listing {
        Ok(Ok(backups)) => (backups, None),
        Ok(Err(problem)) => (Vec::new(), Some(problem)),
        Err(e) => return app.interrupted("reading the backups", &e),
    };
    let asked = query.asked.filter(|asked| matches!(asked.as_str(), "backup" | "restore"));
    app.render(
        "backups.html",
        context! { ..base(&session, "servers"), ..context! { name, backups => v(&backups), problem, asked, elsewhere => on } },
    )
}

/// "Back up now": asks the service for a backup job.
pub async fn back_up(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some(server) = backed_up(&app, &session, &name) else { return app.not_found() };
    if let Some(refused) = on_other_host(&app, &session, &name, "backed up") {
        return refused;
    }
    let from = Origin { peer, headers: &headers };
    ask(&app, &session, from, What::Backup { server }, &format!("/servers/{name}/backups?asked=backup")).await
}

/// What a restore will do, before it is confirmed.
pub async fn restore_preview(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = on_other_host(&app, &session, &name, "restored") {
        return refused;
    }
    let (_, backup) = match listed(&app, &session, &name, id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    app.render("restore.html", context! { ..base(&session, "servers"), ..context! { name, backup => v(&backup) } })
}

/// The restore, confirmed: asks the service for a restore job.
pub async fn restore(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = on_other_host(&app, &session, &name, "restored") {
        return refused;
    }
    let (server, backup) = match listed(&app, &session, &name, id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let what = What::Restore { server, backup: backup.id };
    let from = Origin { peer, headers: &headers };
    ask(&app, &session, from, what, &format!("/servers/{name}/backups?asked=restore")).await
}

/// The backup's `.tar.gz`, streamed. Its path is made of the checked server name and an id the
/// listing names (and that is a plain file name), never of the request's words; the file is
/// opened without following a symlink.
pub async fn download(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = on_other_host(&app, &session, &name, "downloaded") {
        return refused;
    }
    let (server, backup) = match listed(&app, &session, &name, id).await {
        Ok((server, backup)) if backup.local => (server, backup),
        Ok(_) => return app.not_found(),
        Err(response) => return response,
    };
    let path = app.config.root.join("backups").join(server.as_str()).join(format!("{}.tar.gz", backup.id));
    let opened = app
        .blocking(move |_| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| (path, e))
        })
        .await;
    let file = match opened {
        Ok(Ok(file)) => file,
        Ok(Err((_, e))) if e.kind() == std::io::ErrorKind::NotFound => return app.not_found(),
        Ok(Err((path, e))) => return app.server_error(&format!("cannot read {}: {e}", path.display())),
        Err(e) => return app.interrupted("opening the backup", &e),
    };
    let filename = format!("{server}-{}.tar.gz", backup.id);
    (
        [
            (header::CONTENT_TYPE, "application/gzip".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        stream::file_body(file),
    )
        .into_response()
}

/// Cancel, on a job's page: asks the service to cancel a queued or running job its owner (or an
/// admin) sees.
pub async fn cancel(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let user = session.user.clone();
    let found = app.blocking(move |app| visible_job(app, &user, id)).await;
    let job = match found {
        Ok(Some(job)) if access::may_cancel(&app.current(), &session.user, &job.target) => job,
        Ok(_) => return app.not_found(),
        Err(e) => return app.interrupted("reading the job", &e),
    };
    if !matches!(job.state.as_str(), "queued" | "running") {
        let message = format!("Job {id} has already {}: there is nothing to cancel.", job.state);
        return app.render_status(
            StatusCode::CONFLICT,
            "error.html",
            context! { ..base(&session, "jobs"), ..context! { title => format!("Job {id} has ended"), message } },
        );
    }
    let from = Origin { peer, headers: &headers };
    ask(&app, &session, from, What::Cancel { job: id }, &format!("/jobs/{id}?cancel=asked")).await
}

/// The server `name` when it is declared and `session`'s user may handle its backups.
fn backed_up(app: &App, session: &Session, name: &str) -> Option<Name> {
    let snapshot = app.current();
    let server = snapshot.desired.as_ref()?.servers.get(name)?;
    access::may_back_up(&session.user, &server.owner).then(|| server.name.clone())
}

/// The backups of `server`, from this host's l4d2ctl or from the host it runs on.
fn backups_of(app: &App, server: &Name, elsewhere: Option<HostAt>) -> Result<Vec<Backup>, String> {
    match elsewhere {
        Some(host) => remote::ask_json(&app.ssh, &host, &Ask::Backups { server: server.clone() }, remote::ASK_TIMEOUT)
            .map_err(|e| e.of(&host.name)),
        None => ctl::backups(&app.config.l4d2ctl, server),
    }
}

/// A backup of a server of another host is taken, restored and downloaded there: the web asks
/// this host's service only. The answer saying so (409), for a server the user may back up.
fn on_other_host(app: &App, session: &Session, name: &str, done: &str) -> Option<Response> {
    let host = app.current().elsewhere(name)?;
    let message = format!(
        "{name} runs on host {0}: its backups are kept there and {done} there (`left4me backup {name}`, `left4me restore` on {0}).",
        host.name
    );
    Some(app.render_status(
        StatusCode::CONFLICT,
        "error.html",
        context! { ..base(session, "servers"), ..context! { title => format!("{name} is on host {}", host.name), message } },
    ))
}

/// The server `name` and its backup `id`, when `session`'s user may handle its backups, the
/// listing names that backup and it is a plain file name; else the answer (not found).
async fn listed(app: &Arc<App>, session: &Session, name: &str, id: String) -> Result<(Name, Backup), Response> {
    let Some(server) = backed_up(app, session, name).filter(|_| is_plain(&id)) else {
        return Err(app.not_found());
    };
    let asked = server.clone();
    match app.blocking(move |app| backups_of(app, &asked, None)).await {
        Ok(Ok(backups)) => match backups.into_iter().find(|backup| backup.id == id) {
            Some(backup) => Ok((server, backup)),
            None => Err(app.not_found()),
        },
        Ok(Err(problem)) => Err(app.server_error(&format!("cannot list the backups: {problem}"))),
        Err(e) => Err(app.interrupted("reading the backups", &e)),
    }
}

/// An id as l4d2ctl makes them (`2026-12-01T06-00-00Z`), by l4d2ctl's own rule: nothing that
/// could name another folder.
fn is_plain(id: &str) -> bool {
    l4d2ctl::backup::parse_id(id).is_ok()
}

/// Where a request came from: its connection and headers (a trusted proxy's
/// `X-Forwarded-For`).
struct Origin<'h> {
    peer: SocketAddr,
    headers: &'h HeaderMap,
}

/// Writes the request, records it in the audit trail as the user's, and sends the browser to
/// `then`.
async fn ask(app: &Arc<App>, session: &Session, from: Origin<'_>, what: What, then: &str) -> Response {
    let user = session.user.name.clone();
    let shown = format!("{what:?}");
    let address = app.trusted_proxies.client(from.peer.ip(), from.headers);
    let (action, server, detail) = match &what {
        What::Cancel { job } => ("cancel-asked", None, format!("job {job}")),
        What::Backup { server } => ("backup-asked", Some(server.to_string()), String::new()),
        What::Restore { server, backup } => ("restore-asked", Some(server.to_string()), format!("backup {backup}")),
        // A fetch is asked by another host over SSH (`left4me remote`), never from a page here.
        What::Fetch => ("fetch-asked", None, String::new()),
    };
    // One hop: the request, then (once it is made) its entry in the audit trail.
    let asked = app.blocking(move |app| {
        let asked = reconciler::requests::ask(&app.config.root, what, &user);
        if asked.is_ok() {
            app.audit.record(user.as_str(), action, server.as_deref(), &detail, address);
        }
        asked
    });
    match asked.await {
        Ok(Ok(())) => {
            tracing::info!(user = %session.user.name, request = shown, "request made");
            Redirect::to(then).into_response()
        }
        Ok(Err(e)) => {
            app.server_error(&format!("{e}; check that $ROOT/requests belongs to the user the web app runs as"))
        }
        Err(e) => app.interrupted("making the request", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::is_plain;

    #[test]
    fn only_a_plain_file_name_is_an_id() {
        assert!(is_plain("2026-12-01T06-00-00Z"));
        for bad in ["", "..", "../coop-2/2026", "/etc/passwd", ".hidden", "a/b", "a\0b", &"x".repeat(65)] {
            assert!(!is_plain(bad), "{bad:?}");
        }
    }
}
