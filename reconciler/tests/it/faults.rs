//! Faults of the host around the reconciler: several processes opening a fresh database at once,
//! a reader of its output that goes away, a server that keeps crashing, a full disk.

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use reconciler::db::Db;

fn left4me(root: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_left4me"));
    command.env("LEFT4ME_ROOT", root).env("LEFT4ME_L4D2CTL", root.join("no-l4d2ctl"));
    command
}

#[test]
fn a_fresh_database_opened_by_many_processes_at_once_never_fails() {
    // Opening a fresh database migrates it; processes and threads race for that, again and again.
    for round in 0..25 {
        let root = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..6)
            .map(|_| {
                left4me(root.path()).args(["jobs", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
            })
            .map(Result::unwrap)
            .collect();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let path = root.path().join("left4me.db");
                std::thread::spawn(move || Db::open(&path).map(|db| db.jobs(1).map(|jobs| jobs.len())))
            })
            .collect();
        for thread in threads {
            let opened = thread.join().unwrap();
            assert!(matches!(opened, Ok(Ok(0))), "round {round}: {opened:?}");
        }
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "round {round}");
        }
    }
}

#[test]
fn a_database_not_made_yet_is_read_as_no_jobs_and_never_made_by_a_reader() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("left4me.db");
    let error = Db::open_read_only(&path).err().expect("there is no database to read yet");
    assert!(error.to_string().contains("is not there yet"), "{error}");
    let reader = reconciler::db::Reader::open(&path).unwrap();
    assert!(reader.lock().unwrap().jobs(10).unwrap().is_empty(), "no jobs yet");
    assert!(!path.exists(), "a reader never makes the database");
    // Once the reconciler has made it, the reader reads it.
    let db = Db::open(&path).unwrap();
    db.create_job("start", "coop-1", None, "commit").unwrap();
    assert_eq!(reader.lock().unwrap().jobs(10).unwrap().len(), 1);
    let read_only = Db::open_read_only(&path).unwrap();
    assert!(read_only.create_job("start", "coop-2", None, "commit").is_err(), "a reader cannot write");
}

/// A pipe whose reading end is closed already: every write to the other end fails with EPIPE.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    write
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let root = tempfile::tempdir().unwrap();
    let db = Db::open(&root.path().join("left4me.db")).unwrap();
    let job = db.create_job("start", "coop-1", None, "commit").unwrap();
    for n in 0..100 {
        db.append_line(job, "stdout", &format!("line {n}")).unwrap();
    }
    let examples = left4me_sim::workspace().join("examples/state");
    let job = job.to_string();
    let cases: [&[&str]; 7] = [
        &["jobs"],
        &["jobs", "--json"],
        &["jobs", &job],
        &["status"],
        &["status", "--json"],
        &["schema"],
        &["validate", "--state", examples.to_str().unwrap()],
    ];
    for args in cases {
        let out = left4me(root.path()).args(args).stdout(closed_pipe()).stderr(Stdio::piped()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "left4me {args:?} panicked: {stderr}");
        assert_eq!(out.status.code(), Some(0), "left4me {args:?}: {stderr}");
    }
}
