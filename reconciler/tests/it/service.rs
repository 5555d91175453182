//! `left4me run` as the service it is on a host: commits converge on their own, hand changes are
//! respected until released, drift is healed, a mass deletion is held, a killed pass recovers, a
//! failure that will not pass by itself waits for the next trigger.

use crate::support::Host;

#[test]
fn commits_converge_hand_changes_are_respected_and_drift_is_healed() {
    let host = Host::installed(true);
    host.commit_examples();
    host.expect_within(30, "coop-1 runs after the commit", |h| h.running("coop-1"));
    // A pass with nothing to do costs two processes: git rev-parse and l4d2ctl observe.
    host.expect_within(10, "a no-op pass", |h| {
        let text = h.sandbox.run_ok("left4me", &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&text).unwrap();
        status["last_pass"]["message"].as_str().is_some_and(|m| m.ends_with("nothing to do (2 processes)"))
    });

    // Passes come from triggers, not from the passes themselves: reading the repo opens its refs,
    // which must not count as a change. With a resync every second, a few passes in two seconds.
    let db = reconciler::db::Db::open(&host.disk.path().join("root/left4me.db")).unwrap();
    let before = db.events(10_000).unwrap().len();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let passes = db.events(10_000).unwrap().len() - before;
    assert!(passes <= 4, "{passes} passes in two seconds: the service triggers itself");

    // Stopped by hand: Overridden, and the reconciler leaves it stopped.
    host.sandbox.run_ok("l4d2ctl", &["stop", "coop-1"]);
    host.expect_within(10, "coop-1 is overridden", |h| h.server("coop-1")["sync"] == "Overridden");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let coop = host.server("coop-1");
    assert_eq!((coop["sync"].as_str(), coop["health"].as_str()), (Some("Overridden"), Some("Stopped")), "{coop}");

    // Released: healed.
    host.sandbox.run_ok("l4d2ctl", &["release", "coop-1"]);
    host.expect_within(20, "coop-1 runs again after the release", |h| h.running("coop-1"));

    // Stopped behind left4me's back (no marker): drift, healed.
    host.sandbox.run_ok("systemctl", &["stop", "left4me-server@coop-1.service"]);
    host.expect_within(20, "coop-1 runs again after the drift", |h| h.running("coop-1"));
}

#[test]
fn deleting_every_server_is_held_and_a_killed_pass_recovers() {
    let host = Host::installed(true);
    host.commit_examples();
    host.expect_within(30, "coop-1 runs after the commit", |h| h.running("coop-1"));

    // Kill the service while it works on a commit; it comes back (Restart=always) and finishes.
    std::fs::write(
        host.repo().join("servers/coop-3.yaml"),
        std::fs::read_to_string(host.repo().join("servers/coop-1.yaml"))
            .unwrap()
            .replace("coop-1", "coop-3")
            .replace("27015", "27017"),
    )
    .unwrap();
    host.git(&["add", "--all"]);
    host.git(&["commit", "--quiet", "--message", "coop-3"]);
    host.sandbox.run_ok("systemctl", &["kill", "--signal=KILL", "left4me-reconciler.service"]);
    host.expect_within(40, "coop-3 runs after the service came back", |h| h.running("coop-3"));
    // Whatever job the kill interrupted was ended, not left running forever, and the host
    // converges: nothing left to do. (The pass that started coop-3 may still be writing its last
    // job when the game already answers.)
    let settled = |h: &Host| {
        let jobs: serde_json::Value = serde_json::from_str(&h.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
        let unfinished = jobs.as_array().unwrap().iter().any(|j| j["state"] == "running" || j["state"] == "queued");
        let plan = h.sandbox.run("left4me", &["plan"]);
        (!unfinished && plan.status.code() == Some(0), format!("{jobs:#}\n{}", String::from_utf8_lossy(&plan.stdout)))
    };
    if !host.wait_for(15, |h| settled(h).0) {
        panic!("the host never settled after the kill:\n{}", settled(&host).1);
    }

    // A revision deleting every server is held; the servers keep running.
    host.git(&["rm", "--quiet", "-r", "servers"]);
    host.git(&["commit", "--quiet", "--message", "delete everything"]);
    host.expect_within(20, "the deletion is held", |h| h.server("coop-1")["sync"] == "Suspended");
    assert!(host.running("coop-1"));
    assert!(host.server("coop-1")["sync_message"].as_str().unwrap().contains("confirm-prune"));
}

#[test]
fn with_the_service_going_kills_heal_rollouts_wait_invalid_commits_wait_and_deletions_archive() {
    let host = Host::installed(true);
    host.commit_examples();
    host.expect_within(30, "coop-1 runs after the commit", |h| h.running("coop-1"));
    let instance = |h: &Host| -> serde_json::Value {
        let text = h.sandbox.run_ok("l4d2ctl", &["status", "coop-1", "--json"]);
        serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone()
    };

    // A game process killed without a marker: back to Running.
    let pid = instance(&host)["main_pid"].as_u64().unwrap().to_string();
    host.sandbox.run_ok("kill", &["-9", &pid]);
    host.expect_within(20, "coop-1 runs again after kill -9", |h| {
        h.running("coop-1") && instance(h)["main_pid"].as_u64().map(|p| p.to_string()) != Some(pid.clone())
    });

    // when-empty: players on, the new render waits; empty, it is applied.
    host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "sim_players", "3"]);
    host.expect_within(10, "A2S reports the players", |h| h.server("coop-1")["players"] == 3);
    let text = std::fs::read_to_string(host.repo().join("blueprints/coop.yaml")).unwrap();
    std::fs::write(host.repo().join("blueprints/coop.yaml"), text.replace("z_difficulty Hard", "z_difficulty Expert"))
        .unwrap();
    host.git(&["commit", "--quiet", "--all", "--message", "coop: expert"]);
    // Rendered anew by the service, but not restarted while players are on.
    host.expect_within(20, "the new render waits", |h| {
        let i = instance(h);
        i["started_digest"] != i["digest"]
            && h.server("coop-1")["sync_message"].as_str().is_some_and(|m| m.contains("waiting for 3 players to leave"))
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let waiting = instance(&host);
    assert_ne!(waiting["started_digest"], waiting["digest"], "still not restarted after further passes");
    host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "sim_players", "0"]);
    host.expect_within(20, "the rollout applies once empty", |h| {
        let i = instance(h);
        i["started_digest"] == i["digest"] && h.running("coop-1")
    });

    // An invalid commit: nothing applied, the diagnostics in status, the servers keep running.
    let text = std::fs::read_to_string(host.repo().join("servers/coop-1.yaml")).unwrap();
    std::fs::write(host.repo().join("servers/coop-1.yaml"), text.replace("blueprint: coop", "blueprint: cop")).unwrap();
    host.git(&["commit", "--quiet", "--all", "--message", "a typo"]);
    host.expect_within(20, "the invalid revision is reported", |h| {
        let text = h.sandbox.run_ok("left4me", &["status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&text).unwrap();
        status["revision_error"]
            .as_str()
            .is_some_and(|e| e.contains("servers/coop-1.yaml:") && e.contains("blueprint cop does not exist"))
    });
    assert_eq!(instance(&host)["active_state"], "active");

    // Fixed by deleting the server instead: stopped, its data archived, removed.
    host.sandbox.run_ok(
        "sh",
        &[
            "-c",
            &format!(
                "echo 'banid 0 STEAM_1:0:1' > {}/left4dead2/cfg/banned_user.cfg",
                host.sandbox.game_tree("coop-1")
            ),
        ],
    );
    std::fs::remove_file(host.repo().join("servers/coop-1.yaml")).unwrap();
    host.git(&["commit", "--quiet", "--all", "--message", "retire coop-1"]);
    host.expect_within(20, "coop-1 is removed", |h| !h.disk.path().join("root/instances/coop-1").exists());
    let state = host.sandbox.run("systemctl", &["is-active", "left4me-server@coop-1.service"]);
    assert_ne!(String::from_utf8_lossy(&state.stdout).trim(), "active");
    let archives: Vec<_> = std::fs::read_dir(host.disk.path().join("root/archive")).unwrap().flatten().collect();
    assert_eq!(archives.len(), 1, "its data was archived");
    let listing = host.sandbox.run_ok("tar", &["-tf", archives[0].path().to_str().unwrap()]);
    assert!(listing.contains("banned_user.cfg"), "{listing}");
}

#[test]
fn an_upstream_is_followed_fast_forward_only() {
    let host = Host::installed(true);
    // The upstream: a bare repository, pushed to from a clone, as a forge would be.
    let upstream = host.disk.path().join("upstream.git");
    let work = host.disk.path().join("work");
    let git = |dir: &std::path::Path, args: &[&str]| {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            // The host's state repo belongs to its web user; these tests run git as root.
            .args(["-c", "safe.directory=*"])
            .args(args)
            .env("GIT_AUTHOR_NAME", "Bob")
            .env("GIT_AUTHOR_EMAIL", "bob@example.invalid")
            .env("GIT_COMMITTER_NAME", "Bob")
            .env("GIT_COMMITTER_EMAIL", "bob@example.invalid")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(host.disk.path(), &["init", "--quiet", "--bare", "--initial-branch=main", upstream.to_str().unwrap()]);
    git(host.disk.path(), &["clone", "--quiet", upstream.to_str().unwrap(), work.to_str().unwrap()]);
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(left4me_sim::workspace().join("examples/state/."))
        .arg(&work)
        .status()
        .unwrap();
    assert!(copied.success());
    git(&work, &["add", "--all"]);
    git(&work, &["commit", "--quiet", "--message", "examples"]);
    git(&work, &["push", "--quiet", "origin", "main"]);

    let settings = format!(
        "echo LEFT4ME_UPSTREAM={} >> /etc/left4me/host.env; echo LEFT4ME_FETCH_SECONDS=1 >> /etc/left4me/host.env",
        upstream.display()
    );
    host.sandbox.run_ok("sh", &["-c", &settings]);
    host.sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
    host.expect_within(30, "coop-1 runs from the upstream's commit", |h| h.running("coop-1"));

    // A rewritten upstream history is refused and reported; the host keeps what it runs. (The
    // pass that started coop-1 records what it applied once it is over.)
    host.expect_within(30, "the upstream's commit is recorded applied", |h| h.status()["last_applied"].is_string());
    let before = host.status()["last_applied"].clone();
    std::fs::write(
        work.join("servers/coop-2.yaml"),
        std::fs::read_to_string(work.join("servers/coop-2.yaml")).unwrap().replace("stopped", "running"),
    )
    .unwrap();
    git(&work, &["commit", "--quiet", "--all", "--amend", "--message", "examples, rewritten"]);
    git(&work, &["push", "--quiet", "--force", "origin", "main"]);
    host.expect_within(20, "the rewrite is reported", |h| {
        h.status()["upstream_error"].as_str().is_some_and(|e| e.contains("history was rewritten"))
    });
    assert_eq!(host.status()["last_applied"], before);
    assert_ne!(host.server("coop-2")["health"], "Running");
}

#[test]
fn a_failure_that_will_not_pass_by_itself_waits_for_the_next_trigger_and_says_so() {
    let host = Host::installed(true);
    // No resync within the test: only the retry policy could try again.
    host.sandbox.run_ok("sh", &["-c", "echo LEFT4ME_RESYNC_SECONDS=3600 >> /etc/left4me/host.env"]);
    host.sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
    // The state repo has no commit yet: every pass fails, until a commit puts it right.
    host.expect_within(30, "the service says it waits", |h| {
        let service = &h.status()["service"];
        service["state"] == "failing"
            && service["message"].as_str().is_some_and(|m| m.contains("this will not pass by itself"))
    });
    let invocation =
        host.sandbox.run_ok("systemctl", &["show", "--property=InvocationID", "--value", "left4me-reconciler.service"]);
    let journal = |h: &Host| {
        let filter = format!("_SYSTEMD_INVOCATION_ID={}", invocation.trim());
        h.sandbox.run_ok("journalctl", &["--no-pager", "--output=cat", &filter])
    };
    std::thread::sleep(std::time::Duration::from_secs(7));
    let log = journal(&host);
    assert_eq!(log.matches("pass failed").count(), 1, "tried again though nothing changed:\n{log}");
    assert!(log.contains("it will not pass by itself"), "{log}");

    // The commit is a trigger: acted on at once.
    host.commit_examples();
    host.expect_within(30, "coop-1 runs after the commit", |h| h.running("coop-1"));
    assert_eq!(host.status()["service"]["state"], "ok");
}
