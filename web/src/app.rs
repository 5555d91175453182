//! The app's shared state: its set-up, the databases, the state repo, the latest look at the
//! host and how it is kept fresh, the templates and the drawing of pages from them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use reconciler::db::Reader;
use reconciler::engine::Config;
use reconciler::remote::Ssh;
use tokio::sync::watch;

use crate::accounts::Accounts;
use crate::audit::AuditTrail;
use crate::gamelog::GameLog;
use crate::repo::StateRepo;
use crate::snapshot::{self, Snapshot};
use crate::{auth, live, templates};

/// How long a page waits for a fresh look after a quiet spell: a look takes about 0.1 s at
/// rest, more than a second on a busy host.
pub const FRESHEN: std::time::Duration = std::time::Duration::from_secs(3);

/// Everything a request may use.
pub struct App {
    pub config: Config,
    pub repo: StateRepo,
    pub accounts: Accounts,
    /// The audit trail: sign-ins and user administration are recorded here.
    pub audit: AuditTrail,
    /// The reconciler's database, read for jobs and events: read-only, never made or migrated
    /// here (no jobs yet until the reconciler has made it).
    pub jobs: Reader,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Asks the watcher to look at the host now (after a save).
    poke: Mutex<mpsc::Sender<()>>,
    /// When a page or a live view last read the snapshot.
    watched: Arc<Mutex<std::time::Instant>>,
    pub limiter: auth::Limiter,
    pub hashers: auth::Hashers,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: auth::TrustedProxies,
    /// `$ROOT/live.db`, read-only: the game's events and who is on.
    pub gamelog: GameLog,
    /// The open live views, and the console followers they share.
    pub streams: live::Streams,
    /// Cookies carry `Secure` (served over TLS, or behind a TLS proxy).
    pub secure_cookies: bool,
    /// The address players connect to, when host.env sets one.
    pub public_address: Option<PublicAddress>,
    /// How the other hosts are asked (`left4me remote` over ssh).
    pub ssh: Ssh,
    templates: minijinja::Environment<'static>,
    /// The dashboard's rows as drawn for the current snapshot.
    pub rows: RowsCache,
}

/// How the web app is set up.
pub struct Options {
    pub config: Config,
    /// Mark cookies `Secure`.
    pub secure_cookies: bool,
    /// Proxies in front whose `X-Forwarded-For` is believed (none: the peer is the client).
    pub trusted_proxies: auth::TrustedProxies,
    /// The address players connect to (`LEFT4ME_PUBLIC_ADDRESS`); none: the host name the
    /// browser reached the app at.
    pub public_address: Option<PublicAddress>,
    /// How the other hosts the revision declares are reached.
    pub ssh: Ssh,
}

/// A host's public address as players reach it: a DNS name or an IP address (an IPv6 one in
/// brackets, as `connect` and `steam://` take it), without a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicAddress(String);

impl PublicAddress {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for PublicAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<PublicAddress, String> {
        let text = text.trim();
        let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return Ok(PublicAddress(match ip {
                std::net::IpAddr::V4(ip) => ip.to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            }));
        }
        let name_like = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if text.len() <= 253 && text.split('.').all(name_like) {
            return Ok(PublicAddress(text.to_ascii_lowercase()));
        }
        Err(format!(
            "LEFT4ME_PUBLIC_ADDRESS {text:?} is neither a host name nor an IP address; \
             write the address players reach the host at, without a port (game.example.org, 203.0.113.7)"
        ))
    }
}

impl App {
    /// Opens the databases and starts watching the host.
    pub fn start(options: Options) -> anyhow::Result<Arc<App>> {
        let config = options.config;
        let accounts = Accounts::open(&web_db(&config.root))?;
        let jobs = Reader::open(&config.db_path())?;
        let audit = AuditTrail::new(&config.root);
        let (poke, pokes) = mpsc::channel();
        let (publish, snapshot) = watch::channel(Arc::new(Snapshot::default()));
        let watcher_config = config.clone();
        // Nobody has watched yet: a fresh app looks once, then at the idle pace until a visit.
        let start = std::time::Instant::now();
        let watched = Arc::new(Mutex::new(start.checked_sub(snapshot::WATCHED).unwrap_or(start)));
        let watcher_watched = watched.clone();
        let watcher_ssh = options.ssh.clone();
        std::thread::Builder::new()
            .name("host-watcher".into())
            .spawn(move || snapshot::watch(watcher_config, watcher_ssh, pokes, publish, watcher_watched))?;
        Ok(Arc::new(App {
            repo: StateRepo::new(&config.state, &config.branch),
            gamelog: GameLog::new(&config.root),
            config,
            accounts,
            audit,
            jobs,
            snapshot,
            poke: Mutex::new(poke),
            watched,
            limiter: auth::Limiter::default(),
            hashers: auth::Hashers::start()?,
            trusted_proxies: options.trusted_proxies,
            streams: live::Streams::default(),
            secure_cookies: options.secure_cookies,
            public_address: options.public_address,
            ssh: options.ssh,
            templates: templates::environment(),
            rows: RowsCache::default(),
        }))
    }

    /// Asks for a fresh look at the host, soon.
    pub fn poke(&self) {
        let _ = self.poke.lock().expect("no holder of the poke lock panics").send(());
    }

    /// Waits, at most [`FRESHEN`], for a fresh look when the latest is stale: a page loaded after
    /// a quiet spell shows the host as it is, not as it was a minute ago.
    pub async fn freshen(&self) {
        let (snapshot, asked) = self.watch_now();
        if !asked {
            return;
        }
        let taken = snapshot.taken;
        let mut looks = self.snapshot.clone();
        let fresh = looks.wait_for(|s| s.taken != taken);
        let _ = tokio::time::timeout(FRESHEN, fresh).await;
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

    /// Runs blocking work (git, SQLite, files of the host) on the blocking pool, off the async
    /// threads; `Err` when the work panicked or the app is stopping.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<App>,
        work: impl FnOnce(&App) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || work(&app)).await
    }

    /// A page's blocking work that ended without an answer (it panicked, or the app is stopping).
    pub fn interrupted(&self, what: &str, error: &tokio::task::JoinError) -> Response {
        self.server_error(&format!("{what} was interrupted: {error}"))
    }

    /// Renders a template to a page.
    pub fn render(&self, name: &str, context: minijinja::Value) -> Response {
        match self.templates.get_template(name).and_then(|t| t.render(context)) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!("template {name}: {e:#}");
                (StatusCode::INTERNAL_SERVER_ERROR, format!("the page {name} could not be drawn: {e}")).into_response()
            }
        }
    }

    /// Draws `name` with `shared` where its context says [`SHARED_MARK`]: the page around it is
    /// drawn for this request, and `shared` (the dashboard's rows, drawn once per look for all who
    /// see the same) is sent as it is, never copied — 64 visitors of a large dashboard hold one
    /// copy of its rows, not 64.
    pub fn render_sharing(&self, name: &str, context: minijinja::Value, shared: Arc<str>) -> Response {
        let html = match self.templates.get_template(name).and_then(|t| t.render(context)) {
            Ok(html) => html,
            Err(e) => return self.server_error(&format!("template {name}: {e:#}")),
        };
        let Some((before, after)) = html.split_once(SHARED_MARK) else {
            return self.server_error(&format!("template {name} has no place for what it shares"));
        };
        let parts = [
            axum::body::Bytes::from(before.to_owned()),
            axum::body::Bytes::from_owner(SharedText(shared)),
            axum::body::Bytes::from(after.to_owned()),
        ];
        let body = axum::body::Body::from_stream(futures_util::stream::iter(parts.map(Ok::<_, std::io::Error>)));
        ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
    }

    pub fn render_status(&self, status: StatusCode, name: &str, context: minijinja::Value) -> Response {
        let mut response = self.render(name, context);
        *response.status_mut() = status;
        response
    }

    /// A failure of the host or of this program, not of the request: logged, and said plainly.
    pub fn server_error(&self, cause: &str) -> Response {
        tracing::error!("{cause}");
        self.render_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error.html",
            minijinja::context! { title => "Something went wrong on the host", message => cause },
        )
    }

    pub fn not_found(&self) -> Response {
        self.render_status(
            StatusCode::NOT_FOUND,
            "error.html",
            minijinja::context! { title => "Not found", message => "There is nothing here, or it is not yours to see." },
        )
    }

    /// A URL naming a host the revision does not declare: nothing is asked of any host.
    pub fn unknown_host(&self, name: &str) -> Response {
        let message = format!(
            "The state repo declares no host {name:?}: the hosts are those of hosts/<name>.yaml. Nothing was asked of it."
        );
        self.render_status(
            StatusCode::NOT_FOUND,
            "error.html",
            minijinja::context! { title => "No such host", message },
        )
    }

    /// A part of a page (a live view's update): the template alone, without the page around it.
    pub fn render_fragment(&self, name: &str, context: minijinja::Value) -> String {
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

/// The dashboard's rows as HTML, drawn once per look at the host for each (user, admin, host
/// name): the dashboard and its live view are then a copy, however many people watch.
#[derive(Default)]
pub struct RowsCache {
    /// The snapshot the rows were drawn from, kept so that its address is never reused.
    #[allow(clippy::type_complexity)]
    drawn: Mutex<Option<(Arc<Snapshot>, HashMap<RowsKey, Arc<str>>)>>,
}

/// Whose rows, reached by which host name: (user name, admin, host name).
pub type RowsKey = (String, bool, String);

impl RowsCache {
    /// The rows drawn from `snapshot` for `key`, drawing them with `draw` the first time.
    pub fn get_or_draw(&self, snapshot: &Arc<Snapshot>, key: RowsKey, draw: impl FnOnce() -> Arc<str>) -> Arc<str> {
        {
            let cache = self.drawn.lock().expect("no holder of the rows cache panics");
            if let Some((drawn_from, drawn)) = cache.as_ref()
                && Arc::ptr_eq(drawn_from, snapshot)
                && let Some(html) = drawn.get(&key)
            {
                return html.clone();
            }
        }
        let html = draw();
        let mut cache = self.drawn.lock().expect("no holder of the rows cache panics");
        match cache.as_mut() {
            Some((drawn_from, drawn)) if Arc::ptr_eq(drawn_from, snapshot) => {
                drawn.insert(key, html.clone());
            }
            _ => *cache = Some((snapshot.clone(), HashMap::from([(key, html.clone())]))),
        }
        html
    }
}

/// What a page's context holds where [`App::render_sharing`] puts the text it shares: a comment,
/// which nothing a user writes can be (text in a page is escaped).
pub const SHARED_MARK: &str = "<!--left4me:shared-->";

/// Text shared by every response that sends it.
struct SharedText(Arc<str>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
