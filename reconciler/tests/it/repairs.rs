//! What goes wrong on a real host and how a pass puts it right: a record cut short, a runtime
//! folder removed, a unit file changed by hand, a unit left failed by a deletion a power cut
//! interrupted — and how long a game that stops answering is given before it is Degraded.

use std::time::{SystemTime, UNIX_EPOCH};

use left4me_sim::Sandbox;
use reconciler::report::QUERY_GRACE_SECONDS;

use crate::support::{Host, code, text};

const UNIT_FILE: &str = "/usr/local/lib/systemd/system/left4me-server@.service";

impl Host {
    /// The examples applied and coop-1 and versus-1 answering.
    fn converged() -> Host {
        let host = Host::installed(false);
        host.commit_examples();
        let applied = host.left4me(&["apply"]);
        assert_eq!(code(&applied), Some(0), "{}", text(&applied));
        host.expect_within(20, "the examples run", |h| h.running("coop-1") && h.running("versus-1"));
        host
    }

    /// The log of the newest job of `kind` on `target`.
    fn job_log(&self, kind: &str, target: &str) -> String {
        let jobs: serde_json::Value =
            serde_json::from_str(&self.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
        let job = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["kind"] == kind && j["target"] == target)
            .unwrap_or_else(|| panic!("a {kind} job for {target} in {jobs}"));
        self.sandbox.run_ok("left4me", &["jobs", &job["id"].to_string()])
    }

    /// Cuts the power, lets `change` act on the disk, and boots again on it.
    fn reboot_after(self, change: impl FnOnce(&std::path::Path)) -> Host {
        let Host { sandbox, disk } = self;
        sandbox.power_off();
        change(disk.path());
        Host { sandbox: Sandbox::boot(disk.path(), &[]).expect("the sandbox boots again"), disk }
    }

    fn unit_state(&self, unit: &str) -> String {
        self.sandbox.run_ok("systemctl", &["show", "--property", "ActiveState", "--value", unit]).trim().to_owned()
    }
}

#[test]
fn a_pass_puts_right_a_broken_record_a_missing_upper_and_a_changed_unit_file() {
    let host = Host::converged();
    let root = host.disk.path().join("root");
    let installed = host.sandbox.run_ok("cat", &[UNIT_FILE]);
    // coop-1's record cut short by a power cut; versus-1 stopped by a raw systemctl and its upper
    // removed; the game's unit template edited by hand.
    std::fs::write(root.join("instances/coop-1/instance.json"), "").unwrap();
    host.sandbox.run_ok("systemctl", &["stop", "left4me-server@versus-1.service"]);
    std::fs::remove_dir_all(root.join("runtime/versus-1/upper")).unwrap();
    host.sandbox.run_ok("sed", &["-i", "s/^RestartSec=2$/RestartSec=30/", UNIT_FILE]);

    // The broken record is coop-1's problem only, told where the host is shown.
    let coop = host.server("coop-1");
    assert!(coop["health_message"].as_str().unwrap().contains("instance.json: EOF while parsing"), "{coop}");
    assert!(coop["sync_message"].as_str().unwrap().contains("instance.json"), "{coop}");
    assert_eq!(host.server("coop-2")["sync"], "Synced");
    let plan = text(&host.left4me(&["plan"]));
    assert!(plan.contains("re-render  coop-1") && plan.contains("instance.json: EOF while parsing"), "{plan}");
    assert!(plan.contains("repair     versus-1") && plan.contains("runtime/versus-1/upper: is missing"), "{plan}");
    assert!(plan.contains("start      versus-1"), "{plan}");
    assert!(plan.contains(&format!("units      {UNIT_FILE}: differs from what l4d2ctl renders")), "{plan}");

    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    assert!(host.job_log("re-render", "coop-1").contains("instance.json: written again"));
    let repair = host.job_log("repair", "versus-1");
    assert!(repair.contains("versus-1: repaired /var/lib/left4me/runtime/versus-1/upper: created again"), "{repair}");
    assert!(host.job_log("units", "host").contains(&format!("wrote {UNIT_FILE}")));
    assert_eq!(host.sandbox.run_ok("cat", &[UNIT_FILE]), installed);
    host.expect_within(20, "versus-1 runs again", |h| h.running("versus-1"));
    assert!(host.running("coop-1"), "a record rendered again does not restart its server");
    let again = host.left4me(&["plan"]);
    assert_eq!(code(&again), Some(0), "nothing left to do: {}", text(&again));
}

#[test]
fn a_unit_left_failed_by_a_deletion_a_power_cut_interrupted_is_cleared_by_a_pass() {
    let host = Host::converged();
    let unit = "left4me-server@coop-1.service";
    // The pass deleting coop-1 removed its files, but its unit's disabling never reached the disk.
    let host = host.reboot_after(|disk| {
        std::fs::remove_dir_all(disk.join("root/instances/coop-1")).unwrap();
        std::fs::remove_dir_all(disk.join("root/runtime/coop-1")).unwrap();
    });
    std::fs::remove_file(host.repo().join("servers/coop-1.yaml")).unwrap();
    host.git(&["commit", "--quiet", "--all", "--message", "retire coop-1"]);
    host.expect_within(60, "the unit with no instance fails at boot", |h| h.unit_state(unit) == "failed");

    let plan = text(&host.left4me(&["plan"]));
    assert!(
        plan.contains(&format!("delete     coop-1               {unit} is failed, enabled, with no instance")),
        "{plan}"
    );
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    assert!(host.job_log("delete", "coop-1").contains("its failed state is cleared"));
    let failed = host.sandbox.run_ok("systemctl", &["list-units", "--failed", "--no-legend", "--plain"]);
    assert!(!failed.contains(unit), "{failed}");
    let enabled = host.sandbox.run("systemctl", &["is-enabled", "--quiet", unit]);
    assert!(!enabled.status.success(), "not started at the next boot");
    let again = host.left4me(&["plan"]);
    assert_eq!(code(&again), Some(0), "nothing left to do: {}", text(&again));
}

#[test]
fn a_game_that_stops_answering_is_given_its_grace_from_its_last_answer() {
    let host = Host::converged();
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let up_for = |h: &Host| {
        let since = h.instance("coop-1")["since"].as_str().and_then(left4me_state::clock::parse_rfc3339);
        since.map_or(0, |since| now().saturating_sub(since))
    };
    // Up for longer than the grace, so that its start gives it none; every look meanwhile sees
    // its answers.
    host.expect_within(QUERY_GRACE_SECONDS + 60, "coop-1 up for longer than the grace", |h| {
        h.running("coop-1") && up_for(h) > QUERY_GRACE_SECONDS + 2
    });

    // A 20 s map change: silent, never Degraded.
    host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "sim_mapchange_seconds", "20"]);
    host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "changelevel", "c1m2_streets"]);
    let mut silent = false;
    host.expect_within(60, "coop-1 answers on its new map", |h| {
        let server = h.server("coop-1");
        assert_ne!(server["health"], "Degraded", "during a map change: {server}");
        if server["health"] == "Starting" {
            assert!(server["health_message"].as_str().unwrap().contains("not answering queries for"), "{server}");
            silent = true;
        }
        server["health"] == "Running" && server["map"] == "c1m2_streets"
    });
    assert!(silent, "the map change was a gap in the answers");

    // A hung game (stopped): not Degraded at once, Degraded once the grace from its last answer
    // has passed.
    let pid = host.instance("coop-1")["main_pid"].to_string();
    host.sandbox.run_ok("kill", &["-STOP", &pid]);
    let hung = host.server("coop-1");
    assert_eq!(hung["health"], "Starting", "{hung}");
    host.expect_within(QUERY_GRACE_SECONDS + 60, "coop-1 Degraded after the grace", |h| {
        h.server("coop-1")["health"] == "Degraded"
    });
    host.sandbox.run_ok("kill", &["-CONT", &pid]);
}
