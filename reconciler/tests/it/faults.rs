//! Faults of the host around the reconciler: several processes opening a fresh database at once,
//! a reader of its output that goes away, a server that keeps crashing, a full disk.

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use reconciler::db::Db;

use crate::support::{self, Host};

fn left4me(root: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_left4me"));
    command.env("LEFT4ME_ROOT", root).env("LEFT4ME_L4D2CTL", root.join("no-l4d2ctl"));
    command
}

#[test]
fn a_fresh_database_opened_by_many_processes_at_once_never_fails() {
    // Opening a fresh database migrates it; processes and threads race for that, again and again.
    for round in 0..25 {
        let root = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..6)
            .map(|_| {
                left4me(root.path()).args(["jobs", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
            })
            .map(Result::unwrap)
            .collect();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let path = root.path().join("left4me.db");
                std::thread::spawn(move || Db::open(&path).map(|db| db.jobs(1).map(|jobs| jobs.len())))
            })
            .collect();
        for thread in threads {
            let opened = thread.join().unwrap();
            assert!(matches!(opened, Ok(Ok(0))), "round {round}: {opened:?}");
        }
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "round {round}");
        }
    }
}

#[test]
fn a_database_not_made_yet_is_read_as_no_jobs_and_never_made_by_a_reader() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("left4me.db");
    let error = Db::open_read_only(&path).err().expect("there is no database to read yet");
    assert!(error.to_string().contains("is not there yet"), "{error}");
    let reader = reconciler::db::Reader::open(&path).unwrap();
    assert!(reader.lock().unwrap().jobs(10).unwrap().is_empty(), "no jobs yet");
    assert!(!path.exists(), "a reader never makes the database");
    // Once the reconciler has made it, the reader reads it.
    let db = Db::open(&path).unwrap();
    db.create_job("start", "coop-1", None, "commit").unwrap();
    assert_eq!(reader.lock().unwrap().jobs(10).unwrap().len(), 1);
    let read_only = Db::open_read_only(&path).unwrap();
    assert!(read_only.create_job("start", "coop-2", None, "commit").is_err(), "a reader cannot write");
}

/// A pipe whose reading end is closed already: every write to the other end fails with EPIPE.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    write
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let root = tempfile::tempdir().unwrap();
    let db = Db::open(&root.path().join("left4me.db")).unwrap();
    let job = db.create_job("start", "coop-1", None, "commit").unwrap();
    for n in 0..100 {
        db.append_line(job, "stdout", &format!("line {n}")).unwrap();
    }
    let examples = left4me_sim::workspace().join("examples/state");
    let job = job.to_string();
    let cases: [&[&str]; 7] = [
        &["jobs"],
        &["jobs", "--json"],
        &["jobs", &job],
        &["status"],
        &["status", "--json"],
        &["schema"],
        &["validate", "--state", examples.to_str().unwrap()],
    ];
    for args in cases {
        let out = left4me(root.path()).args(args).stdout(closed_pipe()).stderr(Stdio::piped()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "left4me {args:?} panicked: {stderr}");
        assert_eq!(out.status.code(), Some(0), "left4me {args:?}: {stderr}");
    }
}

/// How long `left4me status` says a server's start is held back after crashing, in seconds.
fn held_for(host: &Host, server: &str) -> Option<u64> {
    let report = host.server(server);
    let message = report["health_message"].as_str()?;
    let wait = message.strip_prefix("crash loop, next try in ")?.split(';').next()?;
    let (minutes, seconds) = match wait.split_once('m') {
        Some((m, s)) => (m.parse::<u64>().ok()?, s.trim_end_matches('s')),
        None => (0, wait.trim_end_matches('s')),
    };
    let seconds = if seconds.is_empty() { 0 } else { seconds.parse::<u64>().ok()? };
    (report["health"] == "Failed").then_some(minutes * 60 + seconds)
}

/// The entries of `$ROOT/retries`, one a line.
fn requests(host: &Host) -> String {
    host.sandbox.run_ok("ls", &["-A", "/var/lib/left4me/retries"]).trim().to_owned()
}

/// The start jobs of a server, from the job table.
fn starts(host: &Host, server: &str) -> usize {
    start_jobs(host, server).len()
}

/// The start jobs of a server, the newest last.
fn start_jobs(host: &Host, server: &str) -> Vec<serde_json::Value> {
    let jobs: serde_json::Value = serde_json::from_str(&host.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
    let mut starts: Vec<serde_json::Value> =
        jobs.as_array().unwrap().iter().filter(|j| j["kind"] == "start" && j["target"] == server).cloned().collect();
    starts.sort_by_key(|j| j["id"].as_i64());
    starts
}

/// What the host says of a server's unit and the service's passes: for a failure's message.
fn account(host: &Host, server: &str) -> String {
    let unit = format!("left4me-server@{server}.service");
    let commands: [(&str, &[&str]); 4] = [
        ("systemctl", &["status", "--no-pager", "--full", &unit]),
        ("journalctl", &["-o", "short-precise", "--no-pager", "-n", "200", "-u", &unit, "-u", "left4me-reconciler"]),
        ("left4me", &["jobs"]),
        ("left4me", &["events"]),
    ];
    let mut text = String::new();
    for (program, args) in commands {
        let out = host.sandbox.run(program, args);
        text.push_str(&format!("\n$ {program} {}\n{}", args.join(" "), support::text(&out)));
    }
    text
}

#[test]
fn a_server_that_keeps_crashing_is_held_back_until_its_wait_is_over_or_it_is_retried() {
    let host = Host::installed(true);
    // coop-1's game exits as soon as it starts: systemd restarts it up to its start limit. Its
    // unit stays deactivating a second after each crash (a slow ExecStopPost=), so passes look
    // at it then too: a start then would be refused by the start limit and reset it.
    let dropin = "/etc/systemd/system/left4me-server@coop-1.service.d";
    host.sandbox.run_ok("mkdir", &["-p", dropin]);
    let crash = "[Service]\\nEnvironment=SIM_SRCDS_EXIT_AT_ONCE=3\\nExecStopPost=/bin/sleep 1\\n";
    host.sandbox.run_ok("sh", &["-c", &format!("printf '{crash}' > {dropin}/crash.conf")]);
    host.sandbox.run_ok("systemctl", &["daemon-reload"]);
    host.commit_examples();

    // With a resync every second, a pass would start it again as soon as it failed; instead it
    // is held back, and status says for how long.
    host.expect_within(120, "coop-1 is held back after crashing", |h| held_for(h, "coop-1").is_some_and(|s| s >= 6));
    let status = host.sandbox.run_ok("left4me", &["status"]);
    let line = status.lines().find(|l| l.starts_with("coop-1 ")).unwrap_or_default();
    assert!(line.contains("Failed") && line.contains("crash loop, next try in"), "{status}");
    assert!(status.contains("held after 1 crash in a row") && status.contains("`left4me retry coop-1`"), "{status}");
    // Watched for most of what is left of the wait, read again just now (a loaded machine may
    // have spent some of it on the commands above).
    let before = starts(&host, "coop-1");
    let left = held_for(&host, "coop-1").unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_secs(left.saturating_sub(2).min(6)));
    let jobs = host.sandbox.run_ok("left4me", &["jobs"]);
    assert_eq!(starts(&host, "coop-1"), before, "no start while it is held back:\n{jobs}");

    // Its wait over, it is tried again; crashing again, it waits twice as long.
    host.expect_within(60, "coop-1 is tried again after its wait", |h| starts(h, "coop-1") > before);
    host.expect_within(60, "coop-1 is held back for longer", |h| held_for(h, "coop-1").is_some_and(|s| s >= 12));
    assert!(host.server("coop-1")["sync_message"].as_str().unwrap().contains("held after 2 crashes in a row"));

    // The plan says so too, and a reader of it that stops early ends it quietly.
    let plan = host.sandbox.run_ok("sh", &["-c", "left4me plan; true"]);
    assert!(plan.contains("held       coop-1"), "{plan}");
    for args in [&["plan"][..], &["plan", "--json"], &["status"]] {
        let out = host.sandbox.command("left4me").args(args).stdout(closed_pipe()).stderr(Stdio::piped()).output();
        let out = out.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && out.status.code() == Some(0), "left4me {args:?}: {stderr}");
    }

    // Retried when asked as the web app asks, a request file made by the game user in
    // $ROOT/retries (theirs, though root made it): the service starts it at once, and removes
    // the request with whatever else there is no request.
    let owner = host.sandbox.run_ok("stat", &["-c", "%U %a", "/var/lib/left4me/retries"]);
    assert_eq!(owner.trim(), "left4me 755");
    assert!(held_for(&host, "coop-1").is_some_and(|s| s >= 6));
    let before = starts(&host, "coop-1");
    let ask = "touch /var/lib/left4me/retries/Not_A_Server /var/lib/left4me/retries/coop-1";
    host.sandbox.run_ok("runuser", &["-u", "left4me", "--", "sh", "-c", ask]);
    // (The trigger below tells the request's pass from the wait's end or a resync.)
    host.expect_within(30, "coop-1 is started at once when a retry is asked", |h| starts(h, "coop-1") > before);
    // By the pass the request started, not the next resync.
    let start = start_jobs(&host, "coop-1").pop().unwrap_or_default();
    assert_eq!(start["trigger"], "retry", "{start}");
    host.expect_within(30, "the requests are removed", |h| requests(h).is_empty());

    // Held again after it crashed again; retried by `left4me retry`: started at once, by the
    // command itself, which leaves no request behind.
    host.expect_within(60, "coop-1 is held back again", |h| held_for(h, "coop-1").is_some_and(|s| s >= 7));
    let before = starts(&host, "coop-1");
    let out = host.left4me(&["retry", "coop-1"]);
    assert!(support::text(&out).contains("Reconciliation finished"), "{}", support::text(&out));
    assert_eq!(starts(&host, "coop-1"), before + 1, "{}{}", support::text(&out), account(&host, "coop-1"));
    assert_eq!(requests(&host), "", "{}", support::text(&out));
    let out = host.left4me(&["retry", "Not_A_Server"]);
    assert!(support::code(&out) != Some(0) && support::text(&out).contains("is not a server name"));

    // Held again after it crashed again; handed back with l4d2ctl release: tried at once.
    host.expect_within(60, "coop-1 is held back again", |h| held_for(h, "coop-1").is_some_and(|s| s >= 7));
    let before = starts(&host, "coop-1");
    let left = held_for(&host, "coop-1").unwrap_or(0);
    host.sandbox.run_ok("l4d2ctl", &["release", "coop-1"]);
    // Sooner than its wait would have ended.
    if !host.wait_for(left.saturating_sub(1).max(4), |h| starts(h, "coop-1") > before) {
        panic!("coop-1 is started at once after its release:{}", account(&host, "coop-1"));
    }

    // A file of the host apart from any server that cannot be read (an overlay's digest, a
    // folder in its place) is said by status.
    host.sandbox
        .run_ok("mkdir", &["-p", "/var/lib/left4me/overlays/stray", "/var/lib/left4me/overlays/.digests/stray"]);
    let status = host.sandbox.run_ok("left4me", &["status"]);
    assert!(status.lines().any(|l| l.starts_with("host: /var/lib/left4me/overlays/.digests/stray: ")), "{status}");
    let problems = host.status()["host_problems"].clone();
    assert_eq!(problems[0]["path"], "/var/lib/left4me/overlays/.digests/stray", "{problems}");
}

/// A host whose `$ROOT` is a small file system of its own (64 MiB), that a test can fill, with
/// its service resyncing every second and `files` (path, text) committed to its state repo.
fn on_a_small_disk(files: &[(&str, &str)]) -> Host {
    let disk = left4me_sim::disk(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), "reconciler-disk-").unwrap();
    let sandbox = left4me_sim::Sandbox::boot(disk.path(), &[]).expect("the sandbox boots");
    sandbox.run_ok("mount", &["-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", "/var/lib/left4me"]);
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_left4me")).parent().unwrap();
    sandbox.install_left4me(bin_dir, true);
    sandbox.run_ok("sh", &["-c", "echo LEFT4ME_RESYNC_SECONDS=1 >> /etc/left4me/host.env"]);
    sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
    // The repo lies on the small file system, which only the host sees: written from inside.
    let mut commit = String::from("set -e\ncd /var/lib/left4me/state\n");
    for (path, text) in files {
        commit.push_str(&format!("mkdir -p \"$(dirname {path})\"\ncat > {path} <<'END'\n{text}END\n"));
    }
    commit.push_str(
        "git add --all\ngit -c user.name=left4me -c user.email=left4me@left4me.invalid commit --quiet -m state\n",
    );
    sandbox.run_ok("runuser", &["-u", "left4me", "--", "sh", "-c", &commit]);
    Host { sandbox, disk }
}

const SETTINGS: (&str, &str) = ("left4me.yaml", "apiVersion: left4me/v1\nkind: Settings\nspec:\n  maxServers: 16\n");

#[test]
fn a_full_disk_is_said_by_status_and_the_service_recovers_once_space_is_freed() {
    let host = on_a_small_disk(&[SETTINGS]);
    host.expect_within(30, "a pass ran", |h| {
        h.status()["last_pass"]["message"].as_str().is_some_and(|m| m.contains("nothing to do"))
    });

    // Filled: every pass fails on the database; status says the disk is full, and how full.
    host.sandbox.run("sh", &["-c", "head -c 128M /dev/zero > /var/lib/left4me/filler"]);
    host.expect_within(60, "the service says the disk is full", |h| {
        let status = h.status();
        status["service"]["state"] == "failing" && status["disk_full"] == true
    });
    let status = host.status();
    let message = status["service"]["message"].as_str().unwrap();
    assert!(message.starts_with("Disk full: /var/lib/left4me has 0 B free of 64.0 MiB (100% used)"), "{status:#}");
    assert!(message.contains("No space left on device (os error 28)"), "the OS error is said: {message}");
    let text = host.sandbox.run_ok("left4me", &["status"]);
    assert!(text.contains("the disk is full: /var/lib/left4me has 0 B free of 64.0 MiB (100% used)"), "{text}");
    assert!(text.contains("Disk full:"), "the service's word is shown: {text}");
    let unit = host.sandbox.run_ok("systemctl", &["show", "--property=StatusText", "left4me-reconciler.service"]);
    assert!(unit.contains("Disk full: /var/lib/left4me"), "{unit}");

    // Freed: the service recovers by itself.
    let failing_since = status["service"]["since"].as_str().unwrap().to_owned();
    host.sandbox.run_ok("rm", &["/var/lib/left4me/filler"]);
    host.expect_within(90, "the service recovers", |h| {
        let status = h.status();
        status["service"]["state"] == "ok"
            && status["disk_full"] == false
            && status["last_pass"]["at"].as_str().is_some_and(|at| at > failing_since.as_str())
    });
    let text = host.sandbox.run_ok("left4me", &["status"]);
    assert!(!text.contains("disk is full"), "{text}");
}

#[test]
fn a_job_whose_lines_cannot_be_written_still_ends_with_its_own_outcome_and_leaves_no_zombie() {
    // A build that fills the disk as it runs, says so, and fails: its staging folder, and the
    // space, go with it. Meanwhile its lines cannot be written.
    let build = "head -c 128M /dev/zero > fill\necho the disk is full now\nsleep 2\necho still building\nexit 1\n";
    let host = on_a_small_disk(&[
        SETTINGS,
        (
            "overlays/filler/overlay.yaml",
            "apiVersion: left4me/v1\nkind: Overlay\nmetadata: {name: filler}\nspec: {type: script}\n",
        ),
        ("overlays/filler/build.sh", build),
        (
            "blueprints/coop.yaml",
            "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: coop, owner: alice}\nspec: {overlays: [filler]}\n",
        ),
        (
            "servers/coop-1.yaml",
            "apiVersion: left4me/v1\nkind: Server\nmetadata: {name: coop-1, owner: alice}\n\
             spec: {blueprint: coop, port: 27015, state: stopped}\n",
        ),
    ]);
    let builds = |h: &Host| -> Vec<serde_json::Value> {
        let jobs: serde_json::Value = serde_json::from_str(&h.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
        let mut builds: Vec<_> = jobs.as_array().unwrap().iter().filter(|j| j["kind"] == "build").cloned().collect();
        builds.reverse();
        builds
    };
    // The first build ends as it did, failed with its exit code: neither left running nor
    // cancelled later as if its pass had been killed.
    let ended = |h: &Host| builds(h).first().is_some_and(|j| j["state"] != "running" && j["state"] != "queued");
    host.expect_within(90, "the first build ends", ended);
    let first = builds(&host)[0].clone();
    let log = host.sandbox.run_ok("left4me", &["jobs", first["id"].to_string().as_str()]);
    assert_eq!((&first["state"], &first["exit_code"]), (&"failed".into(), &1.into()), "{first:#}\n{log}");

    // Every child of the service was waited for.
    let pid =
        host.sandbox.run_ok("systemctl", &["show", "--property=MainPID", "--value", "left4me-reconciler.service"]);
    let children = host.sandbox.run("ps", &["-o", "stat=,comm=", "--ppid", pid.trim()]);
    let children = String::from_utf8_lossy(&children.stdout);
    assert!(!children.lines().any(|l| l.trim_start().starts_with('Z')), "a zombie child: {children}");
}
