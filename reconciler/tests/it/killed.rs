//! A job whose `l4d2ctl` dies: it ends, and says how.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Host, text};

#[test]
fn a_job_whose_l4d2ctl_was_killed_ends_and_names_the_signal() {
    let host = Host::installed(false);
    host.commit_examples();
    host.stack_script_overlay("slow", "echo building\nsleep 600\n");

    let mut apply =
        host.sandbox.command("left4me").arg("apply").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let building =
        |h: &Host| text(&h.sandbox.run("systemctl", &["is-active", "left4me-build-slow.service"])).trim() == "active";
    host.expect_within(120, "the build of slow runs", building);
    let pid = host.sandbox.run_ok("pgrep", &["-f", "overlay build slow"]);
    host.sandbox.run_ok("kill", &["-KILL", pid.trim()]);
    // The job ends with its l4d2ctl: nothing it started keeps its output open.
    let deadline = Instant::now() + Duration::from_secs(60);
    while apply.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the pass never ended after its l4d2ctl was killed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let applied = apply.wait_with_output().unwrap();
    assert_eq!(applied.status.code(), Some(1), "{}", text(&applied));

    let jobs: serde_json::Value = serde_json::from_str(&host.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
    let build = jobs.as_array().unwrap().iter().find(|j| j["kind"] == "build" && j["target"] == "slow").unwrap();
    assert_eq!(build["state"], "failed", "{build}");
    let log = host.sandbox.run_ok("left4me", &["jobs", &build["id"].to_string()]);
    assert!(log.contains("l4d2ctl was killed by SIGKILL"), "{log}");
    assert!(!building(&host), "the build's unit went with it");
}
