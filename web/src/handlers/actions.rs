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
use crate::remote::{self, AskError, HostAt};
use crate::session::Auth;
use crate::text::escape;
use crate::views::page::base;
use crate::views::server::crash_loop;
use reconciler::remote::Ask;

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
    if let Some(host) = snapshot.elsewhere(server.as_str()) {
        let message = format!(
            "{server} runs on host {}: a retry is asked there (`left4me retry {server}` on {0}), or it comes \
             by itself when its wait ends.",
            host.name
        );
        return app.render_status(
            StatusCode::CONFLICT,
            "error.html",
            context! { ..base(&session, "servers"), ..context! { title => format!("{server} is on host {}", host.name), message } },
        );
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
    let answer = match snapshot.elsewhere(name.as_str()) {
        Some(host) => remote_rcon(&app, host, &declared.name, &command, &session.user.name, address).await,
        None => ctl::rcon(&app.config.l4d2ctl, &declared.name, &command, &session.user.name, address).await,
    };
    match answer {
        RconAnswer::Answered(answer) => rcon_answer(&command, &answer, false),
        RconAnswer::Failed(problem) => rcon_answer(&command, &problem, true),
        RconAnswer::NotRun(e) => rcon_answer(&command, &format!("cannot run l4d2ctl: {e}"), true),
        RconAnswer::TimedOut => rcon_answer(&command, "the server did not answer within 10 s", true),
    }
}

/// One RCON command on a server of another host, asked of its `left4me remote`: there,
/// `l4d2ctl rcon --as <user> --from <address>` records it in that host's audit trail as the
/// user's, as here.
async fn remote_rcon(
    app: &Arc<App>,
    host: HostAt,
    server: &Name,
    command: &str,
    user: &Name,
    from: std::net::IpAddr,
) -> RconAnswer {
    let asked = Ask::Rcon { server: server.clone(), user: user.clone(), from, command: command.to_owned() };
    let answer =
        app.blocking(move |app| remote::ask(&app.ssh, &host, &asked, ctl::RCON_TIMEOUT).map_err(|e| (host, e)));
    match answer.await {
        Ok(Ok(answer)) => RconAnswer::Answered(String::from_utf8_lossy(&answer).trim_end().to_owned()),
        Ok(Err((_, AskError::TimedOut(_)))) => RconAnswer::TimedOut,
        Ok(Err((_, AskError::Refused(words)))) => RconAnswer::Failed(words),
        Ok(Err((host, e))) => RconAnswer::Failed(e.of(&host.name)),
        Err(e) => RconAnswer::Failed(format!("asking the host was interrupted: {e}")),
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
