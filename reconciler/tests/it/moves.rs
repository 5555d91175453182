//! Where a server moving to this host comes from, read from the branch's history: the newest
//! commit that placed it here, and the host its parent placed it on.

use left4me_sim::Git;
use left4me_state::Name;
use reconciler::handover::{Origins, moved_from};

fn server(name: &str, host: &str, port: u16, hostname: &str) -> String {
    format!(
        "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {name}, owner: alice}}\n\
         spec: {{blueprint: coop, port: {port}, host: {host}, hostname: \"{hostname}\"}}\n"
    )
}

fn commit(repo: &Git, dir: &std::path::Path, files: &[(&str, String)], message: &str) -> left4me_state::Revision {
    for (path, text) in files {
        std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
        std::fs::write(dir.join(path), text).unwrap();
    }
    repo.run(&["add", "--all"]);
    repo.run(&["commit", "--quiet", "--message", message]);
    left4me_state::resolve(dir, "main").unwrap()
}

#[test]
fn a_server_is_known_to_come_from_the_host_its_file_named_before_the_commit_that_placed_it_here() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Git::new(dir.path(), "Test").isolated();
    repo.run(&["init", "--quiet", "--initial-branch=main"]);
    let (b, c) = (Name::new("b").unwrap(), Name::new("c").unwrap());
    let (x, y) = (Name::new("x").unwrap(), Name::new("y").unwrap());
    let first = commit(
        &repo,
        dir.path(),
        &[("servers/x.yaml", server("x", "b", 27015, "x")), ("servers/y.yaml", server("y", "c", 27015, "y"))],
        "x on b, y on c",
    );
    assert_eq!(moved_from(dir.path(), &first, &y, &c).unwrap(), None, "y is new on c");
    commit(&repo, dir.path(), &[("servers/x.yaml", server("x", "b", 27015, "renamed"))], "x renamed");
    let moved = commit(&repo, dir.path(), &[("servers/x.yaml", server("x", "c", 27016, "renamed"))], "x to c");
    assert_eq!(moved_from(dir.path(), &moved, &x, &c).unwrap(), Some(b.clone()));
    // The looks remember it for the revision: asked again, git is not (a repo gone still answers),
    // and a new revision is asked of git again.
    let mut origins = Origins::default();
    assert_eq!(origins.of(dir.path(), &moved, &x, &c).unwrap(), Some(b.clone()));
    let gone = dir.path().join("no-repo-here");
    assert_eq!(origins.of(&gone, &moved, &x, &c).unwrap(), Some(b.clone()), "remembered for its revision");
    assert!(origins.of(&gone, &first, &x, &c).is_err(), "another revision is asked of git");
    // Edits after the move do not hide it.
    let later = commit(&repo, dir.path(), &[("servers/x.yaml", server("x", "c", 27017, "again"))], "x edited");
    assert_eq!(moved_from(dir.path(), &later, &x, &c).unwrap(), Some(b.clone()));
    assert_eq!(moved_from(dir.path(), &later, &x, &b).unwrap(), None, "b is where it left, not where it is");
    let back = commit(&repo, dir.path(), &[("servers/x.yaml", server("x", "b", 27017, "again"))], "x back to b");
    assert_eq!(moved_from(dir.path(), &back, &x, &b).unwrap(), Some(c));
    // A server of a repo that had no hosts, placed once hosts are declared, came from nowhere.
    let unplaced = server("z", "b", 27018, "z").replace(", host: b", "");
    commit(&repo, dir.path(), &[("servers/z.yaml", unplaced)], "z on the one host");
    let placed = commit(&repo, dir.path(), &[("servers/z.yaml", server("z", "b", 27018, "z"))], "z placed on b");
    assert_eq!(moved_from(dir.path(), &placed, &Name::new("z").unwrap(), &b).unwrap(), None);
}

/// A host's agent fetches the control host's state repo as `git fetch` over SSH asks for it —
/// through the forced command its key is authorised with — and nothing else: no push, no
/// handover of a server that did not move to it, nothing for a host the revision does not declare.
#[test]
fn an_agents_key_fetches_the_state_repo_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let repo = Git::new(&state, "Test").isolated();
    repo.run(&["init", "--quiet", "--initial-branch=main"]);
    let host = |name: &str| {
        format!(
            "apiVersion: left4me/v1\nkind: Host\nmetadata: {{name: {name}}}\nspec: {{address: {name}.example.org}}\n"
        )
    };
    let blueprint = "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: coop, owner: alice}\nspec: {}\n";
    commit(
        &repo,
        &state,
        &[
            ("hosts/a.yaml", host("a")),
            ("hosts/b.yaml", host("b")),
            ("blueprints/coop.yaml", blueprint.to_owned()),
            ("servers/x.yaml", server("x", "a", 27015, "x")),
        ],
        "hosts",
    );
    // What sshd runs for the agent's key: `command="left4me remote --agent <host>"`, the client's
    // command line in SSH_ORIGINAL_COMMAND. git runs GIT_SSH_COMMAND [options] <host> <command>.
    let ssh = root.path().join("ssh");
    let left4me = env!("CARGO_BIN_EXE_left4me");
    std::fs::write(
        &ssh,
        format!(
            "#!/bin/sh\nagent=${{AGENT:-b}}\nfor word; do line=$word; done\nexport SSH_ORIGINAL_COMMAND=\"$line\"\nexec env LEFT4ME_ROOT={} {left4me} remote --agent \"$agent\"\n",
            root.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let clone = tempfile::tempdir().unwrap();
    let git = |agent: &str, args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(clone.path())
            .env("GIT_SSH_COMMAND", &ssh)
            .env("AGENT", agent)
            .args(args)
            .output()
            .unwrap()
    };
    let url = format!("left4me@a:{}", state.display());
    assert!(git("b", &["init", "--quiet"]).status.success());
    let fetched = git("b", &["fetch", "--quiet", &url, "main"]);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    let head = left4me_state::resolve(&state, "main").unwrap();
    let got = git("b", &["rev-parse", "FETCH_HEAD"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), head.id(), "b has a's commit");

    let stderr = |out: std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let pushed = git("b", &["push", "--quiet", &url, "FETCH_HEAD:refs/heads/evil"]);
    assert!(!pushed.status.success());
    assert!(stderr(pushed).contains("\"git-receive-pack\" is not something an agent's key may ask"));
    let undeclared = git("z", &["fetch", "--quiet", &url, "main"]);
    assert!(stderr(undeclared).contains("declares no host z"));
    let sh = |agent: &str, line: &str| {
        std::process::Command::new(&ssh).env("AGENT", agent).args(["a", line]).output().unwrap()
    };
    let relayed = sh("b", "handover a x");
    assert_eq!(relayed.status.code(), Some(2));
    assert!(stderr(relayed).contains("x did not move from host a to host b"), "x is on a, not moved to b");
    assert!(stderr(sh("b", "status")).contains("is not something an agent's key may ask"));
    assert!(!state.join(".git/refs/heads/evil").exists(), "nothing was written");
}
