//! What a user must not see of others: history, overlays' users, jobs of a name used before,
//! commits that are not on the branch, and the host's details in `/health`.

use crate::support::{TestApp, git, git_out, unescape};

/// A commit straight into the repo, as an admin's push would be.
fn push(app: &TestApp, path: &str, content: Option<&str>, message: &str) -> String {
    let repo = app.repo();
    match content {
        Some(content) => {
            std::fs::write(repo.join(path), content).unwrap();
            git(&repo, &["add", path]);
        }
        None => git(&repo, &["rm", "--quiet", path]),
    }
    git(&repo, &["commit", "--quiet", "--message", message]);
    app.head()
}

#[test]
fn a_user_sees_only_the_history_of_their_own_and_the_shared_objects() {
    let app = TestApp::start();
    let seed = app.head();
    let bobs = app.show("main:servers/versus-1.yaml").replace("27020", "27021");
    let theirs = push(&app, "servers/versus-1.yaml", Some(&bobs), "Move versus-1 to 27021");
    let tickrate = app.show("main:overlays/tickrate/overlay.yaml") + "# shared\n";
    let shared = push(&app, "overlays/tickrate/overlay.yaml", Some(&tickrate), "Note on tickrate");
    let mut alice = app.signed_in("alice");

    let history = alice.get("/history");
    assert_eq!(history.status, 200);
    assert!(!history.body.contains(&theirs) && !history.body.contains("Move versus-1"), "{}", history.body);
    assert!(history.body.contains(&shared) && history.body.contains(&seed), "{}", history.body);
    // Another user's commit answers as one that does not exist.
    let missing = alice.get(&format!("/history/{}", "0".repeat(40)));
    let hidden = alice.get(&format!("/history/{theirs}"));
    assert_eq!((hidden.status, hidden.body.clone()), (404, missing.body.clone()));
    // And so does its revert: nothing of it shows, and nothing is committed.
    let head = app.head();
    let missing = alice.submit(&format!("/history/{}/revert", "0".repeat(40)), &[]);
    let hidden = alice.submit(&format!("/history/{theirs}/revert"), &[]);
    assert_eq!((hidden.status, hidden.body.clone()), (404, missing.body.clone()));
    assert_eq!(app.head(), head, "nothing was committed");
    // A commit of several owners' files shows hers only.
    let first = alice.get(&format!("/history/{seed}"));
    assert_eq!(first.status, 200);
    let first = unescape(&first.body);
    assert!(first.contains("servers/coop-1.yaml") && first.contains("overlays/tickrate"), "{first}");
    assert!(!first.contains("servers/versus-1.yaml") && !first.contains("blueprints/versus.yaml"), "{first}");
    // Her schedule is hers to see; the alerts are admins'.
    assert!(first.contains("schedules/nightly.yaml") && !first.contains("alerts/ops.yaml"), "{first}");

    let mut bob = app.signed_in("bob");
    let page = bob.get(&format!("/history/{theirs}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("27021"), "{}", page.body);
    let bobs_first = unescape(&bob.get(&format!("/history/{seed}")).body);
    assert!(!bobs_first.contains("coop-1") && !bobs_first.contains("schedules/nightly.yaml"), "{bobs_first}");
    // Admins see all.
    let mut ada = app.signed_in("ada");
    let whole = ada.get(&format!("/history/{seed}"));
    assert!(whole.body.contains("versus-1") && whole.body.contains("coop-1"), "{}", whole.body);
    let whole = unescape(&whole.body);
    assert!(whole.contains("schedules/nightly.yaml") && whole.contains("alerts/ops.yaml"), "{whole}");
    assert!(ada.get("/history").body.contains("Move versus-1"));
    // A hidden deletion of bob's server: undoing it would name its owner, so it is not there.
    let deleted = push(&app, "servers/versus-1.yaml", None, "Delete versus-1");
    let head = app.head();
    let missing = alice.submit(&format!("/history/{}/revert", "0".repeat(40)), &[]);
    let hidden = alice.submit(&format!("/history/{deleted}/revert"), &[]);
    assert_eq!((hidden.status, unescape(&hidden.body)), (404, unescape(&missing.body)));
    assert_eq!(app.head(), head, "nothing was committed");
}

#[test]
fn a_user_sees_a_file_that_was_theirs_before_the_commit() {
    let app = TestApp::start();
    let given =
        app.show("main:servers/coop-2.yaml").replace("owner: alice", "owner: bob").replace("coop\n", "versus\n");
    let handed = push(&app, "servers/coop-2.yaml", Some(&given), "Hand coop-2 to bob");
    for user in ["alice", "bob"] {
        let page = app.signed_in(user).get(&format!("/history/{handed}"));
        assert_eq!(page.status, 200, "{user}");
    }
}

#[test]
fn the_overlays_page_names_only_the_users_own_blueprints() {
    let app = TestApp::start();
    let used_by = |user: &str| {
        let page = app.signed_in(user).get("/overlays");
        assert_eq!(page.status, 200);
        page.body.split("Used by: ").skip(1).map(|rest| rest.split(" ·").next().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let alices = used_by("alice");
    assert_eq!(alices.len(), 3, "{alices:?}");
    assert!(alices.iter().any(|u| u.contains("coop")), "{alices:?}");
    assert!(!alices.iter().any(|u| u.contains("versus")), "bob's blueprint is named: {alices:?}");
    assert!(used_by("ada").iter().any(|u| u.contains("versus")));
    // A workshop overlay lists its items and its collections.
    let page = app.signed_in("alice").get("/overlays").body;
    assert!(page.contains("workshop item 121275675") && page.contains("workshop collection 3014185046"), "{page}");
}

#[test]
fn a_commit_that_is_not_on_the_branch_is_not_shown_nor_reverted() {
    let app = TestApp::start();
    let repo = app.repo();
    git(&repo, &["checkout", "--quiet", "-b", "elsewhere"]);
    let changed = app.show("main:servers/coop-1.yaml").replace("27015", "27020");
    std::fs::write(repo.join("servers/coop-1.yaml"), changed).unwrap();
    git(&repo, &["commit", "--quiet", "--all", "--message", "Not on main"]);
    let elsewhere = git_out(&repo, &["rev-parse", "elsewhere"]).trim().to_owned();
    git(&repo, &["checkout", "--quiet", "main"]);
    let head = app.head();
    for user in ["alice", "ada"] {
        let mut client = app.signed_in(user);
        assert_eq!(client.get(&format!("/history/{elsewhere}")).status, 404, "{user}");
        assert_eq!(client.submit(&format!("/history/{elsewhere}/revert"), &[]).status, 404, "{user}");
    }
    assert_eq!(app.head(), head, "nothing was committed");
}

#[test]
fn a_server_made_again_under_an_old_name_does_not_show_the_old_ones_jobs() {
    let app = TestApp::start();
    let db = reconciler::db::Db::open(&app.root.path().join("left4me.db")).unwrap();
    let old = db.create_job("start", "coop-2", Some(&app.head()), "commit").unwrap();
    db.append_line(old, "stdout", "alice's coop-2 started").unwrap();
    db.finish_job(old, 0).unwrap();
    push(&app, "servers/coop-2.yaml", None, "Delete coop-2");
    let again = "apiVersion: left4me/v1\nkind: Server\nmetadata:\n  name: coop-2\n  owner: bob\nspec:\n  blueprint: versus\n  port: 27030\n";
    let made = push(&app, "servers/coop-2.yaml", Some(again), "Make coop-2 for bob");
    app.wait_seen();
    let new = db.create_job("create", "coop-2", Some(&made), "commit").unwrap();
    db.finish_job(new, 0).unwrap();

    let mut bob = app.signed_in("bob");
    let list = bob.get("/jobs");
    assert!(list.body.contains(&format!("/jobs/{new}\"")), "{}", list.body);
    assert!(!list.body.contains(&format!("/jobs/{old}\"")), "{}", list.body);
    assert_eq!(bob.get(&format!("/jobs/{new}")).status, 200);
    assert_eq!(bob.get(&format!("/jobs/{old}")).status, 404);
    assert_eq!(bob.get(&format!("/jobs/{old}/log")).status, 404);
    let mut ada = app.signed_in("ada");
    assert_eq!(ada.get(&format!("/jobs/{old}")).status, 200, "an admin sees every job");
}
