//! A web app on a temporary `$ROOT` with the example state committed, and a small HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use left4me_sim::Git;
use reconciler::engine::Config;
use web::App;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub root: tempfile::TempDir,
    pub addr: SocketAddr,
    pub app: Arc<App>,
    _runtime: tokio::runtime::Runtime,
}

/// What a test app is started with.
pub struct Setup {
    /// The `l4d2ctl` the app runs.
    pub l4d2ctl: PathBuf,
    /// `LEFT4ME_TRUSTED_PROXIES`.
    pub trusted_proxies: &'static str,
    /// `LEFT4ME_PUBLIC_ADDRESS`.
    pub public_address: Option<&'static str>,
    /// `LEFT4ME_HOST`: this host's name, for a repo that declares hosts.
    pub host: Option<&'static str>,
    /// The state repo committed first (default: examples/state).
    pub state: Option<PathBuf>,
    /// The `ssh` the app asks other hosts with (`LEFT4ME_SSH`).
    pub ssh: PathBuf,
}

impl Default for Setup {
    fn default() -> Setup {
        // No host here: the pages show the revision, and say the host cannot be looked at.
        Setup {
            l4d2ctl: PathBuf::from("/nonexistent/l4d2ctl"),
            trusted_proxies: "",
            public_address: None,
            host: None,
            state: None,
            ssh: PathBuf::from("/nonexistent/ssh"),
        }
    }
}

impl TestApp {
    /// The examples committed by "seed"; users alice and bob, and admin ada.
    pub fn start() -> TestApp {
        TestApp::start_with(Setup::default())
    }

    pub fn start_with(setup: Setup) -> TestApp {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let seed = setup.state.clone().unwrap_or_else(|| left4me_sim::workspace().join("examples/state"));
        left4me_sim::copy_dir(&seed, &state).unwrap();
        git(&state, &["init", "--quiet", "--initial-branch=main"]);
        git(&state, &["config", "receive.denyCurrentBranch", "updateInstead"]);
        git(&state, &["add", "--all"]);
        git(&state, &["commit", "--quiet", "--message", "seed"]);
        let config = Config {
            root: root.path().to_path_buf(),
            state,
            branch: "main".into(),
            l4d2ctl: setup.l4d2ctl,
            host: setup.host.map(|h| h.parse().unwrap()),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let trusted_proxies = setup.trusted_proxies.parse().unwrap();
        let public_address = setup.public_address.map(|address| address.parse().unwrap());
        let ssh = reconciler::remote::Ssh {
            key: "/nonexistent/key".into(),
            known_hosts: "/nonexistent/known_hosts".into(),
            user: "left4me".into(),
            control_dir: None,
            program: setup.ssh,
            port: None,
        };
        let options = web::Options { config, secure_cookies: false, trusted_proxies, public_address, ssh };
        let app = App::start(options).unwrap();
        for (name, admin) in [("alice", false), ("bob", false), ("ada", true)] {
            app.accounts.create_user(name, None, PASSWORD, admin).unwrap();
        }
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(web::serve(app.clone(), listener));
        let test = TestApp { root, addr, app, _runtime: runtime };
        // The first look at the host (the revision) is published before the pages are used.
        for _ in 0..200 {
            if test.app.current().desired.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        test
    }

    pub fn repo(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client { base: self.url(""), cookie: None, csrf: None }
    }

    /// A client signed in as `name`.
    pub fn signed_in(&self, name: &str) -> Client {
        let mut client = self.client();
        let response = client.post("/login", &[("name", name), ("password", PASSWORD)]);
        assert_eq!(response.status, 303, "signing in as {name}: {}", response.body);
        client
    }

    /// The branch's commit id.
    pub fn head(&self) -> String {
        git_out(&self.repo(), &["rev-parse", "main"]).trim().to_owned()
    }

    pub fn show(&self, spec: &str) -> String {
        git_out(&self.repo(), &["show", spec])
    }

    pub fn commits(&self) -> usize {
        git_out(&self.repo(), &["rev-list", "--count", "main"]).trim().parse().unwrap()
    }

    /// Commits a change to one file straight into the repo, as another person's push would.
    pub fn commit_file(&self, path: &str, content: &str, message: &str) {
        let repo = self.repo();
        std::fs::write(repo.join(path), content).unwrap();
        git(&repo, &["add", path]);
        git(&repo, &["commit", "--quiet", "--message", message]);
    }

    /// Waits until the app has looked at the branch's current commit.
    pub fn wait_seen(&self) {
        let head = self.head();
        self.app.poke();
        for _ in 0..300 {
            if self.app.current().head.as_deref() == Some(head.as_str()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the app never looked at {head}");
    }
}

#[derive(Clone)]
pub struct Client {
    base: String,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Client {
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into()
    }

    fn finish(&mut self, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = response.unwrap();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (location, set_cookie, retry_after) = (header("location"), header("set-cookie"), header("retry-after"));
        if let Some(cookie) = &set_cookie {
            let pair = cookie.split(';').next().unwrap().to_owned();
            self.cookie = if pair.ends_with('=') { None } else { Some(pair) };
        }
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        if let Some(csrf) = csrf_of(&body) {
            self.csrf = Some(csrf);
        }
        Reply { status, location, set_cookie, retry_after, body }
    }

    /// A client of the app at `base` (`http://127.0.0.1:8080`), signed in as nobody.
    pub fn at(base: &str) -> Client {
        Client { base: base.to_owned(), cookie: None, csrf: None }
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    /// Gets a page with some more request headers.
    pub fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Self::agent().get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("Cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.call();
        self.finish(response)
    }

    /// Posts a form as it is given (no CSRF token added).
    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.post_with(path, &[], form)
    }

    /// Posts a form with some more request headers.
    pub fn post_with(&mut self, path: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> Reply {
        let mut request = Self::agent().post(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("Cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send_form(form.iter().copied());
        self.finish(response)
    }

    /// Posts a form as `submit` does; None when the connection broke before an answer was read
    /// (a server refusing a body part-way may close it).
    pub fn try_submit(&mut self, path: &str, form: &[(&str, &str)]) -> Option<Reply> {
        let csrf = self.csrf.clone().unwrap_or_default();
        let mut fields: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        fields.extend_from_slice(form);
        let mut request = Self::agent().post(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("Cookie", cookie);
        }
        match request.send_form(fields.iter().copied()) {
            Err(ureq::Error::Io(_)) => None,
            response => Some(self.finish(response)),
        }
    }

    /// Posts a form with the session's CSRF token, as the app's own pages do.
    pub fn submit(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        if self.csrf.is_none() {
            self.get("/");
        }
        let csrf = self.csrf.clone().expect("a signed-in page carries the CSRF token");
        let mut fields: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        fields.extend_from_slice(form);
        self.post(path, &fields)
    }
}

/// A sandbox host with left4me installed from this build (the web app on 127.0.0.1:<port>, the
/// port returned) and the examples committed, as a person's push would: the disk it runs on is
/// kept with it.
pub fn installed_host(prefix: &str) -> (tempfile::TempDir, left4me_sim::Sandbox, u16) {
    assert!(nix::unistd::geteuid().is_root(), "this test boots a sandbox host: run it as root (scripts/test)");
    let disk = left4me_sim::disk(Path::new(env!("CARGO_TARGET_TMPDIR")), prefix).unwrap();
    let sandbox = left4me_sim::Sandbox::boot(disk.path(), &[]).expect("the sandbox host boots");
    let port = left4me_sim::free_port();
    sandbox.run_ok(
        "sh",
        &["-c", &format!("mkdir -p /etc/left4me && echo LEFT4ME_WEB_LISTEN=127.0.0.1:{port} > /etc/left4me/web.env")],
    );
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_left4me-web")).parent().unwrap().to_path_buf();
    sandbox.install_left4me(&bin_dir, true);
    sandbox.commit_state(&left4me_sim::workspace().join("examples/state"), "the examples").unwrap();
    (disk, sandbox, port)
}

/// Waits until the host's coop-1 runs.
pub fn wait_coop_1_runs(sandbox: &left4me_sim::Sandbox, limit: std::time::Duration) {
    wait_for(limit, "coop-1 to run", || {
        let status = sandbox.run("left4me", &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        status["servers"]
            .as_array()
            .is_some_and(|servers| servers.iter().any(|s| s["name"] == "coop-1" && s["health"] == "Running"))
    });
}

/// Waits, at most `limit`, until `done`; panics naming `what` when it never is.
pub fn wait_for(limit: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("waited {} s for {what}", limit.as_secs());
}

fn csrf_of(body: &str) -> Option<String> {
    let at = body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(body[at..].split('"').next()?.to_owned())
}

/// The hidden form fields of a page, in order, HTML entities decoded.
pub fn hidden_fields(body: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for part in body.split("<input type=\"hidden\" ").skip(1) {
        let attr = |name: &str| {
            let key = format!("{name}=\"");
            let at = part.find(&key)? + key.len();
            Some(unescape(part[at..].split('"').next()?))
        };
        if let (Some(name), Some(value)) = (attr("name"), attr("value")) {
            fields.push((name, value));
        }
    }
    fields
}

pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// Commits made by these tests, as another writer than the web app, are by "Other".
pub fn git(repo: &Path, args: &[&str]) {
    git_out(repo, args);
}

pub fn git_out(repo: &Path, args: &[&str]) -> String {
    Git::new(repo, "Other").run(args)
}

/// The most the process has held in memory, in KiB (nextest runs each test in a process of its
/// own, so this is the app's).
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("the status has VmHWM");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmHWM is a number of KiB")
}

/// Starts the peak over from what the process needs now: making the test's users and signing
/// them in (argon2 takes 19 MiB a hash, on whichever thread) is not what an attack costs, and
/// the allocator keeps what they freed until asked to give it back.
pub fn reset_peak_rss() {
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system.
    unsafe { nix::libc::malloc_trim(0) };
    std::fs::write("/proc/self/clear_refs", "5").expect("the peak RSS can be reset (Linux 4.0 and later)");
}

pub const MAX_RSS_KIB: u64 = 100 * 1024;

/// Asks `/health` again and again from another thread until stopped.
pub struct HealthWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl HealthWatch {
    pub fn start(app: &TestApp) -> HealthWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let url = app.url("/health");
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs(5)))
                .build()
                .into();
            let (mut answered, mut failures) = (0, Vec::new());
            // Bounded whatever happens: at most a minute of asking.
            for _ in 0..3000 {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                match agent.get(&url).call() {
                    Ok(response) if response.status() == 200 => answered += 1,
                    Ok(response) => failures.push(format!("status {}", response.status())),
                    Err(e) => failures.push(e.to_string()),
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            (answered, failures)
        });
        HealthWatch { stop, thread }
    }

    /// Stops asking; every answer was a healthy one, and there were some.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (answered, failures) = self.thread.join().expect("the health watch does not panic");
        assert!(failures.is_empty(), "/health failed during the attacks: {failures:?}");
        assert!(answered > 0, "/health was never answered during the attacks");
    }
}

/// An `l4d2ctl` that answers `observe` with `dir/observation.json` (written by the test) and
/// fails everything else, as a host with nothing else to say would.
pub fn observing_l4d2ctl(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("l4d2ctl");
    let answer = dir.join("observation.json");
    let text = format!(
        "#!/bin/sh\nif [ \"$1\" = observe ]; then exec cat '{}'; fi\necho \"l4d2ctl: no host here\" >&2\nexit 1\n",
        answer.display()
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}
