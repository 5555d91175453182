//! What a server's page does to the server at once, without a commit: "Retry now" and one RCON
//! command.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use left4me_state::Name;
use minijinja::context;
use serde::Deserialize;

use crate::access;
use crate::app::App;
use crate::ctl::{self, RconAnswer};
use crate::session::Auth;
use crate::text::escape;
use crate::views::page::base;
use crate::views::server::crash_loop;

/// "Retry now": asks the reconciler to try a server held back after crashing at once, with a
/// request in `$ROOT/retries` — the service watches the folder, and the web app only reads the
/// reconciler's database. Whoever may change the server asks; a server not held is refused, as
/// there is nothing to cut short.
pub async fn retry(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    let snapshot = app.current();
    let Ok(server) = Name::new(name.as_str()) else { return app.not_found() };
    let declared = snapshot.desired.as_ref().and_then(|d| d.servers.get(&server));
    if !declared.is_some_and(|s| access::may_change(&session.user, &s.owner)) {
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
    let asking = server.clone();
    match app.blocking(move |app| reconciler::retries::ask(&app.config.root, &asking)).await {
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

#[derive(Deserialize)]
pub struct RconForm {
    command: String,
}

/// Runs one RCON command on the owner's server (`l4d2ctl rcon`) and shows its answer.
pub async fn rcon(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<RconForm>,
) -> Response {
    let snapshot = app.current();
    let declared = snapshot.desired.as_ref().and_then(|d| d.servers.get(name.as_str()));
    let Some(declared) = declared.filter(|s| access::may_change(&session.user, &s.owner)) else {
        return app.not_found();
    };
    let command = form.command.trim().to_owned();
    if command.is_empty() || command.len() > 510 || command.chars().any(|c| c.is_control()) {
        return rcon_answer(&command, "A command is one line of at most 510 characters.", true);
    }
    let (user, server, kept) = (session.user.clone(), name.clone(), command.clone());
    // Kept in the history whatever comes of it; a history that cannot be written costs no command.
    let _ = app.blocking(move |app| app.accounts.add_rcon(&user, &server, &kept)).await;
    let address = app.trusted_proxies.client(peer.ip(), &headers);
    match ctl::rcon(&app.config.l4d2ctl, &declared.name, &command, &session.user.name, address).await {
        RconAnswer::Answered(answer) => rcon_answer(&command, &answer, false),
        RconAnswer::Failed(problem) => rcon_answer(&command, &problem, true),
        RconAnswer::NotRun(e) => rcon_answer(&command, &format!("cannot run l4d2ctl: {e}"), true),
        RconAnswer::TimedOut => rcon_answer(&command, "the server did not answer within 10 s", true),
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
