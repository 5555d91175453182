//! Rendering: each example server's instance spec is pinned by a snapshot, and rendering is a
//! pure function of what shapes the server.

use std::fs;

use left4me_state::{DesiredState, HIDDEN_SECRET, Name, Secrets, hide_secrets};

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
        let cfg = spec.server_cfg(&spec.digest(), &SECRETS);
        insta::assert_snapshot!(format!("server_cfg__{}", server.name), cfg);
    }
}

const SECRETS: Secrets<'static> = Secrets { rcon_password: "password", log_secret: 123_456_789, log_port: 27500 };

#[test]
fn a_server_cfg_is_shown_without_its_secrets() {
    let state = load(&examples());
    for server in state.servers.values() {
        let spec = server.spec();
        let cfg = spec.server_cfg(&spec.digest(), &SECRETS);
        let shown = hide_secrets(&cfg);
        assert!(cfg.contains("password") && cfg.contains("123456789"), "{cfg}");
        assert!(!shown.contains("\"password\"") && !shown.contains("123456789"), "{shown}");
        assert!(shown.contains(&format!("sv_logsecret \"{HIDDEN_SECRET}\"")), "{shown}");
        assert!(shown.contains("logaddress_add 127.0.0.1:27500\n"), "{shown}");
        assert_eq!(shown.lines().count(), cfg.lines().count());
    }
    // However the command is written, what follows the cvar is hidden (a mention too: a value
    // may follow it); another cvar whose name merely begins so is kept, and so is the line's end.
    for (line, expected) in [
        ("  SV_LOGSECRET 42\r\n", "  sv_logsecret \"(kept on the host, never shown)\"\r\n"),
        ("\"rcon_password\" \"x\"", "\"rcon_password \"(kept on the host, never shown)\""),
        ("echo sv_logsecret 42\n", "echo sv_logsecret \"(kept on the host, never shown)\"\n"),
        ("sv_logsecretx 1\n", "sv_logsecretx 1\n"),
        ("hostname a; sv_logsecret 1\n", "hostname a; sv_logsecret \"(kept on the host, never shown)\"\n"),
    ] {
        assert_eq!(hide_secrets(line), expected, "{line:?}");
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
