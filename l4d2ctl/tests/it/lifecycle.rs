//! The whole life of a server on a real host: install, initialize, start, status, logs, RCON,
//! stop, delete — and what a host does to it: reboots, crashes.

use crate::support::{Host, ROOT, text};

#[test]
fn install_initialize_start_status_logs_rcon_stop_delete() {
    let host = Host::installed();
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    // Its console, followed as the web app follows it (its user, the journal's group) from
    // before the server has written a line: the lines come once it runs.
    let console = format!("{ROOT}/console-coop-1.log");
    host.ok(
        "systemd-run",
        &[
            "--unit=follow-coop-1",
            "--property=User=left4me",
            "--property=SupplementaryGroups=systemd-journal",
            &format!("--property=StandardOutput=file:{console}"),
            "l4d2ctl",
            "logs",
            "coop-1",
            "--follow",
        ],
    );

    let out = host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    assert!(out.starts_with("coop-1: initialized (sha256:"), "{out}");
    // Started by hand first: systemd loads the unit and notes it is not enabled; `start` then
    // enables it without a reload, so systemd's note is stale — the symlink is what counts.
    host.ok("systemctl", &["start", "left4me-server@coop-1.service"]);
    assert_eq!(host.status_json("coop-1")["enabled"], false);
    host.l4d2ctl_ok(&["start", "coop-1"]);
    assert_eq!(host.status_json("coop-1")["enabled"], true, "enabled by `l4d2ctl start`");

    let status = host.wait_for(15, |h| h.answered("coop-1")).unwrap_or_else(|| {
        panic!(
            "coop-1 never answered A2S: {}\n{}",
            host.status_json("coop-1"),
            host.l4d2ctl_ok(&["logs", "coop-1", "--lines", "50"])
        )
    });
    assert_eq!(status["active_state"], "active");
    assert_eq!(status["enabled"], true);
    assert_eq!(status["mounted"], true);
    assert_eq!(status["port"], 27015);
    // The hostname came through the rendered server.cfg in the merged tree; the map from the argv.
    assert_eq!(status["query"]["name"], "alice's coop");
    assert_eq!(status["query"]["map"], "c1m1_hotel");
    assert!(status["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(status["started_digest"], status["digest"], "it runs what was rendered");
    assert!(status["override"]["who"].is_string(), "a write by hand leaves an override marker");
    // What a plan reads, briefly: the same state, without asking the game.
    let brief = brief_status(&host, "coop-1");
    for key in ["active_state", "sub_state", "enabled", "mounted", "port", "digest", "started_digest", "override"] {
        assert_eq!(brief[key], status[key], "{key} in `observe --brief`");
    }
    assert!(brief["query"].is_null(), "a brief look asks no game: {brief}");

    let logs = host.l4d2ctl_ok(&["logs", "coop-1", "--lines", "200"]);
    assert!(logs.contains("Executing dedicated server config file server.cfg"), "{logs}");
    let followed = host.wait_for(15, |h| {
        let followed = std::fs::read_to_string(h.root_path(&console)).unwrap_or_default();
        followed.contains("Executing dedicated server config file server.cfg").then_some(())
    });
    assert!(
        followed.is_some(),
        "the console followed from before its first line shows none: {:?}",
        std::fs::read_to_string(host.root_path(&console))
    );
    host.ok("systemctl", &["stop", "follow-coop-1"]);

    // The tickrate overlay's own server.cfg was staged as server_tickrate.cfg and exec'd.
    let rate = host.l4d2ctl_ok(&["rcon", "coop-1", "sv_maxrate"]);
    assert!(rate.contains("\"sv_maxrate\" = \"100000\""), "{rate}");
    host.l4d2ctl_ok(&["rcon", "coop-1", "sim_players", "2"]);
    let players = host.wait_for(5, |h| (h.answered("coop-1")?["query"]["players"] == 2).then_some(()));
    assert!(players.is_some(), "RCON changed what A2S reports");
    // A2S can hide players (a cached answer, L4DToolZ): asked to count humans, a look asks the
    // console of a server A2S shows empty, and only that one.
    host.l4d2ctl_ok(&["rcon", "coop-1", "sim_a2s_hidden", "2"]);
    let hidden = host.wait_for(5, |h| (h.answered("coop-1")?["query"]["players"] == 0).then_some(()));
    assert!(hidden.is_some(), "A2S shows no players");
    let counted = |args: &[&str]| -> serde_json::Value {
        let observed: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(args)).unwrap();
        observed["instances"].as_array().unwrap().iter().find(|s| s["name"] == "coop-1").unwrap()["query"].clone()
    };
    let query = counted(&["observe", "--count-humans", "coop-1"]);
    assert_eq!((&query["players"], &query["humans"]), (&0.into(), &2.into()), "{query}");
    assert!(counted(&["observe"])["humans"].is_null(), "a plain look asks no console");
    let refused = host.l4d2ctl(&["observe", "--count-humans", "../x"]);
    assert!(!refused.status.success(), "a name that is no server name is refused");
    host.l4d2ctl_ok(&["rcon", "coop-1", "sim_a2s_hidden", "0"]);
    // Restarts asked for are new attempts: systemd's start limit (5 starts in 60 s, there to stop a
    // crash loop) does not refuse the sixth of a minute's rollouts.
    for round in 0..6 {
        let out = host.l4d2ctl(&["restart", "coop-1"]);
        assert!(out.status.success(), "restart {round}: {}", String::from_utf8_lossy(&out.stderr));
    }
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 answers after its restarts");

    // The game's own writes land in the instance's upper layer.
    let merged = host.sandbox.game_tree("coop-1");
    host.ok("sh", &["-c", &format!("echo 'banid 0 STEAM_1:0:1' > {merged}/left4dead2/cfg/banned_user.cfg")]);
    assert!(host.root_path(&format!("{ROOT}/runtime/coop-1/upper/left4dead2/cfg/banned_user.cfg")).exists());

    host.l4d2ctl_ok(&["stop", "coop-1"]);
    let status = host.status_json("coop-1");
    assert_eq!(status["active_state"], "inactive");
    assert_eq!(status["enabled"], false);
    assert_eq!(status["mounted"], false, "its tree went with its game");
    let brief = brief_status(&host, "coop-1");
    assert_eq!((&brief["active_state"], &brief["enabled"]), (&status["active_state"], &status["enabled"]));

    let deleted = host.l4d2ctl_ok(&["delete", "coop-1"]);
    // Nothing the server made is lost: its data is archived before the instance goes.
    let archive = deleted.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(archive.starts_with(&format!("{ROOT}/archive/coop-1-")) && archive.ends_with(".tar"), "{deleted}");
    let listing = host.ok("tar", &["-tf", &archive]);
    assert!(listing.contains("left4dead2/cfg/banned_user.cfg"), "{listing}");
    assert!(!host.root_path(&format!("{ROOT}/instances/coop-1")).exists());
    assert!(!host.root_path(&format!("{ROOT}/runtime/coop-1")).exists());
    let mounts = host.ok("cat", &["/proc/self/mountinfo"]);
    assert!(!mounts.contains("coop-1"), "{mounts}");
    let units = host.ok("systemctl", &["list-units", "--all", "--no-legend", "left4me-server@*"]);
    assert!(!units.contains("coop-1"), "{units}");
}

#[test]
fn a_game_sees_only_its_own_tree_and_no_other_servers_files_or_secrets() {
    let host = Host::installed();
    host.start_example("coop-1");
    host.start_example("coop-2");
    let secret = |name: &str| {
        std::fs::read_to_string(host.root_path(&format!("{ROOT}/instances/{name}/rcon_password")))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (own, other) = (secret("coop-1"), secret("coop-2"));
    let other_pid = host.status_json("coop-2")["main_pid"].as_u64().expect("coop-2 runs");
    // What is looked for is there: root reads it in coop-2's tree, through coop-2's game.
    let cfg = host.ok("cat", &[&format!("{}/left4dead2/cfg/server.cfg", host.sandbox.game_tree("coop-2"))]);
    assert!(cfg.contains(&other), "coop-2's server.cfg holds its password: {cfg}");

    // The host's own namespace holds no game's tree: each is mounted in its game's only.
    let host_mounts = host.ok("cat", &["/proc/1/mountinfo"]);
    assert!(!host_mounts.contains("/runtime/"), "{host_mounts}");
    assert_eq!(host.ok("ls", &["-A", &format!("{ROOT}/runtime/coop-1/merged")]), "", "empty in the host's view");

    // In coop-1's namespaces, as its game: its own tree and nothing else of $ROOT. (The sandbox
    // keeps its disk in sight at its own path too, which a real host's $ROOT does not have: the
    // search below is of $ROOT and of coop-2's processes.)
    let seen = host.as_game("coop-1", &format!(
        "ls -A {ROOT}; echo --; ls -A {ROOT}/runtime {ROOT}/instances; echo --; \
         grep -c rcon_password {ROOT}/runtime/coop-1/merged/left4dead2/cfg/server.cfg; echo --; \
         ls /proc/{other_pid} 2>&1; cat /proc/{other_pid}/root{ROOT}/runtime/coop-2/merged/left4dead2/cfg/server.cfg 2>&1; \
         cat /proc/{other_pid}/environ 2>&1; echo --; \
         grep -rl -D skip --include='*.cfg' --include='*password*' -e {other} {ROOT} 2>/dev/null; \
         for p in /proc/[0-9]*; do cat $p/root{ROOT}/runtime/coop-2/merged/left4dead2/cfg/server.cfg 2>/dev/null; done; echo end"
    ));
    let seen = text(&seen.stdout);
    let parts: Vec<&str> = seen.split("--\n").collect();
    assert_eq!(parts.len(), 5, "{seen}");
    // The Steam SDK links (`.steam`, `.local`) are bound in too, read-only.
    let top: Vec<&str> = parts[0].split_whitespace().filter(|name| !name.starts_with('.')).collect();
    assert_eq!(top, ["instances", "runtime"], "{seen}");
    assert_eq!(parts[1].split_whitespace().filter(|w| !w.ends_with(':')).collect::<Vec<_>>(), ["coop-1", "coop-1"]);
    assert_eq!(parts[2].trim(), "1", "its own server.cfg, with its own password: {seen}");
    assert!(!seen.contains(&other), "coop-2's RCON password is not coop-1's to read: {seen}");
    assert!(parts[3].contains("No such file"), "coop-2's processes are not coop-1's to see: {seen}");
    assert_eq!(parts[4].trim(), "end", "nothing of coop-2 reached: {seen}");
    assert!(!own.is_empty() && own != other);
    // The web app's SSH key is its user's, the game's too: not in the game's sight.
    assert!(host.ok("cat", &["/etc/left4me/ssh/web"]).contains("PRIVATE KEY"), "install.sh made the key");
    let key = text(&host.as_game("coop-1", "cat /etc/left4me/ssh/web 2>&1; echo end").stdout);
    assert!(!key.contains("PRIVATE KEY") && key.contains("Permission denied"), "{key}");
}

#[test]
fn a_tree_left_in_the_hosts_namespace_from_before_is_unmounted_and_never_run() {
    let host = Host::installed();
    host.start_example("coop-1");
    host.l4d2ctl_ok(&["stop", "coop-1"]);
    // What a start from before left: the tree mounted in the host's namespace, and no unit
    // unmounting it any more.
    let merged = format!("{ROOT}/runtime/coop-1/merged");
    let leave_one = format!(
        "mkdir -p /tmp/old /tmp/older && echo old > /tmp/old/old.txt && mount -t overlay overlay -o lowerdir=/tmp/old:/tmp/older {merged}"
    );
    host.ok("sh", &["-c", &leave_one]);
    host.l4d2ctl_ok(&["start", "coop-1"]);
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 answers");
    let tree = host.sandbox.game_tree("coop-1");
    assert!(!host.run("test", &["-e", &format!("{tree}/old.txt")]).status.success(), "the old tree is not run");
    assert!(host.ok("cat", &[&format!("{tree}/left4dead2/cfg/server.cfg")]).contains("rcon_password"));
    assert!(!host.ok("cat", &["/proc/1/mountinfo"]).contains("/runtime/"), "the host's is gone");

    // A stopped server's: `install` unmounts it, and says so.
    host.l4d2ctl_ok(&["stop", "coop-1"]);
    host.ok("sh", &["-c", &leave_one]);
    let installed = host.l4d2ctl_ok(&["install", "--units-only"]);
    assert!(installed.contains("unmounted coop-1's tree"), "{installed}");
    assert!(!host.ok("cat", &["/proc/1/mountinfo"]).contains("/runtime/"));
}

#[test]
fn the_first_overlay_wins_over_later_ones_and_the_base() {
    let host = Host::installed();
    // The same file in the base install (the build a render stacks), in two overlays: the first
    // overlay's copy is what runs.
    let game: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(&["game", "--json"])).unwrap();
    let build = &game["installed"][0];
    let base_cfg = host.root_path(&format!("{ROOT}/builds/{build}/left4dead2/cfg/precedence.cfg"));
    std::fs::write(&base_cfg, "sv_tags from_base\n").unwrap();
    host.put_overlay("upper", &[("left4dead2/cfg/precedence.cfg", "sv_tags from_upper\n")]);
    host.put_overlay("lower", &[("left4dead2/cfg/precedence.cfg", "sv_tags from_lower\n")]);
    let spec = host.write_spec(
        "stack",
        r#"{"name":"stack","port":27016,"hostname":"stack","overlays":[
            {"name":"upper","type":"files","digest":"sha256:1"},
            {"name":"lower","type":"files","digest":"sha256:2"}],
           "arguments":["+map","c1m1_hotel"],"config":["exec precedence.cfg"]}"#,
    );
    host.l4d2ctl_ok(&["initialize", "stack", "-f", &spec]);
    host.l4d2ctl_ok(&["start", "stack"]);
    host.wait_for(15, |h| h.answered("stack")).expect("stack answers");
    let tags = host.l4d2ctl_ok(&["rcon", "stack", "sv_tags"]);
    assert!(tags.contains("\"sv_tags\" = \"from_upper\""), "{tags}");
    let seen = host.ok("cat", &[&format!("{}/left4dead2/cfg/precedence.cfg", host.sandbox.game_tree("stack"))]);
    assert_eq!(seen, "sv_tags from_upper\n");
}

#[test]
fn every_write_twice_gives_the_same_result() {
    let host = Host::installed();
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    host.l4d2ctl_ok(&["install"]);
    let first = host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    let layers = host.root_path(&format!("{ROOT}/instances/coop-1/layers"));
    let layer = std::fs::read_dir(&layers).unwrap().next().unwrap().unwrap().path();
    let cfg = layer.join("left4dead2/cfg/server.cfg");
    let rendered = std::fs::read(&cfg).unwrap();
    let again = host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    assert!(again.contains("already up to date"), "{again}");
    assert_eq!(first.split('(').nth(1), again.split('(').nth(1), "the same digest");
    assert_eq!(std::fs::read(&cfg).unwrap(), rendered, "byte-identical");
    // The log secret is the instance's own, kept across renders as the RCON password is.
    let secret = std::fs::read_to_string(host.root_path(&format!("{ROOT}/instances/coop-1/log_secret"))).unwrap();
    let rendered = String::from_utf8(rendered).unwrap();
    assert!(rendered.contains(&format!("sv_logsecret {}\n", secret.trim())), "{rendered}");
    assert!(rendered.contains("logaddress_add 127.0.0.1:27500\n"), "{rendered}");

    for _ in 0..2 {
        host.l4d2ctl_ok(&["start", "coop-1"]);
        assert_eq!(host.status_json("coop-1")["active_state"], "active");
    }
    for _ in 0..2 {
        host.l4d2ctl_ok(&["stop", "coop-1"]);
        assert_eq!(host.status_json("coop-1")["active_state"], "inactive");
    }
    for expected in ["coop-1: deleted", "coop-1: already deleted"] {
        assert_eq!(host.l4d2ctl_ok(&["delete", "coop-1"]).trim(), expected);
    }
    let out = host.l4d2ctl(&["delete", "never-existed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for _ in 0..2 {
        host.l4d2ctl_ok(&["release", "coop-1"]);
    }
}

#[test]
fn enabled_servers_come_back_after_a_power_cut() {
    let host = Host::installed();
    host.start_example("coop-1");

    let Host { sandbox, disk } = host;
    sandbox.power_off();
    let host = Host::boot_on(disk);
    let status = host.wait_for(20, |h| h.answered("coop-1")).expect("coop-1 answers after the reboot");
    assert_eq!(status["mounted"], true, "ExecStartPost mounted its tree again");
    assert_eq!(status["query"]["name"], "alice's coop");
}

#[test]
fn a_killed_game_is_restarted_and_a_crash_loop_stops_at_the_cap() {
    let host = Host::installed();
    let before = host.start_example("coop-1");
    let pid = before["main_pid"].as_u64().expect("a main PID").to_string();
    host.ok("kill", &["-9", &pid]);
    let after = host
        .wait_for(20, |h| {
            let s = h.answered("coop-1")?;
            (s["main_pid"].as_u64()?.to_string() != pid).then_some(s)
        })
        .expect("systemd restarted the killed game");
    assert_eq!(after["restarts"], 1);

    // A game that exits at once: restarted until the start limit, then left failed.
    host.ok("mkdir", &["-p", "/etc/systemd/system/left4me-server@coop-1.service.d"]);
    host.ok(
        "sh",
        &["-c", "printf '[Service]\\nEnvironment=SIM_SRCDS_EXIT_AT_ONCE=3\\n' > /etc/systemd/system/left4me-server@coop-1.service.d/crash.conf"],
    );
    host.ok("systemctl", &["daemon-reload"]);
    host.ok("systemctl", &["restart", "left4me-server@coop-1.service"]);
    host.assert_gives_up("coop-1");
}

#[test]
fn the_game_unit_is_hardened_and_install_runs_again_cleanly() {
    let host = Host::installed();
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    let report = host.ok("systemd-analyze", &["security", "--no-pager", "left4me-server@coop-1.service"]);
    let overall = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for left4me-server@coop-1.service: ").nth(1))
        .expect("systemd-analyze gives an overall exposure level");
    let score: f64 = overall.split_whitespace().next().unwrap().parse().unwrap();
    println!("systemd-analyze security left4me-server@coop-1.service: {overall}");
    assert!(score <= 1.5, "exposure {score} is above 1.5:\n{report}");

    // deploy/install.sh again on an installed host: nothing to change, nothing broken.
    let unit = "/usr/local/lib/systemd/system/left4me-server@.service";
    let before = host.ok("cat", &[unit]);
    let steamcmd = left4me_sim::built_binary("fake-steamcmd").unwrap();
    let install = crate::support::workspace().join("deploy/install.sh");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_l4d2ctl")).parent().unwrap();
    let out = host.ok(
        install.to_str().unwrap(),
        &["--bin-dir", bin_dir.to_str().unwrap(), "--steamcmd", steamcmd.to_str().unwrap()],
    );
    assert!(out.contains("units unchanged"), "{out}");
    assert_eq!(host.ok("cat", &[unit]), before);
    assert_eq!(host.ok("id", &["-u", "left4me"]).trim().parse::<u32>().map(|uid| uid > 0), Ok(true));
}

#[test]
fn a_new_render_reaches_a_running_server_only_when_it_starts_again() {
    let host = Host::installed();
    host.start_example("coop-1");
    let server_cfg = |host: &Host| format!("{}/left4dead2/cfg/server.cfg", host.sandbox.game_tree("coop-1"));
    let merged_cfg = server_cfg(&host);
    let before = host.ok("cat", &[&merged_cfg]);
    assert!(before.contains("z_difficulty Hard"), "{before}");

    // Rendered anew while it runs: the running tree keeps its files.
    let spec = host.example_spec("coop-1");
    let changed = std::fs::read_to_string(&spec).unwrap().replace("z_difficulty Hard", "z_difficulty Expert");
    let changed = host.write_spec("coop-1-expert", &changed);
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &changed]);
    assert_eq!(host.ok("cat", &[&merged_cfg]), before, "a running server's layer is never rewritten");

    host.l4d2ctl_ok(&["restart", "coop-1"]);
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 answers after the restart");
    assert!(host.ok("cat", &[&server_cfg(&host)]).contains("z_difficulty Expert"));
    let layers = std::fs::read_dir(host.root_path(&format!("{ROOT}/instances/coop-1/layers"))).unwrap().count();
    assert_eq!(layers, 1, "the earlier render's layer went with the start that replaced it");
}

#[test]
fn a_replaced_overlay_folder_stays_while_a_server_stacks_it_and_goes_after() {
    let host = Host::installed();
    host.start_example("coop-1");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(host.example_spec("coop-1")).unwrap()).unwrap();
    let digest = spec["overlays"][0]["digest"].as_str().unwrap().to_owned();
    let source = host.shared_dir().join("tickrate");
    std::fs::create_dir_all(source.join("left4dead2/cfg")).unwrap();
    std::fs::write(source.join("left4dead2/cfg/server.cfg"), "sv_maxrate 100000\n").unwrap();
    let put = format!("tar -C {} -c . | l4d2ctl overlay put tickrate --digest {digest}", source.display());
    let old = |h: &Host| {
        std::fs::read_dir(h.root_path(&format!("{ROOT}/overlays")))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".old-tickrate"))
    };

    // Replaced while coop-1 runs on it: set aside, not removed.
    host.ok("sh", &["-c", &put]);
    assert!(old(&host), "the folder coop-1 stacks is kept aside");
    // Once coop-1 starts on the new one, the old one goes.
    host.l4d2ctl_ok(&["restart", "coop-1"]);
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 answers after the restart");
    assert!(!old(&host), "nothing stacks the old folder any more");
}

/// One server's part of `l4d2ctl observe --brief`.
fn brief_status(host: &Host, name: &str) -> serde_json::Value {
    let observed: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(&["observe", "--brief"])).unwrap();
    let instances = observed["instances"].as_array().unwrap();
    instances.iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("{name} in {observed}")).clone()
}

/// A console of a server that has written nothing waits for its first line while someone reads
/// it, and ends once its reader is gone, however long the server stays silent.
#[test]
fn a_silent_console_waits_while_it_is_read_and_ends_with_its_reader() {
    let host = Host::installed();
    let waits = host.run("timeout", &["3", "l4d2ctl", "logs", "silent-1", "--follow"]);
    assert_eq!(waits.status.code(), Some(124), "it waited: {}", text(&waits.stderr));
    let left = host.ok("bash", &["-c", "timeout 20 l4d2ctl logs silent-1 --follow | head -c0; echo ${PIPESTATUS[0]}"]);
    assert_eq!(left.trim(), "0", "it ended with its reader, not at the timeout (124)");
}
