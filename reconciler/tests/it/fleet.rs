//! Three hosts on one network, set up as an operator would with deploy/install.sh and
//! deploy/add-host.sh: a, the control host, holds the state repo; b and c follow it over SSH. A
//! commit on a converges each server on its own host only; the keys each host holds can ask only
//! what their forced command allows; a host powered off leaves the others going and heals when it
//! is back; an agent that cannot reach the control host keeps its last good revision and says so;
//! a server stopped by hand on b stays so and shows Overridden in the control host's look at b; a
//! server moved from b to c arrives on c with what it wrote on b.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;

use left4me_sim::fleet::{Member, STATE, add_host, commit, fleet_state, printed_command};
use left4me_sim::{Sandbox, workspace};
use reconciler::remote::{Ask, KNOWN_HOSTS, Ssh, WEB_KEY};

use crate::support::text;

const AGENT_KEY: &str = "/etc/left4me/ssh/agent";
/// Where the tests keep keys of their own inside a host (on its disk: `/root` is the machine's).
const SCRATCH: &str = "/var/lib/fleet-test";

/// Runs `script` with `sh -c` inside `host`, `args` as its `$1`….
fn sh(host: &Sandbox, script: &str, args: &[&str]) -> Output {
    host.run("sh", &[&["-c", script, "sh"][..], args].concat())
}

/// `ssh` with `key` only, strict about host keys, asking nothing, reading no config file.
fn ssh_base(key: &str) -> Vec<String> {
    let known = format!("UserKnownHostsFile={KNOWN_HOSTS}");
    let options = ["-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"];
    let strict = ["-o", "StrictHostKeyChecking=yes", "-o", &known, "-o", "GlobalKnownHostsFile=/dev/null"];
    let bounded = ["-o", "ConnectTimeout=5"];
    std::iter::once("ssh").chain(options).chain(strict).chain(bounded).map(String::from).collect()
}

/// [`ssh_base`] as `user`, with `extra` options, to left4me at `to`, asking `command`.
fn ssh_argv(user: &str, key: &str, extra: &[&str], to: Ipv4Addr, command: Option<&str>) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    if user != "root" {
        argv.extend(["runuser", "-u", user, "--"].map(String::from));
    }
    argv.extend(ssh_base(key));
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.extend(["--".to_owned(), format!("left4me@{to}")]);
    argv.extend(command.map(String::from));
    argv
}

fn run_argv(host: &Sandbox, argv: &[String]) -> Output {
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    host.run(&argv[0], &args)
}

/// As the control host's web app: user left4me, its key.
fn as_web(from: &Member, to: &Member, command: &str) -> Output {
    run_argv(from.host(), &ssh_argv("left4me", WEB_KEY, &[], to.address, Some(command)))
}

/// As a host's agent: root, its key.
fn as_agent(from: &Member, to: &Member, command: &str) -> Output {
    run_argv(from.host(), &ssh_argv("root", AGENT_KEY, &[], to.address, Some(command)))
}

/// Asks `to` for its status exactly as the web app's client builds the command (`remote::Ssh`).
fn web_status(from: &Member, to: &Member) -> serde_json::Value {
    let ssh = Ssh {
        key: WEB_KEY.into(),
        known_hosts: KNOWN_HOSTS.into(),
        user: "left4me".into(),
        control_dir: None,
        program: "ssh".into(),
        port: None,
    };
    let command = ssh.command(&to.address.to_string(), &Ask::Status);
    let mut argv: Vec<String> = ["runuser", "-u", "left4me", "--", "ssh"].map(String::from).to_vec();
    argv.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    let out = run_argv(from.host(), &argv);
    assert!(out.status.success(), "{} asked {} for its status: {}", from.name, to.name, text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status is JSON ({e}): {}", text(&out)))
}

/// Lines of `path` inside `host` that start with `prefix`.
fn lines_starting(host: &Sandbox, path: &str, prefix: &str) -> usize {
    host.run_ok("cat", &[path]).lines().filter(|l| l.starts_with(prefix)).count()
}

const ALL: [&str; 4] = ["coop-a", "coop-b", "coop-c", "coop-c2"];

#[test]
fn a_fleet_converges_per_host_keys_ask_only_their_own_hosts_away_heal_and_a_moved_server_keeps_its_data() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_left4me")).parent().unwrap().to_path_buf();
    let (network, members) =
        left4me_sim::fleet::set_up(Path::new(env!("CARGO_TARGET_TMPDIR")), &bin_dir, &["a", "b", "c"]);
    let [a, b, mut c]: [Member; 3] = members.try_into().ok().expect("three hosts");
    // Both modes again, for c, change nothing: one line per key and host, the web app still masked.
    let shown = add_host(a.host(), "show", &["--name".into(), "c".into(), "--address".into(), a.address.to_string()]);
    let mut agent = printed_command(&shown, "agent");
    let steamcmd = left4me_sim::built_binary("fake-steamcmd").unwrap();
    let address = c.address.to_string();
    let extra = ["--address", &address, "--fetch-seconds", "2", "--bin-dir", bin_dir.to_str().unwrap()];
    agent.extend(extra.iter().map(|s| s.to_string()));
    agent.extend(["--steamcmd".to_owned(), steamcmd.display().to_string()]);
    add_host(a.host(), "control", &printed_command(&add_host(c.host(), "agent", &agent), "control"));
    each_key_and_host_is_written_once(&a, &c);

    // The control host's web app runs, with its folder for shared connections.
    assert_eq!(text(&a.host().run("systemctl", &["is-active", "left4me-web.service"])).trim(), "active");
    assert_eq!(a.host().run_ok("stat", &["-c", "%U %a", "/run/left4me-web"]).trim(), "left4me 700");

    // a. One commit on a: each server runs on its own host only.
    let state = fleet_state(&[&a, &b, &c]);
    let head = commit(&a, state.path(), "three hosts");
    a.expect_converged(&head, &["coop-a"], &ALL);
    b.expect_converged(&head, &["coop-b"], &ALL);
    c.expect_converged(&head, &["coop-c"], &ALL);
    let status = web_status(&a, &b);
    assert_eq!(status["host"], "b", "{status:#}");
    let servers: Vec<&str> = status["servers"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(servers, ["coop-b"], "{status:#}");

    // b. Each key asks what its forced command allows, and nothing else.
    keys_ask_only_their_own(&a, &b);

    // c. c powered off: a and b carry on; c back on its disk catches up with the latest commit.
    c.power_off();
    let port = state.path().join("servers/coop-b.yaml");
    std::fs::write(&port, std::fs::read_to_string(&port).unwrap().replace("port: 27015", "port: 27016")).unwrap();
    std::fs::copy(workspace().join("examples/fleet/servers/coop-c2.yaml"), state.path().join("servers/coop-c2.yaml"))
        .unwrap();
    let head = commit(&a, state.path(), "coop-b on 27016, coop-c2 on c");
    let fetch = as_web(&a, &b, "fetch");
    assert!(fetch.status.success() && text(&fetch).contains("fetch"), "{}", text(&fetch));
    b.expect_converged(&head, &["coop-b"], &ALL);
    assert_eq!(b.status()["servers"][0]["sync"], "Synced");
    a.expect_converged(&head, &["coop-a"], &ALL);
    c.power_on(&network);
    c.expect_converged(&head, &["coop-c", "coop-c2"], &ALL);

    // d. b cut off from a: it keeps running its last good revision and says why it cannot follow.
    b.host().run_ok("ip", &["link", "set", "eth0", "down"]);
    let description = state.path().join("hosts/b.yaml");
    std::fs::write(&description, std::fs::read_to_string(&description).unwrap().replace("second box", "second"))
        .unwrap();
    let newest = commit(&a, state.path(), "b's description");
    b.expect_within(60, "says it cannot follow its upstream", |m| m.status()["upstream_error"].is_string());
    let cut_off = b.status();
    assert_eq!(cut_off["last_applied"], head, "{cut_off:#}");
    assert!(b.active("coop-b"), "coop-b keeps running");
    assert!(cut_off["upstream_error"].as_str().unwrap().contains("cannot follow the upstream"), "{cut_off:#}");
    b.host().run_ok("ip", &["link", "set", "eth0", "up"]);
    b.expect_converged(&newest, &["coop-b"], &ALL);
    b.expect_within(30, "the upstream error is gone", |m| m.status()["upstream_error"].is_null());

    overridden_on_b_and_shown_on_a(&a, &b, &c, state.path());
    moved_from_b_to_c_with_its_data(&a, &b, &c, state.path());
}

/// coop-b stopped by hand on b: b's agent leaves it stopped through a commit that changes
/// nothing of it, and the control host's look at b (the web's `status`) shows it Overridden;
/// released, it runs again.
fn overridden_on_b_and_shown_on_a(a: &Member, b: &Member, c: &Member, state: &Path) {
    b.host().run_ok("l4d2ctl", &["stop", "coop-b"]);
    let description = state.join("hosts/c.yaml");
    std::fs::write(&description, std::fs::read_to_string(&description).unwrap().replace("Amsterdam", "AMS")).unwrap();
    let head = commit(a, state, "c's description");
    b.expect_converged(&head, &[], &ALL);
    c.expect_converged(&head, &["coop-c", "coop-c2"], &ALL);
    let seen = web_status(a, b);
    let coop_b = &seen["servers"][0];
    assert_eq!((coop_b["name"].as_str(), coop_b["sync"].as_str()), (Some("coop-b"), Some("Overridden")), "{seen:#}");
    assert!(coop_b["sync_message"].as_str().unwrap().contains("by hand"), "{seen:#}");
    assert!(!b.active("coop-b"), "the override holds");
    b.host().run_ok("l4d2ctl", &["release", "coop-b"]);
    b.host().run_ok("left4me", &["apply"]);
    b.expect_converged(&head, &["coop-b"], &ALL);
}

/// coop-b, which wrote a file on b, is placed on c: b lets it go (its data archived, recorded as
/// c's), c fetches that through a, receives it before the first start, and the game on c sees
/// the file it wrote on b.
fn moved_from_b_to_c_with_its_data(a: &Member, b: &Member, c: &Member, state: &Path) {
    let tree = b.host().game_tree("coop-b");
    let written = format!("{tree}/left4dead2/banned_user.cfg");
    b.host().run_ok("sh", &["-c", &format!("echo 'banid 0 STEAM_1:0:7' > {written} && chown left4me: {written}")]);
    let file = state.join("servers/coop-b.yaml");
    let yaml =
        std::fs::read_to_string(&file).unwrap().replace("host: b", "host: c").replace("port: 27016", "port: 27017");
    std::fs::write(&file, yaml).unwrap();
    let head = commit(a, state, "coop-b moves to c");
    b.expect_converged(&head, &[], &ALL);
    c.expect_converged(&head, &["coop-b", "coop-c", "coop-c2"], &ALL);
    let moved = b.host().run_ok("sh", &["-c", "cat /var/lib/left4me/archive/coop-b-*.json"]);
    assert!(moved.contains(r#""moving_to":"c""#), "b recorded the move: {moved}");
    let tree = c.host().game_tree("coop-b");
    let arrived = c.host().run_ok("cat", &[&format!("{tree}/left4dead2/banned_user.cfg")]);
    assert_eq!(arrived, "banid 0 STEAM_1:0:7\n", "what coop-b wrote on b is on c");
    assert!(!c.host().run("test", &["-e", "/var/lib/left4me/incoming/coop-b.tar"]).status.success(), "received");
    let jobs = c.host().run_ok("left4me", &["jobs", "--json"]);
    assert!(jobs.contains(r#""kind": "receive""#), "c received it as a job of its own: {jobs}");
}

/// After `agent` and `control` ran twice for c: one line per key and known host, one setting of
/// each kind in host.env, the web app masked and off.
fn each_key_and_host_is_written_once(a: &Member, c: &Member) {
    let files = ["", "/web", "/web.pub", "/agent", "/agent.pub", "/known_hosts", "/authorized_keys"]
        .map(|f| format!("/etc/left4me/ssh{f}"));
    let modes = c.host().run_ok("stat", &[&["-c", "%n %U:%G %a"][..], &files.each_ref().map(String::as_str)].concat());
    let expected = "/etc/left4me/ssh root:left4me 750\n/etc/left4me/ssh/web left4me:left4me 600\n\
                    /etc/left4me/ssh/web.pub left4me:left4me 644\n/etc/left4me/ssh/agent root:root 600\n\
                    /etc/left4me/ssh/agent.pub root:root 644\n/etc/left4me/ssh/known_hosts root:left4me 640\n\
                    /etc/left4me/ssh/authorized_keys root:root 644\n";
    assert_eq!(modes, expected);
    assert_eq!(c.host().run_ok("getent", &["passwd", "left4me"]).trim().rsplit(':').next(), Some("/bin/sh"));
    assert_eq!(
        lines_starting(
            a.host(),
            "/etc/left4me/ssh/authorized_keys",
            "command=\"/usr/local/bin/left4me remote --agent "
        ),
        2
    );
    assert_eq!(
        lines_starting(
            a.host(),
            "/etc/left4me/ssh/authorized_keys",
            "command=\"/usr/local/bin/left4me remote --agent c\",restrict ssh-ed25519 "
        ),
        1,
        "c's key is c's, named so"
    );
    assert_eq!(lines_starting(a.host(), KNOWN_HOSTS, "10.77."), 2);
    assert_eq!(
        lines_starting(
            c.host(),
            "/etc/left4me/ssh/authorized_keys",
            "command=\"/usr/local/bin/left4me remote\",restrict ssh-ed25519 "
        ),
        1
    );
    assert_eq!(lines_starting(c.host(), KNOWN_HOSTS, &a.address.to_string()), 1);
    assert_eq!(lines_starting(c.host(), "/etc/left4me/host.env", "LEFT4ME_HOST=c"), 1);
    assert_eq!(lines_starting(c.host(), "/etc/left4me/host.env", "LEFT4ME_FETCH_SECONDS=2"), 1);
    assert_eq!(text(&c.host().run("systemctl", &["is-enabled", "left4me-web.service"])).trim(), "masked");
    assert_eq!(text(&c.host().run("systemctl", &["is-active", "left4me-web.service"])).trim(), "inactive");
}

/// From a as the web app to b, and from b as the agent to a: each key's forced command takes its
/// own asks and refuses everything else, with nothing run; and a game cannot add a key.
fn keys_ask_only_their_own(a: &Member, b: &Member) {
    let marker = "/var/lib/left4me/ran";
    let touch = format!("touch {marker}");
    for line in [
        "sh -c id".to_owned(),
        "status; id".to_owned(),
        format!("status; {touch}"),
        format!("status && {touch}"),
        format!("status $({touch})"),
        format!("`{touch}`"),
        touch.clone(),
        format!("git-upload-pack {STATE}"),
        format!("git-receive-pack '{STATE}'"),
        "l4d2ctl delete coop-b".to_owned(),
    ] {
        let out = as_web(a, b, &line);
        assert_eq!(out.status.code(), Some(2), "{line:?} is refused: {}", text(&out));
        assert!(text(&out).contains("left4me remote: refused"), "{line:?}: {}", text(&out));
    }
    assert!(!b.host().run("test", &["-e", marker]).status.success(), "a refused line ran something");

    // No forwarding: a stdio forward is refused, and a local forward carries nothing.
    let forward = run_argv(a.host(), &ssh_argv("left4me", WEB_KEY, &["-W", "127.0.0.1:22"], b.address, None));
    assert!(!forward.status.success(), "ssh -W is refused: {}", text(&forward));
    let local = ssh_argv("left4me", WEB_KEY, &["-N", "-L", "127.0.0.1:40022:127.0.0.1:22"], b.address, None);
    let quoted = shlex::try_join(local.iter().map(String::as_str)).unwrap();
    let probe = format!(
        "timeout 8 {quoted} & sleep 2; timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/40022 && head -c 7 <&3' 2>/dev/null; wait"
    );
    let through = sh(a.host(), &probe, &[]);
    assert!(!text(&through).contains("SSH-2.0"), "the forward carried b's sshd's banner: {}", text(&through));
    assert!(text(&through).contains("open failed"), "b refused the forward's channel: {}", text(&through));
    // No terminal.
    let tty = run_argv(a.host(), &ssh_argv("left4me", WEB_KEY, &["-tt"], b.address, Some("status")));
    assert!(text(&tty).contains("PTY allocation request failed"), "{}", text(&tty));

    // The agent's key: the state repo, read-only, and nothing else.
    let url = format!("left4me@{}:{STATE}", a.address);
    let git_ssh = shlex::try_join(ssh_base(AGENT_KEY).iter().map(String::as_str)).unwrap();
    let git_ssh = format!("GIT_SSH_COMMAND={git_ssh}");
    let listed = b.host().run_ok("env", &[&git_ssh, "git", "ls-remote", &url, "refs/heads/main"]);
    assert!(listed.starts_with(&a.head()), "{listed}");
    let pushed = b.host().run("env", &[&git_ssh, "git", "-C", STATE, "push", &url, "main:refs/heads/pushed"]);
    assert!(!pushed.status.success(), "a push is refused: {}", text(&pushed));
    assert!(text(&pushed).contains("refused"), "{}", text(&pushed));
    assert!(!a.host().run("git", &["-C", STATE, "rev-parse", "--verify", "--quiet", "pushed"]).status.success());
    for line in ["status", "git-upload-pack '/etc'", "sh -c id"] {
        let out = as_agent(b, a, line);
        assert_eq!(out.status.code(), Some(2), "{line:?} is refused: {}", text(&out));
    }

    // A game runs as left4me: it can neither write the keys' file nor log in with a key of its own
    // home (sshd reads /etc/left4me/ssh/authorized_keys alone for the user).
    let wrote =
        b.host().run("runuser", &["-u", "left4me", "--", "sh", "-c", "echo x >> /etc/left4me/ssh/authorized_keys"]);
    assert!(!wrote.status.success(), "the game's user wrote authorized_keys");
    let owner = b.host().run_ok("stat", &["-c", "%U:%G %a", "/etc/left4me/ssh/authorized_keys"]);
    assert_eq!(owner.trim(), "root:root 644");
    let rogue = format!("{SCRATCH}/rogue");
    a.host().run_ok("mkdir", &["-p", SCRATCH]);
    a.host().run_ok("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", "rogue", "-f", &rogue]);
    let rogue_pub = a.host().run_ok("cat", &[&format!("{rogue}.pub")]);
    let planted = "mkdir -p /var/lib/left4me/.ssh && printf '%s\\n' \"$1\" > /var/lib/left4me/.ssh/authorized_keys";
    let planted = b.host().run("runuser", &["-u", "left4me", "--", "sh", "-c", planted, "sh", rogue_pub.trim()]);
    assert!(planted.status.success(), "{}", text(&planted));
    let rogue_login = run_argv(a.host(), &ssh_argv("root", &rogue, &[], b.address, Some("status")));
    assert_eq!(rogue_login.status.code(), Some(255), "a key of the game's own home logs in: {}", text(&rogue_login));
    assert!(text(&rogue_login).contains("Permission denied"), "{}", text(&rogue_login));
}
