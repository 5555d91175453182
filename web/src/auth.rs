//! Signing in and out, sessions, CSRF tokens and login rate limiting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use crate::App;
use crate::accounts::Session;

pub const COOKIE: &str = "left4me_session";
/// Failed sign-ins allowed per account, and per address, in one window.
pub const ACCOUNT_FAILURES: u32 = 5;
pub const ADDRESS_FAILURES: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Largest form body read (a raw YAML editor's file is at most 1 MiB).
const MAX_FORM: usize = 4 * 1024 * 1024;

/// The signed-in user's session, put in place by [`csrf_guard`].
pub struct Auth(pub Session);

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().map(Auth).ok_or_else(|| Redirect::to("/login").into_response())
    }
}

/// Counts failed sign-ins per account and per address.
#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Limiter {
    /// Seconds to wait when `key` has failed `limit` times in the current window.
    fn blocked(&self, key: &str, limit: u32) -> Option<u64> {
        let failures = self.failures.lock().expect("no holder of the limiter lock panics");
        let (count, since) = failures.get(key)?;
        let left = WINDOW.checked_sub(since.elapsed())?;
        (*count >= limit).then(|| left.as_secs().max(1))
    }

    fn fail(&self, key: &str) {
        let mut failures = self.failures.lock().expect("no holder of the limiter lock panics");
        failures.retain(|_, (_, since)| since.elapsed() < WINDOW);
        let entry = failures.entry(key.to_owned()).or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    fn clear(&self, key: &str) {
        self.failures.lock().expect("no holder of the limiter lock panics").remove(key);
    }
}

/// Every page behind it needs a session; every write also needs the session's CSRF token, as a
/// `csrf` form field or an `X-CSRF-Token` header.
pub async fn csrf_guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(session) = session_of(&app, request.headers()) else {
        if request.method() == Method::GET {
            let next_page = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let query = serde_urlencoded::to_string([("next", next_page)]).unwrap_or_default();
            let target = format!("/login?{query}");
            return Redirect::to(&target).into_response();
        }
        return Redirect::to("/login").into_response();
    };
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut request = request;
        request.extensions_mut().insert(session);
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
        Ok(bytes) => bytes,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than 4 MiB").into_response(),
    };
    let from_header = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let from_form = form_field(&bytes, "csrf");
    let given = from_header.or(from_form).unwrap_or_default();
    if !same(given.as_bytes(), session.csrf.as_bytes()) {
        return app.render_status(
            StatusCode::FORBIDDEN,
            "error.html",
            context! {
                title => "This form cannot be sent",
                message => "It has expired or did not come from this site. Go back, reload the page and try again; what you typed is still in the form you came from.",
            },
        );
    }
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn session_of(app: &App, headers: &HeaderMap) -> Option<Session> {
    let token = cookie(headers, COOKIE)?;
    match app.accounts.session(&token) {
        Ok(session) => session,
        Err(e) => {
            tracing::error!("reading a session: {e}");
            None
        }
    }
}

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
    // A sign-in form posted from another site (login CSRF) is refused.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
        if origin != "null" && origin_host != host {
            return (StatusCode::FORBIDDEN, "sign in from this site's own page").into_response();
        }
    }
    let next = safe_next(form.next.as_deref());
    let account_key = format!("user:{}", form.name.trim());
    let address_key = format!("addr:{}", peer.ip());
    let blocked = app
        .limiter
        .blocked(&account_key, ACCOUNT_FAILURES)
        .map(|secs| (secs, "this account"))
        .or_else(|| app.limiter.blocked(&address_key, ADDRESS_FAILURES).map(|secs| (secs, "this address")));
    if let Some((secs, what)) = blocked {
        let minutes = secs.div_ceil(60);
        let mut response = app.render_status(
            StatusCode::TOO_MANY_REQUESTS,
            "login.html",
            context! {
                next, name => form.name,
                error => format!("Too many failed sign-ins for {what}. Try again in {minutes} minute{}.", if minutes == 1 { "" } else { "s" }),
            },
        );
        if let Ok(value) = secs.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let (name, password) = (form.name.trim().to_owned(), form.password.clone());
    let checking = app.clone();
    let verified = tokio::task::spawn_blocking(move || checking.accounts.verify(&name, &password)).await;
    let user = match verified {
        Ok(Ok(Some(user))) => user,
        Ok(Ok(None)) => {
            app.limiter.fail(&account_key);
            app.limiter.fail(&address_key);
            tracing::info!(user = %form.name.trim(), address = %peer.ip(), "a sign-in failed");
            return app.render_status(
                StatusCode::UNAUTHORIZED,
                "login.html",
                context! { next, name => form.name, error => "That name and password do not match an enabled account." },
            );
        }
        Ok(Err(e)) => return app.server_error(&e.to_string()),
        Err(e) => return app.server_error(&e.to_string()),
    };
    app.limiter.clear(&account_key);
    match app.accounts.start_session(&user) {
        Ok((token, _)) => {
            let mut response = Redirect::to(&next).into_response();
            // Secure when configured, or when the proxy in front says the browser used HTTPS.
            let https = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https");
            let cookie = session_cookie(&token, app.secure_cookies || https, accounts_max_age());
            if let Ok(value) = cookie.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => app.server_error(&e.to_string()),
    }
}

pub async fn logout(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    if let Err(e) = app.accounts.end_session(&session.token_hash) {
        return app.server_error(&e.to_string());
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = session_cookie("", app.secure_cookies, 0).parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn accounts_max_age() -> i64 {
    crate::accounts::SESSION_MAX
}

pub fn session_cookie(token: &str, secure: bool, max_age: i64) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// Where to go after signing in: a path of this site only.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if is_local_path(next) => next.to_owned(),
        _ => "/".to_owned(),
    }
}

/// A path of this site, never one a browser would read as another site (`//host`, `/\\host`).
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') && !path.chars().any(char::is_control)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    pairs.into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

/// Compares secrets in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
