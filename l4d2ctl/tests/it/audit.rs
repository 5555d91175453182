//! The audit trail on a real host: writes by hand and `l4d2ctl rcon` are recorded, as the
//! override markers' who and what, with passwords hidden; the trail is the game's user's, 0660.

use l4d2ctl::audit::{Audit, Filter, Scope};

use crate::support::{Host, ROOT};

#[test]
fn writes_by_hand_and_rcon_are_in_the_audit_trail() {
    let host = Host::installed();
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    host.l4d2ctl_ok(&["start", "coop-1"]);
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 answers");
    host.l4d2ctl_ok(&["rcon", "coop-1", "sv_password", "hunter2"]);
    host.l4d2ctl_ok(&["rcon", "--as", "alice", "--from", "203.0.113.7", "coop-1", "status"]);
    let marker = host.status_json("coop-1")["override"].clone();
    host.l4d2ctl_ok(&["stop", "coop-1"]);
    host.l4d2ctl_ok(&["release", "coop-1"]);

    let file = format!("{ROOT}/audit.db");
    assert_eq!(host.ok("stat", &["-c", "%a %U", &file]).trim(), "660 left4me", "the game's user's, 0660");
    let audit = Audit::open(&host.root_path("")).unwrap();
    let entries =
        audit.entries(&Filter { scope: Scope::All, server: Some("coop-1"), before: None, limit: 50 }).unwrap();
    let seen: Vec<(&str, &str, &str)> =
        entries.iter().rev().map(|e| (e.who.as_str(), e.action.as_str(), e.detail.as_str())).collect();
    let who = marker["who"].as_str().expect("the marker names who");
    assert_eq!(
        seen,
        [
            (who, "initialize", "initialize by hand"),
            (who, "start", "start by hand"),
            (who, "rcon", "sv_password <hidden>"),
            ("alice", "rcon", "status"),
            (who, "stop", "stop by hand"),
            (who, "release", "released to the reconciler by hand"),
        ]
    );
    assert_eq!(entries[2].origin, "web 203.0.113.7");
    assert_eq!(entries[0].origin, "l4d2ctl");
    for file in ["audit.db", "audit.db-wal"] {
        let bytes = std::fs::read(host.root_path(file)).unwrap_or_default();
        assert!(!bytes.windows(7).any(|w| w == b"hunter2"), "the password is not in {file}");
    }
}
