//! `left4me validate` and `left4me schema`: exit codes, output streams, and what is read.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use left4me_sim::Git;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn left4me(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_left4me"))
        .args(args)
        .current_dir(workspace())
        .env_remove("LEFT4ME_ROOT")
        .output()
        .expect("left4me runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn git(dir: &Path, args: &[&str]) {
    Git::new(dir, "Test").isolated().run(args);
}

/// A state repo with the examples committed on main.
fn example_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-a").arg(workspace().join("examples/state/.")).arg(dir.path()).status();
    assert!(status.unwrap().success());
    git(dir.path(), &["init", "--quiet", "--initial-branch=main"]);
    git(dir.path(), &["add", "--all"]);
    git(dir.path(), &["commit", "--quiet", "--message", "examples"]);
    dir
}

#[test]
fn the_examples_are_valid() {
    let out = left4me(&["validate", "--state", "examples/state"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "examples/state: valid, 3 servers, 2 blueprints, 3 overlays\n");
}

#[test]
fn an_invalid_tree_lists_its_problems_on_stdout_and_exits_1() {
    let case = "state/tests/data/invalid/port-clash";
    let out = left4me(&["validate", "--state", case]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("servers/a.yaml:8:9: spec.port: port 27015 is also used by server c"), "{stdout}");
    assert_eq!(text(&out.stderr), format!("{case}: invalid, 2 problems\n"));
}

#[test]
fn a_revision_is_read_from_git_not_from_the_work_tree() {
    let repo = example_repo();
    let state = repo.path().to_str().unwrap();
    fs::write(repo.path().join("servers/coop-1.yaml"), "half-saved: [").unwrap();

    let out = left4me(&["validate", "--state", state, "--rev", "main"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(" at "), "names the revision: {}", text(&out.stdout));

    let out = left4me(&["validate", "--state", state]);
    assert_eq!(out.status.code(), Some(1), "the work tree itself is broken");
    assert!(text(&out.stdout).starts_with("servers/coop-1.yaml:"), "{}", text(&out.stdout));
}

#[test]
fn the_state_repo_defaults_to_the_one_under_left4me_root() {
    let root = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-a").arg(workspace().join("examples/state")).arg(root.path()).status();
    assert!(status.unwrap().success());
    let out =
        Command::new(env!("CARGO_BIN_EXE_left4me")).arg("validate").env("LEFT4ME_ROOT", root.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("{}/state: valid", root.path().display())));
}

#[test]
fn what_cannot_be_read_exits_2_with_one_line_on_stderr() {
    let out = left4me(&["validate", "--state", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), "left4me: cannot read no/such/dir: No such file or directory (os error 2)\n");
    assert!(out.stdout.is_empty());

    let repo = example_repo();
    let out = left4me(&["validate", "--state", repo.path().to_str().unwrap(), "--rev", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("left4me: ") && stderr.contains("has no revision \"nope\""), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = left4me(&["validate", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = left4me(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = fs::read_to_string(workspace().join("state/schema/left4me.schema.json")).unwrap();
    assert_eq!(text(&out.stdout), committed);
}

#[test]
fn audit_prints_the_trail_newest_first_as_json() {
    let root = tempfile::tempdir().unwrap();
    let audit = l4d2ctl::audit::Audit::open(root.path()).unwrap();
    for (who, action, server) in [("alice", "rcon", Some("coop-1")), ("ada", "user-created", None)] {
        let entry = l4d2ctl::audit::Entry {
            who: who.into(),
            action: action.into(),
            server: server.map(str::to_owned),
            detail: "status".into(),
            origin: "web 203.0.113.7".into(),
        };
        audit.record(&entry).unwrap();
    }
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_left4me")).args(args).env("LEFT4ME_ROOT", root.path()).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let all = run(&["audit", "--json"]);
    let actions: Vec<&str> = all.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["user-created", "rcon"], "newest first");
    assert_eq!(all[1]["who"], "alice");
    assert_eq!(all[1]["origin"], "web 203.0.113.7");
    let coop = run(&["audit", "--json", "--server", "coop-1", "-n", "5"]);
    assert_eq!(coop.as_array().map(Vec::len), Some(1));
    assert_eq!(coop[0]["server"], "coop-1");
}
