//! Alerts delivered by `left4me run` to a receiver on the sandbox host (sim-webhook): each
//! provider's payload, a storm collapsed, a failing receiver retried, one that keeps failing an
//! event while passes go on, a server an alert does not name left out, the notices raised by a
//! server that keeps crashing, and a game that stops answering told Degraded once.

use left4me_sim::WEBHOOK_DIR;
use left4me_state::{AlertEvent, Name};
use serde_json::Value;

use crate::support::Host;

/// A host whose service resyncs every second, with a receiver on its loopback, the storm window
/// `quiet` seconds long, and `secrets` (name, path on the receiver) in its secrets file.
fn host_with_receiver(quiet: u64, secrets: &[(&str, &str)]) -> Host {
    let host = Host::installed(true);
    let base = host.sandbox.serve_webhook();
    let lines: String = secrets.iter().map(|(name, path)| format!("{name}={base}{path}\n")).collect();
    host.sandbox.run_ok("sh", &["-c", &format!("umask 077; printf '{lines}' >> /etc/left4me/secrets.env")]);
    host.sandbox.run_ok("sh", &["-c", &format!("echo LEFT4ME_ALERT_QUIET_SECONDS={quiet} >> /etc/left4me/host.env")]);
    host.sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
    host
}

/// An alert: name, provider, secret, events, servers.
type AlertFile<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], Option<&'a [&'a str]>);

/// The examples committed with these alerts instead of theirs.
fn commit_with_alerts(host: &Host, alerts: &[AlertFile<'_>]) {
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(left4me_sim::workspace().join("examples/state/."))
        .arg(host.repo())
        .status()
        .unwrap();
    assert!(copied.success());
    let folder = host.repo().join("alerts");
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    for (name, provider, secret, events, servers) in alerts {
        let servers = servers.map(|s| format!("  servers: [{}]\n", s.join(", "))).unwrap_or_default();
        let text = format!(
            "apiVersion: left4me/v1\nkind: Alert\nmetadata:\n  name: {name}\nspec:\n  provider: {provider}\n  \
             secretRef: {secret}\n  events: [{}]\n{servers}",
            events.join(", ")
        );
        std::fs::write(folder.join(format!("{name}.yaml")), text).unwrap();
    }
    host.git(&["add", "--all"]);
    host.git(&["commit", "--quiet", "--message", "examples with alerts"]);
}

fn coop_1_runs(host: &Host) {
    host.expect_within(60, "coop-1 runs after the commit", |h| h.running("coop-1"));
}

/// Every request the receiver recorded, oldest first.
fn requests(host: &Host) -> Vec<Value> {
    let out = host.sandbox.run("cat", &[&format!("{WEBHOOK_DIR}/requests.jsonl")]);
    String::from_utf8_lossy(&out.stdout)
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The requests to `path` the receiver took (answered 200).
fn taken(host: &Host, path: &str) -> Vec<Value> {
    requests(host).into_iter().filter(|r| r["path"] == path && r["answered"] == 200).collect()
}

/// A body as JSON.
fn body(request: &Value) -> Value {
    serde_json::from_str(request["body"].as_str().unwrap()).unwrap()
}

/// The receiver's knob: 500 for the next N requests, or `always`.
fn fail(host: &Host, knob: &str) {
    host.sandbox.run_ok("sh", &["-c", &format!("echo {knob} > {WEBHOOK_DIR}/fail")]);
}

/// Breaks coop-1's blueprint reference and commits it: an invalid revision, which a pass has
/// found before this returns (commits in a row may otherwise be one pass, of the last).
fn commit_invalid(host: &Host, typo: &str) {
    host.commit("servers/coop-1.yaml", "blueprint: coop", &format!("blueprint: {typo}"), "a typo");
    let said = format!("blueprint {typo} does not exist");
    host.expect_within(30, "a pass finds the revision invalid", |h| {
        h.status()["revision_error"].as_str().is_some_and(|e| e.contains(&said))
    });
}

fn events(host: &Host) -> String {
    host.sandbox.run_ok("left4me", &["events", "-n", "200"])
}

#[test]
fn every_provider_gets_its_payload_and_a_storm_is_collapsed() {
    let secrets =
        [("DISCORD_URL", "/discord"), ("SLACK_URL", "/slack"), ("HOOK_URL", "/hook"), ("NTFY_URL", "/ntfy/left4me")];
    let host = host_with_receiver(8, &secrets);
    let (events, coop): (&[&str], Option<&[&str]>) = (&["revision-invalid", "server-failed"], Some(&["coop-1"]));
    commit_with_alerts(
        &host,
        &[
            ("chat", "discord", "DISCORD_URL", events, coop),
            ("team", "slack", "SLACK_URL", events, coop),
            ("ops", "webhook", "HOOK_URL", events, coop),
            ("phone", "ntfy", "NTFY_URL", events, coop),
        ],
    );
    coop_1_runs(&host);
    let out = host.left4me(&["alerts", "test", "ops"]);
    let said = crate::support::text(&out);
    assert!(out.status.success() && said.contains("delivered; the receiver answered 200: ok"), "{said}");
    assert_eq!(body(&taken(&host, "/hook")[0])["event"], "test");

    // An invalid revision: each receiver gets one message, in its provider's shape.
    commit_invalid(&host, "cop");
    host.expect_within(30, "every provider is told", |h| {
        ["/discord", "/slack", "/ntfy/left4me"].iter().all(|path| taken(h, path).len() == 1)
            && taken(h, "/hook").len() == 2
    });
    let discord = body(&taken(&host, "/discord")[0]);
    let content = discord["content"].as_str().unwrap();
    assert!(
        content.contains("is invalid; nothing applied") && content.contains("blueprint cop does not exist"),
        "{discord}"
    );
    assert_eq!(discord.as_object().unwrap().len(), 1, "{discord}");
    let slack = body(&taken(&host, "/slack")[0]);
    assert_eq!(slack.as_object().unwrap().keys().collect::<Vec<_>>(), ["text"]);
    assert_eq!(slack["text"], discord["content"]);
    let hook = body(&taken(&host, "/hook")[1]);
    let mut keys: Vec<&String> = hook.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["alert", "at", "count", "event", "host", "message", "server"], "{hook}");
    assert_eq!(
        (&hook["event"], &hook["server"], &hook["count"], &hook["alert"]),
        (&"revision-invalid".into(), &Value::Null, &1.into(), &"ops".into())
    );
    let ntfy = &taken(&host, "/ntfy/left4me")[0];
    assert_eq!(ntfy["method"], "POST");
    assert!(ntfy["body"].as_str().unwrap().contains("is invalid; nothing applied"), "{ntfy}");
    let title = format!("left4me on {}: revision-invalid", hook["host"].as_str().unwrap());
    assert_eq!(ntfy["headers"]["title"], title.as_str());
    assert_eq!((&ntfy["headers"]["priority"], &ntfy["headers"]["tags"]), (&"3".into(), &"x,left4me".into()));
    assert!(taken(&host, "/hook")[1]["headers"]["content-type"] == "application/json");

    // The same invalid revision at every resync is no new notice.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(taken(&host, "/discord").len(), 1);
    host.commit("servers/coop-1.yaml", "blueprint: cop", "blueprint: coop", "fixed");

    // A storm: twenty notices of one server and kind are one message at once and one with the
    // count when the window closes; a server the alerts do not name is told nothing.
    let db = reconciler::db::Db::open(&host.disk.path().join("root/left4me.db")).unwrap();
    let (coop_1, coop_2) = (Name::new("coop-1").unwrap(), Name::new("coop-2").unwrap());
    db.add_notice(AlertEvent::ServerFailed, Some(&coop_2), "coop-2 failed: not named").unwrap();
    for i in 0..20 {
        db.add_notice(AlertEvent::ServerFailed, Some(&coop_1), &format!("coop-1 failed: storm {i}")).unwrap();
    }
    let failed = |h: &Host| -> Vec<Value> {
        taken(h, "/hook").iter().map(body).filter(|b| b["event"] == "server-failed").collect()
    };
    host.expect_within(20, "the storm's first notice goes at once", |h| !failed(h).is_empty());
    let first = failed(&host);
    assert_eq!(
        (first.len(), &first[0]["count"], &first[0]["message"]),
        (1, &1.into(), &"coop-1 failed: storm 0".into())
    );
    host.expect_within(30, "the count goes when the window closes", |h| failed(h).len() == 2);
    let count = &failed(&host)[1];
    assert_eq!(count["count"], 19, "{count}");
    let text = count["message"].as_str().unwrap();
    assert!(text.contains("19 more times in the last 8 seconds; the last: coop-1 failed: storm 19"), "{text}");
    std::thread::sleep(std::time::Duration::from_secs(10));
    let all = failed(&host);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|b| b["server"] == "coop-1"), "{all:#?}");
    let discord: Vec<Value> = taken(&host, "/discord").iter().map(body).collect();
    assert!(discord.iter().all(|b| !b["content"].as_str().unwrap().contains("coop-2")), "{discord:#?}");
    assert_eq!(discord.len(), 3, "{discord:#?}");
}

#[test]
fn a_failing_receiver_is_tried_again_and_one_that_keeps_failing_is_an_event_while_passes_go_on() {
    // A short window: the second invalid revision below is not counted in the first one's.
    let host = host_with_receiver(5, &[("OPS_WEBHOOK", "/ops")]);
    commit_with_alerts(
        &host,
        &[
            ("ops", "webhook", "OPS_WEBHOOK", &["revision-invalid"], None),
            ("unset", "slack", "NOT_IN_THE_FILE", &["revision-invalid"], None),
        ],
    );
    coop_1_runs(&host);
    let out = host.left4me(&["alerts", "test", "unset"]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::support::text(&out));
    assert!(crate::support::text(&out).contains("not delivered: NOT_IN_THE_FILE is not set"));
    let out = host.left4me(&["alerts", "test", "nothing"]);
    assert!(crate::support::text(&out).contains("has no alert \"nothing\" (its alerts: ops, unset)"));

    // 500 twice, then 200: delivered once, on the third try.
    fail(&host, "2");
    commit_invalid(&host, "cop");
    host.expect_within(40, "delivered after two refusals", |h| taken(h, "/ops").len() == 1);
    let tries: Vec<Value> = requests(&host).into_iter().filter(|r| r["path"] == "/ops").collect();
    assert_eq!(tries.iter().map(|r| r["answered"].as_u64()).collect::<Vec<_>>(), [Some(500), Some(500), Some(200)]);
    assert!(tries.iter().all(|r| r["body"] == tries[0]["body"]), "the same message each try");
    // A secret that is not in the file is a delivery failure naming it, the file and what to do.
    host.expect_within(20, "the unset secret is an event", |h| events(h).contains("alert unset: delivery failed"));
    let said = events(&host);
    assert!(said.contains("NOT_IN_THE_FILE is not set in /etc/left4me/secrets.env: add a line"), "{said}");

    host.commit("servers/coop-1.yaml", "blueprint: cop", "blueprint: coop", "fixed");

    // Always 500: the delivery fails after its tries, which is an event, and passes go on: the
    // fix and a new commit after it converge while the receiver refuses.
    fail(&host, "always");
    commit_invalid(&host, "coo");
    host.commit("servers/coop-1.yaml", "blueprint: coo", "blueprint: coop", "fixed");
    host.commit("servers/coop-2.yaml", "state: stopped", "state: running", "coop-2 on");
    host.expect_within(60, "coop-2 runs while the receiver refuses", |h| h.running("coop-2"));
    host.expect_within(60, "the failed delivery is an event", |h| {
        events(h).contains("alert ops: delivery failed: the receiver answered 500: failing")
    });
    assert!(requests(&host).iter().filter(|r| r["path"] == "/ops" && r["answered"] == 500).count() >= 5);
    // A failed delivery is no notice: nothing is raised about it, so nothing more is sent.
    let db = reconciler::db::Db::open(&host.disk.path().join("root/left4me.db")).unwrap();
    let notices = db.notices_after(0, 1000).unwrap();
    assert!(notices.iter().all(|n| !n.message.contains("delivery")), "{notices:#?}");
    assert_eq!(notices.iter().filter(|n| n.kind == AlertEvent::RevisionInvalid).count(), 2, "{notices:#?}");
}

#[test]
fn a_server_that_keeps_crashing_raises_server_failed_and_crash_loop_for_the_alerts_that_name_it() {
    let host = host_with_receiver(600, &[("OPS_WEBHOOK", "/ops")]);
    // coop-1's and versus-1's games exit as soon as they start.
    for server in ["coop-1", "versus-1"] {
        let dropin = format!("/etc/systemd/system/left4me-server@{server}.service.d");
        host.sandbox.run_ok("mkdir", &["-p", &dropin]);
        host.sandbox.run_ok(
            "sh",
            &["-c", &format!("printf '[Service]\\nEnvironment=SIM_SRCDS_EXIT_AT_ONCE=3\\n' > {dropin}/crash.conf")],
        );
    }
    host.sandbox.run_ok("systemctl", &["daemon-reload"]);
    commit_with_alerts(
        &host,
        &[("ops", "webhook", "OPS_WEBHOOK", &["server-failed", "crash-loop"], Some(&["coop-1"]))],
    );
    let told = |h: &Host, event: &str| -> Vec<Value> {
        taken(h, "/ops").iter().map(body).filter(|b| b["event"] == event).collect()
    };
    host.expect_within(120, "coop-1's failure is told", |h| !told(h, "server-failed").is_empty());
    host.expect_within(60, "coop-1's crash loop is told", |h| !told(h, "crash-loop").is_empty());
    let failed = &told(&host, "server-failed")[0];
    assert_eq!(failed["server"], "coop-1");
    assert!(failed["message"].as_str().unwrap().starts_with("coop-1 failed: the unit failed"), "{failed}");
    let held = &told(&host, "crash-loop")[0];
    assert!(held["message"].as_str().unwrap().contains("its starts are held"), "{held}");
    // versus-1 crashes as well, but no alert names it: nothing of it is sent.
    let db = reconciler::db::Db::open(&host.disk.path().join("root/left4me.db")).unwrap();
    let versus = Name::new("versus-1").unwrap();
    host.expect_within(60, "versus-1's failure is a notice", |_| {
        db.notices_after(0, 1000).unwrap().iter().any(|n| n.server.as_ref() == Some(&versus))
    });
    std::thread::sleep(std::time::Duration::from_secs(4));
    let sent = taken(&host, "/ops");
    assert!(sent.iter().map(body).all(|b| b["server"] == "coop-1"), "{sent:#?}");
    // One message per kind within the window, however often it crashed again.
    assert_eq!((told(&host, "server-failed").len(), told(&host, "crash-loop").len()), (1, 1), "{sent:#?}");
}

#[test]
fn a_game_that_stops_answering_is_told_degraded_once() {
    let host = host_with_receiver(600, &[("OPS_WEBHOOK", "/ops")]);
    commit_with_alerts(&host, &[("ops", "webhook", "OPS_WEBHOOK", &["server-degraded"], None)]);
    coop_1_runs(&host);
    let degraded = |h: &Host| -> Vec<Value> {
        taken(h, "/ops").iter().map(body).filter(|b| b["event"] == "server-degraded").collect()
    };
    // A hung game: Degraded once the grace from its last answer has passed.
    let pid = host.instance("coop-1")["main_pid"].to_string();
    host.sandbox.run_ok("kill", &["-STOP", &pid]);
    let grace = reconciler::report::QUERY_GRACE_SECONDS;
    host.expect_within(grace + 60, "coop-1's degradation is told", |h| !degraded(h).is_empty());
    let told = &degraded(&host)[0];
    assert_eq!(told["server"], "coop-1", "{told}");
    assert!(told["message"].as_str().unwrap().starts_with("coop-1 is degraded: running, but not answering"), "{told}");
    // Looked at again while it stays so: no new notice (the window would only count it).
    std::thread::sleep(std::time::Duration::from_secs(12));
    host.sandbox.run_ok("kill", &["-CONT", &pid]);
    let db = reconciler::db::Db::open(&host.disk.path().join("root/left4me.db")).unwrap();
    let notices = db.notices_after(0, 1000).unwrap();
    let raised = notices.iter().filter(|n| n.kind == AlertEvent::ServerDegraded).count();
    assert_eq!(raised, 1, "{notices:#?}");
}

#[test]
fn a_published_build_and_a_failed_job_are_told_to_an_alert_that_names_servers() {
    let host = host_with_receiver(600, &[("OPS_WEBHOOK", "/ops")]);
    let events: &[&str] = &["build-available", "job-failed"];
    commit_with_alerts(&host, &[("ops", "webhook", "OPS_WEBHOOK", events, Some(&["coop-1"]))]);
    coop_1_runs(&host);
    let game: Value = serde_json::from_str(&host.sandbox.run_ok("l4d2ctl", &["game", "--json"])).unwrap();
    let new = game["installed"][0].as_u64().unwrap() + 1000;
    // Steam publishes a build whose download is killed: the build is told, and the failed install.
    let knobs = format!(
        "mkdir -p /var/lib/fake-steamcmd && echo {new} > /var/lib/fake-steamcmd/public-buildid && \
         echo killed > /var/lib/fake-steamcmd/fail"
    );
    host.sandbox.run_ok("sh", &["-c", &knobs]);
    let checked = host.left4me(&["game", "check"]);
    assert_ne!(checked.status.code(), Some(0), "{}", crate::support::text(&checked));
    let told = |h: &Host, event: &str| -> Vec<Value> {
        taken(h, "/ops").iter().map(body).filter(|b| b["event"] == event).collect()
    };
    host.expect_within(30, "the new build is told", |h| {
        told(h, "build-available")
            .iter()
            .any(|b| b["message"].as_str().unwrap().starts_with(&format!("build {new} available")))
    });
    host.expect_within(30, "the failed install is told", |h| !told(h, "job-failed").is_empty());
    let failed = &told(&host, "job-failed")[0];
    // About the host's game, not a server: told although the alert names servers.
    assert_eq!(failed["server"], Value::Null, "{failed}");
    let text = failed["message"].as_str().unwrap();
    assert!(text.contains("failed: install game (exit ") && text.contains("its log: `left4me jobs "), "{text}");
}
