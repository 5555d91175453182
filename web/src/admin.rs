//! A user's own account, and the admins' user list.

use std::sync::Arc;

use axum::Form;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use crate::App;
use crate::auth::{Auth, check_password, hashing};
use crate::pages::base;

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
        Ok(Ok(())) => app.render(
            "account.html",
            context! { ..base(&session, "account"), ..context! { email => session.user.email, done => "Your password is changed; your other sessions have ended." } },
        ),
        Ok(Err(e)) => problem(e.to_string()),
        Err(e) => app.server_error(&e),
    }
}

fn admin_only(app: &App, admin: bool) -> Option<Response> {
    (!admin).then(|| app.not_found())
}

pub async fn users(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    if let Some(refused) = admin_only(&app, session.user.admin) {
        return refused;
    }
    match app.accounts.users() {
        Ok(users) => app.render(
            "users.html",
            context! { ..base(&session, "users"), ..context! { users => crate::pages::v(&users) } },
        ),
        Err(e) => app.server_error(&e.to_string()),
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

pub async fn add_user(State(app): State<Arc<App>>, Auth(session): Auth, Form(form): Form<NewUserForm>) -> Response {
    if let Some(refused) = admin_only(&app, session.user.admin) {
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
            Redirect::to("/users").into_response()
        }
        Ok(Err(e)) => {
            let users = app.accounts.users().unwrap_or_default();
            app.render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "users.html",
                context! { ..base(&session, "users"), ..context! { users => crate::pages::v(&users), error => e.to_string(), name => form.name } },
            )
        }
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
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<ResetForm>,
) -> Response {
    if let Some(refused) = admin_only(&app, session.user.admin) {
        return refused;
    }
    let user = match app.accounts.user_by_name(&name) {
        Ok(Some(user)) => user,
        Ok(None) => return app.not_found(),
        Err(e) => return app.server_error(&e.to_string()),
    };
    if user.id == session.user.id && action == "disable" {
        let users = app.accounts.users().unwrap_or_default();
        return app.render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "users.html",
            context! { ..base(&session, "users"), ..context! { users => crate::pages::v(&users), error => "You cannot disable yourself; another admin can." } },
        );
    }
    let done = hashing(&app, move |accounts| match action.as_str() {
        "disable" => accounts.set_disabled(&user, true).map(|_| true),
        "enable" => accounts.set_disabled(&user, false).map(|_| true),
        "reset" => accounts.set_password(&user, &form.password, None).map(|_| true),
        _ => Ok(false),
    })
    .await;
    match done {
        Ok(Ok(true)) => Redirect::to("/users").into_response(),
        Ok(Ok(false)) => app.not_found(),
        Ok(Err(e)) => {
            let users = app.accounts.users().unwrap_or_default();
            app.render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "users.html",
                context! { ..base(&session, "users"), ..context! { users => crate::pages::v(&users), error => e.to_string() } },
            )
        }
        Err(e) => app.server_error(&e),
    }
}
