//! `--json`: a write's lines as messages, what it did, or why it failed — the same words as
//! without it, attributable to their server without reading them.

use l4d2ctl::api::{FailureKind, Message, Outcome};
use left4me_state::Name;

use crate::support::{Host, ROOT, read_messages, text};

#[test]
fn a_start_of_two_servers_answers_each_and_its_lines_are_the_plain_runs() {
    let host = Host::installed();
    host.put_example_overlays();
    for server in ["coop-1", "coop-2"] {
        let spec = host.example_spec(server);
        host.l4d2ctl_ok(&["initialize", server, "-f", &spec]);
    }
    // coop-2 cannot mount its tree, so its unit fails to start; coop-1 starts.
    std::fs::remove_dir(host.root_path(&format!("{ROOT}/runtime/coop-2/upper"))).unwrap();

    let plain = host.l4d2ctl(&["--reconciler", "start", "coop-1", "coop-2"]);
    let json = host.l4d2ctl(&["--reconciler", "--json", "start", "coop-1", "coop-2"]);
    assert_eq!(plain.status.code(), Some(1), "{}", text(&plain.stderr));
    assert_eq!(json.status.code(), plain.status.code(), "the exit code stays what it is");
    assert_eq!(text(&json.stderr), text(&plain.stderr), "stderr is unchanged");
    assert!(text(&plain.stderr).contains("l4d2ctl: 1 of 2 servers failed to start"), "{}", text(&plain.stderr));

    let messages = read_messages(&json.stdout);
    let (last, progress) = messages.split_last().expect("some messages");
    let lines: Vec<(Option<Name>, String)> = progress
        .iter()
        .map(|message| match message {
            Message::Progress { server, text } => (server.clone(), text.clone()),
            other => panic!("only the last message ends the write: {other:?}"),
        })
        .collect();
    let plain_lines: Vec<String> = text(&plain.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.iter().map(|(_, text)| text.clone()).collect::<Vec<_>>(), plain_lines);
    for (server, text) in &lines {
        let server = server.as_ref().unwrap_or_else(|| panic!("{text:?} names its server"));
        assert!(text.starts_with(&format!("{server}: ")), "{text:?} is about {server}");
    }

    let Message::Done { outcome: Outcome::Started { servers } } = last else {
        panic!("done, with each start: {last:?}")
    };
    let answers: Vec<(&str, bool)> = servers.iter().map(|s| (s.name.as_str(), s.started)).collect();
    assert_eq!(answers, [("coop-1", true), ("coop-2", false)]);
    let why = servers[1].error.as_deref().expect("why coop-2 did not start");
    assert!(why.contains(&format!("upperdir {ROOT}/runtime/coop-2/upper is missing")), "{why}");
    assert!(plain_lines.contains(&format!("coop-2: failed to start: {why}")), "{plain_lines:?}");
    assert_eq!(servers[0].error, None);

    // Stopped together, one transaction: each answers.
    let json = host.l4d2ctl(&["--reconciler", "--json", "stop", "coop-1", "coop-2"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let messages = read_messages(&json.stdout);
    let Some(Message::Done { outcome: Outcome::StoppedAll { servers } }) = messages.last() else {
        panic!("done, with each stop: {messages:?}")
    };
    let answers: Vec<(&str, bool)> = servers.iter().map(|s| (s.name.as_str(), s.stopped)).collect();
    assert_eq!(answers, [("coop-1", true), ("coop-2", true)]);
    assert_eq!(host.status_json("coop-1")["active_state"], "inactive");
}

#[test]
fn a_write_that_fails_as_a_whole_says_why_and_whether_to_try_again() {
    let host = Host::installed();
    let out = host.l4d2ctl(&["--json", "initialize", "coop-1", "-f", "/nowhere/coop-1.json"]);
    assert!(!out.status.success());
    let messages = read_messages(&out.stdout);
    let [Message::Failed { failure }] = messages.as_slice() else { panic!("one failure: {messages:?}") };
    assert_eq!(failure.kind, FailureKind::Permanent, "a missing spec file stays missing");
    assert_eq!(text(&out.stderr), format!("l4d2ctl: {}\n", failure.message));

    // The journal and the console are other programs' words: they have no JSON form.
    let out = host.l4d2ctl(&["--json", "logs", "coop-1"]);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(text(&out.stderr).contains("no --json form"), "{}", text(&out.stderr));

    let spec = host.example_spec("coop-1");
    host.put_example_overlays();
    let out = host.l4d2ctl(&["--reconciler", "--json", "initialize", "coop-1", "-f", &spec]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let messages = read_messages(&out.stdout);
    let Some(Message::Done { outcome: Outcome::Initialized { name, digest, changed: true, repaired } }) =
        messages.last()
    else {
        panic!("initialized: {messages:?}")
    };
    assert_eq!((name.as_str(), repaired.len()), ("coop-1", 0));
    assert!(
        messages.contains(&Message::Progress {
            server: Some(name.clone()),
            text: format!("coop-1: initialized ({digest})")
        }),
        "{messages:?}"
    );
}

#[test]
fn what_a_build_prints_reaches_the_caller_as_its_plain_run_shows_it() {
    let host = Host::installed();
    let recipe = host.shared_dir().join("chatty.sh");
    std::fs::write(&recipe, "echo 'fetching plugins'\necho 'a warning' >&2\nmkdir -p left4dead2\necho 'done'\n")
        .unwrap();
    let build = |json: &str| {
        let command = format!("l4d2ctl {json} overlay build chatty --digest sha256:0123 < {}", recipe.display());
        let out = host.run("sh", &["-c", &command]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        out
    };
    let plain = build("");
    let json = build("--json");
    let plain_lines: Vec<String> = text(&plain.stdout).lines().map(str::to_owned).collect();
    assert!(plain_lines.iter().any(|line| line.contains("fetching plugins")), "{plain_lines:?}");

    let messages = read_messages(&json.stdout);
    let (last, progress) = messages.split_last().expect("some messages");
    assert!(matches!(last, Message::Done { outcome: Outcome::OverlayWritten { .. } }), "{last:?}");
    let lines: Vec<String> = progress
        .iter()
        .map(|message| match message {
            Message::Progress { server: None, text } => text.clone(),
            other => panic!("a build's lines are about no server: {other:?}"),
        })
        .collect();
    // The recipe's stdout stays the caller's stdout (a job's log keeps it there), its stderr
    // the caller's stderr.
    assert_eq!(lines, plain_lines);
    assert!(text(&json.stderr).contains("a warning") && !text(&json.stderr).contains("fetching plugins"));
}

#[test]
fn a_mount_answers_in_messages_from_pid_1s_mount_namespace() {
    let host = Host::installed();
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    // Nothing runs: there is no game's namespace to mount its tree in.
    let out = host.run("l4d2ctl", &["--json", "mount", "coop-1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("coop-1 is not running"), "{}", text(&out.stderr));
    // Its unit without its ExecStartPost=: the game waits for a mount made by hand.
    let drop_in = "/run/systemd/system/left4me-server@coop-1.service.d";
    host.ok(
        "sh",
        &["-c", &format!("mkdir -p {drop_in} && printf '[Service]\\nExecStartPost=\\n' > {drop_in}/by-hand.conf")],
    );
    host.ok("systemctl", &["daemon-reload"]);
    host.ok("systemctl", &["start", "left4me-server@coop-1.service"]);
    // A process that is not the unit's (PID 1, systemd itself), or a start id systemd never
    // gave, is refused, and nothing is mounted: the first mount below is the one that mounts.
    let main_pid = host.ok("systemctl", &["show", "--property=MainPID", "--value", "left4me-server@coop-1.service"]);
    let id = "0123456789abcdef0123456789abcdef";
    for (pid, invocation, why) in [
        ("1", id, "process 1 is not left4me-server@coop-1.service's"),
        (main_pid.trim(), "../../etc", "has no invocation id systemd gave it"),
    ] {
        let env = [format!("MAINPID={pid}"), format!("INVOCATION_ID={invocation}")];
        let out = host.run("env", &[&env[0], &env[1], "l4d2ctl", "mount", "coop-1"]);
        assert!(!out.status.success() && text(&out.stderr).contains(why), "{pid}: {}", text(&out.stderr));
    }
    // Run from a mount namespace of its own, as a unit's `ExecStartPost=+` may be: entering
    // PID 1's is refused to a process of several threads, so the answer must not cost the mount
    // it. Once mounted, a second mount finds it there; nothing is mounted in the host's.
    for (verb, done) in [("mount", true), ("mount", false), ("umount", false)] {
        let out = host.run("unshare", &["--mount", "l4d2ctl", "--json", verb, "coop-1"]);
        assert!(out.status.success(), "{verb}: {}", text(&out.stderr));
        let messages = read_messages(&out.stdout);
        let expected = match verb {
            "mount" => Outcome::Mounted { name: Name::new("coop-1").unwrap(), mounted: done },
            _ => Outcome::Unmounted { name: Name::new("coop-1").unwrap(), unmounted: done },
        };
        assert_eq!(messages.last(), Some(&Message::Done { outcome: expected }), "{verb}: {messages:?}");
    }
    assert!(host.wait_for(15, |h| h.answered("coop-1")).is_some(), "the game ran once its tree was there");
}

#[test]
fn a_build_that_prints_megabytes_without_a_line_break_is_sent_on_in_bounded_lines() {
    let host = Host::installed();
    let recipe = host.shared_dir().join("flood.sh");
    // 4 MiB of "é" (two bytes each) and no line break, then one ordinary line.
    std::fs::write(&recipe, "head -c 2097152 /dev/zero | tr '\\0' 'x' | sed 's/x/é/g' | tr -d '\\n'\necho\necho after\nmkdir -p left4dead2\n").unwrap();
    let command = format!("l4d2ctl --json overlay build flood --digest sha256:0123 < {}", recipe.display());
    let out = host.run("sh", &["-c", &command]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let longest = text(&out.stdout).lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 100 * 1024, "a message line of {longest} bytes");
    let texts: Vec<String> = read_messages(&out.stdout)
        .into_iter()
        .filter_map(|message| match message {
            Message::Progress { server: None, text } => Some(text),
            _ => None,
        })
        .collect();
    let flood: String = texts.iter().take_while(|text| text.starts_with('é')).cloned().collect();
    assert_eq!(flood.chars().count(), 2 * 1024 * 1024, "every character arrives, none cut in two");
    assert!(flood.chars().all(|c| c == 'é'));
    assert!(texts.contains(&"after".to_owned()), "{:?}", texts.iter().map(|t| t.len()).collect::<Vec<_>>());
}
