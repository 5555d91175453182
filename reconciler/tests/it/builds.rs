//! The planner's part about game builds, on plain values: which build each server is to run,
//! what is installed, adopted or removed for it, and how servers move by their rollout.

use std::collections::BTreeMap;

use l4d2ctl::api::{Game, InstanceStatus, QueryInfo};
use left4me_state::{DesiredState, Name, Tree, validate};
use reconciler::game;
use reconciler::plan::{Action, HostRepairs, Inputs, Observed, Plan, plan};

/// A revision: `left4me.yaml`'s `spec.game`, blueprints as (name, rollout, its own build pin),
/// servers as (name, blueprint, port).
fn desired(game: &str, blueprints: &[(&str, &str, Option<&str>)], servers: &[(&str, &str, u16)]) -> DesiredState {
    let mut tree = Tree::default();
    tree.insert_file(
        "left4me.yaml",
        format!("apiVersion: left4me/v1\nkind: Settings\nspec:\n  game: {game}\n").into_bytes(),
    );
    for (name, rollout, pin) in blueprints {
        let pin = pin.map(|build| format!("  game: {{build: {build}}}\n")).unwrap_or_default();
        let text = format!(
            "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {{name: {name}, owner: alice}}\nspec:\n  rollout: {rollout}\n{pin}"
        );
        tree.insert_file(format!("blueprints/{name}.yaml"), text.into_bytes());
    }
    for (name, blueprint, port) in servers {
        let text = format!(
            "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {name}, owner: alice}}\nspec: {{blueprint: {blueprint}, port: {port}}}\n"
        );
        tree.insert_file(format!("servers/{name}.yaml"), text.into_bytes());
    }
    validate(&tree).expect("the case's revision is valid")
}

/// A server rendered as the revision has it, running on `build` (rendered for `rendered`), with
/// `players` as A2S counts them and `humans` as RCON does.
fn running(desired: &DesiredState, name: &str, build: u64, rendered: Option<u64>, players: u8) -> InstanceStatus {
    let name = Name::new(name).unwrap();
    let spec = desired.instance_spec(&name).unwrap();
    InstanceStatus {
        name: name.clone(),
        unit: format!("left4me-server@{name}.service"),
        active_state: "active".into(),
        sub_state: "running".into(),
        since: None,
        enabled: true,
        main_pid: Some(100),
        restarts: 0,
        result: "success".into(),
        mounted: true,
        port: spec.port.number(),
        digest: Some(spec.digest()),
        started_digest: Some(spec.digest()),
        started_port: Some(spec.port.number()),
        override_marker: None,
        query: Some(QueryInfo {
            name: name.to_string(),
            map: "c1m1_hotel".into(),
            players,
            max_players: 8,
            bots: 0,
            humans: None,
        }),
        last_answer: None,
        build: Some(build),
        rendered_build: rendered,
        started_build: Some(build),
        problems: Vec::new(),
        resources: Default::default(),
    }
}

fn game(installed: &[u64], published: Option<u64>) -> Game {
    Game {
        installed: installed.to_vec(),
        published,
        branch: published.map(|_| "public".into()),
        checked_at: published.map(|_| "2026-12-01T10:00:00Z".into()),
        adoptable: None,
    }
}

fn planned(desired: &DesiredState, observed: &[InstanceStatus], game: &Game) -> Plan {
    let observed: Observed = observed.iter().map(|s| (s.name.clone(), s.clone())).collect();
    let (overlays, previous) = (BTreeMap::new(), BTreeMap::new());
    let inputs = Inputs {
        desired,
        observed: &observed,
        overlays: &overlays,
        orphan_overrides: &BTreeMap::new(),
        previous: &previous,
        prune_confirmed: false,
        host: &HostRepairs::default(),
        game,
    };
    let plan = plan(&inputs);
    assert_eq!(plan, reconciler::plan::plan(&inputs), "planning is deterministic");
    plan
}

fn shown(plan: &Plan) -> String {
    let builds: Vec<String> = plan.builds.iter().map(|(name, build)| format!("{name}={build}")).collect();
    format!("{plan}builds: {}\n", builds.join(" "))
}

fn name(text: &str) -> Name {
    Name::new(text).unwrap()
}

#[test]
fn a_new_build_is_installed_and_reaches_each_server_by_its_rollout() {
    let d = desired(
        "{build: latest}",
        &[("coop", "when-empty", None), ("fast", "immediate", None), ("late", "next-start", None)],
        &[("empty", "coop", 27015), ("busy", "coop", 27016), ("now", "fast", 27017), ("later", "late", 27018)],
    );
    let observed = [
        running(&d, "empty", 100, Some(100), 0),
        running(&d, "busy", 100, Some(100), 2),
        running(&d, "now", 100, Some(100), 3),
        running(&d, "later", 100, Some(100), 0),
    ];
    let plan = planned(&d, &observed, &game(&[100], Some(200)));
    insta::assert_snapshot!("new_build", shown(&plan));
    assert_eq!(plan.install.as_ref().map(|i| i.build), Some(200), "the published build is installed first");
    let restarted: Vec<&str> =
        plan.steps.iter().filter(|s| s.action == Action::Restart).map(|s| s.server.as_str()).collect();
    assert_eq!(restarted, ["empty", "now"], "the empty when-empty server and the immediate one move now");
    assert!(plan.waiting[&name("busy")].contains("waiting for 2 players to leave"), "{:?}", plan.waiting);
    assert!(plan.waiting[&name("later")].contains("next starts"), "{:?}", plan.waiting);
    for server in ["empty", "busy", "now", "later"] {
        let rendered = plan
            .steps
            .iter()
            .any(|s| s.server.as_str() == server && matches!(s.action, Action::Rerender { build: Some(200), .. }));
        assert!(rendered, "{server} is rendered for build 200, whatever its rollout");
    }
    assert!(plan.remove_builds.is_empty(), "servers still run build 100");

    // Installed, and everyone moved but the busy server: nothing to install, 100 is still run.
    let moved = [
        running(&d, "empty", 200, Some(200), 0),
        running(&d, "busy", 100, Some(200), 2),
        running(&d, "now", 200, Some(200), 3),
        running(&d, "later", 200, Some(200), 0),
    ];
    let plan = planned(&d, &moved, &game(&[100, 200], Some(200)));
    assert!(plan.install.is_none() && plan.remove_builds.is_empty(), "{plan}");
    assert!(plan.steps.iter().all(|s| s.server.as_str() == "busy"), "only the busy server has a step left: {plan}");
    // Its players leave: it moves, and the build it leaves is removed by a later pass.
    let mut left = moved.clone();
    left[1] = running(&d, "busy", 100, Some(200), 0);
    let plan = planned(&d, &left, &game(&[100, 200], Some(200)));
    assert!(plan.steps.iter().any(|s| s.server.as_str() == "busy" && s.action == Action::Restart), "{plan}");
    assert!(plan.remove_builds.is_empty(), "build 100 is still run until the restart: {plan}");
    let done = [
        running(&d, "empty", 200, Some(200), 0),
        running(&d, "busy", 200, Some(200), 0),
        running(&d, "now", 200, Some(200), 3),
        running(&d, "later", 200, Some(200), 0),
    ];
    let plan = planned(&d, &done, &game(&[100, 200], Some(200)));
    assert_eq!(plan.remove_builds, [100], "{plan}");
    insta::assert_snapshot!("old_build_removed", shown(&plan));
}

#[test]
fn rcon_counts_humans_that_a2s_hides() {
    let d = desired("{build: latest}", &[("coop", "when-empty", None)], &[("coop-1", "coop", 27015)]);
    let mut hidden = running(&d, "coop-1", 100, Some(200), 0);
    hidden.query.as_mut().unwrap().humans = Some(1);
    let plan = planned(&d, &[hidden.clone()], &game(&[100, 200], Some(200)));
    assert!(!plan.steps.iter().any(|s| s.action == Action::Restart), "a player A2S does not show is still there");
    assert!(plan.waiting[&name("coop-1")].contains("waiting for 1 player to leave"), "{:?}", plan.waiting);
    hidden.query.as_mut().unwrap().humans = Some(0);
    let plan = planned(&d, &[hidden], &game(&[100, 200], Some(200)));
    assert!(plan.steps.iter().any(|s| s.action == Action::Restart), "{plan}");
}

#[test]
fn a_pin_holds_a_build_and_a_pin_to_an_older_installed_build_rolls_back() {
    let d = desired(
        "{build: latest}",
        &[("coop", "immediate", None), ("versus", "immediate", Some("100"))],
        &[("coop-1", "coop", 27015), ("versus-1", "versus", 27016)],
    );
    let observed = [running(&d, "coop-1", 200, Some(200), 0), running(&d, "versus-1", 100, Some(100), 0)];
    let plan = planned(&d, &observed, &game(&[100, 200], Some(200)));
    assert!(plan.is_empty(), "each runs the build it is to run: {plan}");
    assert_eq!(plan.builds.get(&name("versus-1")), Some(&100));

    // The host pins the older build: coop-1 rolls back, no download.
    let d = desired(
        "{build: 100}",
        &[("coop", "immediate", None), ("versus", "immediate", Some("100"))],
        &[("coop-1", "coop", 27015), ("versus-1", "versus", 27016)],
    );
    let plan = planned(&d, &observed, &game(&[100, 200], Some(200)));
    insta::assert_snapshot!("rolled_back", shown(&plan));
    assert!(plan.install.is_none());
    assert!(plan.steps.iter().any(|s| s.server.as_str() == "coop-1" && s.action == Action::Restart), "{plan}");
    assert!(plan.remove_builds.is_empty(), "coop-1 still runs 200 until it restarts");
}

#[test]
fn a_pin_to_a_build_that_cannot_be_had_says_so_and_changes_nothing() {
    let d =
        desired("{build: 50}", &[("coop", "immediate", None)], &[("coop-1", "coop", 27015), ("new", "coop", 27016)]);
    let observed = [running(&d, "coop-1", 100, Some(100), 0)];
    let plan = planned(&d, &observed, &game(&[100], Some(200)));
    insta::assert_snapshot!("unavailable", format!("{}{:#?}", shown(&plan), plan.servers));
    assert!(plan.install.is_none(), "only the branch's current build can be downloaded");
    assert!(!plan.steps.iter().any(|s| s.server.as_str() == "new"), "a server with no build to run is not made");
    assert!(plan.steps.is_empty(), "coop-1 stays on build 100: {plan}");
    let why = &plan.servers[&name("coop-1")].message;
    assert!(why.contains("build 50 is pinned but not installed") && why.contains("installed: 100"), "{why}");
    assert_eq!(game::want(&d, &game(&[100], Some(200)), d.settings.game.build).build(), None);
}

#[test]
fn a_base_install_from_before_builds_is_adopted_without_a_restart() {
    let d = desired("{build: latest}", &[("coop", "when-empty", None)], &[("coop-1", "coop", 27015)]);
    // The record names no build; the running server stacks installation/, which is build 100.
    let observed = [running(&d, "coop-1", 100, None, 3)];
    let legacy = Game { adoptable: Some(100), ..game(&[], None) };
    let plan = planned(&d, &observed, &legacy);
    insta::assert_snapshot!("adopted", shown(&plan));
    assert_eq!(plan.adopt, Some(100));
    assert!(plan.install.is_none(), "the adopted build is no download");
    assert!(!plan.steps.iter().any(|s| matches!(s.action, Action::Restart | Action::Stop)), "{plan}");
    assert!(
        plan.steps.iter().any(|s| matches!(s.action, Action::Rerender { build: Some(100), .. })),
        "its record is made to name the build: {plan}"
    );
}

#[test]
fn steam_is_asked_again_once_check_every_has_passed_or_the_branch_moved() {
    let d = desired("{branch: public, checkEvery: 30m}", &[("coop", "when-empty", None)], &[]);
    let checked_at = left4me_state::clock::parse_rfc3339("2026-12-01T10:00:00Z").unwrap();
    let checked = game(&[100], Some(100));
    assert!(game::check_due(&d, &Game::default(), checked_at).is_some(), "never checked");
    assert_eq!(game::check_due(&d, &checked, checked_at + 29 * 60), None);
    let due = game::check_due(&d, &checked, checked_at + 31 * 60).expect("30 minutes passed");
    assert!(due.contains("31 min ago"), "{due}");
    let beta = desired("{branch: beta}", &[("coop", "when-empty", None)], &[]);
    let moved = game::check_due(&beta, &checked, checked_at + 60).expect("another branch");
    assert!(moved.contains("from public to beta"), "{moved}");
    // A check of another branch says nothing of this one's build.
    assert_eq!(game::published(&beta, &checked), None);
}
