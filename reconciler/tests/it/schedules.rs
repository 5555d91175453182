//! Schedules: the timers a pass puts on the host and what a run does to each server, on plain
//! values; then on a sandbox host, timers fired by systemd, runs that wait for players to leave,
//! warn them, skip a server that does not empty, and a run missed while the host was off.

use l4d2ctl::api::{self, InstalledTimer, InstanceStatus, Override, QueryInfo};
use left4me_state::{Calendar, DesiredState, Name, PowerState, Schedule, ScheduleAction, ScheduleServers, Tree, When};
use reconciler::schedules::{self, Decision, Target};

fn name(text: &str) -> Name {
    Name::new(text).unwrap()
}

/// A revision of two servers, coop-1 and coop-2, with `schedules` put in as validation builds
/// them.
fn desired(schedules: &[Schedule]) -> DesiredState {
    let mut tree = Tree::default();
    tree.insert_file(
        "blueprints/coop.yaml",
        b"apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: coop, owner: alice}\nspec: {}\n".to_vec(),
    );
    for (server, port) in [("coop-1", 27015), ("coop-2", 27016)] {
        let text = format!(
            "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {server}, owner: alice}}\nspec: {{blueprint: coop, port: {port}}}\n"
        );
        tree.insert_file(format!("servers/{server}.yaml"), text.into_bytes());
    }
    let mut desired = left4me_state::validate(&tree).expect("the case's revision is valid");
    desired.schedules = schedules.iter().map(|schedule| (schedule.name.clone(), schedule.clone())).collect();
    desired
}

fn schedule(name_: &str, at: &str, action: ScheduleAction, when: When) -> Schedule {
    Schedule {
        name: name(name_),
        owner: name("alice"),
        servers: ScheduleServers::Named(vec![name("coop-1")]),
        at: Calendar::new(at.to_owned()).unwrap(),
        action,
        when,
        within: 7200,
        warn: None,
        file: format!("schedules/{name_}.yaml"),
    }
}

fn timer(name_: &str, calendar: Option<&str>, enabled: bool) -> InstalledTimer {
    InstalledTimer { name: name(name_), calendar: calendar.map(str::to_owned), enabled }
}

#[test]
fn a_pass_puts_every_timer_when_the_hosts_differ_and_nothing_when_they_match() {
    let nightly = schedule("nightly", "*-*-* 06:00:00", ScheduleAction::Restart, When::Empty);
    let greet = schedule("greet", "Mon..Fri 09:00", ScheduleAction::Command("say hi".into()), When::Always);
    let both = desired(&[nightly.clone(), greet.clone()]);
    let current = [timer("greet", Some("Mon..Fri 09:00"), true), timer("nightly", Some("*-*-* 06:00:00"), true)];
    assert_eq!(schedules::put(&both, &current), None, "the host has them as the revision does");
    assert_eq!(schedules::put(&desired(&[]), &[]), None, "no schedule, no timer");

    let cases: [(&str, Vec<InstalledTimer>, &str); 5] = [
        ("a new one", vec![current[0].clone()], "nightly is new"),
        (
            "a calendar changed",
            vec![current[0].clone(), timer("nightly", Some("*-*-* 05:00:00"), true)],
            "nightly moves from \"*-*-* 05:00:00\" to \"*-*-* 06:00:00\"",
        ),
        (
            "a file changed by hand",
            vec![current[0].clone(), timer("nightly", None, true)],
            "nightly's timer is not as l4d2ctl writes it",
        ),
        (
            "a timer disabled by hand",
            vec![current[0].clone(), timer("nightly", Some("*-*-* 06:00:00"), false)],
            "nightly's timer is not enabled",
        ),
        (
            "a schedule removed from the repo",
            vec![current[0].clone(), current[1].clone(), timer("old", Some("daily"), true)],
            "old is no longer in the revision",
        ),
    ];
    for (case, on_host, why) in cases {
        let put = schedules::put(&both, &on_host).unwrap_or_else(|| panic!("{case}: a put"));
        assert!(put.reason.contains(why), "{case}: {}", put.reason);
        // One command for all: every timer of the revision, whatever differs.
        let names: Vec<&str> = put.timers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["greet", "nightly"], "{case}");
    }
    let gone = schedules::put(&desired(&[]), &current).expect("timers of schedules removed");
    assert!(gone.timers.is_empty(), "{gone:?}");
}

/// coop-1 on the host: running or stopped, with `humans` playing, maybe marked by `who`.
fn observed(running: bool, humans: u8, who: Option<&str>) -> InstanceStatus {
    let (active, sub) = if running { ("active", "running") } else { ("inactive", "dead") };
    InstanceStatus {
        name: name("coop-1"),
        unit: "left4me-server@coop-1.service".into(),
        active_state: active.into(),
        sub_state: sub.into(),
        since: None,
        enabled: running,
        main_pid: None,
        restarts: 0,
        result: "success".into(),
        mounted: running,
        port: 27015,
        digest: None,
        started_digest: None,
        started_port: None,
        override_marker: who.map(|who| Override {
            who: who.into(),
            when: "2026-12-01T06:00:00Z".into(),
            what: "stop".into(),
        }),
        query: running.then(|| QueryInfo {
            name: "coop".into(),
            map: "c1m1_hotel".into(),
            players: humans,
            max_players: 8,
            bots: 0,
            humans: None,
        }),
        last_answer: None,
        build: None,
        rendered_build: None,
        started_build: None,
        problems: Vec::new(),
    }
}

#[test]
fn a_run_restarts_what_runs_and_a_stop_or_start_against_the_revision_leaves_a_marker_naming_it() {
    let coop = |state| Target { name: name("coop-1"), state, keep: 3 };
    let (running, stopped) = (coop(PowerState::Running), coop(PowerState::Stopped));
    let by_schedule = Some("schedule night");
    let of = |action| schedule("night", "daily", action, When::Always);
    let act = |commands: Vec<api::Command>, running| Decision::Act { commands, running };
    let coop1 = name("coop-1");
    let marked = |write| api::Command::ForSchedule { schedule: name("night"), write: Box::new(write) };
    let cases = [
        (
            "restart, running",
            of(ScheduleAction::Restart),
            &running,
            Some(observed(true, 2, None)),
            act(vec![api::Command::Restart { name: coop1.clone() }], true),
        ),
        (
            "restart, stopped",
            of(ScheduleAction::Restart),
            &running,
            Some(observed(false, 0, None)),
            Decision::Nothing("coop-1 is not running; nothing to restart".into()),
        ),
        (
            "stop, declared running",
            of(ScheduleAction::Stop),
            &running,
            Some(observed(true, 0, None)),
            act(vec![marked(api::Command::Stop { name: coop1.clone() })], true),
        ),
        (
            "stop, declared stopped, started by a schedule",
            of(ScheduleAction::Stop),
            &stopped,
            Some(observed(true, 0, by_schedule)),
            act(vec![api::Command::Stop { name: coop1.clone() }, api::Command::Release { name: coop1.clone() }], true),
        ),
        (
            "start, declared running, stopped by a schedule",
            of(ScheduleAction::Start),
            &running,
            Some(observed(false, 0, by_schedule)),
            act(
                vec![api::Command::Release { name: coop1.clone() }, api::Command::Start { names: vec![coop1.clone()] }],
                false,
            ),
        ),
        (
            "start, declared stopped",
            of(ScheduleAction::Start),
            &stopped,
            Some(observed(false, 0, None)),
            act(vec![marked(api::Command::Start { names: vec![coop1.clone()] })], false),
        ),
        (
            "backup, kept as its blueprint says",
            of(ScheduleAction::Backup),
            &running,
            Some(observed(true, 0, None)),
            act(
                vec![api::Command::Backup { name: coop1.clone(), keep: Some(3), reason: "schedule night".into() }],
                true,
            ),
        ),
        (
            "command, stopped",
            of(ScheduleAction::Command("say hi".into())),
            &running,
            Some(observed(false, 0, None)),
            Decision::Nothing("coop-1 is not running; the command is not sent".into()),
        ),
        (
            "restart, not on the host",
            of(ScheduleAction::Restart),
            &running,
            None,
            Decision::Skip("coop-1 is not on the host yet (the next pass makes it)".into()),
        ),
    ];
    for (case, schedule, target, status, expected) in cases {
        assert_eq!(schedules::decide(&schedule, target, status.as_ref()), expected, "{case}");
    }
    // A change by hand is left alone by what changes what runs, as passes leave it; a command or
    // a backup still runs.
    let by_hand = observed(true, 0, Some("alice"));
    let skipped = schedules::decide(&of(ScheduleAction::Restart), &running, Some(&by_hand));
    assert!(matches!(&skipped, Decision::Skip(why) if why.contains("changed by hand (stop by alice")), "{skipped:?}");
    let command = schedules::decide(&of(ScheduleAction::Command("say hi".into())), &running, Some(&by_hand));
    assert_eq!(command, act(vec![api::Command::Rcon { name: coop1, command: "say hi".into() }], true));
}

#[test]
fn warnings_are_said_only_before_cutting_players_off_at_once() {
    let warning = left4me_state::Warning { before: vec![600, 60], message: "Restart in {minutes} minute(s)".into() };
    let with = |action, when| Schedule { warn: Some(warning.clone()), ..schedule("s", "daily", action, when) };
    assert!(schedules::warns(&with(ScheduleAction::Restart, When::Always)));
    assert!(schedules::warns(&with(ScheduleAction::Stop, When::Always)));
    assert!(!schedules::warns(&with(ScheduleAction::Restart, When::Empty)), "nobody is left to warn");
    assert!(!schedules::warns(&with(ScheduleAction::Backup, When::Always)), "a backup cuts nobody off");
    assert!(!schedules::warns(&schedule("s", "daily", ScheduleAction::Restart, When::Always)), "no warning given");
    assert_eq!(warning.text(60), "Restart in 1 minute(s)");
}
