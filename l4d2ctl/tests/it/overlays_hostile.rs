//! Overlay writes against what a host and a recipe can do to them: a build that reads what is
//! not its own, a killed `l4d2ctl`, a stopped build, the leftovers of dead writes, a full disk.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use crate::support::{Host, ROOT, text};

const DIGEST: &str = "sha256:0123";

#[test]
fn a_build_sees_only_its_tree_and_the_base_install() {
    let host = Host::installed();
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    // Both databases, as the reconciler and the web app leave them: the game user's.
    for db in ["web.db", "left4me.db"] {
        host.ok("sh", &["-c", &format!("echo secret > {ROOT}/{db} && chown left4me:left4me {ROOT}/{db}")]);
    }
    let layers = host.root_path(&format!("{ROOT}/instances/coop-1/layers"));
    let layer = std::fs::read_dir(&layers).unwrap().next().unwrap().unwrap().file_name();
    let secrets = [
        format!("{ROOT}/instances/coop-1/rcon_password"),
        format!("{ROOT}/instances/coop-1/instance.json"),
        format!("{ROOT}/instances/coop-1/layers/{}/left4dead2/cfg/server.cfg", layer.to_string_lossy()),
        format!("{ROOT}/web.db"),
        format!("{ROOT}/left4me.db"),
        format!("{ROOT}/state/.git/config"),
        format!("{ROOT}/overlays/tickrate/left4dead2/cfg/server.cfg"),
    ];
    for secret in &secrets {
        assert!(host.root_path(secret).is_file(), "{secret} exists, so not reading it means something");
    }
    let script = format!(
        "for f in {}; do if cat \"$f\" >/dev/null 2>&1; then echo \"READ $f\"; else echo \"HIDDEN $f\"; fi; done\n\
         ls -A {ROOT}/overlays {ROOT}/instances 2>/dev/null | sed 's/^/LISTED /'\n\
         cat {ROOT}/installation/srcds_run >/dev/null && echo BASE-READABLE\n\
         touch {ROOT}/installation/written 2>/dev/null && echo BASE-WRITTEN\n\
         echo \"UID $(id -u)\"\n\
         mkdir -p left4dead2/cfg && echo 'sv_tags built' > left4dead2/cfg/built.cfg\n",
        secrets.join(" ")
    );
    let out = build(&host, "hostile", &script);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let log = text(&out.stdout);
    for secret in &secrets {
        assert!(log.contains(&format!("HIDDEN {secret}")), "{secret} is out of the build's sight:\n{log}");
    }
    for other in ["tickrate", "coop-1", ".digests"] {
        assert!(!log.contains(&format!("LISTED {other}")), "{other} is not listed:\n{log}");
    }
    assert!(log.contains("BASE-READABLE") && !log.contains("BASE-WRITTEN"), "the base install, read-only:\n{log}");
    let game_uid = host.ok("id", &["-u", "left4me"]).trim().to_owned();
    let build_uid = log.lines().find_map(|l| l.strip_prefix("UID ")).unwrap_or_default();
    assert!(!["0", "", game_uid.as_str()].contains(&build_uid), "a user of its own, not {build_uid:?}:\n{log}");
    // The tree it made is the overlay, the game user's as a put's is.
    let built = host.root_path(&format!("{ROOT}/overlays/hostile/left4dead2/cfg/built.cfg"));
    assert_eq!(std::fs::read_to_string(&built).unwrap(), "sv_tags built\n");
    let game_uid: u32 = game_uid.parse().unwrap();
    for path in
        [built.clone(), built.parent().unwrap().to_path_buf(), host.root_path(&format!("{ROOT}/overlays/hostile"))]
    {
        assert_eq!(std::fs::symlink_metadata(&path).unwrap().uid(), game_uid, "{} is the game user's", path.display());
    }
}

#[test]
fn a_host_without_the_game_builds_too() {
    let host = Host::booted();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_l4d2ctl")).parent().unwrap();
    host.sandbox.install_left4me(bin_dir, false);
    assert!(!host.root_path(&format!("{ROOT}/installation")).exists(), "no base install to bind");
    let out = build(&host, "bare", "mkdir -p left4dead2 && echo bare > left4dead2/which\n");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let which = std::fs::read_to_string(host.root_path(&format!("{ROOT}/overlays/bare/left4dead2/which"))).unwrap();
    assert_eq!(which, "bare\n");
}

#[test]
fn a_killed_build_takes_its_unit_along_and_the_retry_runs_alone() {
    let host = Host::installed();
    let mut caller =
        start_build(&host, "slow", "echo started\nmkdir -p left4dead2 && echo slow > left4dead2/which\nsleep 600\n");
    let staging = |h: &Host| {
        std::fs::read_dir(h.root_path(&format!("{ROOT}/overlays")))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".staging-slow-"))
            .count()
    };
    assert_eq!(staging(&host), 1, "the running build has its staging folder");
    let pid = host.ok("pgrep", &["-x", "l4d2ctl"]).trim().to_owned();
    host.ok("kill", &["-KILL", &pid]);
    let _ = caller.wait();
    let gone = host.wait_for(30, |h| (!building(h, "slow")).then_some(()));
    assert!(gone.is_some(), "the build's unit ended with its l4d2ctl: {}", unit_state(&host, "left4me-build-slow"));
    assert_eq!(staging(&host), 1, "the killed write left its staging folder behind");

    // A unit by the build's name that something left running is stopped before the retry. (The
    // killed build's unit stays loaded as failed, as a stopped build's does, until then.)
    host.ok("systemctl", &["reset-failed", "left4me-build-slow.service"]);
    host.ok("systemd-run", &["--quiet", "--unit", "left4me-build-slow", "--", "sleep", "600"]);
    let out = build(&host, "slow", "mkdir -p left4dead2 && echo retry > left4dead2/which\n");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!building(&host, "slow"), "{}", unit_state(&host, "left4me-build-slow"));
    let which = std::fs::read_to_string(host.root_path(&format!("{ROOT}/overlays/slow/left4dead2/which"))).unwrap();
    assert_eq!(which, "retry\n");
    assert_eq!(staging(&host), 0, "the retry removed what the killed write left");
    let leftovers = host.ok("ls", &["-A", &format!("{ROOT}/overlays")]);
    assert!(!leftovers.contains(".staging-") && !leftovers.contains(".build-"), "{leftovers}");
    let units = host.ok("systemctl", &["list-units", "--all", "--no-legend", "--plain", "left4me-build*"]);
    assert!(units.trim().is_empty(), "no build unit is left: {units}");
}

#[test]
fn a_stopped_build_says_by_which_signal_and_changes_nothing() {
    let host = Host::installed();
    let out = build(&host, "stopped", "mkdir -p left4dead2 && echo first > left4dead2/which\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let caller = start_build(&host, "stopped", "mkdir -p left4dead2 && echo partial > left4dead2/which\nsleep 600\n");
    host.ok("systemctl", &["stop", "left4me-build-stopped.service"]);
    let out = caller.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a stopped build is no build: {stderr}");
    assert!(stderr.contains("the build of overlay stopped was stopped by SIGKILL"), "{stderr}");
    let which = std::fs::read_to_string(host.root_path(&format!("{ROOT}/overlays/stopped/left4dead2/which"))).unwrap();
    assert_eq!(which, "first\n", "the overlay is the one it was");
}

#[test]
fn a_live_write_keeps_its_staging_folder_while_others_write() {
    let host = Host::installed();
    let tar = |name: &str, contents: &str| {
        let source = host.shared_dir().join(name);
        std::fs::create_dir_all(source.join("left4dead2/cfg")).unwrap();
        std::fs::write(source.join("left4dead2/cfg/which.cfg"), contents).unwrap();
        let out = std::process::Command::new("tar").arg("-C").arg(&source).args(["-c", "."]).output().unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let (slow, quick) = (tar("slow", "slow\n"), tar("quick", "quick\n"));
    // The tar reaches this put only when the test writes it: until then the write is live.
    let mut live = write(&host, "put", "slow");
    let overlays = host.root_path(&format!("{ROOT}/overlays"));
    let staging = |_: &Host| {
        std::fs::read_dir(&overlays)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".staging-slow-"))
            .then_some(())
    };
    assert!(host.wait_for(30, staging).is_some(), "the live put has its staging folder");
    let mut other = write(&host, "put", "quick");
    other.stdin.take().unwrap().write_all(&quick).unwrap();
    let out = other.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(staging(&host).is_some(), "another overlay's write left the live one's staging folder alone");
    live.stdin.take().unwrap().write_all(&slow).unwrap();
    let out = live.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (name, contents) in [("slow", "slow\n"), ("quick", "quick\n")] {
        let which = host.root_path(&format!("{ROOT}/overlays/{name}/left4dead2/cfg/which.cfg"));
        assert_eq!(std::fs::read_to_string(which).unwrap(), contents);
    }
}

#[test]
fn a_full_disk_is_named_and_the_old_overlay_stays() {
    let host = Host::installed();
    let overlays = format!("{ROOT}/overlays");
    host.ok("mkdir", &["-p", &overlays]);
    host.ok("mount", &["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", &overlays]);
    let source = host.shared_dir().join("full");
    std::fs::create_dir_all(source.join("left4dead2/cfg")).unwrap();
    std::fs::write(source.join("left4dead2/cfg/which.cfg"), "old\n").unwrap();
    let put = |dir: &std::path::Path| {
        host.run("sh", &["-c", &format!("tar -C {} -c . | l4d2ctl overlay put full --digest {DIGEST}", dir.display())])
    };
    let out = put(&source);
    assert!(out.status.success(), "{}", text(&out.stderr));
    host.ok("dd", &["if=/dev/zero", &format!("of={overlays}/filler"), "bs=1M", "count=3", "status=none"]);
    let bigger = host.shared_dir().join("bigger");
    std::fs::create_dir_all(bigger.join("left4dead2/cfg")).unwrap();
    std::fs::write(bigger.join("left4dead2/cfg/which.cfg"), "new\n").unwrap();
    std::fs::write(bigger.join("left4dead2/big.vpk"), vec![7u8; 2 << 20]).unwrap();

    let out = put(&bigger);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("No space left on device"), "the OS error is in the message: {stderr}");
    assert!(stderr.contains("big.vpk"), "and the path: {stderr}");
    let which = host.ok("cat", &[&format!("{overlays}/full/left4dead2/cfg/which.cfg")]);
    assert_eq!(which, "old\n", "the old overlay stays");
    let listing = host.ok("ls", &["-A", &overlays]);
    assert!(!listing.contains(".staging-"), "the staging folder went: {listing}");
}

/// Starts `l4d2ctl overlay build <name>` with `script` on stdin, and waits until the build runs.
fn start_build(host: &Host, name: &str, script: &str) -> std::process::Child {
    let file = host.shared_dir().join(format!("{name}.sh"));
    std::fs::write(&file, script).unwrap();
    let caller = host
        .sandbox
        .command("sh")
        .args(["-c", &format!("exec l4d2ctl overlay build {name} --digest {DIGEST} < {}", file.display())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(host.wait_for(30, |h| building(h, name).then_some(())).is_some(), "the build of {name} runs");
    caller
}

/// Whether the build unit of the overlay `name` runs.
fn building(host: &Host, name: &str) -> bool {
    let unit = format!("left4me-build-{name}.service");
    text(&host.run("systemctl", &["is-active", &unit]).stdout).trim() == "active"
}

/// Runs `l4d2ctl overlay build <name>` with `script` on stdin.
fn build(host: &Host, name: &str, script: &str) -> std::process::Output {
    let mut child = write(host, "build", name);
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Starts `l4d2ctl overlay <verb> <name>`, its input to come from the test.
fn write(host: &Host, verb: &str, name: &str) -> std::process::Child {
    host.sandbox
        .command("l4d2ctl")
        .args(["overlay", verb, name, "--digest", DIGEST])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn unit_state(host: &Host, prefix: &str) -> String {
    text(&host.run("systemctl", &["list-units", "--all", "--no-legend", "--plain", &format!("{prefix}*")]).stdout)
}
