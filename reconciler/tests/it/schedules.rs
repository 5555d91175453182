//! Schedules: the timers a pass puts on the host and what a run does to each server, on plain
//! values; then on a sandbox host, timers fired by systemd, runs that wait for players to leave,
//! warn them, skip a server that does not empty, and a run missed while the host was off.

use l4d2ctl::api::{self, InstalledTimer, InstanceStatus, Override, QueryInfo};
use left4me_state::{Calendar, DesiredState, Name, PowerState, Schedule, ScheduleAction, ScheduleServers, Tree, When};
use reconciler::schedules::{self, Decision, Target};

use crate::support::{Host, text};

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
        resources: Default::default(),
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

/// A calendar `seconds` from now, as systemd reads it in UTC (`2026-12-01 17:10:05 UTC`).
fn seconds_ahead(seconds: u64) -> String {
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(seconds);
    left4me_state::clock::rfc3339(at).replace('T', " ").replace('Z', " UTC")
}

/// `l4d2ctl schedules put` with `json` on its stdin.
fn put(host: &Host, json: &str) -> std::process::Output {
    let mut child = host
        .sandbox
        .command("l4d2ctl")
        .args(["schedules", "put"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), json.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn timers(host: &Host) -> String {
    host.sandbox.run_ok("systemctl", &["list-timers", "--all", "--no-pager", "--no-legend", "left4me-schedule@*"])
}

const UNIT_DIR: &str = "/usr/local/lib/systemd/system";

#[test]
fn l4d2ctl_puts_timers_systemd_fires_and_refuses_what_is_no_calendar() {
    let host = Host::installed(false);
    host.commit_examples();
    let at = seconds_ahead(6);
    let out = put(&host, &format!(r#"[{{"name": "probe", "calendar": "{at}"}}]"#));
    assert!(out.status.success(), "{}", text(&out));
    assert!(timers(&host).contains("left4me-schedule@probe.timer"), "{}", timers(&host));
    // The pass sees it as written: the observation reads it back from its file.
    let observed: serde_json::Value = serde_json::from_str(&host.sandbox.run_ok("l4d2ctl", &["observe"])).unwrap();
    assert_eq!(observed["schedules"], serde_json::json!([{"name": "probe", "calendar": at, "enabled": true}]));

    // It fires on time and runs `left4me schedule run probe`, which finds no such schedule in
    // the revision and says so.
    host.expect_within(30, "the timer started its run", |h| {
        let log = h.sandbox.run("journalctl", &["-u", "left4me-schedule@probe.service", "--no-pager"]);
        text(&log).contains("schedule probe is not in revision")
    });
    let result = host.sandbox.run_ok("systemctl", &["show", "-P", "Result", "left4me-schedule@probe.service"]);
    assert_eq!(result.trim(), "success");

    // Another calendar: the timer fires at that one.
    let out = put(&host, r#"[{"name": "probe", "calendar": "*-*-* 03:00:00"}]"#);
    assert!(out.status.success(), "{}", text(&out));
    let calendar = host.sandbox.run_ok("systemctl", &["show", "-P", "TimersCalendar", "left4me-schedule@probe.timer"]);
    assert!(calendar.contains("03:00:00"), "{calendar}");

    // A calendar that would add a line to the unit, a name that is none, input that is no list:
    // refused, naming what and why, and nothing changed.
    let before = host.sandbox.run_ok("cat", &[&format!("{UNIT_DIR}/left4me-schedule@probe.timer")]);
    let hostile = [
        (r#"[{"name": "probe", "calendar": "daily\nExecStartPre=/bin/sh -c id"}]"#, "schedule probe: the calendar"),
        (r#"[{"name": "probe", "calendar": "daily \\"}]"#, "holds '\\\\'"),
        (r#"[{"name": "probe", "calendar": "%H"}]"#, "holds '%'"),
        (r#"[{"name": "../probe", "calendar": "daily"}]"#, "stdin is not a list of schedules"),
        (r#"[{"name": "probe", "calendar": "the day after tomorrow"}]"#, "systemd cannot read the calendar"),
        (r#"{"name": "probe"}"#, "stdin is not a list of schedules"),
        (r#"[{"name": "probe", "calendar": "daily"}, {"name": "probe", "calendar": "daily"}]"#, "listed twice"),
    ];
    for (input, said) in hostile {
        let out = put(&host, input);
        assert!(!out.status.success() && text(&out).contains(said), "{input}: {}", text(&out));
    }
    assert_eq!(host.sandbox.run_ok("cat", &[&format!("{UNIT_DIR}/left4me-schedule@probe.timer")]), before);

    // None listed: stopped, disabled, removed, with the stamp of its last run.
    let stamp = "/var/lib/systemd/timers/stamp-left4me-schedule@probe.timer";
    assert!(host.sandbox.run("test", &["-e", stamp]).status.success(), "systemd keeps {stamp}");
    let out = put(&host, "[]");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!timers(&host).contains("probe"), "{}", timers(&host));
    for gone in [
        format!("{UNIT_DIR}/left4me-schedule@probe.timer"),
        "/etc/systemd/system/timers.target.wants/left4me-schedule@probe.timer".to_owned(),
        stamp.to_owned(),
    ] {
        assert!(!host.sandbox.run("test", &["-e", &gone]).status.success(), "{gone} is gone");
    }
}

/// Commits `schedules/<name>.yaml` acting on coop-1 at `at`, with `spec` lines of its own.
fn commit_schedule(host: &Host, name_: &str, at: &str, spec: &str) {
    let text = format!(
        "apiVersion: left4me/v1\nkind: Schedule\nmetadata: {{name: {name_}, owner: alice}}\nspec:\n  servers: [coop-1]\n  at: \"{at}\"\n{spec}"
    );
    std::fs::create_dir_all(host.repo().join("schedules")).unwrap();
    std::fs::write(host.repo().join(format!("schedules/{name_}.yaml")), text).unwrap();
    host.git(&["add", "--all"]);
    host.git(&["commit", "--quiet", "--message", &format!("schedule {name_}")]);
}

fn jobs(host: &Host) -> Vec<serde_json::Value> {
    let text = host.sandbox.run_ok("left4me", &["jobs", "--json"]);
    serde_json::from_str::<serde_json::Value>(&text).unwrap().as_array().unwrap().clone()
}

/// The newest job of `kind` on `target`.
fn job(host: &Host, kind: &str, target: &str) -> Option<serde_json::Value> {
    jobs(host).into_iter().find(|job| job["kind"] == kind && job["target"] == target)
}

/// A schedule's run: its job's state and its log.
fn run_of(host: &Host, schedule: &str) -> Option<(String, String)> {
    let job = job(host, "schedule", schedule)?;
    let log = host.sandbox.run_ok("left4me", &["jobs", &job["id"].to_string()]);
    Some((job["state"].as_str().unwrap_or_default().to_owned(), log))
}

/// Waits for a schedule's run to end; its log.
fn ended_run(host: &Host, schedule: &str, seconds: u64) -> String {
    host.expect_within(seconds, &format!("schedule {schedule} ran to its end"), |h| {
        run_of(h, schedule).is_some_and(|(state, _)| state != "running" && state != "queued")
    });
    let (state, log) = run_of(host, schedule).unwrap();
    assert_eq!(state, "succeeded", "{log}");
    log
}

fn console(host: &Host) -> String {
    host.sandbox.run_ok("journalctl", &["-u", "left4me-server@coop-1.service", "--no-pager", "-o", "cat"])
}

fn rcon(host: &Host, command: &str) {
    host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", command]);
}

#[test]
fn a_schedule_waits_for_players_to_leave_warns_skips_and_its_stop_is_not_undone() {
    let host = Host::installed(true);
    host.commit_examples();
    host.expect_within(60, "coop-1 runs", |h| h.running("coop-1"));
    rcon(&host, "sim_players 2");

    // when: empty with two playing: the run waits, through the passes of the service, and
    // restarts coop-1 once they left.
    commit_schedule(&host, "tidy", &seconds_ahead(12), "  action: restart\n  when: empty\n  within: 5m\n");
    host.expect_within(10, "the timer is listed", |h| timers(h).contains("left4me-schedule@tidy.timer"));
    host.expect_within(40, "the run waits for the players", |h| {
        run_of(h, "tidy").is_some_and(|(state, log)| state == "running" && log.contains("coop-1: 2 human players"))
    });
    // A pass with nothing to do still costs two processes: the timers came with the look.
    host.expect_within(10, "a no-op pass", |h| {
        h.status()["last_pass"]["message"].as_str().is_some_and(|m| m.ends_with("nothing to do (2 processes)"))
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(run_of(&host, "tidy").unwrap().0, "running", "passes leave a waiting run's job alone");
    assert!(job(&host, "restart", "coop-1").is_none(), "nothing restarted while they play");
    rcon(&host, "sim_players 0");
    let log = ended_run(&host, "tidy", 40);
    assert!(log.contains("coop-1: restart done"), "{log}");
    let restart = job(&host, "restart", "coop-1").expect("the restart's own job");
    assert_eq!((restart["state"].as_str(), restart["trigger"].as_str()), (Some("succeeded"), Some("schedule")));
    host.expect_within(30, "coop-1 runs after the restart", |h| h.running("coop-1"));

    // when: always with warnings: each said over RCON at its time, then the restart.
    rcon(&host, "sim_players 2");
    let warn = "  action: restart\n  warn: {before: [4s, 2s], message: \"Restart in {minutes} minute(s); sorry\"}\n";
    commit_schedule(&host, "warned", &seconds_ahead(12), warn);
    let log = ended_run(&host, "warned", 60);
    let said = console(&host).matches("Console: Restart in 1 minute(s); sorry").count();
    assert_eq!(said, 2, "both warnings reach the server as one line each:\n{}", console(&host));
    let (first, restarted) = (log.find("(4s before)").unwrap(), log.find("coop-1: restart done").unwrap());
    assert!(first < log.find("(2s before)").unwrap() && log.find("(2s before)").unwrap() < restarted, "{log}");
    host.expect_within(30, "coop-1 runs after the restart", |h| h.running("coop-1"));

    // A window that passes with players on: skipped, with an event and a notice.
    rcon(&host, "sim_players 3");
    commit_schedule(&host, "busy", &seconds_ahead(12), "  action: restart\n  when: empty\n  within: 10s\n");
    let log = ended_run(&host, "busy", 60);
    assert!(log.contains("coop-1: skipped: did not empty within 10s (last seen: coop-1: 3 human players)"), "{log}");
    let events = host.sandbox.run_ok("left4me", &["events", "-n", "50"]);
    assert!(events.contains("schedule busy: coop-1 skipped"), "{events}");
    let db = reconciler::db::Db::open(&host.disk.path().join("root/left4me.db")).unwrap();
    let notices = db.notices_after(0, 100).unwrap();
    let skipped: Vec<_> = notices.iter().filter(|n| n.kind == left4me_state::AlertEvent::ScheduleSkipped).collect();
    assert_eq!(skipped.len(), 1, "{notices:?}");
    assert_eq!(skipped[0].server, Some(name("coop-1")));
    rcon(&host, "sim_players 0");

    // A stop the revision does not declare: a marker names the schedule, and passes leave the
    // server stopped; a schedule's start hands it back.
    commit_schedule(&host, "night", &seconds_ahead(12), "  action: stop\n");
    ended_run(&host, "night", 60);
    host.expect_within(10, "coop-1 is overridden by the schedule", |h| h.server("coop-1")["sync"] == "Overridden");
    assert_eq!(host.instance("coop-1")["override"]["who"], "schedule night");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(host.server("coop-1")["health"], "Stopped", "no pass started it again");
    commit_schedule(&host, "morning", &seconds_ahead(12), "  action: start\n");
    ended_run(&host, "morning", 60);
    host.expect_within(30, "coop-1 runs and is the revision's again", |h| {
        h.running("coop-1") && h.server("coop-1")["sync"] == "Synced"
    });

    // The files gone from the repo: their timers with them.
    host.git(&["rm", "--quiet", "-r", "schedules"]);
    host.git(&["commit", "--quiet", "--message", "no schedules"]);
    host.expect_within(20, "the timers are gone", |h| !timers(h).contains("left4me-schedule@"));
}

#[test]
fn a_run_missed_while_the_host_was_off_happens_once_at_boot_and_one_cut_short_is_ended() {
    let host = Host::installed(true);
    host.commit_examples();
    host.expect_within(60, "coop-1 runs", |h| h.running("coop-1"));
    rcon(&host, "sim_players 2");
    // A run waiting for players to leave when the power goes.
    commit_schedule(&host, "waiting", &seconds_ahead(8), "  action: restart\n  when: empty\n  within: 1h\n");
    host.expect_within(40, "a run waits", |h| {
        run_of(h, "waiting").is_some_and(|(state, log)| state == "running" && log.contains("2 human players"))
    });
    let at = seconds_ahead(15);
    commit_schedule(&host, "missed", &at, "  action: command\n  command: \"say missed while off\"\n");
    host.expect_within(10, "the timer is listed", |h| timers(h).contains("left4me-schedule@missed.timer"));
    // systemd makes the stamp when a timer that never ran starts: a run due after that and
    // missed is known to be missed at boot.
    let stamp = "/var/lib/systemd/timers/stamp-left4me-schedule@missed.timer";
    assert!(host.sandbox.run("test", &["-e", stamp]).status.success(), "{stamp} is made at the timer's start");
    assert!(job(&host, "schedule", "missed").is_none(), "it is not due yet");
    let Host { sandbox, disk } = host;
    sandbox.power_off();
    std::thread::sleep(std::time::Duration::from_secs(25));
    let host = Host { sandbox: left4me_sim::Sandbox::boot(disk.path(), &[]).expect("the sandbox boots again"), disk };
    host.expect_within(60, "the missed run happens at boot", |h| job(h, "schedule", "missed").is_some());
    ended_run(&host, "missed", 120);
    // At boot, beside coop-1's own start: its console takes the command once it answers.
    assert!(console(&host).contains("Console: missed while off"), "{}", console(&host));
    std::thread::sleep(std::time::Duration::from_secs(5));
    let runs =
        |schedule: &str| jobs(&host).into_iter().filter(|j| j["kind"] == "schedule" && j["target"] == schedule).count();
    assert_eq!(runs("missed"), 1, "once, not again: {:?}", jobs(&host));
    // The run the power cut short is ended by a pass, saying why; it ran, so it is not run again.
    let (state, log) = run_of(&host, "waiting").unwrap();
    assert_eq!(state, "cancelled", "{log}");
    assert!(log.contains("the run of this schedule ended before its job did"), "{log}");
    assert_eq!(runs("waiting"), 1);
}
