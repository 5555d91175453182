//! `left4me backup`, `backups` and `restore`: a job each, with l4d2ctl's progress in its log.

use crate::support::{Host, code, text};

#[test]
fn a_backup_and_a_restore_are_jobs_and_a_server_the_revision_lacks_is_refused() {
    let host = Host::installed(false);
    host.commit_examples();
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));

    let backup = host.left4me(&["backup", "coop-1"]);
    assert_eq!(code(&backup), Some(0), "{}", text(&backup));
    assert!(text(&backup).contains("succeeded"), "{}", text(&backup));
    let listed: serde_json::Value =
        serde_json::from_str(&host.sandbox.run_ok("left4me", &["backups", "coop-1", "--json"])).unwrap();
    let id = listed[0]["id"].as_str().expect("the backup is listed").to_owned();
    let jobs: serde_json::Value = serde_json::from_str(&host.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
    let job = jobs.as_array().unwrap().iter().find(|j| j["kind"] == "backup").unwrap().clone();
    assert_eq!(
        (&job["target"], &job["trigger"], &job["state"]),
        (&"coop-1".into(), &"manual".into(), &"succeeded".into())
    );

    let restore = host.left4me(&["restore", "coop-1", &id]);
    assert_eq!(code(&restore), Some(0), "{}", text(&restore));
    let unknown = host.left4me(&["restore", "coop-1", "2000-01-01T00-00-00Z"]);
    assert_eq!(code(&unknown), Some(2), "{}", text(&unknown));
    assert!(text(&unknown).contains("coop-1 has no backup"), "{}", text(&unknown));
    let undeclared = host.left4me(&["backup", "coop-9"]);
    assert!(text(&undeclared).contains("coop-9 is not a server of revision"), "{}", text(&undeclared));
}
