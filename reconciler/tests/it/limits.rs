//! A blueprint's resource limits on a real host: systemd holds the servers to them, a change
//! rolls out as any render change does, a blueprint naming CPUs the host lacks fails its servers'
//! steps alone, and limits removed or a server deleted leave no drop-in.

use crate::support::{Host, code, text};

const COOP_1: &str = "left4me-server@coop-1.service";
const DROPIN: &str = "/usr/local/lib/systemd/system/left4me-server@coop-1.service.d/resources.conf";

impl Host {
    /// systemd's word for the unit's limits, one `name=value` line each, sorted.
    fn limits(&self, unit: &str) -> String {
        let shown = self.sandbox.run_ok("systemctl", &["show", "-p", "AllowedCPUs,CPUWeight,MemoryMax,Nice", unit]);
        let mut lines: Vec<&str> = shown.lines().collect();
        lines.sort_unstable();
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    /// The log of the newest job of this kind and target.
    fn last_job_log(&self, kind: &str, target: &str) -> (String, String) {
        let jobs: serde_json::Value =
            serde_json::from_str(&self.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
        let job = jobs.as_array().unwrap().iter().find(|j| j["kind"] == kind && j["target"] == target).cloned();
        let job = job.unwrap_or_else(|| panic!("no {kind} job of {target}: {jobs}"));
        let log = self.sandbox.run_ok("left4me", &["jobs", &job["id"].to_string()]);
        (job["state"].as_str().unwrap_or_default().to_owned(), log)
    }
}

#[test]
fn limits_are_systemds_roll_out_and_cpus_the_host_lacks_fail_that_server_alone() {
    let host = Host::installed(false);
    host.commit_examples();
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    assert!(host.wait_for(15, |h| h.running("coop-1")), "{}", host.server("coop-1"));
    // The examples' coop blueprint: cpuWeight 200, memoryMax 2G.
    let shown = host.limits(COOP_1);
    assert!(shown.contains("CPUWeight=200\n") && shown.contains("MemoryMax=2147483648\n"), "{shown}");
    let owner = host.sandbox.run_ok("stat", &["-c", "%U %a", DROPIN]);
    assert_eq!(owner.trim(), "root 644");
    let before = host.instance("coop-1");

    // New limits for coop, and versus asks for a CPU this 2-CPU host does not have.
    host.commit(
        "blueprints/coop.yaml",
        "    cpuWeight: 200\n    memoryMax: 2G\n",
        "    cpus: \"1\"\n    cpuWeight: 300\n    memoryMax: 1G\n    nice: 5\n",
        "coop: other limits",
    );
    host.commit(
        "blueprints/versus.yaml",
        "  rollout: next-start\n",
        "  rollout: next-start\n  resources: {cpus: \"63\"}\n",
        "versus: cpu 63",
    );
    let versus_before = host.instance("versus-1");
    let applied = host.left4me(&["apply"]);
    assert_ne!(code(&applied), Some(0), "a step failed: {}", text(&applied));
    let after = host.instance("coop-1");
    assert_ne!(after["digest"], before["digest"], "limits are part of the render");
    assert_eq!(after["started_digest"], after["digest"], "rolled out: it was empty (rollout when-empty)");
    assert!(host.wait_for(15, |h| h.running("coop-1")), "{}", host.server("coop-1"));
    assert_eq!(host.limits(COOP_1), "AllowedCPUs=1\nCPUWeight=300\nMemoryMax=1073741824\nNice=5\n");
    // What systemd set is what the game runs with.
    let pid = host.sandbox.run_ok("systemctl", &["show", "-p", "MainPID", "--value", COOP_1]);
    let nice = host.sandbox.run_ok("ps", &["-o", "ni=", "-p", pid.trim()]);
    assert_eq!(nice.trim(), "5", "the game's nice value");

    let (state, log) = host.last_job_log("re-render", "versus-1");
    assert_eq!(state, "failed", "{log}");
    assert!(
        log.contains("versus-1: its blueprint asks for CPUs 63 (spec.resources.cpus), but this host has CPUs 0-1"),
        "{log}"
    );
    assert_eq!(host.instance("versus-1")["digest"], versus_before["digest"], "nothing of versus-1 changed");
    host.sandbox.run_ok("test", &["!", "-e", "/usr/local/lib/systemd/system/left4me-server@versus-1.service.d"]);

    // Limits removed: the drop-in goes, and the restarted server has systemd's defaults.
    host.commit(
        "blueprints/coop.yaml",
        "  resources:\n    cpus: \"1\"\n    cpuWeight: 300\n    memoryMax: 1G\n    nice: 5\n",
        "",
        "coop: no limits",
    );
    host.commit("blueprints/versus.yaml", "  resources: {cpus: \"63\"}\n", "", "versus: no limits");
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    host.sandbox.run_ok("test", &["!", "-e", DROPIN]);
    assert!(host.wait_for(15, |h| h.running("coop-1")), "{}", host.server("coop-1"));
    let shown = host.limits(COOP_1);
    assert!(shown.contains("CPUWeight=[not set]\n") && shown.contains("MemoryMax=infinity\n"), "{shown}");

    // Limits again, then the server deleted: its drop-in goes with it.
    host.commit("blueprints/coop.yaml", "  backups:\n", "  resources: {nice: 1}\n  backups:\n", "coop: nice");
    assert_eq!(code(&host.left4me(&["apply"])), Some(0));
    host.sandbox.run_ok("test", &["-f", DROPIN]);
    host.git(&["rm", "--quiet", "servers/coop-1.yaml"]);
    host.git(&["commit", "--quiet", "--message", "no coop-1"]);
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    host.sandbox.run_ok("test", &["!", "-e", "/usr/local/lib/systemd/system/left4me-server@coop-1.service.d"]);
}
