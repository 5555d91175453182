//! The dashboard under load: 200 servers, each with a day of samples for its sparkline (30 s apart
//! in `$ROOT/live.db`), 64 connections (wrk), against a tiny page of the same server measured in
//! the same run (`/health`: routing, the session-free path, no template).
//! Reports p50/p99 latency, requests per second, and the web process's resident memory.
//!
//! Needs wrk (Debian's `wrk`) and a release build of the web app:
//! `cargo build --release -p left4me-web && cargo bench -p left4me-web --bench dashboard`

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use left4me_sim::Git;

const SERVERS: usize = 200;
const CONNECTIONS: u32 = 64;
const SECONDS: u32 = 10;
const PASSWORD: &str = "a password for the bench";

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("dashboard bench: wrk is missing (apt-get install wrk)");
        std::process::exit(2);
    }
    let binary = Path::new(env!("CARGO_BIN_EXE_left4me-web"));
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    write_state(&state);
    write_history(root.path());
    let env = |command: &mut Command| {
        command
            .env("LEFT4ME_ROOT", root.path())
            // No host to look at: the pages show the revision's servers, health Unknown.
            .env("LEFT4ME_L4D2CTL", "/nonexistent/l4d2ctl")
            .env("RUST_LOG", "warn");
    };
    let mut create = Command::new(binary);
    env(&mut create);
    let created = create.args(["create-user", "bench", "--admin"]).env("LEFT4ME_PASSWORD", PASSWORD).output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    let port = left4me_sim::free_port();
    let mut serve = Command::new(binary);
    env(&mut serve);
    let child = serve
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_listening(port);
    let cookie = sign_in(&base);
    // The first look at the revision is published within a moment of starting.
    std::thread::sleep(Duration::from_millis(500));
    let page = fetch(&format!("{base}/"), &cookie);
    let rows = page.matches("data-server=").count();
    assert_eq!(rows, SERVERS, "the dashboard lists every server");
    assert_eq!(page.matches(r#"<svg class="sparkline""#).count(), SERVERS, "each with its last day");

    let floor = wrk(&format!("{base}/health"), &cookie);
    let dashboard = wrk(&format!("{base}/"), &cookie);
    let rss = rss_kib(server.0.id());
    println!(
        "dashboard with {SERVERS} servers, {CONNECTIONS} connections, {SECONDS} s each (wrk), {} KiB per page",
        page.len() / 1024
    );
    println!("{:<28} {:>10} {:>10} {:>12}", "", "p50", "p99", "requests/s");
    for (name, run) in [("/health (floor)", &floor), ("/ (dashboard)", &dashboard)] {
        println!("{name:<28} {:>7.2} ms {:>7.2} ms {:>12.0}", run.p50_ms, run.p99_ms, run.rate);
    }
    println!("p99 ratio dashboard / floor: {:.2}x", dashboard.p99_ms / floor.p99_ms);
    println!(
        "web process: {:.1} MiB resident now, {:.1} MiB at its peak",
        rss.0 as f64 / 1024.0,
        rss.1 as f64 / 1024.0
    );
}

struct Run {
    p50_ms: f64,
    p99_ms: f64,
    rate: f64,
}

fn wrk(url: &str, cookie: &str) -> Run {
    let output = Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{SECONDS}s"), "--latency", "-H"])
        .arg(format!("Cookie: {cookie}"))
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && !text.contains("Non-2xx"), "wrk {url}:\n{text}");
    let percentile = |p: &str| -> f64 {
        let line = text.lines().find(|l| l.trim_start().starts_with(p)).unwrap_or_else(|| panic!("no {p} in:\n{text}"));
        millis(line.split_whitespace().nth(1).unwrap())
    };
    let rate = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Run { p50_ms: percentile("50%"), p99_ms: percentile("99%"), rate }
}

/// wrk's "1.23ms", "456.00us", "1.02s" in ms.
fn millis(value: &str) -> f64 {
    let (number, factor) = if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (value, 1.0)
    };
    number.parse::<f64>().unwrap() * factor
}

/// (VmRSS, VmHWM) in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn sign_in(base: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into();
    let response = agent.post(format!("{base}/login")).send_form([("name", "bench"), ("password", PASSWORD)]).unwrap();
    let cookie = response.headers().get("set-cookie").expect("signed in").to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

fn fetch(url: &str, cookie: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    agent.get(url).header("Cookie", cookie).call().unwrap().body_mut().read_to_string().unwrap()
}

/// A day of samples for every server, one look every 30 s, as the sampler keeps them.
fn write_history(root: &Path) {
    use reconciler::live::db::{LiveDb, Sample};
    let db = LiveDb::open(&reconciler::live::db::path(root)).unwrap();
    let now = left4me_state::clock::unix_seconds(std::time::SystemTime::now()) as i64;
    let names: Vec<left4me_state::Name> =
        (0..SERVERS).map(|i| left4me_state::Name::new(format!("s{i:03}")).unwrap()).collect();
    for look in 0..86_400 / 30 {
        let at = now - 86_400 + look * 30;
        let samples: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let players = ((look / 120 + i as i64) % 9) as u32;
                (name.clone(), Sample { at, players, cpu: Some(f64::from(players) * 4.0), memory: Some(400 << 20) })
            })
            .collect();
        db.add_samples(&samples).unwrap();
    }
}

fn write_state(state: &Path) {
    std::fs::create_dir_all(state.join("servers")).unwrap();
    std::fs::create_dir_all(state.join("blueprints")).unwrap();
    std::fs::write(
        state.join("left4me.yaml"),
        "apiVersion: left4me/v1\nkind: Settings\nspec:\n  ports: {first: 20000, last: 20999}\n  maxServers: 300\n",
    )
    .unwrap();
    std::fs::write(
        state.join("blueprints/coop.yaml"),
        "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: coop, owner: bench}\nspec:\n  arguments: [\"+map\", c1m1_hotel]\n",
    )
    .unwrap();
    for i in 0..SERVERS {
        std::fs::write(
            state.join(format!("servers/s{i:03}.yaml")),
            format!(
                "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: s{i:03}, owner: bench}}\nspec: {{blueprint: coop, port: {}}}\n",
                20000 + i * 2
            ),
        )
        .unwrap();
    }
    for args in
        [&["init", "--quiet", "--initial-branch=main"][..], &["add", "--all"], &["commit", "--quiet", "-m", "bench"]]
    {
        Git::new(state, "Bench").run(args);
    }
}

fn wait_listening(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the web app never listened");
}

/// The web process, ended (by its PID) when the bench ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
