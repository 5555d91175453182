//! A tree with a change put in (as the web app checks a save before committing it): paths git
//! could not commit are diagnostics, and owners read as validation reads them.

use left4me_state::{Limits, Tree, declared_owner, read_dir, validate};

use crate::support::examples;

fn examples_with(path: &str, data: &str) -> String {
    let mut tree: Tree = read_dir(&examples(), Limits::DEFAULT).expect("the examples are readable");
    tree.insert_file(path, data.as_bytes().to_vec());
    match validate(&tree) {
        Ok(_) => "valid\n".to_owned(),
        Err(diagnostics) => diagnostics.to_string(),
    }
}

#[test]
fn a_path_git_cannot_commit_is_refused_with_its_reason() {
    let cfg = "overlays/tickrate/files/left4dead2/cfg/server.cfg";
    let cases = [
        (
            "servers/coop-1.yaml/x".to_owned(),
            "servers/coop-1.yaml/x: cannot be saved: servers/coop-1.yaml is a file, so it cannot also be a folder\n",
        ),
        (
            format!("{cfg}/x"),
            "overlays/tickrate/files/left4dead2/cfg/server.cfg/x: cannot be saved: \
             overlays/tickrate/files/left4dead2/cfg/server.cfg is a file, so it cannot also be a folder\n",
        ),
        (
            "/servers/x.yaml".to_owned(),
            "/servers/x.yaml: is an absolute path; paths in the state repo are relative to its top\n",
        ),
        (
            "overlays/tickrate/files//x".to_owned(),
            "overlays/tickrate/files//x: has an empty component (`//`, or a `/` at an end)\n",
        ),
        (
            "overlays/tickrate/files/../../x".to_owned(),
            "overlays/tickrate/files/../../x: has a `.` or `..` component; name the file by its own path\n",
        ),
        (
            "overlays/tickrate/files/.git/config".to_owned(),
            "overlays/tickrate/files/.git/config: has a `.git` component, which git keeps for itself\n",
        ),
        (
            "overlays/tickrate/files/.GIT/hooks/x".to_owned(),
            "overlays/tickrate/files/.GIT/hooks/x: has a `.git` component, which git keeps for itself\n",
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(examples_with(&path, "x\n"), expected, "{path}");
    }
    // A plain new file beside the others is fine.
    assert_eq!(examples_with(&format!("{cfg}.bak"), "x\n"), "valid\n");
}

#[test]
fn the_owner_is_read_as_validation_reads_it() {
    let doc = |owner: &str| format!("apiVersion: left4me/v1\nkind: Server\nmetadata:\n  name: s\n  owner: {owner}\n");
    let owner = |text: &str| match declared_owner("servers/s.yaml", text.as_bytes()) {
        Ok(Some(name)) => name.to_string(),
        Ok(None) => "none".to_owned(),
        Err(diagnostic) => format!("error: {diagnostic}"),
    };
    for (written, read) in [
        ("alice", "alice"),
        ("\"alice\"", "alice"),
        ("'alice'", "alice"),
        ("!!str alice", "alice"),
        ("1337", "1337"),
        ("0x1f", "0x1f"),
        ("1e3", "1e3"),
        ("true", "true"),
        ("null", "null"),
        ("!!str 1337", "1337"),
    ] {
        assert_eq!(owner(&doc(written)), read, "owner: {written}");
    }
    for written in ["~", "", ".inf", "[alice]", "{name: alice}"] {
        assert!(
            owner(&doc(written)).starts_with("error: servers/s.yaml:5:"),
            "owner: {written}: {}",
            owner(&doc(written))
        );
    }
    assert_eq!(owner("apiVersion: left4me/v1\nkind: Server\n"), "none");
    assert_eq!(owner("apiVersion: left4me/v1\nmetadata: {name: s}\n"), "none");
    assert!(owner("a: &x 1\nmetadata: {owner: *x}\n").contains("YAML aliases"));
    // Whatever the owner check reads, validation reads alike.
    let server = "apiVersion: left4me/v1\nkind: Server\nmetadata:\n  name: coop-9\n  owner: 1337\nspec:\n  blueprint: coop\n  port: 27030\n";
    let checked = examples_with("servers/coop-9.yaml", server);
    assert_eq!(
        checked,
        "servers/coop-9.yaml:7:14: spec.blueprint: blueprint coop does not exist; there are no blueprints of 1337\n"
    );
}
