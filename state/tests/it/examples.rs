//! The shipped examples are a valid state repo, read from a folder and from a commit alike, and
//! only what is committed counts.

use std::fs;

use left4me_state::{LoadError, PowerState, When};

use crate::support::{commit_tree, copy_tree, examples, git};

#[test]
fn the_examples_validate_as_a_folder() {
    let state = left4me_state::load_dir(&examples()).unwrap().expect("examples/state is valid");
    let names = |keys: Vec<&str>| keys.join(" ");
    assert_eq!(names(state.servers.keys().map(|n| n.as_str()).collect()), "coop-1 coop-2 versus-1");
    assert_eq!(names(state.blueprints.keys().map(|n| n.as_str()).collect()), "coop versus");
    assert_eq!(names(state.overlays.keys().map(|n| n.as_str()).collect()), "campaigns competitive tickrate");
    let owners: std::collections::BTreeSet<&str> = state.servers.values().map(|s| s.owner.as_str()).collect();
    assert_eq!(owners.len(), 2, "the examples show two owners");
    assert_eq!(state.servers["coop-2"].state, PowerState::Stopped);
    // versus-1 names no state; it takes the default of left4me.yaml.
    assert_eq!(state.servers["versus-1"].state, PowerState::Running);

    let nightly = &state.schedules["nightly"];
    assert_eq!((nightly.action.name(), nightly.when, nightly.within), ("restart", When::Empty, 7200));
    assert_eq!(nightly.warn.as_ref().map(|w| w.before.clone()), Some(vec![600, 60]), "longest first");
    let scheduled: Vec<&str> = state.schedule_servers(nightly).iter().map(|s| s.name.as_str()).collect();
    assert_eq!(scheduled, ["coop-1", "coop-2"], "every server of the coop blueprint");
    assert_eq!(names(state.alerts.keys().map(|n| n.as_str()).collect()), "ops");
    assert_eq!(state.alerts["ops"].servers, None, "ops hears about every server");
    assert_eq!(state.backups_keep(&state.servers["coop-1"]), 14);
    assert_eq!(state.backups_keep(&state.servers["versus-1"]), 7, "versus says nothing and keeps the default");
}

#[test]
fn schedules_at_their_floors_validate() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&examples(), dir.path());
    // Every 5 minutes for any action, hourly for a backup; days only make it rarer.
    let floors = [
        ("tidy", "*:0/5", "restart"),
        ("greet", "Mon..Fri *:00/5:00", "command\n  command: \"say hi\""),
        ("hourly", "hourly", "backup"),
        ("mornings", "06,07:00", "backup"),
        ("monday", "Mon 06:00", "backup"),
    ];
    for (name, at, action) in floors {
        let yaml = format!(
            "apiVersion: left4me/v1\nkind: Schedule\nmetadata: {{name: {name}, owner: alice}}\nspec:\n  servers: \
             [coop-1]\n  at: \"{at}\"\n  action: {action}\n"
        );
        fs::write(dir.path().join(format!("schedules/{name}.yaml")), yaml).unwrap();
    }
    let checked = left4me_state::load_dir(dir.path()).unwrap();
    let state = checked.unwrap_or_else(|diagnostics| panic!("the floors are taken:\n{diagnostics}"));
    assert_eq!(state.schedules.len(), 1 + floors.len());
}

#[test]
fn the_examples_validate_as_a_commit_and_read_the_same() {
    let from_dir = left4me_state::load_dir(&examples()).unwrap().unwrap();
    let repo = commit_tree(&examples());
    let (revision, from_git) = left4me_state::load_revision(repo.path(), "main").unwrap();
    assert_eq!(revision.id(), git(repo.path(), &["rev-parse", "HEAD"]));
    assert_eq!(from_git.expect("the committed examples are valid"), from_dir);
}

#[test]
fn only_the_committed_revision_counts() {
    let repo = commit_tree(&examples());
    let committed = left4me_state::load_revision(repo.path(), "main").unwrap().1.unwrap();

    // A half-saved edit, a new broken file, and a broken file staged but not committed.
    fs::write(repo.path().join("servers/coop-1.yaml"), "apiVersion: left4me/v1\nkind: Ser").unwrap();
    fs::write(repo.path().join("servers/new.yaml"), "spec: {port: 80}\n").unwrap();
    fs::write(repo.path().join("blueprints/staged.yaml"), "kind: [\n").unwrap();
    git(repo.path(), &["add", "blueprints/staged.yaml"]);

    let work_tree = left4me_state::load_dir(repo.path()).unwrap();
    assert!(work_tree.is_err(), "the work tree is broken, so this test shows something");
    let (_, again) = left4me_state::load_revision(repo.path(), "main").unwrap();
    assert_eq!(again.expect("the committed revision is still valid"), committed);
}

#[test]
fn an_older_revision_can_be_read() {
    let repo = commit_tree(&examples());
    let first = git(repo.path(), &["rev-parse", "HEAD"]);
    fs::remove_file(repo.path().join("servers/coop-2.yaml")).unwrap();
    git(repo.path(), &["commit", "--quiet", "--all", "--message", "remove coop-2"]);

    let now = left4me_state::load_revision(repo.path(), "main").unwrap().1.unwrap();
    assert!(!now.servers.contains_key("coop-2"));
    let (revision, before) = left4me_state::load_revision(repo.path(), &first[..10]).unwrap();
    assert_eq!(revision.id(), first);
    assert!(before.unwrap().servers.contains_key("coop-2"));
}

#[test]
fn an_unknown_revision_or_folder_is_a_load_error() {
    let repo = commit_tree(&examples());
    let error = left4me_state::load_revision(repo.path(), "no-such-branch").unwrap_err();
    assert!(matches!(error, LoadError::UnknownRevision { .. }), "{error}");
    assert!(error.to_string().contains("has no revision \"no-such-branch\""), "{error}");

    // An option-looking revision is a revision name, never an option to git.
    let error = left4me_state::load_revision(repo.path(), "--output=/tmp/x").unwrap_err();
    assert!(matches!(error, LoadError::UnknownRevision { .. }), "{error}");

    let error = left4me_state::load_dir(&repo.path().join("missing")).unwrap_err();
    assert!(error.to_string().starts_with("cannot read "), "{error}");
    assert!(error.to_string().ends_with("No such file or directory (os error 2)"), "{error}");
}

#[test]
fn replace_refs_cannot_change_what_a_commit_holds() {
    let repo = commit_tree(&examples());
    let original = git(repo.path(), &["rev-parse", "main:servers/coop-1.yaml"]);
    let forged = fs::read_to_string(repo.path().join("servers/coop-1.yaml")).unwrap().replace("27015", "27099");
    fs::write(repo.path().join("forged.yaml"), forged).unwrap();
    let forged = git(repo.path(), &["hash-object", "-w", "forged.yaml"]);
    git(repo.path(), &["replace", &original, &forged]);
    assert!(
        git(repo.path(), &["show", "main:servers/coop-1.yaml"]).contains("27099"),
        "git itself follows the replace ref"
    );

    let state = left4me_state::load_revision(repo.path(), "main").unwrap().1.unwrap();
    assert_eq!(state.servers["coop-1"].port.number(), 27015);
}

#[test]
fn a_folder_inside_a_repo_is_not_that_repo() {
    let repo = commit_tree(&examples());
    let error = left4me_state::load_revision(&repo.path().join("servers"), "main").unwrap_err();
    assert!(matches!(error, LoadError::UnknownRevision { .. }), "{error}");
    assert!(error.to_string().contains("not a git repository"), "{error}");
}
