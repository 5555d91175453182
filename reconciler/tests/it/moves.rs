//! Where a server moving to this host comes from, read from the branch's history: the newest
//! commit that placed it here, and the host its parent placed it on.

use left4me_sim::Git;
use left4me_state::Name;
use reconciler::handover::moved_from;

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
