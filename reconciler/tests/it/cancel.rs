//! Cancelling a job: a build stopped halfway leaves the overlay the host had; a job cancelled
//! while it waits never starts.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Host, code, text};

fn jobs(host: &Host) -> Vec<serde_json::Value> {
    let listed: serde_json::Value = serde_json::from_str(&host.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
    listed.as_array().unwrap().clone()
}

fn job_of(host: &Host, kind: &str, target: &str, state: &str) -> Option<i64> {
    jobs(host).into_iter().find(|j| j["kind"] == kind && j["target"] == target && j["state"] == state)?["id"].as_i64()
}

/// Every file under `dir` with its bytes, in order.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let shown = path.strip_prefix(dir).unwrap().display().to_string();
                found.push((shown, std::fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

fn wait_ended(child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{what} never ended");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_build_cancelled_halfway_leaves_the_old_overlay_and_nothing_of_its_own() {
    let host = Host::installed(false);
    host.commit_examples();
    host.stack_script_overlay("slow", "mkdir -p left4dead2\necho one > left4dead2/version\n");
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    let overlays = host.disk.path().join("root/overlays");
    let (digest, files) =
        (std::fs::read_to_string(overlays.join(".digests/slow")).unwrap(), tree(&overlays.join("slow")));
    assert_eq!(files, [("left4dead2/version".to_owned(), b"one\n".to_vec())]);

    // A new recipe that takes its time, cancelled while it runs.
    std::fs::write(
        host.repo().join("overlays/slow/build.sh"),
        "mkdir -p left4dead2\necho two > left4dead2/version\necho building\nsleep 600\n",
    )
    .unwrap();
    host.git(&["commit", "--quiet", "--all", "--message", "slow: a slow recipe"]);
    let mut apply =
        host.sandbox.command("left4me").arg("apply").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Halfway: its first line is in the job's log (the unit being active says only that it began).
    let mut id = None;
    host.expect_within(120, "the build of slow says it is building", |h| {
        id = job_of(h, "build", "slow", "running");
        id.is_some_and(|id| h.sandbox.run_ok("left4me", &["jobs", &id.to_string()]).contains("building"))
    });
    let id = id.unwrap();
    let cancelled = host.left4me(&["jobs", "cancel", &id.to_string()]);
    assert_eq!(code(&cancelled), Some(0), "{}", text(&cancelled));
    assert!(text(&cancelled).contains("cancelled"), "{}", text(&cancelled));
    wait_ended(&mut apply, "the pass");
    let applied = apply.wait_with_output().unwrap();
    assert_eq!(applied.status.code(), Some(1), "the build did not happen: {}", text(&applied));

    let job = jobs(&host).into_iter().find(|j| j["id"] == id).unwrap();
    assert_eq!(job["state"], "cancelled", "{job}");
    let log = host.sandbox.run_ok("left4me", &["jobs", &id.to_string()]);
    assert!(log.contains("building") && log.contains("cancelled by manual"), "{log}");
    // Cancelled as asked: no alert tells of it as a failed job.
    let db = reconciler::db::Db::open(&host.disk.path().join("root/left4me.db")).unwrap();
    let notices = db.notices_after(0, 1000).unwrap();
    assert!(notices.iter().all(|n| !n.message.starts_with(&format!("job {id} "))), "{notices:#?}");
    // The overlay is the one the host had, and nothing of the stopped build is left.
    assert_eq!(std::fs::read_to_string(overlays.join(".digests/slow")).unwrap(), digest);
    assert_eq!(tree(&overlays.join("slow")), files);
    let leftovers: Vec<String> = std::fs::read_dir(&overlays)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".staging-") || name.starts_with(".build-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let units = host.sandbox.run_ok("systemctl", &["list-units", "--all", "--plain", "--no-legend", "left4me-build*"]);
    assert!(units.trim().is_empty(), "no unit of the build is left: {units}");
}

#[test]
fn a_job_cancelled_while_it_waits_never_starts() {
    let host = Host::installed(false);
    host.commit_examples();
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    // Someone holds the pass lock (a person's l4d2ctl write, a pass): the backup waits, queued.
    let holder = host
        .sandbox
        .run_ok("sh", &["-c", "flock --close /var/lib/left4me/left4me.lock sleep 600 >/dev/null 2>&1 & echo $!"]);
    let mut backup = host
        .sandbox
        .command("left4me")
        .args(["backup", "coop-1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut id = None;
    host.expect_within(30, "the backup is queued", |h| {
        id = job_of(h, "backup", "coop-1", "queued");
        id.is_some()
    });
    let id = id.unwrap().to_string();
    let cancelled = host.left4me(&["jobs", "cancel", &id]);
    assert_eq!(code(&cancelled), Some(0), "{}", text(&cancelled));
    wait_ended(&mut backup, "the waiting backup");
    let ran = backup.wait_with_output().unwrap();
    assert_eq!(ran.status.code(), Some(1), "{}", text(&ran));
    host.sandbox.run_ok("kill", &[holder.trim()]);

    let job = jobs(&host).into_iter().find(|j| j["id"].as_i64().is_some_and(|n| n.to_string() == id)).unwrap();
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(job["started_at"].is_null(), "it never started: {job}");
    let log = host.sandbox.run_ok("left4me", &["jobs", &id]);
    assert!(log.contains("cancelled by manual before it started"), "{log}");
    assert!(!log.contains("l4d2ctl backup"), "no l4d2ctl ran: {log}");
    // Cancelling it again changes nothing, and says why.
    let again = host.left4me(&["jobs", "cancel", &id]);
    assert_eq!(code(&again), Some(1), "{}", text(&again));
    assert!(text(&again).contains("nothing to cancel"), "{}", text(&again));
    let unknown = host.left4me(&["jobs", "cancel", "999999"]);
    assert!(text(&unknown).contains("there is no job 999999"), "{}", text(&unknown));
}

#[test]
fn the_service_cancels_a_running_build_the_web_asks_it_to() {
    let host = Host::installed(true);
    host.commit_examples();
    host.stack_script_overlay("slow", "echo building\nsleep 600\n");
    let mut id = None;
    host.expect_within(120, "the build of slow runs", |h| {
        id = job_of(h, "build", "slow", "running");
        id.is_some()
    });
    let id = id.unwrap();
    // As the web app asks: written whole under a dot name, then renamed into the inbox.
    let inbox = host.disk.path().join("root/requests");
    let request =
        format!(r#"{{"version":1,"what":"cancel","job":{id},"who":"web alice","at":"2026-12-01T00:00:00Z"}}"#);
    std::fs::write(inbox.join(".new-cancel-1.json"), request).unwrap();
    std::fs::rename(inbox.join(".new-cancel-1.json"), inbox.join("cancel-1.json")).unwrap();
    host.expect_within(60, "the build's job is cancelled", |h| {
        jobs(h).into_iter().any(|j| j["id"] == id && j["state"] == "cancelled")
    });
    let log = host.sandbox.run_ok("left4me", &["jobs", &id.to_string()]);
    assert!(log.contains("cancelled by web alice"), "{log}");
    assert!(!inbox.join("cancel-1.json").exists(), "the service took the request");
}
