//! Game builds as desired state on a real host: a build Steam publishes is noticed, installed
//! beside the running one, and reaches each server by its rollout — an empty `when-empty` server
//! at once, one with players (even players A2S does not show) once they leave; a pin holds a
//! build and rolls back; a failed download leaves everything running; a build nothing uses any
//! more is removed.

use crate::support::{Host, code, text};

const SETTINGS: &str = "apiVersion: left4me/v1\nkind: Settings\nspec:\n  game: {build: latest, checkEvery: 1h}\n";
const BLUEPRINT: &str = "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: coop, owner: alice}\nspec:\n  \
                         arguments: [\"+map\", c1m1_hotel]\n  rollout: when-empty\n";

impl Host {
    /// Two servers on a `when-empty` blueprint that follows the branch's latest build, running.
    fn following_latest() -> Host {
        let host = Host::installed(false);
        let repo = host.repo();
        std::fs::create_dir_all(repo.join("blueprints")).unwrap();
        std::fs::create_dir_all(repo.join("servers")).unwrap();
        std::fs::write(repo.join("left4me.yaml"), SETTINGS).unwrap();
        std::fs::write(repo.join("blueprints/coop.yaml"), BLUEPRINT).unwrap();
        for (name, port) in [("empty-1", 27015), ("busy-1", 27016)] {
            let server = format!(
                "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {name}, owner: alice}}\nspec: {{blueprint: coop, port: {port}}}\n"
            );
            std::fs::write(repo.join(format!("servers/{name}.yaml")), server).unwrap();
        }
        host.git(&["add", "--all"]);
        host.git(&["commit", "--quiet", "--message", "two servers following the latest build"]);
        let applied = host.left4me(&["apply"]);
        assert_eq!(code(&applied), Some(0), "{}", text(&applied));
        for name in ["empty-1", "busy-1"] {
            host.expect_within(20, &format!("{name} runs"), |h| h.running(name));
        }
        host
    }

    /// `l4d2ctl game --json`.
    fn game(&self) -> serde_json::Value {
        serde_json::from_str(&self.sandbox.run_ok("l4d2ctl", &["game", "--json"])).unwrap()
    }

    fn builds(&self) -> Vec<u64> {
        self.game()["installed"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap()).collect()
    }

    /// Steam publishes `build` on the public branch (fake-steamcmd's knob).
    fn publish_build(&self, build: u64) {
        self.sandbox.run_ok(
            "sh",
            &[
                "-c",
                &format!("mkdir -p /var/lib/fake-steamcmd && echo {build} > /var/lib/fake-steamcmd/public-buildid"),
            ],
        );
    }

    fn fail_downloads(&self, how: Option<&str>) {
        let script = match how {
            Some(how) => format!("echo {how} > /var/lib/fake-steamcmd/fail"),
            None => "rm -f /var/lib/fake-steamcmd/fail".to_owned(),
        };
        self.sandbox.run_ok("sh", &["-c", &script]);
    }

    fn build_of(&self, name: &str) -> (Option<u64>, Option<u64>) {
        let server = self.server(name);
        (server["build"].as_u64(), server["desired_build"].as_u64())
    }

    fn main_pid(&self, name: &str) -> u64 {
        self.instance(name)["main_pid"].as_u64().unwrap_or(0)
    }

    fn events(&self) -> String {
        self.sandbox.run_ok("left4me", &["events", "-n", "50"])
    }

    fn rcon(&self, name: &str, command: &str) {
        self.sandbox.run_ok("l4d2ctl", &["rcon", name, "--", command]);
    }
}

#[test]
fn a_published_build_is_installed_beside_and_reaches_empty_servers_while_players_keep_theirs() {
    let host = Host::following_latest();
    let first = host.builds();
    assert_eq!(first.len(), 1, "the install made one build: {first:?}");
    let old = first[0];
    assert_eq!(host.build_of("empty-1"), (Some(old), Some(old)));
    // busy-1 has a player that A2S does not show (a cached answer, L4DToolZ): only RCON counts it.
    host.rcon("busy-1", "sim_players 1");
    host.rcon("busy-1", "sim_a2s_hidden 1");
    let busy_pid = host.main_pid("busy-1");

    // A failing download changes nothing: both keep running the old build.
    let new = old + 1000;
    host.publish_build(new);
    host.fail_downloads(Some("killed"));
    let failed = host.left4me(&["game", "check"]);
    assert_ne!(code(&failed), Some(0), "the install failed: {}", text(&failed));
    assert_eq!(host.builds(), [old], "a killed download installs nothing");
    assert_eq!(host.build_of("empty-1"), (Some(old), Some(new)), "empty-1 waits for build {new}");
    assert!(host.running("empty-1") && host.running("busy-1"), "{}", host.status());
    let sync = host.server("empty-1")["sync_message"].as_str().unwrap_or_default().to_owned();
    assert!(sync.contains(&format!("moves to {new}")), "its Sync says which build it waits for: {sync}");

    // The download works: the new build is installed beside the old one, the empty server moves
    // to it, the busy one waits for its player and keeps its process.
    host.fail_downloads(None);
    let checked = host.left4me(&["game", "check"]);
    assert_eq!(code(&checked), Some(0), "{}", text(&checked));
    assert!(text(&checked).contains(&format!("public is at build {new}")), "{}", text(&checked));
    assert_eq!(host.builds(), [old, new]);
    host.expect_within(20, "empty-1 runs the new build", |h| {
        h.running("empty-1") && h.build_of("empty-1").0 == Some(new)
    });
    let version = host.server("empty-1");
    assert_eq!(version["sync"], "Synced", "{version}");
    let answer: serde_json::Value = host.instance("empty-1");
    assert_eq!(answer["build"], new, "{answer}");
    assert_eq!(host.build_of("busy-1"), (Some(old), Some(new)));
    assert_eq!(host.main_pid("busy-1"), busy_pid, "busy-1 was not restarted");
    let waits = host.server("busy-1")["sync_message"].as_str().unwrap_or_default().to_owned();
    assert!(waits.contains(&format!("onto build {new}: waiting for 1 player to leave")), "{waits}");
    let events = host.events();
    for said in
        [format!("build {new} available"), format!("build {new} installed"), format!("empty-1 moved to build {new}")]
    {
        assert!(events.contains(&said), "{said:?} in the events:\n{events}");
    }
    // The old build stays while busy-1 runs it.
    let again = host.left4me(&["apply"]);
    assert_eq!(code(&again), Some(0), "{}", text(&again));
    assert_eq!(host.builds(), [old, new], "busy-1 still stacks build {old}");

    // Its player leaves: it moves, and the old build is removed once nothing stacks it.
    host.rcon("busy-1", "sim_players 0");
    for _ in 0..2 {
        let pass = host.left4me(&["apply"]);
        assert_eq!(code(&pass), Some(0), "{}", text(&pass));
    }
    host.expect_within(20, "busy-1 runs the new build", |h| h.running("busy-1") && h.build_of("busy-1").0 == Some(new));
    assert_eq!(host.builds(), [new], "build {old} is removed once no server stacks it");
    assert!(host.events().contains(&format!("busy-1 moved to build {new}")));

    // A pin to the older build cannot be had any more (it is removed, Steam publishes the new):
    // nothing changes and Sync says why.
    host.commit("left4me.yaml", "build: latest", &format!("build: {old}"), "pin the old build");
    let pinned = host.left4me(&["apply"]);
    assert_eq!(code(&pinned), Some(0), "{}", text(&pinned));
    assert_eq!(host.build_of("empty-1").0, Some(new));
    let why = host.server("empty-1")["sync_message"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains(&format!("build {old} is pinned but not installed")), "{why}");
}

#[test]
fn a_pin_holds_its_build_while_latest_moves_and_a_pin_to_an_older_installed_build_rolls_back() {
    let host = Host::following_latest();
    let old = host.builds()[0];
    // The blueprint of busy-1's kind holds the old build; empty-1 follows latest.
    host.commit(
        "blueprints/coop.yaml",
        "rollout: when-empty",
        "rollout: immediate\n  game: {build: latest}",
        "immediate",
    );
    let versus = format!(
        "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {{name: held, owner: alice}}\nspec:\n  rollout: immediate\n  game: {{build: {old}}}\n"
    );
    std::fs::write(host.repo().join("blueprints/held.yaml"), versus).unwrap();
    host.git(&["add", "--all"]);
    host.commit("servers/busy-1.yaml", "blueprint: coop", "blueprint: held", "busy-1 holds its build");
    let new = old + 7;
    host.publish_build(new);
    let checked = host.left4me(&["game", "check"]);
    assert_eq!(code(&checked), Some(0), "{}", text(&checked));
    host.expect_within(20, "empty-1 moves", |h| h.build_of("empty-1").0 == Some(new) && h.running("empty-1"));
    assert_eq!(host.build_of("busy-1"), (Some(old), Some(old)), "the pin holds build {old}");
    assert_eq!(host.builds(), [old, new], "a pinned build is kept");

    // Rolling back is a commit: the host pins the old build, and empty-1 goes back to it.
    host.commit("blueprints/coop.yaml", "game: {build: latest}", &format!("game: {{build: {old}}}"), "roll back");
    let rolled = host.left4me(&["apply"]);
    assert_eq!(code(&rolled), Some(0), "{}", text(&rolled));
    host.expect_within(20, "empty-1 rolls back", |h| h.build_of("empty-1").0 == Some(old) && h.running("empty-1"));
    // Nothing downloads for it: the old build was installed.
    let jobs = host.sandbox.run_ok("left4me", &["jobs", "--json"]);
    let installs = serde_json::from_str::<serde_json::Value>(&jobs)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "install")
        .count();
    assert_eq!(installs, 1, "one install, for build {new}: {jobs}");
}
