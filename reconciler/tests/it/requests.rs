//! The web's requests in `$ROOT/requests`, as the service takes them; and a backup queued by a
//! living process, which a pass leaves to it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use left4me_sim::Git;
use left4me_state::Name;
use reconciler::db::Db;
use reconciler::requests::{self, What};

#[test]
fn only_a_request_of_this_version_from_a_web_user_is_taken_and_anything_else_is_removed() {
    let root = tempfile::tempdir().unwrap();
    let alice = Name::new("alice").unwrap();
    let coop = Name::new("coop-1").unwrap();
    requests::ask(root.path(), What::Cancel { job: 3 }, &alice).unwrap();
    requests::ask(root.path(), What::Backup { server: coop.clone() }, &alice).unwrap();
    let folder = root.path().join("requests");
    let valid = |what: &str| format!(r#"{{"version":1,"what":"cancel","job":4,"who":{what:?},"at":"x"}}"#);
    // A valid request elsewhere, linked in; and one a thousand times too big (trailing spaces
    // keep it valid JSON): neither is read.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("request.json"), valid("web alice")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("request.json"), folder.join("cancel-link.json")).unwrap();
    std::fs::write(folder.join("cancel-huge.json"), valid("web alice") + &" ".repeat(4 * 1024 * 1024)).unwrap();
    std::fs::write(folder.join("cancel-v2.json"), valid("web alice").replace("\"version\":1", "\"version\":2"))
        .unwrap();
    std::fs::write(folder.join("cancel-root.json"), valid("manual")).unwrap();
    std::fs::write(folder.join("cancel-broken.json"), "{\"version\":1,").unwrap();
    std::fs::create_dir(folder.join("cancel-folder.json")).unwrap();
    std::fs::write(folder.join(".new-cancel-half.json"), "{").unwrap();

    // The watch's thread takes the cancels only.
    let cancels = requests::take(root.path(), true);
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert_eq!((&cancels[0].what, cancels[0].who.as_str()), (&What::Cancel { job: 3 }, "web alice"));
    let mut left: Vec<String> =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left.len(), 2, "a request being written and the backup stay: {left:?}");
    assert!(left[0].starts_with(".new-") && left[1].starts_with("backup-"), "{left:?}");
    assert!(outside.path().join("request.json").is_file(), "a link is removed, not what it points to");
    // The main loop takes the rest.
    let rest = requests::take(root.path(), false);
    assert_eq!(rest.iter().map(|r| &r.what).collect::<Vec<_>>(), [&What::Backup { server: coop }]);
}

#[test]
fn a_pass_leaves_a_job_queued_by_a_living_process_to_it_and_settles_it_once_that_process_is_gone() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    left4me_sim::copy_dir(&left4me_sim::workspace().join("examples/state"), &state).unwrap();
    let git = Git::new(&state, "Alice").isolated();
    git.run(&["init", "--quiet", "--initial-branch=main"]);
    git.run(&["add", "--all"]);
    git.run(&["commit", "--quiet", "--message", "examples"]);
    let db = Db::open(&root.path().join("left4me.db")).unwrap();
    // A pass (or a person's write) holds the lock: the backup waits for it, queued.
    let lock = l4d2ctl::host::pass_lock(root.path(), || ()).unwrap();
    let mut backup = Command::new(env!("CARGO_BIN_EXE_left4me"))
        .args(["backup", "coop-1"])
        .env("LEFT4ME_ROOT", root.path())
        .env("LEFT4ME_L4D2CTL", "/nonexistent/l4d2ctl")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        if let Some(job) = db.jobs(1).unwrap().pop() {
            break job;
        }
        assert!(Instant::now() < deadline, "the backup was never queued");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((job.kind.as_str(), job.state.as_str()), ("backup", "queued"));
    assert_eq!(db.cancel_unfinished().unwrap(), 0, "its process waits to run it");
    assert_eq!(db.job(job.id).unwrap().unwrap().state, "queued");
    backup.kill().unwrap();
    backup.wait().unwrap();
    assert_eq!(db.cancel_unfinished().unwrap(), 1, "nobody runs it any more");
    assert_eq!(db.job(job.id).unwrap().unwrap().state, "cancelled");
    drop(lock);
}
