//! The planner on plain values: a table of (desired, observed) cases, each plan pinned by a
//! snapshot, covering every step kind and ordering rule.

use std::collections::BTreeMap;

use l4d2ctl::api::{Game, InstanceStatus, Override, QueryInfo, parse_digest};
use left4me_state::{DesiredState, Digest, Name, PowerState, Tree, validate};
use reconciler::plan::{Action, HostRepairs, Inputs, Observed, Plan, Wish, plan};

const BLUEPRINTS: &str = "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: coop, owner: alice}\nspec:\n  \
                          arguments: [\"+map\", c1m1_hotel]\n  rollout: ROLLOUT\n";

/// A revision with servers given as (name, port, state) and the blueprint's rollout.
fn desired(rollout: &str, servers: &[(&str, u16, &str)]) -> DesiredState {
    let mut tree = Tree::default();
    tree.insert_file("blueprints/coop.yaml", BLUEPRINTS.replace("ROLLOUT", rollout).into_bytes());
    for (name, port, state) in servers {
        let text = format!(
            "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {name}, owner: alice}}\nspec: {{blueprint: coop, port: {port}, state: {state}}}\n"
        );
        tree.insert_file(format!("servers/{name}.yaml"), text.into_bytes());
    }
    validate(&tree).expect("the case's revision is valid")
}

/// What the host reports for a server: rendered as `desired` renders it unless `stale`.
struct Host {
    name: &'static str,
    port: u16,
    active: &'static str,
    enabled: bool,
    /// The instance on disk is an older render.
    old_render: bool,
    /// The running server started from an older render.
    old_start: bool,
    players: Option<u8>,
    overridden: bool,
    /// The port it runs on, when a later render moved it.
    started_port: Option<u16>,
}

fn host(name: &'static str, port: u16) -> Host {
    Host {
        name,
        port,
        active: "active",
        enabled: true,
        old_render: false,
        old_start: false,
        players: Some(0),
        overridden: false,
        started_port: None,
    }
}

fn observed(state: &DesiredState, hosts: &[Host]) -> Observed {
    hosts
        .iter()
        .map(|h| {
            let name = Name::new(h.name).unwrap();
            let current =
                state.instance_spec(&name).map(|s| s.digest().to_string()).unwrap_or_else(|| "sha256:gone".into());
            let digest = if h.old_render { "sha256:old".to_owned() } else { current.clone() };
            let running = h.active == "active";
            // A unit on its way up (or between restarts) has its started.json too.
            let started_unit = matches!(h.active, "active" | "activating");
            let started = if h.old_start || h.old_render { "sha256:old".to_owned() } else { current };
            let status = InstanceStatus {
                name: name.clone(),
                unit: format!("left4me-server@{name}.service"),
                active_state: h.active.into(),
                sub_state: if running { "running".into() } else { "dead".into() },
                since: None,
                enabled: h.enabled,
                main_pid: running.then_some(100),
                restarts: 0,
                result: "success".into(),
                mounted: running,
                port: h.port,
                digest: Some(parse_digest(&digest).unwrap()),
                started_digest: started_unit.then(|| parse_digest(&started).unwrap()),
                started_port: started_unit.then_some(h.started_port.unwrap_or(h.port)),
                override_marker: h.overridden.then(|| Override {
                    who: "bob".into(),
                    when: "2026-11-26T10:00:00Z".into(),
                    what: "stop".into(),
                }),
                query: match (running, h.players) {
                    (true, Some(players)) => Some(QueryInfo {
                        name: h.name.into(),
                        map: "c1m1_hotel".into(),
                        players,
                        max_players: 8,
                        bots: 0,
                        humans: None,
                    }),
                    _ => None,
                },
                last_answer: None,
                build: None,
                rendered_build: None,
                started_build: None,
                problems: Vec::new(),
                resources: Default::default(),
            };
            (name, status)
        })
        .collect()
}

fn check(name: &str, desired: &DesiredState, hosts: &[Host], previous: &[(&str, &str)], confirmed: bool) -> Plan {
    let observed = observed(desired, hosts);
    let previous: BTreeMap<Name, Wish> = previous
        .iter()
        .map(|(server, state)| {
            let name = Name::new(*server).unwrap();
            let state = if *state == "running" { PowerState::Running } else { PowerState::Stopped };
            let digest = desired.instance_spec(&name).unwrap().digest();
            (name, Wish { digest, state })
        })
        .collect();
    let overlays = BTreeMap::new();
    let inputs = Inputs {
        desired,
        observed: &observed,
        overlays: &overlays,
        orphan_overrides: &BTreeMap::new(),
        previous: &previous,
        prune_confirmed: confirmed,
        host: &HostRepairs::default(),
        game: &Game::default(),
    };
    let plan = plan(&inputs);
    let again = reconciler::plan::plan(&inputs);
    assert_eq!(plan, again, "planning is deterministic");
    // A pass looks briefly, without the games' answers: unless the planner says it needs them,
    // the brief look must plan exactly as the full one.
    let mut brief = observed.clone();
    brief.values_mut().for_each(|status| status.query = None);
    let brief_inputs = Inputs { observed: &brief, ..inputs };
    if reconciler::plan::needs_query(&brief_inputs).is_empty() {
        assert_eq!(reconciler::plan::plan(&brief_inputs), plan, "{name}: a brief look plans as a full one");
    }
    insta::assert_snapshot!(name, plan.to_string());
    plan
}

#[test]
fn a_converged_host_needs_nothing() {
    let d = desired("when-empty", &[("a", 27015, "running"), ("b", 27016, "stopped")]);
    let plan = check(
        "converged",
        &d,
        &[host("a", 27015), Host { active: "inactive", enabled: false, ..host("b", 27016) }],
        &[],
        false,
    );
    assert!(plan.is_empty());
}

#[test]
fn new_servers_are_created_then_started_and_stopped_ones_only_created() {
    let d = desired("when-empty", &[("a", 27015, "running"), ("b", 27016, "stopped")]);
    check("create", &d, &[], &[], false);
}

#[test]
fn drift_is_healed() {
    let d = desired(
        "when-empty",
        &[("crashed", 27015, "running"), ("raw-start", 27016, "stopped"), ("disabled", 27017, "running")],
    );
    let hosts = [
        Host { active: "failed", ..host("crashed", 27015) },
        host("raw-start", 27016),
        Host { enabled: false, ..host("disabled", 27017) },
    ];
    check("drift", &d, &hosts, &[], false);
}

#[test]
fn a_server_stopping_is_not_started_until_it_has_stopped() {
    // A crash on its way to systemd's own restart is deactivating for a moment: a start then is
    // a try the crash loop never made, and one the start limit refuses resets that limit.
    let d = desired("when-empty", &[("stopping", 27015, "running"), ("crashed", 27016, "running")]);
    let hosts = [
        Host { active: "deactivating", ..host("stopping", 27015) },
        Host { active: "failed", ..host("crashed", 27016) },
    ];
    let plan = check("stopping", &d, &hosts, &[], false);
    let started: Vec<&str> =
        plan.steps.iter().filter(|s| s.action == Action::Start).map(|s| s.server.as_str()).collect();
    assert_eq!(started, ["crashed"], "{plan}");
    assert!(plan.waiting[&Name::new("stopping").unwrap()].starts_with("stopping"), "{plan}");
}

#[test]
fn a_changed_render_rolls_out_per_policy() {
    for (rollout, players) in [
        ("immediate", Some(3)),
        ("when-empty", Some(0)),
        ("when-empty", Some(2)),
        ("when-empty", None),
        ("next-start", Some(0)),
    ] {
        let d = desired(rollout, &[("a", 27015, "running")]);
        let hosts = [Host { old_render: true, players, ..host("a", 27015) }];
        let players = players.map_or("no-answer".to_owned(), |p| p.to_string());
        check(&format!("rollout-{rollout}-{players}"), &d, &hosts, &[], false);
    }
    // Rendered already, but still running the old render: only the restart is left.
    let d = desired("immediate", &[("a", 27015, "running")]);
    check("rollout-started-old", &d, &[Host { old_start: true, ..host("a", 27015) }], &[], false);
    // Running an old render and not enabled: rolled out and enabled, both.
    let d = desired("immediate", &[("a", 27015, "running")]);
    check("rollout-and-enable", &d, &[Host { old_start: true, enabled: false, ..host("a", 27015) }], &[], false);
    // A stopped server is only re-rendered; its next start runs the new render.
    let d = desired("immediate", &[("a", 27015, "stopped")]);
    check(
        "rerender-stopped",
        &d,
        &[Host { old_render: true, active: "inactive", enabled: false, ..host("a", 27015) }],
        &[],
        false,
    );
}

#[test]
fn a_port_moving_between_servers_is_released_before_it_is_taken() {
    // a moves from 27015 to 27016, b is new on 27015, c is deleted and frees 27017 for d.
    let d = desired(
        "immediate",
        &[("a", 27016, "running"), ("b", 27015, "running"), ("d", 27017, "running"), ("e", 27018, "running")],
    );
    let hosts = [Host { old_render: true, ..host("a", 27015) }, host("c", 27017), host("e", 27018)];
    let plan = check("port-move", &d, &hosts, &[], false);
    let position = |server: &str, action: &str| {
        plan.steps.iter().position(|s| s.server.as_str() == server && s.action.name() == action).unwrap()
    };
    assert!(position("a", "stop") < position("b", "start"));
    assert!(position("c", "delete") < position("d", "start"));
}

#[test]
fn overrides_are_left_alone_until_a_revision_changes_the_server() {
    let d = desired("immediate", &[("a", 27015, "running"), ("b", 27016, "running")]);
    let hosts = [
        Host { active: "inactive", enabled: false, overridden: true, ..host("a", 27015) },
        Host { active: "inactive", enabled: false, overridden: true, ..host("b", 27016) },
    ];
    // a: the revision wants what it wanted before → left alone. b: the revision changed b
    // (it was stopped before) → the override is released and b converges.
    check("override", &d, &hosts, &[("a", "running"), ("b", "stopped")], false);
}

#[test]
fn deleting_too_many_servers_is_held_until_confirmed() {
    let d = desired("immediate", &[("a", 27015, "running")]);
    let hosts = [host("a", 27015), host("b", 27016), host("c", 27017)];
    check("prune-held", &d, &hosts, &[], false);
    check("prune-confirmed", &d, &hosts, &[], true);
    // One of three is within the default limit of half.
    let d = desired("immediate", &[("a", 27015, "running"), ("b", 27016, "running")]);
    check("prune-within-limit", &d, &hosts, &[], false);
    // Every server, even of one.
    let d = desired("immediate", &[]);
    check("prune-everything", &d, &[host("a", 27015)], &[], false);
}

#[test]
fn a_server_placed_on_another_host_moves_away_and_is_no_deletion_the_prune_guard_holds() {
    let mut tree = Tree::default();
    tree.insert_file("blueprints/coop.yaml", BLUEPRINTS.replace("ROLLOUT", "immediate").into_bytes());
    for host in ["b", "c"] {
        let text = format!(
            "apiVersion: left4me/v1\nkind: Host\nmetadata: {{name: {host}}}\nspec: {{address: {host}.example.org}}\n"
        );
        tree.insert_file(format!("hosts/{host}.yaml"), text.into_bytes());
    }
    let server = |name: &str, host: &str| {
        format!(
            "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {name}, owner: alice}}\nspec: {{blueprint: coop, port: 27015, host: {host}}}\n"
        )
    };
    tree.insert_file("servers/a.yaml", server("a", "c").into_bytes());
    let whole = validate(&tree).expect("the revision is valid");
    // Host b had a, the only server it runs; the revision places a on c.
    let on_b = whole.placed_on(Some(&Name::new("b").unwrap())).unwrap();
    let plan = check("moved-away", &on_b, &[host("a", 27015)], &[], false);
    assert_eq!(plan.held, None, "moving every server of a host away is not a prune");
    let delete = plan.steps.iter().find(|s| matches!(&s.action, Action::MoveAway { to } if to.as_str() == "c"));
    let delete = delete.expect("a leaves b for c");
    assert_eq!(delete.reason, "moves to host c, which takes its data from here");
}

#[test]
fn overlays_are_written_built_or_fetched_before_servers_when_absent_or_changed() {
    let mut tree = Tree::default();
    let blueprint = |name: &str, overlays: &str| {
        format!(
            "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {{name: {name}, owner: alice}}\nspec: {{overlays: [{overlays}]}}\n"
        )
    };
    tree.insert_file("blueprints/cfg.yaml", blueprint("cfg", "rates").into_bytes());
    tree.insert_file("blueprints/pack.yaml", blueprint("pack", "plugins").into_bytes());
    tree.insert_file(
        "overlays/rates/overlay.yaml",
        b"apiVersion: left4me/v1\nkind: Overlay\nmetadata: {name: rates}\nspec: {type: files}\n".to_vec(),
    );
    tree.insert_file("overlays/rates/files/left4dead2/cfg/server.cfg", b"sv_maxrate 100000\n".to_vec());
    tree.insert_file(
        "overlays/plugins/overlay.yaml",
        b"apiVersion: left4me/v1\nkind: Overlay\nmetadata: {name: plugins}\nspec: {type: script}\n".to_vec(),
    );
    tree.insert_file("overlays/plugins/build.sh", b"echo build\n".to_vec());
    tree.insert_file("blueprints/maps.yaml", blueprint("maps", "campaigns").into_bytes());
    tree.insert_file(
        "overlays/campaigns/overlay.yaml",
        b"apiVersion: left4me/v1\nkind: Overlay\nmetadata: {name: campaigns}\nspec: {type: workshop, items: [1]}\n"
            .to_vec(),
    );
    for (name, blueprint, port) in [("a", "cfg", 27015), ("b", "pack", 27016), ("c", "maps", 27017)] {
        let text = format!(
            "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {name}, owner: alice}}\nspec: {{blueprint: {blueprint}, port: {port}}}\n"
        );
        tree.insert_file(format!("servers/{name}.yaml"), text.into_bytes());
    }
    let desired = validate(&tree).unwrap();
    let previous = BTreeMap::new();
    let observed = Observed::new();
    let none = BTreeMap::new();
    let missing = plan(&Inputs {
        desired: &desired,
        observed: &observed,
        overlays: &none,
        orphan_overrides: &BTreeMap::new(),
        previous: &previous,
        prune_confirmed: false,
        host: &HostRepairs::default(),
        game: &Game::default(),
    });
    insta::assert_snapshot!("overlays-missing", format!("{missing}{:#?}", missing.servers));
    // Written and built already with the revision's digests: nothing to write.
    let digest = |name: &str| desired.overlays[&Name::new(name).unwrap()].digest.clone();
    let current: BTreeMap<Name, Digest> =
        ["rates", "plugins", "campaigns"].iter().map(|name| (Name::new(*name).unwrap(), digest(name))).collect();
    let written = plan(&Inputs {
        desired: &desired,
        observed: &observed,
        overlays: &current,
        orphan_overrides: &BTreeMap::new(),
        previous: &previous,
        prune_confirmed: false,
        host: &HostRepairs::default(),
        game: &Game::default(),
    });
    assert!(written.overlays.is_empty());
}

#[test]
fn hand_creations_and_deletions_are_left_alone_and_held_ports_block_starts() {
    let marker = Override { who: "bob".into(), when: "2026-11-26T10:00:00Z".into(), what: "delete".into() };
    let d = desired("immediate", &[("deleted-by-hand", 27015, "running"), ("changed", 27016, "running")]);
    // deleted-by-hand: its instance is gone and its marker stays → left alone. changed: deleted
    // by hand too, but the revision changed it since (its wish was "stopped") → released, made.
    let hosts = [Host { overridden: true, ..host("made-by-hand", 27020) }];
    let observed = observed(&d, &hosts);
    let orphans: BTreeMap<Name, Override> =
        ["deleted-by-hand", "changed"].iter().map(|n| (Name::new(*n).unwrap(), marker.clone())).collect();
    let previous: BTreeMap<Name, Wish> = [("deleted-by-hand", PowerState::Running), ("changed", PowerState::Stopped)]
        .iter()
        .map(|(n, state)| {
            let name = Name::new(*n).unwrap();
            (name.clone(), Wish { digest: d.instance_spec(&name).unwrap().digest(), state: *state })
        })
        .collect();
    let overlays = BTreeMap::new();
    let inputs = Inputs {
        desired: &d,
        observed: &observed,
        overlays: &overlays,
        orphan_overrides: &orphans,
        previous: &previous,
        prune_confirmed: false,
        host: &HostRepairs::default(),
        game: &Game::default(),
    };
    let hand = plan(&inputs);
    insta::assert_snapshot!("hand-made-and-deleted", format!("{hand}{:#?}", hand.servers));

    // c's deletion is held (it would delete more than half), so c keeps 27017 and d must wait.
    let d = desired("immediate", &[("a", 27015, "running"), ("d", 27017, "running")]);
    let hosts = [host("a", 27015), host("b", 27016), host("c", 27017)];
    let held = check("port-held", &d, &hosts, &[], false);
    assert!(!held.steps.iter().any(|s| s.server.as_str() == "d" && s.action.name() == "start"));
    assert!(held.servers[&Name::new("d").unwrap()].message.contains("port 27017 is still used by c"));

    // Rendered for a new port already, still running on the old one: a move, by stop and start.
    let d = desired("immediate", &[("a", 27016, "running")]);
    check(
        "port-moved-render",
        &d,
        &[Host { old_start: true, started_port: Some(27015), ..host("a", 27016) }],
        &[],
        false,
    );
}

#[test]
fn only_a_when_empty_rollout_of_an_old_render_needs_the_games_answers() {
    let needs = |rollout: &str, hosts: &[Host]| -> Vec<String> {
        let d = desired(rollout, &[("a", 27015, "running"), ("b", 27016, "running"), ("c", 27017, "stopped")]);
        let observed = observed(&d, hosts);
        let (overlays, orphans, previous) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let inputs = Inputs {
            desired: &d,
            observed: &observed,
            overlays: &overlays,
            orphan_overrides: &orphans,
            previous: &previous,
            prune_confirmed: false,
            host: &HostRepairs::default(),
            game: &Game::default(),
        };
        reconciler::plan::needs_query(&inputs).iter().map(ToString::to_string).collect()
    };
    // A brief look has no answers: a running server of an older start needs them, a current one not.
    let brief =
        [Host { old_start: true, players: None, ..host("a", 27015) }, Host { players: None, ..host("b", 27016) }];
    assert_eq!(needs("when-empty", &brief), ["a"]);
    assert!(needs("immediate", &brief).is_empty(), "an immediate rollout restarts whoever plays");
    assert!(needs("next-start", &brief).is_empty());
    // With players in the answer, nothing more is needed; an answer of none is A2S's word, which
    // may hide players: the server's console is asked.
    assert!(needs("when-empty", &[Host { old_start: true, players: Some(2), ..host("a", 27015) }]).is_empty());
    assert_eq!(needs("when-empty", &[Host { old_start: true, ..host("a", 27015) }]), ["a"]);
    // Nor is it for a game that is not up to answer (a crash loop between restarts), nor for a
    // server changed by hand, which is left alone whatever its players.
    let restarting = Host { active: "activating", old_start: true, players: None, ..host("a", 27015) };
    let overridden = Host { overridden: true, old_start: true, players: None, ..host("b", 27016) };
    assert!(needs("when-empty", &[restarting, overridden]).is_empty());
}

#[test]
fn what_the_host_cannot_use_as_it_is_is_put_right() {
    use l4d2ctl::api::{LeftoverUnit, Problem, Remedy};
    let d = desired(
        "immediate",
        &[("a", 27015, "running"), ("b", 27016, "running"), ("e", 27018, "stopped"), ("f", 27019, "running")],
    );
    let mut observed = observed(&d, &[host("a", 27015), Host { active: "inactive", ..host("b", 27016) }]);
    // a: its record cannot be read, so its render is unknown; what it started with is unknown too,
    // which only its next start puts right.
    let a = observed.get_mut(&Name::new("a").unwrap()).unwrap();
    (a.digest, a.port) = (None, 0);
    a.problems = vec![
        Problem::new("instances/a/instance.json", "EOF while parsing a value at line 1 column 0", Remedy::Initialize),
        Problem::new("runtime/a/started.json", "EOF while parsing a value at line 1 column 0", Remedy::NextStart),
    ];
    // b: rendered as the revision has it, stopped, its upper removed.
    observed.get_mut(&Name::new("b").unwrap()).unwrap().problems =
        vec![Problem::new("runtime/b/upper", "is missing", Remedy::Initialize)];
    let leftover = |name: &str, active: &str| LeftoverUnit {
        name: Name::new(name).unwrap(),
        unit: format!("left4me-server@{name}.service"),
        active_state: active.into(),
        enabled: true,
    };
    // Units with no instance: gone (not declared), e (declared stopped), f (declared running: its
    // start takes it over), hand (deleted by hand: left alone).
    let repairs = HostRepairs {
        units: vec![Problem::new(
            "/usr/local/lib/systemd/system/left4me-server@.service",
            "differs from what l4d2ctl renders",
            Remedy::InstallUnits,
        )],
        leftover_units: vec![
            leftover("e", "failed"),
            leftover("f", "failed"),
            leftover("gone", "failed"),
            leftover("hand", "inactive"),
        ],
    };
    let marker = Override { who: "bob".into(), when: "2026-11-26T10:00:00Z".into(), what: "delete".into() };
    let orphans = BTreeMap::from([(Name::new("hand").unwrap(), marker)]);
    let (overlays, previous) = (BTreeMap::new(), BTreeMap::new());
    let inputs = Inputs {
        desired: &d,
        observed: &observed,
        overlays: &overlays,
        orphan_overrides: &orphans,
        previous: &previous,
        prune_confirmed: false,
        host: &repairs,
        game: &Game::default(),
    };
    let repaired = plan(&inputs);
    insta::assert_snapshot!("repairs", format!("{repaired}{:#?}", repaired.servers));
    assert!(repaired.held.is_none(), "units left behind are no deletions of servers to hold");
    // Once put right, nothing is left to do for them.
    let mut healed = observed.clone();
    for status in healed.values_mut() {
        status.digest = Some(d.instance_spec(&status.name).unwrap().digest());
        status.problems.clear();
        status.active_state = "active".into();
    }
    let inputs = Inputs {
        observed: &healed,
        host: &HostRepairs::default(),
        game: &Game::default(),
        orphan_overrides: &BTreeMap::new(),
        ..inputs
    };
    assert!(plan(&inputs).steps.iter().all(|s| !["a", "b"].contains(&s.server.as_str())), "{}", plan(&inputs));
}

#[test]
fn a_crash_loop_holds_the_start_back_doubling_its_wait_until_something_changes() {
    use reconciler::crashloop::{self, CrashLoop, Held};
    use std::time::{Duration, SystemTime};

    // 10 s, doubling, at most 5 minutes.
    let waits: Vec<u64> = (1..=7).map(|n| crashloop::wait(n).as_secs()).collect();
    assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(crashloop::wait(u32::MAX), Duration::from_secs(300));
    assert_eq!(
        [260, 45, 300, 0].map(|s| crashloop::short(Duration::from_secs(s))),
        ["4m20s", "45s", "5m", "0s"].map(String::from)
    );

    let d = desired("immediate", &[("a", 27015, "running"), ("b", 27016, "stopped")]);
    let a = Name::new("a").unwrap();
    let wish = Wish { digest: d.instance_spec(&a).unwrap().digest(), state: PowerState::Running };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let minute_ago = now - Duration::from_secs(60);
    let started = CrashLoop { failures: 2, next_try: minute_ago, started: Some(minute_ago), wish: wish.clone() };
    let update = |crash: &CrashLoop, active: &'static str, desired: &DesiredState, retried: &[Name]| {
        let observed = observed(desired, &[Host { active, ..host("a", 27015) }]);
        crashloop::update(&BTreeMap::from([(a.clone(), crash.clone())]), desired, &observed, retried, now).remove(&a)
    };

    // Started by a pass and found failed: one more crash, held for twice as long as before.
    let held = update(&started, "failed", &d, &[]).expect("a crash is counted");
    assert_eq!((held.failures, held.started, held.next_try), (3, None, now + Duration::from_secs(40)));
    // Held and still failed: held as it was, not counted again.
    assert_eq!(update(&held, "failed", &d, &[]), Some(held.clone()));
    // Started and still up (or on its way up): kept, until ten minutes up forget it.
    assert_eq!(update(&started, "active", &d, &[]), Some(started.clone()));
    assert_eq!(update(&started, "activating", &d, &[]), Some(started.clone()));
    let long_ago = now - Duration::from_secs(601);
    assert_eq!(update(&CrashLoop { started: Some(long_ago), ..started.clone() }, "active", &d, &[]), None);
    // Tried at once: a unit no longer failed while held (reset, released, rebooted), a retry
    // asked for, a revision that wants something else of it, a server no longer declared running.
    assert_eq!(update(&held, "inactive", &d, &[]), None);
    assert_eq!(update(&held, "failed", &d, std::slice::from_ref(&a)), None);
    let changed = desired("when-empty", &[("a", 27017, "running")]);
    assert_eq!(update(&held, "failed", &changed, &[]), None);
    let stopped = desired("immediate", &[("a", 27015, "stopped")]);
    assert_eq!(update(&held, "failed", &stopped, &[]), None);

    // A pass's start is a try: a server with no crashes yet gets a record of it.
    let mut loops = BTreeMap::new();
    crashloop::started(&mut loops, &d, &[a.clone(), Name::new("b").unwrap()], now);
    assert_eq!(loops.keys().map(Name::as_str).collect::<Vec<_>>(), ["a"], "b is declared stopped");
    assert_eq!((loops[&a].failures, loops[&a].started), (0, Some(now)));

    // Only a held loop whose wait is not over holds a start.
    let holds = crashloop::holds(&BTreeMap::from([(a.clone(), held.clone())]), now);
    assert_eq!(holds[&a], Held { failures: 3, retry_in: Duration::from_secs(40) });
    assert!(crashloop::holds(&BTreeMap::from([(a.clone(), held.clone())]), held.next_try).is_empty());
    assert!(crashloop::holds(&BTreeMap::from([(a.clone(), started)]), now).is_empty());

    // The planner holds the start of a failed server and says why, in Sync and in Health; its
    // other steps stay, and so do other servers' starts.
    let d = desired("immediate", &[("a", 27015, "running"), ("c", 27017, "running")]);
    let hosts = [
        Host { active: "failed", old_render: true, ..host("a", 27015) },
        Host { active: "inactive", enabled: false, ..host("c", 27017) },
    ];
    let mut planned = check("crash-loop-unheld", &d, &hosts, &[], false);
    let holds = BTreeMap::from([(a.clone(), Held { failures: 3, retry_in: Duration::from_millis(259_400) })]);
    crashloop::hold(&mut planned, &holds);
    insta::assert_snapshot!("crash-loop-held", planned.to_string());
    let steps: Vec<String> = planned.steps.iter().map(|s| format!("{} {}", s.action.name(), s.server)).collect();
    assert_eq!(steps, ["re-render a", "start c"]);
    let observed = observed(&d, &hosts);
    let reports = reconciler::report::reports_of(&planned, &d, &observed);
    let report = reports.iter().find(|r| r.name == "a").unwrap();
    assert_eq!(format!("{:?}", report.health), "Failed");
    assert!(report.health_message.starts_with("crash loop, next try in 4m20s"), "{}", report.health_message);
    assert!(
        report.sync_message.contains("held after 3 crashes in a row")
            && report.sync_message.contains("left4me retry a")
    );
}
