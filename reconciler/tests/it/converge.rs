//! The reconciler on a real host (the sandbox): a committed revision converges, a pass after a
//! pass has nothing to do, an invalid revision applies nothing.

use crate::support::{Host, code, text};

impl Host {
    /// Left4me installed, its service stopped, the examples committed.
    fn with_examples() -> Host {
        let host = Host::installed(false);
        host.commit_examples();
        host
    }
}

#[test]
fn apply_converges_the_examples_and_then_there_is_nothing_to_do() {
    let host = Host::with_examples();
    let plan = host.left4me(&["plan"]);
    assert_eq!(code(&plan), Some(1), "changes to make: {}", text(&plan));
    assert!(text(&plan).contains("create     coop-1"), "{}", text(&plan));

    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    assert!(text(&applied).contains("Reconciliation finished in"), "{}", text(&applied));
    // The schedule's timer put; two overlays written or fetched; three servers created, the two
    // running ones started in one `l4d2ctl start`: 8 steps. Processes: rev-parse, ls-tree,
    // cat-file, one brief look, the workshop check (never made on this host) and the look after
    // it, 1 + 2 + 3 + 1 for the steps.
    assert!(text(&applied).contains(": 8 steps (13 processes)"), "{}", text(&applied));

    // The law: after apply, plan is empty.
    let again = host.left4me(&["plan"]);
    assert_eq!(code(&again), Some(0), "{}", text(&again));

    assert!(host.wait_for(15, |h| h.server("coop-1")["health"] == "Running"), "{}", host.server("coop-1"));
    let coop = host.server("coop-1");
    assert_eq!(coop["sync"], "Synced");
    assert_eq!(coop["map"], "c1m1_hotel");
    let stopped = host.server("coop-2");
    assert_eq!((stopped["sync"].as_str(), stopped["health"].as_str()), (Some("Synced"), Some("Stopped")));
    // versus-1 stacks the campaigns fetched from the workshop and the tickrate files (the
    // examples' pinned SourceMod archives are left out of it: there is no internet here).
    assert!(host.wait_for(15, |h| h.server("versus-1")["health"] == "Running"), "{}", host.server("versus-1"));
    assert_eq!(host.server("versus-1")["sync"], "Synced");
    let merged = format!("{}/left4dead2", host.sandbox.game_tree("versus-1"));
    host.sandbox.run_ok("test", &["-f", &format!("{merged}/addons/121275675.vpk")]);
    let config = host.sandbox.run_ok("cat", &[&format!("{merged}/cfg/server.cfg")]);
    assert!(config.contains("versus_force_start_time 90"), "{config}");
    // The workshop cache holds each item once; the overlay links to it.
    host.sandbox.run_ok("test", &["-f", "/var/lib/left4me/workshop/2268506826.vpk"]);
    // Written by the reconciler: no override marker.
    assert!(host.instance("coop-1")["override"].is_null());

    // Every step is a job with its log.
    let jobs = host.sandbox.run_ok("left4me", &["jobs", "--json"]);
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    let start = jobs.as_array().unwrap().iter().find(|j| j["kind"] == "start" && j["target"] == "coop-1").unwrap();
    assert_eq!(start["state"], "succeeded");
    let log = host.sandbox.run_ok("left4me", &["jobs", &start["id"].to_string()]);
    assert!(log.contains("start coop-1") && log.contains("coop-1: started"), "{log}");
}

#[test]
fn a_blueprint_change_rolls_out_and_an_invalid_revision_applies_nothing() {
    let host = Host::with_examples();
    assert_eq!(code(&host.left4me(&["apply"])), Some(0));
    assert!(host.wait_for(15, |h| h.server("coop-1")["health"] == "Running"));
    let before = host.instance("coop-1");

    host.commit("blueprints/coop.yaml", "z_difficulty Hard", "z_difficulty Expert", "coop: expert");
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    let after = host.instance("coop-1");
    assert_ne!(after["digest"], before["digest"], "re-rendered");
    assert_eq!(after["started_digest"], after["digest"], "restarted: it was empty (rollout when-empty)");
    let difficulty = host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "z_difficulty"]);
    assert!(difficulty.contains("Expert"), "{difficulty}");

    host.commit("servers/coop-1.yaml", "port: 27015", "port: 80", "a privileged port");
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(2), "{}", text(&applied));
    assert!(text(&applied).contains("servers/coop-1.yaml:"), "{}", text(&applied));
    let status = host.status();
    assert!(status["revision_error"].as_str().unwrap().contains("port 80 is privileged"), "{status}");
    assert_ne!(status["last_applied"], status["last_attempted"]);
    assert_eq!(host.instance("coop-1")["active_state"], "active", "the last good revision keeps running");
}

#[test]
fn when_empty_waits_for_players_and_a_deleted_server_is_archived_and_removed() {
    let host = Host::with_examples();
    assert_eq!(code(&host.left4me(&["apply"])), Some(0));
    assert!(host.wait_for(15, |h| h.server("coop-1")["health"] == "Running"));
    host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "sim_players", "2"]);
    assert!(host.wait_for(5, |h| h.server("coop-1")["players"] == 2));

    host.commit("blueprints/coop.yaml", "z_difficulty Hard", "z_difficulty Impossible", "coop: impossible");
    assert_eq!(code(&host.left4me(&["apply"])), Some(0));
    let waiting = host.instance("coop-1");
    assert_ne!(waiting["started_digest"], waiting["digest"], "rendered, but not restarted with players on");
    let plan = host.left4me(&["plan"]);
    assert!(text(&plan).contains("waiting for 2 players to leave (rollout when-empty)"), "{}", text(&plan));

    // A further change shows as a diff of the rendered spec.
    host.commit("blueprints/coop.yaml", "sv_consistency 0", "sv_consistency 1", "coop: consistency");
    let plan = host.left4me(&["plan"]);
    let shown = text(&plan);
    assert!(shown.contains("--- coop-1 (on the host)") && shown.contains("+++ coop-1 (the revision)"), "{shown}");
    assert!(shown.contains("-    \"sv_consistency 0\"") && shown.contains("+    \"sv_consistency 1\""), "{shown}");
    assert_eq!(code(&host.left4me(&["apply"])), Some(0));
    assert!(host.server("coop-1")["sync_message"].as_str().unwrap().contains("waiting for 2 players"));

    host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "sim_players", "0"]);
    assert!(host.wait_for(5, |h| h.server("coop-1")["players"] == 0));
    assert_eq!(code(&host.left4me(&["apply"])), Some(0));
    let applied = host.instance("coop-1");
    assert_eq!(applied["started_digest"], applied["digest"], "restarted once empty");

    // The server's own data, then its deletion from the repo: stopped, archived, removed.
    host.sandbox.run_ok(
        "sh",
        &[
            "-c",
            &format!(
                "echo 'banid 0 STEAM_1:0:1' > {}/left4dead2/cfg/banned_user.cfg",
                host.sandbox.game_tree("coop-1")
            ),
        ],
    );
    std::fs::remove_file(host.repo().join("servers/coop-1.yaml")).unwrap();
    host.git(&["commit", "--quiet", "--all", "--message", "retire coop-1"]);
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    assert!(!host.disk.path().join("root/instances/coop-1").exists());
    assert!(!host.disk.path().join("root/runtime/coop-1").exists());
    let archived: Vec<_> =
        std::fs::read_dir(host.disk.path().join("root/archive")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    let units =
        host.sandbox.run_ok("systemctl", &["list-units", "--all", "--no-legend", "left4me-server@coop-1.service"]);
    assert!(!units.contains("active"), "{units}");
}

/// A small deterministic generator (an LCG), so that a failing state can be reproduced.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn after_apply_there_is_nothing_to_do_for_generated_states() {
    let host = Host::with_examples();
    let mut rng = Lcg(0x1ef4_0e5e);
    let names = ["g-alpha", "g-bravo", "g-charlie", "g-delta", "g-echo"];
    for round in 0..4 {
        // Generated servers replace the examples' own; the blueprint's rollout and stack vary too.
        let servers = host.repo().join("servers");
        std::fs::remove_dir_all(&servers).unwrap();
        std::fs::create_dir_all(&servers).unwrap();
        let rollout = ["immediate", "when-empty", "next-start"][rng.next(3) as usize];
        let overlays = if rng.next(2) == 0 { "[tickrate]" } else { "[]" };
        std::fs::write(
            host.repo().join("blueprints/coop.yaml"),
            format!(
                "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {{name: coop, owner: alice}}\nspec:\n  overlays: {overlays}\n  \
                 arguments: [\"+map\", c{}m1_hotel]\n  rollout: {rollout}\n",
                1 + rng.next(2)
            ),
        )
        .unwrap();
        let count = 2 + rng.next(4) as usize;
        for (index, name) in names.iter().take(count).enumerate() {
            let state = if rng.next(3) == 0 { "stopped" } else { "running" };
            let port = 27015 + index as u64 * 2 + rng.next(2);
            std::fs::write(
                servers.join(format!("{name}.yaml")),
                format!(
                    "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {name}, owner: alice}}\nspec: {{blueprint: coop, port: {port}, state: {state}}}\n"
                ),
            )
            .unwrap();
        }
        host.git(&["add", "--all"]);
        host.git(&["commit", "--quiet", "--message", &format!("generated state {round}")]);
        // Replacing every example server at once is a mass deletion: confirmed for this revision.
        let applied = host.left4me(&["apply", "--confirm-prune", "HEAD"]);
        assert_eq!(code(&applied), Some(0), "round {round}: {}", text(&applied));
        let plan = host.left4me(&["plan"]);
        assert_eq!(code(&plan), Some(0), "round {round}: after apply, plan has nothing to do: {}", text(&plan));
    }
}

#[test]
fn a_script_overlay_is_built_confined_and_a_failing_build_applies_nothing_of_it() {
    let host = Host::with_examples();
    // A recipe that needs no network: it writes the tree it is run in.
    std::fs::create_dir_all(host.repo().join("overlays/generated")).unwrap();
    std::fs::write(
        host.repo().join("overlays/generated/overlay.yaml"),
        "apiVersion: left4me/v1\nkind: Overlay\nmetadata: {name: generated}\nspec: {type: script}\n",
    )
    .unwrap();
    std::fs::write(
        host.repo().join("overlays/generated/build.sh"),
        "set -eu\nmkdir -p left4dead2/cfg\necho 'sv_tags built_by_script' > left4dead2/cfg/server.cfg\n\
         echo \"built as $(id -un)\"\ntouch /etc/left4me-build-escaped 2>/dev/null && echo ESCAPED || echo confined\n",
    )
    .unwrap();
    host.git(&["add", "--all"]);
    host.commit("blueprints/coop.yaml", "overlays: [tickrate]", "overlays: [generated, tickrate]", "coop: generated");
    host.commit(
        "blueprints/coop.yaml",
        "    - sv_consistency 0",
        "    - exec server_generated.cfg\n    - sv_consistency 0",
        "exec it",
    );
    let applied = host.left4me(&["apply"]);
    let jobs: serde_json::Value = serde_json::from_str(&host.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
    let build = jobs.as_array().unwrap().iter().find(|j| j["kind"] == "build" && j["target"] == "generated").unwrap();
    let log = host.sandbox.run_ok("left4me", &["jobs", &build["id"].to_string()]);
    assert_eq!(code(&applied), Some(0), "{}\nthe build's log:\n{log}", text(&applied));
    assert!(host.wait_for(15, |h| h.server("coop-1")["health"] == "Running"));
    let tags = host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "sv_tags"]);
    assert!(tags.contains("built_by_script"), "{tags}");
    // As a user of its own: neither root nor the game's user, who owns the databases.
    assert!(log.contains("built as ") && log.contains("confined"), "{log}");
    let user = log.lines().find_map(|line| line.split_once("built as ")).map(|(_, user)| user.trim());
    assert!(!matches!(user, Some("left4me" | "root")), "{log}");

    // A recipe that fails: the job says so, and the servers keep the tree they had.
    std::fs::write(host.repo().join("overlays/generated/build.sh"), "echo 'no mirror answers' >&2\nexit 3\n").unwrap();
    host.git(&["commit", "--quiet", "--all", "--message", "a broken recipe"]);
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(1), "{}", text(&applied));
    assert!(text(&applied).contains("failed: build generated"), "{}", text(&applied));
    assert_eq!(host.instance("coop-1")["active_state"], "active");
    let tags = host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "sv_tags"]);
    assert!(tags.contains("built_by_script"), "{tags}");
}
