//! Signing in and out.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use crate::accounts::SESSION_MAX;
use crate::app::App;
use crate::audit::typed;
use crate::auth::{safe_next, same_origin, session_cookie};
use crate::session::{Auth, check_password};

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_page(State(app): State<Arc<App>>, Query(query): Query<LoginQuery>) -> Response {
    app.render("login.html", context! { next => safe_next(query.next.as_deref()), name => "" })
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // A sign-in form posted from another site (login CSRF) is refused, and so is one from a
    // page without an origin of its own (`Origin: null`: a sandboxed frame, a data: URL).
    if !same_origin(&headers) {
        return app.render_status(
            StatusCode::FORBIDDEN,
            "error.html",
            context! {
                title => "This sign-in cannot be sent",
                message => "It did not come from this site's own sign-in page. Open the sign-in page of this site and sign in there.",
            },
        );
    }
    let next = safe_next(form.next.as_deref());
    let name = form.name.trim().to_owned();
    let address = app.trusted_proxies.client(peer.ip(), &headers);
    let page =
        |error: String| app.render("login.html", context! { next => next.clone(), name => form.name.clone(), error });
    let checked = check_password(&app, &name, &form.password, address, page).await;
    // A name no account could have is not recorded: it may be the password, typed in the wrong box.
    let tried = || match left4me_state::Name::new(&name) {
        Ok(_) => typed(&name),
        Err(_) => "an unknown name".to_owned(),
    };
    let (who, action) = match &checked {
        Ok(Some(user)) => (user.name.to_string(), "sign-in"),
        Ok(None) => (tried(), "sign-in-failed"),
        Err(refused) if refused.status() == StatusCode::TOO_MANY_REQUESTS => (tried(), "sign-in-locked"),
        Err(_) => (tried(), "sign-in-failed"),
    };
    let _ = app.blocking(move |app| app.audit.record(&who, action, None, "", address)).await;
    let user = match checked {
        Ok(Some(user)) => user,
        Ok(None) => {
            return app.render_status(
                StatusCode::UNAUTHORIZED,
                "login.html",
                context! { next, name => form.name, error => "That name and password do not match an enabled account." },
            );
        }
        Err(response) => return response,
    };
    match app.blocking(move |app| app.accounts.start_session(&user)).await {
        Ok(Ok((token, _))) => {
            let mut response = Redirect::to(&next).into_response();
            // Secure when configured, or when the proxy in front says the browser used HTTPS.
            let https = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https");
            let cookie = session_cookie(&token, app.secure_cookies || https, SESSION_MAX);
            if let Ok(value) = cookie.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Ok(Err(e)) => app.server_error(&e.to_string()),
        Err(e) => app.interrupted("signing in", &e),
    }
}

pub async fn logout(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    let token_hash = session.token_hash;
    match app.blocking(move |app| app.accounts.end_session(&token_hash)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return app.server_error(&e.to_string()),
        Err(e) => return app.interrupted("signing out", &e),
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = session_cookie("", app.secure_cookies, 0).parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
