//! A user's own account, and the admins' user list.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use crate::access;
use crate::accounts::{Session, User};
use crate::app::App;
use crate::session::{Auth, check_password, hashing};
use crate::views::page::{base, v};

pub async fn account(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    app.render("account.html", context! { ..base(&session, "account"), ..context! { email => session.user.email } })
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    repeat: String,
}

/// Changes the user's password and ends their other sessions.
/// The current password is checked under the same limits as a sign-in: a stolen session cannot
/// guess its way to the password.
pub async fn change_password(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    let email = session.user.email.clone();
    let problem = |message: String| {
        app.render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "account.html",
            context! { ..base(&session, "account"), ..context! { email => email.clone(), error => message } },
        )
    };
    if form.new != form.repeat {
        return problem("The new password and its repetition differ.".into());
    }
    let address = app.trusted_proxies.client(peer.ip(), &headers);
    match check_password(&app, session.user.name.as_str(), &form.current, address, problem).await {
        Ok(Some(_)) => {}
        Ok(None) => return problem("The current password is not right.".into()),
        Err(response) => return response,
    }
    let (user, new, keep) = (session.user.clone(), form.new.clone(), session.token_hash.clone());
    match hashing(&app, move |accounts| accounts.set_password(&user, &new, Some(&keep))).await {
        Ok(Ok(())) => {
            let who = session.user.name.to_string();
            let detail = format!("of {who}, by themself");
            let _ = app.blocking(move |app| app.audit.record(&who, "password-set", None, &detail, address)).await;
            app.render(
            "account.html",
            context! { ..base(&session, "account"), ..context! { email => session.user.email, done => "Your password is changed; your other sessions have ended." } },
        )
        }
        Ok(Err(e)) => problem(e.to_string()),
        Err(e) => app.server_error(&e),
    }
}

/// The user list and its actions are admins' only: for anyone else they do not exist.
fn admin_only(app: &App, user: &User) -> Option<Response> {
    (!access::administers(user)).then(|| app.not_found())
}

/// The users, read on the blocking pool (empty when they cannot be read).
async fn all_users(app: &Arc<App>) -> Vec<User> {
    app.blocking(|app| app.accounts.users().unwrap_or_default()).await.unwrap_or_default()
}

/// The user list again, with what went wrong.
fn users_problem(app: &App, session: &Session, users: &[User], error: String, name: Option<String>) -> Response {
    app.render_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "users.html",
        context! { ..base(session, "users"), ..context! { users => v(users), error, name } },
    )
}

pub async fn users(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    if let Some(refused) = admin_only(&app, &session.user) {
        return refused;
    }
    match app.blocking(|app| app.accounts.users()).await {
        Ok(Ok(users)) => {
            app.render("users.html", context! { ..base(&session, "users"), ..context! { users => v(&users) } })
        }
        Ok(Err(e)) => app.server_error(&e.to_string()),
        Err(e) => app.interrupted("reading the users", &e),
    }
}

#[derive(Deserialize)]
pub struct NewUserForm {
    name: String,
    #[serde(default)]
    email: String,
    password: String,
    #[serde(default)]
    admin: Option<String>,
}

pub async fn add_user(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<NewUserForm>,
) -> Response {
    if let Some(refused) = admin_only(&app, &session.user) {
        return refused;
    }
    let (name, email, password, admin) =
        (form.name.trim().to_owned(), form.email.trim().to_owned(), form.password, form.admin.is_some());
    let created = hashing(&app, move |accounts| {
        let email = (!email.is_empty()).then_some(email);
        accounts.create_user(&name, email.as_deref(), &password, admin)
    })
    .await;
    match created {
        Ok(Ok(user)) => {
            tracing::info!(by = %session.user.name, user = %user.name, admin = user.admin, "user added");
            let address = app.trusted_proxies.client(peer.ip(), &headers);
            let (who, detail) = (session.user.name.to_string(), user_made(&user));
            let _ = app.blocking(move |app| app.audit.record(&who, "user-created", None, &detail, address)).await;
            Redirect::to("/users").into_response()
        }
        Ok(Err(e)) => users_problem(&app, &session, &all_users(&app).await, e.to_string(), Some(form.name)),
        Err(e) => app.server_error(&e),
    }
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    password: String,
}

/// `disable`, `enable` or `reset` (a new password, which ends the user's sessions).
pub async fn user_action(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<ResetForm>,
) -> Response {
    if let Some(refused) = admin_only(&app, &session.user) {
        return refused;
    }
    let user = match app.blocking(move |app| app.accounts.user_by_name(&name)).await {
        Ok(Ok(Some(user))) => user,
        Ok(Ok(None)) => return app.not_found(),
        Ok(Err(e)) => return app.server_error(&e.to_string()),
        Err(e) => return app.interrupted("reading the user", &e),
    };
    if user.id == session.user.id && action == "disable" {
        let why = "You cannot disable yourself; another admin can.".to_owned();
        return users_problem(&app, &session, &all_users(&app).await, why, None);
    }
    let (target, recorded) = (user.name.to_string(), action.clone());
    let done = hashing(&app, move |accounts| match action.as_str() {
        "disable" => accounts.set_disabled(&user, true).map(|_| true),
        "enable" => accounts.set_disabled(&user, false).map(|_| true),
        "reset" => accounts.set_password(&user, &form.password, None).map(|_| true),
        _ => Ok(false),
    })
    .await;
    match done {
        Ok(Ok(true)) => {
            let address = app.trusted_proxies.client(peer.ip(), &headers);
            let what = match recorded.as_str() {
                "disable" => "user-disabled",
                "enable" => "user-enabled",
                _ => "password-set",
            };
            let (who, detail) = (session.user.name.to_string(), format!("of {target}"));
            let _ = app.blocking(move |app| app.audit.record(&who, what, None, &detail, address)).await;
            Redirect::to("/users").into_response()
        }
        Ok(Ok(false)) => app.not_found(),
        Ok(Err(e)) => users_problem(&app, &session, &all_users(&app).await, e.to_string(), None),
        Err(e) => app.server_error(&e),
    }
}

/// What the trail says of a user made: the name, and whether an admin.
pub fn user_made(user: &User) -> String {
    format!("{}{}", user.name, if user.admin { " (admin)" } else { "" })
}
