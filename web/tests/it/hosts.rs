//! A revision of three hosts: a (this one), b and c. The other hosts are asked over a fake `ssh`
//! written by the test, which answers as `left4me remote` would for b and as an unreachable
//! machine for c, and records every call.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use l4d2ctl::api::{InstanceStatus, Observation};
use left4me_state::Name;
use reconciler::db::{Job, JobLine};
use reconciler::plan::Sync;
use reconciler::remote::{HostStatus, JobLog};
use reconciler::report::{Health, ServerReport};

use crate::support::{Reply, Setup, TestApp, hidden_fields, observing_l4d2ctl, unescape};

const B: &str = "10.77.1.2";
const C: &str = "10.77.1.3";

/// The examples with hosts a, b, c: coop-1 on a, coop-2 and coop-3 on b, versus-1 on c.
fn three_hosts(dir: &Path) -> PathBuf {
    let state = dir.join("seed");
    left4me_sim::copy_dir(&left4me_sim::workspace().join("examples/state"), &state).unwrap();
    std::fs::create_dir(state.join("hosts")).unwrap();
    for (name, address, ports) in
        [("a", "10.77.1.1", "27015, last: 27030"), ("b", B, "27100, last: 27110"), ("c", C, "27015, last: 27030")]
    {
        let host = format!(
            "apiVersion: left4me/v1\nkind: Host\nmetadata:\n  name: {name}\nspec:\n  address: {address}\n  ports: {{ first: {ports} }}\n"
        );
        std::fs::write(state.join(format!("hosts/{name}.yaml")), host).unwrap();
    }
    for (server, host) in [("coop-1", "a"), ("coop-2", "b"), ("versus-1", "c")] {
        let path = state.join(format!("servers/{server}.yaml"));
        let mut text = std::fs::read_to_string(&path).unwrap();
        if server == "coop-2" {
            text = text.replace("port: 27016", "port: 27100");
        }
        text.push_str(&format!("  host: {host}\n"));
        std::fs::write(path, text).unwrap();
    }
    let coop3 = "apiVersion: left4me/v1\nkind: Server\nmetadata:\n  name: coop-3\n  owner: bob\nspec:\n  blueprint: versus\n  port: 27101\n  host: b\n";
    std::fs::write(state.join("servers/coop-3.yaml"), coop3).unwrap();
    state
}

fn report(name: &str, health: Health, message: &str, port: u16) -> ServerReport {
    ServerReport {
        name: name.into(),
        sync: Sync::Synced,
        sync_message: "as declared".into(),
        health,
        health_message: message.into(),
        port: Some(port),
        players: Some(3),
        max_players: Some(8),
        map: Some("c1m1_hotel".into()),
        build: None,
        desired_build: None,
    }
}

fn job(id: i64, target: &str, state: &str, revision: Option<&str>) -> Job {
    Job {
        id,
        kind: "create".into(),
        target: target.into(),
        revision: revision.map(str::to_owned),
        trigger: "commit".into(),
        state: state.into(),
        queued_at: "2026-12-02T03:00:00.000Z".into(),
        started_at: None,
        finished_at: None,
        exit_code: None,
    }
}

/// What host b answers: its status, its jobs (of `revision`) and their logs.
fn answers(dir: &Path, revision: Option<&str>) {
    let status = HostStatus {
        host: Some(Name::new("b").unwrap()),
        taken_at: "2026-12-02T03:00:00.000Z".into(),
        head: Some("0123456789abcdef".into()),
        servers: vec![
            report("coop-2", Health::Running, "alice's coop #2 on c1m1_hotel, 3/8 players", 27100),
            report("coop-3", Health::Running, "bob's coop on c1m1_hotel, 3/8 players", 27101),
        ],
        ..HostStatus::default()
    };
    std::fs::write(dir.join("b-status"), serde_json::to_string(&status).unwrap()).unwrap();
    let jobs = vec![job(7, "coop-2", "succeeded", revision), job(8, "coop-3", "succeeded", revision)];
    std::fs::write(dir.join("b-jobs"), serde_json::to_string(&jobs).unwrap()).unwrap();
    let line = JobLine {
        seq: 1,
        at: "2026-12-02T03:00:01.000Z".into(),
        stream: "stdout".into(),
        line: "made coop-2 on b".into(),
    };
    let log = JobLog { job: job(7, "coop-2", "succeeded", revision), lines: vec![line] };
    std::fs::write(dir.join("b-job-7"), serde_json::to_string(&log).unwrap()).unwrap();
    let rest = JobLog { lines: vec![], ..log };
    std::fs::write(dir.join("b-job-7-more"), serde_json::to_string(&rest).unwrap()).unwrap();
    let log = JobLog { job: job(8, "coop-3", "succeeded", revision), lines: vec![] };
    std::fs::write(dir.join("b-job-8"), serde_json::to_string(&log).unwrap()).unwrap();
}

/// An `ssh` that records each call (`<destination> <ask>`) in `calls` and answers as b's
/// `left4me remote` would, or as a machine that cannot be reached (c).
fn fake_ssh(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("ssh");
    let d = dir.display();
    let text = format!(
        r#"#!/bin/sh
for last; do :; done
for arg; do case "$arg" in left4me@*) dest="$arg";; esac; done
echo "$dest $last" >> '{d}/calls'
case "$dest" in
  left4me@{C}) if [ -e '{d}/c-hangs' ]; then exec sleep 30; fi
    echo "ssh: connect to host {C} port 22: No route to host" >&2; exit 255;;
  left4me@{B}) ;;
  *) echo "ssh: Could not resolve hostname" >&2; exit 255;;
esac
case "$last" in
  status) exec cat '{d}/b-status';;
  "jobs --limit "*) exec cat '{d}/b-jobs';;
  "job 7 --after 0") exec cat '{d}/b-job-7';;
  "job 7 --after "*) exec cat '{d}/b-job-7-more';;
  "job 8 --after "*) exec cat '{d}/b-job-8';;
  "job "*) echo "left4me remote: there is no job" >&2; exit 2;;
  "backups coop-2") echo '[]';;
  "rcon coop-2 --as alice --from "*) echo "hostname: alice's coop #2";;
  "logs coop-2 --lines "*" --follow") echo "L 12/02/2026 - 03:00:00: a line of coop-2 on b"; exec sleep 30;;
  fetch) echo "asked the agent to fetch the state repo now";;
  *) echo "left4me remote: refused: $last" >&2; exit 2;;
esac
"#
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// An `l4d2ctl` for host a: coop-1's unit is there, stopped.
fn local_l4d2ctl(dir: &Path) -> PathBuf {
    let coop1 = InstanceStatus {
        name: Name::new("coop-1").unwrap(),
        unit: "left4me-server@coop-1.service".into(),
        active_state: "inactive".into(),
        sub_state: "dead".into(),
        since: None,
        enabled: true,
        main_pid: None,
        restarts: 0,
        result: "success".into(),
        mounted: false,
        port: 27015,
        digest: None,
        started_digest: None,
        started_port: None,
        override_marker: None,
        query: None,
        last_answer: None,
        build: None,
        rendered_build: None,
        started_build: None,
        problems: Vec::new(),
        resources: Default::default(),
    };
    let observation = Observation {
        instances: vec![coop1],
        overlays: Vec::new(),
        overrides: Vec::new(),
        units: Vec::new(),
        leftover_units: Vec::new(),
        problems: Vec::new(),
        game: Default::default(),
        workshop: Default::default(),
        schedules: Vec::new(),
    };
    std::fs::write(dir.join("observation.json"), serde_json::to_string(&observation).unwrap()).unwrap();
    observing_l4d2ctl(dir)
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls")).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn start(dir: &Path) -> TestApp {
    answers(dir, None);
    let setup = Setup {
        l4d2ctl: local_l4d2ctl(dir),
        host: Some("a"),
        state: Some(three_hosts(dir)),
        ssh: fake_ssh(dir),
        ..Setup::default()
    };
    let app = TestApp::start_with(setup);
    wait_until(&app, "b and c looked at", |app| {
        let snapshot = app.app.current();
        snapshot.hosts.len() == 2 && snapshot.hosts.values().all(Option::is_some)
    });
    // b's jobs ran for the revision the app started with.
    answers(dir, Some(&app.head()));
    app
}

fn wait_until(app: &TestApp, what: &str, check: impl Fn(&TestApp) -> bool) {
    for _ in 0..500 {
        if check(app) {
            return;
        }
        app.app.poke();
        std::thread::sleep(Duration::from_millis(20));
    }
    let snapshot = app.app.current();
    panic!(
        "never: {what}; revision error {:?}, problem {:?}, hosts {:?}",
        snapshot.revision_error,
        snapshot.problem,
        snapshot.hosts.keys().collect::<Vec<_>>()
    );
}

/// The row of `server` in a dashboard page.
fn row<'a>(page: &'a str, server: &str) -> &'a str {
    let at = page.find(&format!("id=\"row-{server}\"")).unwrap_or_else(|| panic!("no row of {server} in {page}"));
    let row = &page[at..];
    &row[..row.find("</tr>").unwrap()]
}

#[test]
fn the_dashboard_lists_every_hosts_servers_and_a_host_that_does_not_answer_costs_only_its_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path());
    let mut ada = app.signed_in("ada");
    let page = ada.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<th>Host</th>"), "{}", page.body);
    let coop1 = row(&page.body, "coop-1");
    assert!(coop1.contains("<td class=\"host\">a</td>"), "{coop1}");
    assert!(coop1.contains("data-health=\"Stopped\""), "a's own look: {coop1}");
    let coop2 = row(&page.body, "coop-2");
    assert!(coop2.contains("<td class=\"host\">b</td>") && coop2.contains("data-health=\"Running\""), "{coop2}");
    assert!(coop2.contains("c1m1_hotel") && coop2.contains("3/8"), "b's answer: {coop2}");
    assert!(coop2.contains(&format!("connect {B}:27100")), "players reach b at its address: {coop2}");
    let own = ada.get("/servers/coop-1");
    assert!(own.body.contains("connect 10.77.1.1:27015"), "and a's servers at hosts/a.yaml's: {}", own.body);
    assert!(coop2.contains("kept on host b"), "the history is b's: {coop2}");
    let versus = row(&page.body, "versus-1");
    assert!(versus.contains("<td class=\"host\">c</td>") && versus.contains("data-health=\"Unknown\""), "{versus}");
    assert!(
        versus.contains(&format!("host c does not answer: ssh: connect to host {C} port 22: No route to host")),
        "{versus}"
    );
    assert!(page.body.contains("id=\"host-c\" data-answered=\"no\""), "the hosts card says so too: {}", page.body);

    // A user sees their own servers, on every host, and no one else's.
    let mut alice = app.signed_in("alice");
    let page = alice.get("/");
    assert!(page.body.contains("row-coop-1") && page.body.contains("row-coop-2"), "{}", page.body);
    assert!(!page.body.contains("row-coop-3") && !page.body.contains("row-versus-1"));

    // The server page of a server of b: its status from b, its console and RCON asked of b.
    let server = alice.get("/servers/coop-2");
    assert_eq!(server.status, 200);
    assert!(server.body.contains("On host <strong>b</strong>"), "{}", server.body);
    assert!(server.body.contains("history is kept on host b"));
    assert!(!server.body.contains("/servers/coop-2/files"), "its files are b's");
    let answer = alice.submit("/servers/coop-2/rcon", &[("command", "hostname")]);
    assert!(unescape(&answer.body).contains("<pre>hostname: alice's coop #2</pre>"), "{}", answer.body);
    assert!(
        calls(dir.path())
            .iter()
            .any(|c| c.starts_with(&format!("left4me@{B} rcon coop-2 --as alice --from 127.0.0.1 --")))
    );
    assert_eq!(alice.get("/servers/versus-1").status, 404, "bob's server on c is not alice's to see");
    let backups = alice.get("/servers/coop-2/backups");
    assert!(backups.body.contains("runs on host b"), "{}", backups.body);
    assert_eq!(alice.submit("/servers/coop-2/backups", &[]).status, 409, "a backup of b's server is taken on b");

    // Its console, followed on b.
    let cookie = alice.cookie.clone().unwrap();
    let console = read_stream(&app, "/servers/coop-2/log", &cookie, "a line of coop-2 on b");
    assert!(console.contains("event: line"), "{console}");
    assert!(calls(dir.path()).iter().any(|c| c == &format!("left4me@{B} logs coop-2 --lines 200 --follow")));

    let metrics = app.client().get("/metrics");
    assert!(
        metrics.body.contains("left4me_host_up{host=\"b\"} 1")
            && metrics.body.contains("left4me_host_up{host=\"c\"} 0")
    );
}

#[test]
fn remote_jobs_are_named_by_their_host_and_an_undeclared_host_is_never_asked() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path());
    let mut alice = app.signed_in("alice");
    let jobs = alice.get("/hosts/b/jobs");
    assert_eq!(jobs.status, 200);
    let jobs = Reply { body: unescape(&jobs.body), ..jobs };
    assert!(jobs.body.contains("href=\"/hosts/b/jobs/7\""), "{}", jobs.body);
    assert!(!jobs.body.contains("/hosts/b/jobs/8"), "coop-3's job is bob's");
    let job = alice.get("/hosts/b/jobs/7");
    assert_eq!(job.status, 200);
    assert!(job.body.contains("made coop-2 on b") && job.body.contains("on host b"), "{}", job.body);
    assert_eq!(alice.get("/hosts/b/jobs/8").status, 404, "bob's job");
    let cookie = alice.cookie.clone().unwrap();
    let log = read_stream(&app, "/hosts/b/jobs/7/log?after=0", &cookie, "event: done");
    assert!(log.contains("made coop-2 on b") && log.contains("succeeded"), "{log}");
    assert_eq!(alice.get("/hosts/b/jobs/99").status, 404, "a job b does not have");
    let down = alice.get("/hosts/c/jobs");
    assert!(down.body.contains("host c does not answer"), "{}", down.body);
    assert!(unescape(&alice.get("/jobs").body).contains("href=\"/hosts/b/jobs\""), "the jobs page links each host");
    assert_eq!(alice.get("/hosts/a/jobs").status, 200, "this host's own name shows its jobs");

    let before = calls(dir.path()).len();
    for url in ["/hosts/evil.example/jobs", "/hosts/zz/jobs/1", "/hosts/zz/jobs/1/log", "/hosts/-oProxyCommand=id/jobs"]
    {
        let page = alice.get(url);
        assert_eq!(page.status, 404, "{url}");
        assert!(page.body.contains("declares no host"), "{url}: {}", page.body);
    }
    let asked: Vec<String> = calls(dir.path()).into_iter().skip(before).collect();
    assert!(
        asked
            .iter()
            .all(|c| c.starts_with(&format!("left4me@{B} status")) || c.starts_with(&format!("left4me@{C} status"))),
        "only the declared hosts' looks were asked meanwhile: {asked:?}"
    );
}

#[test]
fn the_server_form_offers_the_hosts_and_a_free_port_on_each_and_a_save_writes_spec_host() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path());
    let mut alice = app.signed_in("alice");
    let form = alice.get("/servers/new");
    assert!(form.body.contains("<select name=\"host\""), "{}", form.body);
    for (host, free) in [("a", "27016"), ("b", "27102"), ("c", "27015")] {
        assert!(form.body.contains(&format!("value=\"{host}\" data-free-port=\"{free}\"")), "{host}: {}", form.body);
    }
    assert!(form.body.contains("name=\"port\" value=\"27016\""), "this host's free port first");
    let on_b = alice.get("/servers/new?host=b");
    assert!(on_b.body.contains("name=\"port\" value=\"27102\""), "{}", on_b.body);

    let preview = alice.submit(
        "/servers/new",
        &[("name", "coop-9"), ("blueprint", "coop"), ("port", "27102"), ("state", "running"), ("host", "b")],
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    let fields = hidden_fields(&preview.body);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let committed = alice.post("/commit", &fields);
    assert_eq!(committed.status, 303, "{}", committed.body);
    let saved = app.show("main:servers/coop-9.yaml");
    assert!(saved.contains("  host: b\n"), "{saved}");

    // Editing keeps the host, and so does Stop.
    let edit = alice.get("/servers/coop-2/edit");
    assert!(
        edit.body.contains("value=\"b\" data-free-port=\"27102\" selected")
            || edit.body.contains("value=\"b\" data-free-port=\"27103\" selected"),
        "{}",
        edit.body
    );
    let stop = alice.submit("/servers/coop-2/power", &[("state", "stopped")]);
    assert_eq!(stop.status, 303, "{}", stop.body);
    let stopped = app.show("main:servers/coop-2.yaml");
    assert!(stopped.contains("state: stopped") && stopped.contains("  host: b\n"), "{stopped}");
}

#[test]
fn a_one_host_repo_shows_no_host_column_and_asks_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(Setup { ssh: fake_ssh(dir.path()), ..Setup::default() });
    let mut ada = app.signed_in("ada");
    let page = ada.get("/");
    assert!(page.body.contains("row-coop-1") && !page.body.contains("<th>Host</th>"), "{}", page.body);
    assert!(!page.body.contains("id=\"hosts\""));
    let form = ada.get("/servers/new");
    assert!(!form.body.contains("name=\"host\""), "{}", form.body);
    assert_eq!(ada.get("/hosts/b/jobs").status, 404);
    assert!(calls(dir.path()).is_empty(), "{:?}", calls(dir.path()));
}

#[test]
fn a_host_that_hangs_holds_up_no_look_after_its_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c-hangs"), "").unwrap();
    let app = start(dir.path());
    let snapshot = app.app.current();
    let look = snapshot.hosts[&Name::new("c").unwrap()].as_ref().unwrap();
    assert_eq!(look.status.as_ref().unwrap_err(), "host c does not answer: no answer within 4 s");
    // c is asked again at every look, and never waited for: b's and a's rows stay fresh.
    for _ in 0..3 {
        let before = app.app.current().taken;
        let asked = Instant::now();
        wait_until(&app, "a new look", |app| app.app.current().taken != before);
        assert!(asked.elapsed() < Duration::from_secs(2), "a look took {:?}", asked.elapsed());
    }
    let mut ada = app.signed_in("ada");
    let page = ada.get("/");
    assert!(row(&page.body, "coop-2").contains("data-health=\"Running\""));
    assert!(row(&page.body, "versus-1").contains("no answer within 4 s"));
}

/// The server-sent events of `path` for the session `cookie`, read until `until` is in them
/// (at most 10 s: a stream never ends by itself).
fn read_stream(app: &TestApp, path: &str, cookie: &str, until: &str) -> String {
    let mut stream = std::net::TcpStream::connect(app.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n",
        app.addr
    )
    .unwrap();
    let (deadline, mut seen, mut buf) = (Instant::now() + Duration::from_secs(10), Vec::new(), [0u8; 4096]);
    while Instant::now() < deadline && !String::from_utf8_lossy(&seen).contains(until) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(seen.contains(until), "{path} never sent {until:?}: {seen}");
    seen
}
