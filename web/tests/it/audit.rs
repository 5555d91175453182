//! The audit trail over real HTTP, a real l4d2ctl and real SQLite: sign-ins (wrong, right,
//! locked), RCON sent from the web, a user made; who sees which entries; no password kept.

use std::path::PathBuf;

use l4d2ctl::audit::{Audit, Filter, Recorded, Scope};

use crate::support::{PASSWORD, Setup, TestApp};

/// The built l4d2ctl, run with `$ROOT` the app's: a wrapper that reads the root from a file
/// beside it, written once the app has its root.
fn l4d2ctl_for_the_app() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let real = left4me_sim::built_binary("l4d2ctl").expect("l4d2ctl is built (cargo build --workspace --bins)");
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("l4d2ctl");
    let script = format!(
        "#!/bin/sh\nLEFT4ME_ROOT=\"$(cat '{}')\" exec '{}' \"$@\"\n",
        dir.path().join("root").display(),
        real.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, wrapper)
}

fn all(app: &TestApp) -> Vec<Recorded> {
    let audit = Audit::open(app.root.path()).unwrap();
    audit.entries(&Filter { scope: Scope::All, server: None, before: None, limit: 1000 }).unwrap()
}

fn find<'a>(entries: &'a [Recorded], action: &str, who: &str) -> &'a Recorded {
    entries
        .iter()
        .find(|e| e.action == action && e.who == who)
        .unwrap_or_else(|| panic!("no {action} of {who} in {entries:#?}"))
}

#[test]
fn sign_ins_rcon_and_user_administration_are_recorded_and_shown_to_whom_they_concern() {
    let (wrapper_dir, l4d2ctl) = l4d2ctl_for_the_app();
    let app = TestApp::start_with(Setup { l4d2ctl, trusted_proxies: "127.0.0.1", ..Setup::default() });
    std::fs::write(wrapper_dir.path().join("root"), app.root.path().as_os_str().as_encoded_bytes()).unwrap();
    let from = [("X-Forwarded-For", "203.0.113.9")];

    let mut someone = app.client();
    let wrong = [("name", "alice"), ("password", "not alices password")];
    assert_eq!(someone.post_with("/login", &from, &wrong).status, 401);
    let right = [("name", "alice"), ("password", PASSWORD)];
    assert_eq!(someone.post_with("/login", &from, &right).status, 303);
    // A password typed into the name's box: the trail keeps no name no account could have.
    let typo = [("name", "my hunter2 password"), ("password", "x")];
    assert_eq!(someone.post_with("/login", &[("X-Forwarded-For", "203.0.113.10")], &typo).status, 401);
    let bob_wrong = [("name", "bob"), ("password", "not bobs password")];
    let statuses: Vec<u16> =
        (0..=web::auth::FREE_FAILURES).map(|_| someone.post_with("/login", &from, &bob_wrong).status).collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    let mut alice = app.signed_in("alice");
    let sent = alice.submit("/servers/coop-1/rcon", &[("command", "say hi; rcon_password hunter2")]);
    assert_eq!(sent.status, 200, "{}", sent.body);
    let mut bob = app.signed_in("bob");
    assert_eq!(bob.submit("/servers/versus-1/rcon", &[("command", "status")]).status, 200);
    let mut ada = app.signed_in("ada");
    let made = ada.submit("/users", &[("name", "carol"), ("password", "a long enough password")]);
    assert_eq!(made.status, 303, "{}", made.body);

    let entries = all(&app);
    let failed = find(&entries, "sign-in-failed", "alice");
    assert_eq!(failed.origin, "web 203.0.113.9");
    assert_eq!(find(&entries, "sign-in-failed", "an unknown name").origin, "web 203.0.113.10");
    let signed_in = |origin: &str| {
        entries.iter().any(|e| (e.action.as_str(), e.who.as_str(), e.origin.as_str()) == ("sign-in", "alice", origin))
    };
    assert!(signed_in("web 203.0.113.9") && signed_in("web 127.0.0.1"), "{entries:#?}");
    assert_eq!(find(&entries, "sign-in-locked", "bob").origin, "web 203.0.113.9");
    let rcon = find(&entries, "rcon", "alice");
    assert_eq!(
        (rcon.server.as_deref(), rcon.detail.as_str(), rcon.origin.as_str()),
        (Some("coop-1"), "say hi; rcon_password <hidden>", "web 127.0.0.1")
    );
    let created = find(&entries, "user-created", "ada");
    assert_eq!((created.detail.as_str(), created.server.as_deref()), ("carol", None));

    // The password never reached the trail: not in the table, not in its files.
    for suffix in ["", "-wal"] {
        let file = app.root.path().join(format!("audit.db{suffix}"));
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!bytes.windows(7).any(|w| w == b"hunter2"), "{} holds the password", file.display());
    }

    // Alice sees her server's entries, not bob's nor the sign-ins; an admin sees all.
    let page = alice.get("/audit");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("coop-1") && page.body.contains("rcon_password &lt;hidden&gt;"), "{}", page.body);
    let row = |server: &str| format!("<a href=\"/servers/{server}\">");
    assert!(!page.body.contains(&row("versus-1")) && !page.body.contains("<td>sign-in"), "{}", page.body);
    let page = bob.get("/audit");
    assert!(page.body.contains(&row("versus-1")) && !page.body.contains(&row("coop-1")), "{}", page.body);
    let page = ada.get("/audit");
    for seen in [&row("coop-1"), &row("versus-1"), "<td>sign-in-locked", "<td>user-created", "203.0.113.9"] {
        assert!(page.body.contains(seen), "{seen}: {}", page.body);
    }
}

#[test]
fn the_audit_page_is_paged_newest_first() {
    let app = TestApp::start();
    let audit = Audit::open(app.root.path()).unwrap();
    for n in 0..150 {
        let entry = l4d2ctl::audit::Entry {
            who: "ada".into(),
            action: "stop".into(),
            server: Some("coop-1".into()),
            detail: format!("number {n}"),
            origin: "l4d2ctl".into(),
        };
        audit.record(&entry).unwrap();
    }
    let mut alice = app.signed_in("alice");
    let first = alice.get("/audit");
    assert!(first.body.contains("number 149") && !first.body.contains("number 49<"), "{}", first.body);
    let older = first.body.split("/audit?before=").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned();
    let second = alice.get(&format!("/audit?before={older}"));
    assert!(second.body.contains("number 49<") && !second.body.contains("number 50<"), "{}", second.body);
    assert!(!second.body.contains("/audit?before="), "no page after the last");
}
