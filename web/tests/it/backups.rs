//! A server's backups on its page, and a job's Cancel: what the owner sees and asks, what the
//! reconciler's own request handling (`reconciler::requests`, as the service runs it) does with
//! it, and what everyone else gets — not found. The host here is an `l4d2ctl` that lists the
//! backups a test wrote and takes one as `l4d2ctl backup` would.

use std::path::{Path, PathBuf};

use reconciler::db::Db;
use reconciler::engine::Config;

use crate::support::{Setup, TestApp};

const OLD: &str = "2026-12-01T06-00-00Z";
const NEW: &str = "2026-12-01T07-00-00Z";
const BOBS: &str = "2026-11-30T06-00-00Z";

/// An `l4d2ctl` that answers `backups <name> --json` with `backups-<name>.json` beside it, takes
/// a backup as the file `NEW` (and lists it from then on), and records each restore asked.
fn backing_up_l4d2ctl(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("l4d2ctl");
    let d = dir.display();
    let text = format!(
        "#!/bin/sh\nprev=''\nfor a in \"$@\"; do\n  case \"$prev\" in\n    backups) exec cat '{d}/backups-'\"$a\".json ;;\n    \
         backup) r=$(cat '{d}/root'); mkdir -p \"$r/backups/$a\"; printf 'new bytes' > \"$r/backups/$a/{NEW}.tar.gz\"; \
         cp '{d}/after-'\"$a\".json '{d}/backups-'\"$a\".json; \
         echo '{{\"type\":\"progress\",\"server\":null,\"text\":\"backed up\"}}'; exit 0 ;;\n    \
         restore) echo \"$*\" >> '{d}/restored'; exit 0 ;;\n  esac\n  prev=\"$a\"\ndone\n\
         echo 'l4d2ctl: no host here' >&2\nexit 1\n"
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn listing(ids: &[&str]) -> String {
    let backups: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({"id": id, "taken_at": format!("{}:00:00Z", &id[..13]), "bytes": 9,
                "local": true, "restic": false, "reason": "manual"})
        })
        .collect();
    serde_json::to_string(&backups).unwrap()
}

/// What the service does with the requests in the inbox, here and now.
fn serve_requests(app: &TestApp, l4d2ctl: &Path) {
    let config = Config {
        root: app.root.path().to_path_buf(),
        state: app.repo(),
        branch: "main".into(),
        l4d2ctl: l4d2ctl.to_path_buf(),
        host: None,
    };
    let mut db = Db::open(&config.db_path()).unwrap();
    for request in reconciler::requests::take(&config.root, false) {
        reconciler::requests::act(&config, &mut db, &request);
    }
}

fn requests(app: &TestApp) -> Vec<serde_json::Value> {
    let Ok(read) = std::fs::read_dir(app.root.path().join("requests")) else { return Vec::new() };
    read.map(|entry| serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap()).collect()
}

#[test]
fn the_owner_lists_takes_restores_and_downloads_backups_and_nobody_else_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let l4d2ctl = backing_up_l4d2ctl(dir.path());
    let app = TestApp::start_with(Setup { l4d2ctl: l4d2ctl.clone(), ..Setup::default() });
    std::fs::write(dir.path().join("root"), app.root.path().display().to_string()).unwrap();
    std::fs::write(dir.path().join("backups-coop-1.json"), listing(&[OLD])).unwrap();
    std::fs::write(dir.path().join("after-coop-1.json"), listing(&[NEW, OLD])).unwrap();
    std::fs::write(dir.path().join("backups-versus-1.json"), listing(&[BOBS])).unwrap();
    for (server, id, bytes) in [("coop-1", OLD, "old bytes"), ("versus-1", BOBS, "bob bytes")] {
        let folder = app.root.path().join("backups").join(server);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{id}.tar.gz")), bytes).unwrap();
    }

    let mut alice = app.signed_in("alice");
    let page = alice.get("/servers/coop-1");
    assert!(page.body.contains("id=\"backups-panel\""), "the server's page has the panel: {}", page.body);
    let panel = alice.get("/servers/coop-1/backups");
    assert_eq!(panel.status, 200, "{}", panel.body);
    assert!(panel.body.contains(&format!("id=\"backup-{OLD}\"")) && panel.body.contains("9 B"), "{}", panel.body);

    // Back up now: a request, which the service runs as a job; the new backup is then listed.
    let asked = alice.submit("/servers/coop-1/backups", &[]);
    assert_eq!((asked.status, asked.location.as_deref()), (303, Some("/servers/coop-1/backups?asked=backup")));
    let made = requests(&app);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(
        (&made[0]["what"], &made[0]["server"], &made[0]["who"]),
        (&"backup".into(), &"coop-1".into(), &"web alice".into())
    );
    assert!(alice.get("/servers/coop-1/backups?asked=backup").body.contains("id=\"backup-asked\""));
    serve_requests(&app, &l4d2ctl);
    assert!(requests(&app).is_empty(), "the service took the request");
    assert!(alice.get("/servers/coop-1/backups").body.contains(&format!("id=\"backup-{NEW}\"")));
    let db = Db::open(&app.root.path().join("left4me.db")).unwrap();
    let job = db.jobs(1).unwrap().pop().expect("the backup's job");
    assert_eq!(
        (job.kind.as_str(), job.target.as_str(), job.trigger.as_str(), job.state.as_str()),
        ("backup", "coop-1", "web alice", "succeeded")
    );

    // Restore: previewed, then confirmed; the service runs it.
    let preview = alice.get(&format!("/servers/coop-1/backups/{OLD}/restore"));
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(
        preview.body.contains(OLD) && preview.body.contains("is stopped") && preview.body.contains("one more backup")
    );
    assert!(!dir.path().join("restored").exists(), "a preview asks nothing");
    let confirmed = alice.submit(&format!("/servers/coop-1/backups/{OLD}/restore"), &[]);
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
    serve_requests(&app, &l4d2ctl);
    let restored = std::fs::read_to_string(dir.path().join("restored")).unwrap();
    assert!(restored.contains(&format!("restore coop-1 {OLD}")), "{restored}");

    // Download: the file's bytes, under a name of its own.
    let download = alice.get(&format!("/servers/coop-1/backups/{OLD}/download"));
    assert_eq!((download.status, download.body.as_str()), (200, "old bytes"));
    // Paths that would leave the server's folder, and another server's backup: not found.
    for attack in [
        "..%2f..%2fleft4me.db",
        "..%2Fversus-1%2F2026-11-30T06-00-00Z",
        "%2Fetc%2Fpasswd",
        "..",
        BOBS,
        "2026-12-01T06-00-00Z.tar.gz",
    ] {
        let reply = alice.get(&format!("/servers/coop-1/backups/{attack}/download"));
        assert_eq!(reply.status, 404, "{attack}: {}", reply.body);
        assert_eq!(alice.get(&format!("/servers/coop-1/backups/{attack}/restore")).status, 404, "{attack}");
    }

    // Bob: alice's server's backups do not exist for him, whatever he asks.
    let mut bob = app.signed_in("bob");
    let missing = bob.get("/servers/coop-9/backups").body;
    assert_eq!(bob.get("/servers/coop-1/backups").status, 404);
    assert_eq!(bob.get("/servers/coop-1/backups").body, missing);
    assert_eq!(bob.get(&format!("/servers/coop-1/backups/{OLD}/download")).status, 404);
    assert_eq!(bob.get(&format!("/servers/coop-1/backups/{OLD}/restore")).status, 404);
    assert_eq!(bob.submit(&format!("/servers/coop-1/backups/{OLD}/restore"), &[]).status, 404);
    assert_eq!(bob.submit("/servers/coop-1/backups", &[]).status, 404);
    assert!(!bob.get("/servers/coop-1").body.contains("backups-panel"));
    // Without the session's token, refused; and nothing was asked by any of it.
    assert_eq!(alice.post("/servers/coop-1/backups", &[]).status, 403);
    assert!(requests(&app).is_empty());
    // His own server's are his.
    assert_eq!(bob.get(&format!("/servers/versus-1/backups/{BOBS}/download")).body, "bob bytes");
}

#[test]
fn a_jobs_owner_or_an_admin_cancels_it_through_the_service() {
    let app = TestApp::start();
    let db = Db::open(&app.root.path().join("left4me.db")).unwrap();
    let head = app.head();
    let job = db.create_job("build", "coop-1", Some(&head), "commit").unwrap();
    db.start_job(job).unwrap();

    let mut alice = app.signed_in("alice");
    let page = alice.get(&format!("/jobs/{job}"));
    assert!(page.body.contains("id=\"cancel\""), "{}", page.body);
    // Bob does not see alice's job, nor may he cancel it.
    let mut bob = app.signed_in("bob");
    assert_eq!(bob.submit(&format!("/jobs/{job}/cancel"), &[]).status, 404);
    assert_eq!(bob.submit("/jobs/999999/cancel", &[]).status, 404);
    assert!(requests(&app).is_empty());

    let asked = alice.submit(&format!("/jobs/{job}/cancel"), &[]);
    assert_eq!(asked.status, 303, "{}", asked.body);
    assert!(alice.get(asked.location.as_deref().unwrap()).body.contains("id=\"cancel-asked\""));
    let made = requests(&app);
    assert_eq!((&made[0]["what"], &made[0]["job"]), (&"cancel".into(), &job.into()), "{made:?}");
    serve_requests(&app, Path::new("/nonexistent/l4d2ctl"));
    assert_eq!(db.cancel_requested(job).unwrap().as_deref(), Some("web alice"));

    // A finished job has nothing to cancel; an admin is told so too.
    db.finish_job(job, 0).unwrap();
    let mut ada = app.signed_in("ada");
    assert!(!ada.get(&format!("/jobs/{job}")).body.contains("id=\"cancel\""));
    assert_eq!(ada.submit(&format!("/jobs/{job}/cancel"), &[]).status, 409);
}
