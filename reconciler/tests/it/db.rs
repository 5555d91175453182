//! The job and event records.

use reconciler::db::{Db, Event, now, stamp};
use std::time::{Duration, SystemTime};

#[test]
fn retention_removes_finished_jobs_with_their_lines_and_keeps_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(&dir.path().join("left4me.db")).unwrap();
    let done = db.create_job("start", "coop-1", None, "commit").unwrap();
    db.start_job(done).unwrap();
    db.append_line(done, "stdout", "started").unwrap();
    db.finish_job(done, 0).unwrap();
    let running = db.create_job("build", "competitive", None, "commit").unwrap();
    db.start_job(running).unwrap();
    db.append_line(running, "stdout", "still building").unwrap();
    let event = |at: String| Event {
        at,
        kind: "reconcile".into(),
        revision: None,
        duration_ms: Some(1),
        steps: Some(0),
        message: "Reconciliation finished".into(),
    };
    db.add_event(&event(now())).unwrap();

    // A cutoff in the past removes nothing.
    let last_week = stamp(SystemTime::now() - Duration::from_secs(7 * 86_400));
    assert_eq!(db.forget_before(&last_week).unwrap(), (0, 0));
    assert_eq!(db.jobs(10).unwrap().len(), 2);

    // A cutoff after everything removes the finished job and the event, not the running job.
    let tomorrow = stamp(SystemTime::now() + Duration::from_secs(86_400));
    assert_eq!(db.forget_before(&tomorrow).unwrap(), (1, 1));
    let left: Vec<i64> = db.jobs(10).unwrap().iter().map(|job| job.id).collect();
    assert_eq!(left, vec![running]);
    assert!(db.lines(done, 0).unwrap().is_empty(), "the removed job's lines went with it");
    assert_eq!(db.lines(running, 0).unwrap().len(), 1);
    assert!(db.events(10).unwrap().is_empty());
}

#[test]
fn stamps_sort_as_times() {
    let early = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
    let late = early + Duration::from_millis(1);
    assert!(stamp(early) < stamp(late), "{} < {}", stamp(early), stamp(late));
    assert_eq!(stamp(early), "2023-11-14T22:13:20.999Z");
}

#[test]
fn a_database_is_given_to_its_folders_owner_only_as_a_regular_file_with_one_name() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    // $ROOT belongs to the game's user, who may put anything at a database's names.
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let victim = tempfile::NamedTempFile::new().unwrap();
    let owner = |path: &std::path::Path| std::fs::symlink_metadata(path).map(|m| (m.uid(), m.gid())).unwrap();
    let before = owner(victim.path());
    let db = dir.path().join("left4me.db");
    std::fs::write(&db, b"").unwrap();
    std::os::unix::fs::symlink(victim.path(), dir.path().join("left4me.db-wal")).unwrap();
    std::fs::hard_link(victim.path(), dir.path().join("left4me.db-shm")).unwrap();
    reconciler::db::give_to_folder_owner(&db);
    assert_eq!(owner(&db), (65534, 65534), "the database itself is the folder owner's");
    assert_eq!(owner(victim.path()), before, "neither a symlink nor a second name gives the victim away");
}
