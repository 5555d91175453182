//! Rendering: each example server's instance spec is pinned by a snapshot, and rendering is a
//! pure function of what shapes the server.

use std::fs;

use left4me_state::{DesiredState, Name};

use crate::support::{commit_tree, examples, git};

fn load(root: &std::path::Path) -> DesiredState {
    left4me_state::load_dir(root).unwrap().unwrap()
}

fn rendered(state: &DesiredState, server: &str) -> String {
    let spec = state.instance_spec(&Name::new(server).unwrap()).expect("the server is declared");
    format!("{}digest: {}\n", spec.to_json(), spec.digest())
}

#[test]
fn each_example_server_renders_to_its_snapshot() {
    let state = load(&examples());
    for name in state.servers.keys() {
        insta::assert_snapshot!(format!("rendered__{name}"), rendered(&state, name.as_str()));
    }
}

#[test]
fn each_example_server_renders_its_server_cfg() {
    let state = load(&examples());
    for server in state.servers.values() {
        let spec = server.spec();
        let cfg = spec.server_cfg(&spec.digest(), "password");
        insta::assert_snapshot!(format!("server_cfg__{}", server.name), cfg);
    }
}

#[test]
fn rendering_is_byte_identical_from_a_folder_and_from_a_commit() {
    let from_dir = load(&examples());
    let repo = commit_tree(&examples());
    let from_git = left4me_state::load_revision(repo.path(), "main").unwrap().1.unwrap();
    for name in from_dir.servers.keys() {
        assert_eq!(rendered(&from_dir, name.as_str()), rendered(&from_git, name.as_str()));
        assert_eq!(rendered(&from_dir, name.as_str()), rendered(&from_dir, name.as_str()));
    }
}

#[test]
fn the_digest_follows_what_runs_and_nothing_else() {
    let repo = commit_tree(&examples());
    let dir = repo.path();
    let digest = |server: &str| {
        let state = load(dir);
        state.instance_spec(&Name::new(server).unwrap()).unwrap().digest()
    };
    let coop = digest("coop-1");
    let versus = digest("versus-1");

    // Power state and rollout policy are not part of the instance.
    let edit = |path: &str, from: &str, to: &str| {
        let path = dir.join(path);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} in {}", path.display());
        fs::write(&path, text.replace(from, to)).unwrap();
    };
    edit("servers/coop-1.yaml", "state: running", "state: stopped");
    edit("blueprints/coop.yaml", "rollout: when-empty", "rollout: immediate");
    assert_eq!(digest("coop-1"), coop);

    // A changed file in an overlay reaches every server that stacks it.
    edit("overlays/tickrate/files/left4dead2/cfg/server.cfg", "fps_max 0", "fps_max 300");
    assert_ne!(digest("coop-1"), coop);
    assert_ne!(digest("versus-1"), versus);
    let coop = digest("coop-1");

    // So does a changed hostname, but only for its own server.
    let versus = digest("versus-1");
    edit("servers/coop-1.yaml", "alice's coop", "alice's coop (new)");
    assert_ne!(digest("coop-1"), coop);
    assert_eq!(digest("versus-1"), versus);
    git(dir, &["status", "--short"]);
}
