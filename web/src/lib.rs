//! The left4me web app: people edit the desired state as reviewed diffs that become commits of
//! the state repo, and watch servers, plans, jobs and logs live.
//!
//! The web talks to the host only through the state repo (commits), the reconciler's database
//! (read) and `l4d2ctl` (status, logs, RCON), and to the other hosts the revision declares only
//! through `ssh` to their `left4me remote`; it never runs systemctl and holds no root.
//!
//! This file is the table of contents and the router. The rooms, from the bottom up: the
//! stores (`accounts`, `repo`, `history`), the look at the host (`snapshot`) and at the other
//! hosts (`hosts`), the only runner of `l4d2ctl` (`ctl`) and of `ssh` (`remote`), the rule of who may see or change what (`access`), the shared state
//! (`app`), the session guard (`session`); then what the pages show (`views/`), the handlers
//! (`handlers/`), the forms (`forms/`), the raw editor (`editor`) and saving (`save/`).

mod access;
pub mod accounts;
pub mod app;
mod audit;
pub mod auth;
mod ctl;
mod editor;
mod forms;
mod gamelog;
mod handlers;
mod history;
mod hosts;
pub mod live;
mod remote;
pub mod repo;
mod save;
mod session;
pub mod snapshot;
mod templates;
mod text;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use crate::app::{App, Options, web_db};
use crate::forms::{blueprint, server};
use crate::handlers::{actions, admin, assets, backups, events, files, login, monitor, pages};
use crate::save::{confirm, revert};

/// The app's routes.
pub fn router(app: Arc<App>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::dashboard))
        .route("/servers/new", get(server::new_server).post(server::save_server_form))
        .route("/servers/{name}", get(pages::server))
        .route("/servers/{name}/edit", get(server::edit_server).post(server::save_server_form))
        .route("/servers/{name}/power", post(server::power))
        .route("/servers/{name}/delete", post(editor::delete_preview))
        .route("/servers/{name}/rcon", post(actions::rcon))
        .route("/servers/{name}/retry", post(actions::retry))
        .route("/servers/{name}/backups", get(backups::list).post(backups::back_up))
        .route("/servers/{name}/backups/{id}/restore", get(backups::restore_preview).post(backups::restore))
        .route("/servers/{name}/backups/{id}/download", get(backups::download))
        .route("/jobs/{id}/cancel", post(backups::cancel))
        .route("/servers/{name}/files", get(files::browse))
        .route("/servers/{name}/files/download", get(files::download))
        .route("/servers/{name}/log", get(events::server_log))
        .route("/servers/{name}/events", get(events::server_events))
        .route("/servers/{name}/game", get(events::server_game))
        .route("/blueprints", get(pages::blueprints))
        .route("/blueprints/new", get(blueprint::new_blueprint).post(blueprint::save_blueprint_form))
        .route("/blueprints/{name}/edit", get(blueprint::edit_blueprint).post(blueprint::save_blueprint_form))
        .route("/blueprints/{name}/delete", post(editor::delete_preview_blueprint))
        .route("/overlays", get(pages::overlays))
        .route("/edit", get(editor::raw_editor).post(editor::raw_preview))
        .route("/commit", post(confirm::commit))
        .route("/plan", get(pages::plan))
        .route("/history", get(pages::history))
        .route("/history/{rev}", get(pages::commit))
        .route("/history/{rev}/revert", post(revert::revert))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/log", get(events::job_log))
        .route("/hosts/{host}/jobs", get(pages::host_jobs))
        .route("/hosts/{host}/jobs/{id}", get(pages::host_job))
        .route("/hosts/{host}/jobs/{id}/log", get(events::host_job_log))
        .route("/audit", get(pages::audit))
        .route("/events/servers", get(events::dashboard_events))
        .route("/account", get(admin::account).post(admin::change_password))
        .route("/users", get(admin::users).post(admin::add_user))
        .route("/users/{name}/{action}", post(admin::user_action))
        .route("/logout", post(login::logout))
        .layer(axum::middleware::from_fn_with_state(app.clone(), session::csrf_guard));
    Router::new()
        .merge(pages)
        .route("/login", get(login::login_page).post(login::login))
        .route("/health", get(monitor::health))
        .route("/metrics", get(monitor::metrics))
        .route("/static/{file}", get(assets::static_file))
        .fallback(assets::not_found_page)
        .layer(axum::middleware::map_response(assets::security_headers))
        // A state file is at most 1 MiB, and a form carries it URL-encoded.
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024))
        .with_state(app)
}

/// Serves the app until Ctrl-C or SIGTERM.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let router = router(app).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, router).with_graceful_shutdown(shutdown()).await
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
