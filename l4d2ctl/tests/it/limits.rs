//! A server's resource limits as its unit's drop-in: written by initialize, read by systemd with
//! one reload for a start of several servers and none when nothing changed, a drift told and put
//! right, CPUs the host lacks refused before anything is written.

use crate::support::{Host, ROOT, text};

const DROPIN: &str = "/usr/local/lib/systemd/system/left4me-server@coop-1.service.d/resources.conf";

impl Host {
    /// How many times systemd has reloaded since it booted.
    fn reloads(&self) -> usize {
        let journal = self.ok("journalctl", &["-b", "_PID=1", "-o", "cat", "--no-pager"]);
        journal.lines().filter(|line| line.trim() == "Reloading.").count()
    }

    fn cpu_weight(&self, server: &str) -> String {
        let unit = format!("left4me-server@{server}.service");
        self.ok("systemctl", &["show", "-p", "CPUWeight", "--value", &unit]).trim().to_owned()
    }

    fn problems(&self, server: &str) -> Vec<String> {
        let status = self.status_json(server);
        status["problems"].as_array().unwrap().iter().map(|p| format!("{} {}", p["path"], p["cause"])).collect()
    }
}

#[test]
fn limits_reach_systemd_with_one_reload_a_start() {
    let host = Host::installed();
    // The examples' coop blueprint sets cpuWeight 200 and memoryMax 2G for both its servers.
    host.initialize_example("coop-1");
    host.initialize_example("coop-2");
    let dropin = host.ok("cat", &[DROPIN]);
    assert!(dropin.contains("[Service]\nCPUWeight=200\nMemoryMax=2147483648\n"), "{dropin}");

    let before = host.reloads();
    host.l4d2ctl_ok(&["start", "coop-1", "coop-2"]);
    assert_eq!(host.reloads(), before + 1, "one reload for both servers");
    assert_eq!((host.cpu_weight("coop-1"), host.cpu_weight("coop-2")), ("200".into(), "200".into()));
    // Nothing changed since: a restart reloads nothing.
    host.l4d2ctl_ok(&["restart", "coop-1"]);
    assert_eq!(host.reloads(), before + 1, "no reload for an unchanged drop-in");

    // A drop-in changed by hand is a problem of the server, which a render puts right.
    host.ok("sh", &["-c", &format!("echo CPUWeight=9999 >> {DROPIN}")]);
    let problems = host.problems("coop-1");
    assert!(problems.iter().any(|p| p.contains(DROPIN) && p.contains("differs")), "{problems:?}");
    let spec = host.example_spec("coop-1");
    let out = host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    assert!(out.contains("coop-1: initialized"), "{out}");
    assert!(host.problems("coop-1").is_empty(), "{:?}", host.problems("coop-1"));
    host.l4d2ctl_ok(&["restart", "coop-1"]);
    assert_eq!(host.reloads(), before + 2, "the drop-in written again is read at the restart");
    assert_eq!(host.cpu_weight("coop-1"), "200");

    // CPUs this 2-CPU host does not have: refused, and nothing of coop-1 changes.
    let record = format!("{ROOT}/instances/coop-1/instance.json");
    let (record_before, dropin_before) = (host.ok("cat", &[&record]), host.ok("cat", &[DROPIN]));
    let json = std::fs::read_to_string(&spec).unwrap();
    let far = json.replacen("\"resources\": {", "\"resources\": {\n    \"cpus\": \"1,63\",", 1);
    assert_ne!(far, json);
    let far = host.write_spec("coop-1-far", &far);
    let refused = host.l4d2ctl(&["initialize", "coop-1", "-f", &far]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr)
            .contains("coop-1: its blueprint asks for CPUs 1,63 (spec.resources.cpus), but this host has CPUs 0-1"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!((host.ok("cat", &[&record]), host.ok("cat", &[DROPIN])), (record_before, dropin_before));

    // Deleted: the drop-in goes with the server.
    host.l4d2ctl_ok(&["delete", "coop-1"]);
    host.ok("test", &["!", "-e", "/usr/local/lib/systemd/system/left4me-server@coop-1.service.d"]);
}
