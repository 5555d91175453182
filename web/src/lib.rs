//! The left4me web app: people edit the desired state as reviewed diffs that become commits of
//! the state repo, and watch servers, plans, jobs and logs live.
//!
//! The web talks to the host only through the state repo (commits), the reconciler's database
//! (read) and `l4d2ctl` (status, logs, RCON); it never runs systemctl and holds no root.

pub mod accounts;
mod admin;
pub mod auth;
mod edit;
mod history;
pub mod live;
mod pages;
pub mod repo;
pub mod snapshot;
mod templates;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use reconciler::db::Reader;
use reconciler::engine::Config;
use tokio::sync::watch;

use crate::accounts::Accounts;
use crate::repo::StateRepo;
use crate::snapshot::Snapshot;

/// Everything a request may use.
pub struct App {
    pub config: Config,
    pub repo: StateRepo,
    pub accounts: Accounts,
    /// The reconciler's database, read for jobs and events: read-only, never made or migrated
    /// here (no jobs yet until the reconciler has made it).
    pub jobs: Reader,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Asks the watcher to look at the host now (after a save).
    poke: Mutex<mpsc::Sender<()>>,
    /// When a page or a live view last read the snapshot.
    watched: Arc<Mutex<std::time::Instant>>,
    pub limiter: auth::Limiter,
    hashers: auth::Hashers,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: auth::TrustedProxies,
    /// The open live views, and the console followers they share.
    pub streams: live::Streams,
    /// Cookies carry `Secure` (served over TLS, or behind a TLS proxy).
    pub secure_cookies: bool,
    templates: minijinja::Environment<'static>,
    /// The dashboard's rows as drawn for the current snapshot, by (user, admin, host name).
    #[allow(clippy::type_complexity)]
    rows_cache: Mutex<Option<(Arc<Snapshot>, std::collections::HashMap<(String, bool, String), Arc<str>>)>>,
}

/// How the web app is set up.
pub struct Options {
    pub config: Config,
    /// Mark cookies `Secure`.
    pub secure_cookies: bool,
    /// Proxies in front whose `X-Forwarded-For` is believed (none: the peer is the client).
    pub trusted_proxies: auth::TrustedProxies,
}

impl App {
    /// Opens the databases and starts watching the host.
    pub fn start(options: Options) -> anyhow::Result<Arc<App>> {
        let config = options.config;
        let accounts = Accounts::open(&web_db(&config.root))?;
        let jobs = Reader::open(&config.db_path())?;
        let (poke, pokes) = mpsc::channel();
        let (publish, snapshot) = watch::channel(Arc::new(Snapshot::default()));
        let watcher_config = config.clone();
        // Nobody has watched yet: a fresh app looks once, then at the idle pace until a visit.
        let start = std::time::Instant::now();
        let watched = Arc::new(Mutex::new(start.checked_sub(snapshot::WATCHED).unwrap_or(start)));
        let watcher_watched = watched.clone();
        std::thread::Builder::new()
            .name("host-watcher".into())
            .spawn(move || snapshot::watch(watcher_config, pokes, publish, watcher_watched))?;
        Ok(Arc::new(App {
            repo: StateRepo::new(&config.state, &config.branch),
            config,
            accounts,
            jobs,
            snapshot,
            poke: Mutex::new(poke),
            watched,
            limiter: auth::Limiter::default(),
            hashers: auth::Hashers::start()?,
            trusted_proxies: options.trusted_proxies,
            streams: live::Streams::default(),
            secure_cookies: options.secure_cookies,
            templates: templates::environment(),
            rows_cache: Mutex::new(None),
        }))
    }

    /// Asks for a fresh look at the host, soon.
    pub fn poke(&self) {
        let _ = self.poke.lock().expect("no holder of the poke lock panics").send(());
    }

    /// Waits, at most a second, for a fresh look when the latest is stale: a page loaded after a
    /// quiet spell shows the host as it is, not as it was a minute ago.
    pub async fn freshen(&self) {
        let (snapshot, asked) = self.watch_now();
        if !asked {
            return;
        }
        let taken = snapshot.taken;
        let mut looks = self.snapshot.clone();
        let fresh = looks.wait_for(|s| s.taken != taken);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), fresh).await;
    }

    /// The latest look at the host, for monitoring: reading it is not watching.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The latest look at the host. Someone is watching: looks come every 2 s for a while, and
    /// one comes at once when the latest is older than that.
    pub fn current(&self) -> Arc<Snapshot> {
        self.watch_now().0
    }

    /// The latest look, marking the app watched; true when it asked for a fresh look (the app
    /// was idle, or the look is older than two intervals).
    fn watch_now(&self) -> (Arc<Snapshot>, bool) {
        let now = std::time::Instant::now();
        let before = std::mem::replace(&mut *self.watched.lock().expect("no holder of the watched lock panics"), now);
        let snapshot = self.snapshot.borrow().clone();
        // After a quiet spell the watcher sleeps at the idle pace: wake it to the watched pace.
        let was_idle = now.duration_since(before) >= snapshot::WATCHED;
        let asked = was_idle || snapshot.taken.is_some_and(|taken| taken.elapsed() > snapshot::INTERVAL * 2);
        if asked {
            self.poke();
        }
        (snapshot, asked)
    }

    /// Renders a template to a page.
    fn render(&self, name: &str, context: minijinja::Value) -> Response {
        match self.templates.get_template(name).and_then(|t| t.render(context)) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!("template {name}: {e:#}");
                (StatusCode::INTERNAL_SERVER_ERROR, format!("the page {name} could not be drawn: {e}")).into_response()
            }
        }
    }

    fn render_status(&self, status: StatusCode, name: &str, context: minijinja::Value) -> Response {
        let mut response = self.render(name, context);
        *response.status_mut() = status;
        response
    }

    /// A failure of the host or of this program, not of the request: logged, and said plainly.
    fn server_error(&self, cause: &str) -> Response {
        tracing::error!("{cause}");
        self.render_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error.html",
            minijinja::context! { title => "Something went wrong on the host", message => cause },
        )
    }

    fn not_found(&self) -> Response {
        self.render_status(
            StatusCode::NOT_FOUND,
            "error.html",
            minijinja::context! { title => "Not found", message => "There is nothing here, or it is not yours to see." },
        )
    }

    /// A part of a page (a live view's update): the template alone, without the page around it.
    fn render_fragment(&self, name: &str, context: minijinja::Value) -> String {
        self.templates.get_template(name).and_then(|t| t.render(context)).unwrap_or_else(|e| {
            tracing::error!("template {name}: {e:#}");
            String::new()
        })
    }
}

/// `$ROOT/web.db`: the web app's own users and sessions.
pub fn web_db(root: &std::path::Path) -> PathBuf {
    root.join("web.db")
}

/// The app's routes.
pub fn router(app: Arc<App>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::dashboard))
        .route("/servers/new", get(edit::new_server).post(edit::save_server_form))
        .route("/servers/{name}", get(pages::server))
        .route("/servers/{name}/edit", get(edit::edit_server).post(edit::save_server_form))
        .route("/servers/{name}/power", post(edit::power))
        .route("/servers/{name}/delete", post(edit::delete_preview))
        .route("/servers/{name}/rcon", post(pages::rcon))
        .route("/servers/{name}/retry", post(pages::retry))
        .route("/servers/{name}/log", get(live::server_log))
        .route("/servers/{name}/events", get(live::server_events))
        .route("/blueprints", get(pages::blueprints))
        .route("/blueprints/new", get(edit::new_blueprint).post(edit::save_blueprint_form))
        .route("/blueprints/{name}/edit", get(edit::edit_blueprint).post(edit::save_blueprint_form))
        .route("/blueprints/{name}/delete", post(edit::delete_preview_blueprint))
        .route("/overlays", get(pages::overlays))
        .route("/edit", get(edit::raw_editor).post(edit::raw_preview))
        .route("/commit", post(edit::commit))
        .route("/plan", get(pages::plan))
        .route("/history", get(pages::history))
        .route("/history/{rev}", get(pages::commit))
        .route("/history/{rev}/revert", post(edit::revert))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/log", get(live::job_log))
        .route("/events/servers", get(live::dashboard_events))
        .route("/account", get(admin::account).post(admin::change_password))
        .route("/users", get(admin::users).post(admin::add_user))
        .route("/users/{name}/{action}", post(admin::user_action))
        .route("/logout", post(auth::logout))
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth::csrf_guard));
    Router::new()
        .merge(pages)
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/health", get(pages::health))
        .route("/metrics", get(pages::metrics))
        .route("/static/{file}", get(static_file))
        .fallback(not_found_page)
        .layer(axum::middleware::map_response(security_headers))
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

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

const STATIC_FILES: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("../static/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../static/app.js")),
    ("htmx.min.js", "text/javascript; charset=utf-8", include_str!("../static/vendor/htmx-2.0.11.min.js")),
    ("htmx-sse.min.js", "text/javascript; charset=utf-8", include_str!("../static/vendor/htmx-ext-sse-2.2.4.min.js")),
];

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match STATIC_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => {
            ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "public, max-age=3600")], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

async fn not_found_page() -> Response {
    (StatusCode::NOT_FOUND, Html("<!doctype html><title>Not found</title><p>There is nothing here. <a href=\"/\">Back to the servers</a>.</p>")).into_response()
}

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
