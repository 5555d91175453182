//! "Retry now" on a server held back after crashing, and what the plan page shows of the host.
//! The host here is an `l4d2ctl observe` answer written by the test (coop-1's unit failed, a unit
//! file changed by hand) and the reconciler's own database, holding coop-1 in a crash loop.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use l4d2ctl::api::{InstanceStatus, Observation, Problem, Remedy, parse_digest};
use left4me_state::{Name, PowerState};
use reconciler::crashloop::CrashLoop;
use reconciler::db::Db;
use reconciler::plan::Wish;

use crate::support::{Setup, TestApp, observing_l4d2ctl};

const UNIT_PROBLEM: &str = "changed by hand since l4d2ctl wrote it";

/// The host: coop-1 rendered as the revision wants it, its unit failed; a unit file changed.
fn observation(digest: &str) -> Observation {
    let coop1 = InstanceStatus {
        name: Name::new("coop-1").unwrap(),
        unit: "left4me-server@coop-1.service".into(),
        active_state: "failed".into(),
        sub_state: "failed".into(),
        since: None,
        enabled: true,
        main_pid: None,
        restarts: 3,
        result: "exit-code".into(),
        mounted: false,
        port: 27015,
        digest: Some(parse_digest(digest).unwrap()),
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
    Observation {
        instances: vec![coop1],
        overlays: Vec::new(),
        overrides: Vec::new(),
        units: vec![Problem::new("/etc/systemd/system/left4me-server@.service", UNIT_PROBLEM, Remedy::InstallUnits)],
        leftover_units: Vec::new(),
        problems: Vec::new(),
        game: Default::default(),
        workshop: Default::default(),
        schedules: Vec::new(),
    }
}

fn held(app: &TestApp, name: &str) -> bool {
    app.app.current().plan.as_ref().is_some_and(|plan| plan.crash_loops.contains_key(name))
}

fn wait_until(app: &TestApp, what: &str, check: impl Fn(&TestApp) -> bool) {
    for _ in 0..500 {
        if check(app) {
            return;
        }
        app.app.poke();
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("never: {what}");
}

#[test]
fn retry_now_asks_the_reconciler_for_a_held_server_and_only_its_owner_or_an_admin_may() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(Setup { l4d2ctl: observing_l4d2ctl(dir.path()), ..Setup::default() });
    let coop1 = Name::new("coop-1").unwrap();
    let desired = app.app.current().desired.clone().expect("the revision was read");
    let digest = desired.instance_spec(&coop1).unwrap().digest();
    let json = serde_json::to_string(&observation(digest.as_str())).unwrap();
    std::fs::write(dir.path().join("observation.json"), json).unwrap();
    // coop-1 crashed twice in a row and waits five minutes, as the reconciler records it.
    let wish = Wish { digest, state: PowerState::Running };
    let crash = CrashLoop { failures: 2, next_try: SystemTime::now() + Duration::from_secs(300), started: None, wish };
    Db::open(&app.root.path().join("left4me.db")).unwrap().set_crash_loops(&BTreeMap::from([(coop1, crash)])).unwrap();
    wait_until(&app, "coop-1 is held", |app| held(app, "coop-1"));
    let request = app.root.path().join("retries/coop-1");

    let mut alice = app.signed_in("alice");
    let page = alice.get("/servers/coop-1");
    assert!(page.body.contains("id=\"retry\"") && page.body.contains("crash loop, next try in"), "{}", page.body);
    assert!(!alice.get("/servers/coop-2").body.contains("id=\"retry\""), "coop-2 is not held");

    // Bob may not see coop-1: asking is not found, as for a server that does not exist.
    let mut bob = app.signed_in("bob");
    let refused = bob.submit("/servers/coop-1/retry", &[]);
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(refused.body, bob.submit("/servers/coop-9/retry", &[]).body);
    assert_eq!(alice.submit("/servers/coop-9/retry", &[]).status, 404);
    assert_eq!(alice.submit("/servers/..%2Fstate/retry", &[]).status, 404);
    // Without the session's token, refused.
    assert_eq!(alice.post("/servers/coop-1/retry", &[]).status, 403);
    assert!(!request.exists(), "no request was made");

    // Not held: refused, saying so, and nothing asked.
    let not_held = alice.submit("/servers/coop-2/retry", &[]);
    assert_eq!(not_held.status, 409, "{}", not_held.body);
    assert!(not_held.body.contains("coop-2 is not held back after crashing"), "{}", not_held.body);
    assert!(!app.root.path().join("retries/coop-2").exists());

    // The owner asks: a request for the service, and a notice on the page it goes back to.
    let asked = alice.submit("/servers/coop-1/retry", &[]);
    assert_eq!(asked.status, 303, "{}", asked.body);
    assert_eq!(asked.location.as_deref(), Some("/servers/coop-1?retry=asked"));
    assert!(request.is_file(), "the request {} is there", request.display());
    assert!(alice.get("/servers/coop-1?retry=asked").body.contains("A retry of coop-1 was asked for"));
    // Asked for, it is no longer held back: the next pass starts it; asking again is refused.
    wait_until(&app, "coop-1 is no longer held", |app| !held(app, "coop-1"));
    assert_eq!(alice.submit("/servers/coop-1/retry", &[]).status, 409);

    // An admin may ask too, once the pass took the request.
    std::fs::remove_file(&request).unwrap();
    wait_until(&app, "coop-1 is held again", |app| held(app, "coop-1"));
    let mut ada = app.signed_in("ada");
    assert_eq!(ada.submit("/servers/coop-1/retry", &[]).status, 303);
    assert!(request.is_file());
}

#[test]
fn the_plan_page_shows_the_unit_files_a_pass_writes_again_to_admins() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(Setup { l4d2ctl: observing_l4d2ctl(dir.path()), ..Setup::default() });
    std::fs::write(dir.path().join("observation.json"), serde_json::to_string(&observation("none")).unwrap()).unwrap();
    wait_until(&app, "the plan writes the units", |app| {
        app.app.current().plan.as_ref().is_some_and(|plan| !plan.units.is_empty())
    });
    let page = app.signed_in("ada").get("/plan");
    assert!(page.body.contains("Unit files to write first") && page.body.contains(UNIT_PROBLEM), "{}", page.body);
    // The host's own parts are not a user's to see.
    let page = app.signed_in("alice").get("/plan");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(UNIT_PROBLEM), "{}", page.body);
}

#[test]
fn the_plan_page_and_a_servers_page_show_the_game_build_to_install_and_whose_servers_are_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(Setup { l4d2ctl: observing_l4d2ctl(dir.path()), ..Setup::default() });
    let mut host = observation("none");
    host.instances[0].build = Some(100);
    host.game = l4d2ctl::api::Game {
        installed: vec![100],
        published: Some(200),
        branch: Some("public".into()),
        checked_at: Some("2026-12-01T10:00:00Z".into()),
        adoptable: None,
    };
    std::fs::write(dir.path().join("observation.json"), serde_json::to_string(&host).unwrap()).unwrap();
    wait_until(&app, "the plan installs build 200", |app| {
        app.app.current().plan.as_ref().is_some_and(|plan| plan.install.is_some())
    });
    let admin = app.signed_in("ada").get("/plan");
    assert!(admin.body.contains("Build <code>200</code> is installed"), "{}", admin.body);
    assert!(admin.body.contains("versus-1"), "an admin is told which servers run it: {}", admin.body);
    let alice = app.signed_in("alice").get("/plan");
    assert!(alice.body.contains("Build <code>200</code> is installed"), "{}", alice.body);
    assert!(alice.body.contains("the public branch&#x27;s current build"), "{}", alice.body);
    assert!(!alice.body.contains("versus-1"), "bob's server is not named to alice: {}", alice.body);
    let page = app.signed_in("alice").get("/servers/coop-1");
    assert!(page.body.contains("id=\"build\">100") && page.body.contains("→ 200"), "{}", page.body);
}
