//! The session guard in front of every signed-in page: who is signed in, the CSRF check of every
//! write, and password checks under the sign-in limits, on the hashing threads.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use crate::accounts::{Accounts, Session, User};
use crate::app::App;
use crate::auth::{COOKIE, cookie, form_field, same};

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

/// Every page behind it needs a session; every write also needs the session's CSRF token, as a
/// `csrf` form field or an `X-CSRF-Token` header.
pub async fn csrf_guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(session) = session_of(&app, request.headers()).await else {
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

/// The live session of the request's cookie, read (and touched) on the blocking pool.
async fn session_of(app: &Arc<App>, headers: &axum::http::HeaderMap) -> Option<Session> {
    let token = cookie(headers, COOKIE)?;
    match app.blocking(move |app| app.accounts.session(&token)).await {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            tracing::error!("reading a session: {e}");
            None
        }
        Err(e) => {
            tracing::error!("reading a session was interrupted: {e}");
            None
        }
    }
}

/// Runs work that hashes or checks a password on the app's hashing threads, off the async threads.
pub async fn hashing<T: Send + 'static>(
    app: &Arc<App>,
    work: impl FnOnce(&Accounts) -> T + Send + 'static,
) -> Result<T, String> {
    let (done, result) = tokio::sync::oneshot::channel();
    let worker = app.clone();
    let job = Box::new(move || {
        // A request gone while it waited (its client left) costs no hash.
        if !done.is_closed() {
            let _ = done.send(work(&worker.accounts));
        }
    });
    if !app.hashers.run(job) {
        return Err("the password threads have ended".to_owned());
    }
    result.await.map_err(|_| "a password check failed on its thread".to_owned())
}

/// Checks a password under the limiter: `Err` is the response to give (429 with `Retry-After`
/// while the pair waits, or a failure of the host); `Ok(None)` a wrong password, counted.
pub async fn check_password(
    app: &Arc<App>,
    name: &str,
    password: &str,
    address: IpAddr,
    refused: impl FnOnce(String) -> Response,
) -> Result<Option<User>, Response> {
    if let Err(wait) = app.limiter.begin(name, address) {
        let secs = wait.as_secs_f64().ceil() as u64;
        let when = if secs < 120 { format!("{secs} s") } else { format!("{} minutes", secs.div_ceil(60)) };
        let mut response = refused(format!(
            "Too many failed sign-ins for this account from your address. Try again in {when}; each further failure doubles the wait."
        ));
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(value) = secs.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Err(response);
    }
    let (checked_name, password) = (name.to_owned(), password.to_owned());
    match hashing(app, move |accounts| accounts.verify(&checked_name, &password)).await {
        Ok(Ok(Some(user))) => {
            app.limiter.clear(name, address);
            Ok(Some(user))
        }
        // The try was counted as failed when it began.
        Ok(Ok(None)) => {
            tracing::info!(user = %name, address = %address, "a password check failed");
            Ok(None)
        }
        Ok(Err(e)) => Err(app.server_error(&e.to_string())),
        Err(e) => Err(app.server_error(&e)),
    }
}
