//! HTTP-level tests: sign-in, sessions, CSRF, authorisation, the edit flow and its commits.

use crate::support::{PASSWORD, TestApp, git, git_out, hidden_fields, unescape};

#[test]
fn sign_in_and_out() {
    let app = TestApp::start();
    let mut client = app.client();
    let first = client.get("/servers/coop-1");
    assert_eq!(first.status, 303);
    assert_eq!(first.location.as_deref(), Some("/login?next=%2Fservers%2Fcoop-1"));

    let wrong = client.post("/login", &[("name", "alice"), ("password", "not the password")]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("do not match"), "{}", wrong.body);
    assert!(client.cookie.is_none());

    let right = client.post("/login", &[("name", "alice"), ("password", PASSWORD), ("next", "/servers/coop-1")]);
    assert_eq!(right.status, 303);
    assert_eq!(right.location.as_deref(), Some("/servers/coop-1"));
    let cookie = right.set_cookie.unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "not served over TLS here: {cookie}");
    let page = client.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("coop-1") && page.body.contains("Sign out"), "{}", page.body);

    // A next page on another site is not followed.
    let mut other = app.client();
    let offsite = other.post("/login", &[("name", "bob"), ("password", PASSWORD), ("next", "//evil.example/")]);
    assert_eq!(offsite.location.as_deref(), Some("/"));
    let mut other = app.client();
    let offsite = other.post("/login", &[("name", "bob"), ("password", PASSWORD), ("next", "/\\evil.example/")]);
    assert_eq!(offsite.location.as_deref(), Some("/"), "a backslash is a slash to browsers");

    let old_cookie = client.cookie.clone();
    let out = client.submit("/logout", &[]);
    assert_eq!(out.status, 303);
    assert!(client.cookie.is_none(), "the cookie is cleared");
    client.cookie = old_cookie;
    assert_eq!(client.get("/").status, 303, "the ended session no longer signs in");
}

#[test]
fn the_session_cookie_is_secure_behind_an_https_proxy() {
    let app = TestApp::start();
    let agent: ureq::Agent = ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into();
    let response = agent
        .post(app.url("/login"))
        .header("X-Forwarded-Proto", "https")
        .send_form([("name", "alice"), ("password", PASSWORD)])
        .unwrap();
    let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[test]
fn a_write_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let app = TestApp::start();
    let mut alice = app.signed_in("alice");
    let commits = app.commits();
    let form = [("name", "coop-9"), ("blueprint", "coop"), ("port", "27030"), ("state", "running")];
    let missing = alice.post("/servers/new", &form);
    assert_eq!(missing.status, 403, "{}", missing.body);
    let mut forged = vec![("csrf", "0000")];
    forged.extend_from_slice(&form);
    assert_eq!(alice.post("/servers/new", &forged).status, 403);
    // Another session's token is not this session's.
    let mut bob = app.signed_in("bob");
    bob.get("/");
    let bobs = bob.csrf.clone().unwrap();
    let mut stolen = vec![("csrf", bobs.as_str())];
    stolen.extend_from_slice(&form);
    assert_eq!(alice.post("/servers/new", &stolen).status, 403);
    assert_eq!(alice.post("/power-off-everything", &[]).status, 404, "unknown pages stay unknown");
    // And the same confirmation, with the token, is accepted: the refusal was the token's.
    assert_eq!(alice.submit("/servers/new", &form).status, 200);
    assert_eq!(app.commits(), commits, "nothing was committed");
}

#[test]
fn a_user_cannot_read_edit_or_guess_another_users_objects() {
    let app = TestApp::start();
    let mut bob = app.signed_in("bob");
    let missing = bob.get("/servers/no-such-server");
    assert_eq!(missing.status, 404);
    // alice's server answers exactly as a server that does not exist.
    let hidden = bob.get("/servers/coop-1");
    assert_eq!((hidden.status, hidden.body.clone()), (404, missing.body.clone()));
    let dashboard = bob.get("/");
    assert!(dashboard.body.contains("versus-1") && !dashboard.body.contains("coop-1"), "{}", dashboard.body);
    for page in [
        "/servers/coop-1/edit",
        "/servers/coop-1/log",
        "/servers/coop-1/events",
        "/blueprints/coop/edit",
        "/edit?path=servers/coop-1.yaml",
        "/edit?path=blueprints/coop.yaml",
        "/users",
    ] {
        let reply = bob.get(page);
        assert_eq!(reply.status, 404, "{page}: {}", reply.body);
    }
    assert!(!bob.get("/blueprints").body.contains("c1m1_hotel\n"), "alice's blueprint is not listed");

    let commits = app.commits();
    let head = app.head();
    let stolen = "apiVersion: left4me/v1\nkind: Server\nmetadata: {name: coop-1, owner: bob}\nspec: {blueprint: versus, port: 27015}\n";
    for (page, form) in [
        ("/servers/coop-1/power", vec![("state", "stopped")]),
        ("/servers/coop-1/edit", vec![("blueprint", "versus"), ("port", "27015"), ("state", "running")]),
        ("/servers/coop-1/delete", vec![]),
        ("/servers/coop-1/rcon", vec![("command", "status")]),
        ("/blueprints/coop/delete", vec![]),
        ("/edit", vec![("path", "servers/coop-1.yaml"), ("content", stolen), ("base", head.as_str())]),
        ("/commit", vec![("path", "servers/coop-1.yaml"), ("content", stolen), ("base", head.as_str())]),
        ("/commit", vec![("path", "servers/coop-1.yaml"), ("base", head.as_str())]),
        ("/users/alice/disable", vec![]),
    ] {
        let reply = bob.submit(page, &form);
        assert_eq!(reply.status, 404, "{page}: {}", reply.body);
    }
    // A new file may not be made in another user's name, nor may overlays be changed.
    let for_alice = "apiVersion: left4me/v1\nkind: Server\nmetadata: {name: gift, owner: alice}\nspec: {blueprint: coop, port: 27030}\n";
    let reply = bob.submit("/commit", &[("path", "servers/gift.yaml"), ("content", for_alice), ("base", &head)]);
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains("must be owned by you"), "{}", reply.body);
    let reply = bob.submit(
        "/commit",
        &[("path", "overlays/tickrate/files/left4dead2/cfg/server_tickrate.cfg"), ("content", "sv_cheats 1\n")],
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(bob.get("/edit?path=overlays/tickrate/overlay.yaml").status, 403);
    assert_eq!(app.commits(), commits, "nothing was committed");

    // An admin sees and may change everything.
    let mut ada = app.signed_in("ada");
    assert_eq!(ada.get("/servers/coop-1").status, 200);
    assert_eq!(ada.get("/edit?path=overlays/tickrate/overlay.yaml").status, 200);
    assert_eq!(ada.get("/users").status, 200);
}

#[test]
fn a_new_server_is_previewed_as_a_diff_then_committed_as_its_author() {
    let app = TestApp::start();
    let mut alice = app.signed_in("alice");
    let form_page = alice.get("/servers/new?blueprint=coop");
    assert_eq!(form_page.status, 200);
    assert!(form_page.body.contains("value=\"27017\""), "the lowest free port is suggested: {}", form_page.body);
    let base = app.head();
    let commits = app.commits();
    let preview = alice.submit(
        "/servers/new",
        &[
            ("name", "coop-3"),
            ("blueprint", "coop"),
            ("port", "27017"),
            ("state", "running"),
            ("hostname", "alice's third"),
            ("base", &base),
        ],
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(preview.body.contains("+  name: coop-3"), "{}", preview.body);
    assert!(preview.body.contains("+  port: 27017"), "{}", preview.body);
    assert_eq!(app.commits(), commits, "a preview commits nothing");

    let mut fields: Vec<(String, String)> = hidden_fields(&preview.body);
    fields.push(("message".into(), "A third coop server for the weekend".into()));
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let committed = alice.post("/commit", &form);
    assert_eq!(committed.status, 303, "{}", committed.body);
    assert!(committed.location.unwrap().starts_with("/servers/coop-3?saved="));
    assert_eq!(app.commits(), commits + 1);
    let author = git_out(&app.repo(), &["log", "-1", "--format=%an <%ae>|%s"]);
    assert_eq!(author.trim(), "alice <alice@left4me.invalid>|A third coop server for the weekend");
    let content = app.show("main:servers/coop-3.yaml");
    let previewed = fields.iter().find(|(k, _)| k == "content").unwrap().1.clone();
    assert_eq!(content, previewed);
    assert!(content.contains("hostname: \"alice's third\""), "{content}");
    // The commit is valid as a whole, as `left4me validate` sees it.
    let checked = left4me_state::load_revision(&app.repo(), "main").unwrap().1;
    assert!(checked.unwrap().servers.keys().any(|n| n.as_str() == "coop-3"));
    // The work tree follows, so pushes with updateInstead keep working.
    assert!(app.repo().join("servers/coop-3.yaml").exists());
    assert!(git_out(&app.repo(), &["status", "--porcelain"]).is_empty());

    // Start and stop are commits of spec.state.
    app.wait_seen();
    let stopped = alice.submit("/servers/coop-3/power", &[("state", "stopped")]);
    assert_eq!(stopped.status, 303, "{}", stopped.body);
    assert!(app.show("main:servers/coop-3.yaml").contains("state: stopped"));
    assert_eq!(git_out(&app.repo(), &["log", "-1", "--format=%s"]).trim(), "Stop coop-3");
}

#[test]
fn a_save_based_on_a_stale_revision_is_a_conflict_and_loses_nothing() {
    let app = TestApp::start();
    let mut alice = app.signed_in("alice");
    let base = app.head();
    let edit = alice.get("/servers/coop-1/edit");
    assert!(edit.body.contains(&format!("value=\"{base}\"")), "the form carries its base revision");
    // Meanwhile someone pushes another hostname for the same server.
    let theirs = app.show("main:servers/coop-1.yaml").replace("alice's coop", "renamed by a push");
    app.commit_file("servers/coop-1.yaml", &theirs, "rename coop-1");
    let pushed = app.head();
    let preview = alice.submit(
        "/servers/coop-1/edit",
        &[("blueprint", "coop"), ("port", "27015"), ("state", "running"), ("hostname", "mine"), ("base", &base)],
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    let fields = hidden_fields(&preview.body);
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let conflict = alice.post("/commit", &form);
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    let body = unescape(&conflict.body);
    assert!(body.contains("+  hostname: \"renamed by a push\""), "their change is shown: {body}");
    assert!(body.contains("+  hostname: mine"), "my change is shown: {body}");
    assert_eq!(app.head(), pushed, "nothing was committed over the push");

    // A change to another file meanwhile is no conflict: the save lands on top of it.
    let base = app.head();
    app.commit_file("servers/coop-2.yaml", &app.show("main:servers/coop-2.yaml").replace("#2", "two"), "coop-2");
    let preview = alice.submit(
        "/servers/coop-1/edit",
        &[("blueprint", "coop"), ("port", "27015"), ("state", "running"), ("hostname", "mine"), ("base", &base)],
    );
    let fields = hidden_fields(&preview.body);
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(alice.post("/commit", &form).status, 303);
    assert!(app.show("main:servers/coop-1.yaml").contains("hostname: mine"));
    assert!(app.show("main:servers/coop-2.yaml").contains("alice's coop two"), "the other change is kept");
}

#[test]
fn invalid_yaml_is_refused_with_the_validators_diagnostics_and_nothing_is_committed() {
    let app = TestApp::start();
    let mut alice = app.signed_in("alice");
    let head = app.head();
    // The branch moves on meanwhile (another file).
    app.commit_file("servers/coop-2.yaml", &app.show("main:servers/coop-2.yaml").replace("#2", "two"), "coop-2");
    app.wait_seen();
    let commits = app.commits();
    let broken = "apiVersion: left4me/v1\nkind: Server\nmetadata:\n  name: coop-1\n  owner: alice\nspec:\n  blueprint: coop\n  prot: 27015\n";
    let reply = alice.submit("/edit", &[("path", "servers/coop-1.yaml"), ("content", broken), ("base", &head)]);
    assert_eq!(reply.status, 422, "{}", reply.body);
    // The editor comes back with the revision it started from, not a newer one: a fix is still
    // checked for conflicts against what its author saw.
    assert!(reply.body.contains(&format!("name=\"base\" value=\"{head}\"")), "{}", reply.body);
    // Exactly what `left4me validate` says of the same tree.
    let checkout = tempfile::tempdir().unwrap();
    crate::support::git(checkout.path(), &["clone", "--quiet", app.repo().to_str().unwrap(), "."]);
    std::fs::write(checkout.path().join("servers/coop-1.yaml"), broken).unwrap();
    let left4me = left4me_sim::built_binary("left4me").unwrap();
    let validate =
        std::process::Command::new(left4me).args(["validate", "--state"]).arg(checkout.path()).output().unwrap();
    let expected = String::from_utf8_lossy(&validate.stdout);
    assert!(!validate.status.success() && expected.contains("prot"), "{expected}");
    let body = unescape(&reply.body);
    for line in expected.lines().filter(|l| !l.trim().is_empty()) {
        let message = line.split_once(": ").map(|(_, m)| m).unwrap_or(line);
        assert!(body.contains(message.trim()), "the page lacks {line:?}:\n{body}");
    }
    assert!(body.contains("line 8"), "the problem points at its line: {body}");
    // Posting the confirmation directly is checked again.
    let reply = alice.submit("/commit", &[("path", "servers/coop-1.yaml"), ("content", broken), ("base", &head)]);
    assert_eq!(reply.status, 422, "{}", reply.body);
    // A form with a bad port names the field.
    let reply =
        alice.submit("/servers/new", &[("name", "coop-4"), ("blueprint", "coop"), ("port", "80"), ("base", &head)]);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("field-error"), "{}", reply.body);
    assert_eq!(app.commits(), commits);
}

#[test]
fn a_commit_is_reverted_as_a_new_commit() {
    let app = TestApp::start();
    let before = app.show("main:servers/coop-2.yaml");
    let mut alice = app.signed_in("alice");
    let reply = alice.submit("/servers/coop-2/power", &[("state", "running")]);
    assert_eq!(reply.status, 303, "{}", reply.body);
    let changed = app.head();
    assert_ne!(app.show("main:servers/coop-2.yaml"), before);
    let page = alice.get(&format!("/history/{changed}"));
    assert!(page.body.contains("Start coop-2") && page.body.contains("state: running"), "{}", page.body);
    let history = alice.get("/history");
    assert!(history.body.contains("Start coop-2") && history.body.contains("seed"), "{}", history.body);

    // bob may not undo alice's work.
    let mut bob = app.signed_in("bob");
    assert_eq!(bob.submit(&format!("/history/{changed}/revert"), &[]).status, 404);
    assert_eq!(app.head(), changed);

    let reverted = alice.submit(&format!("/history/{changed}/revert"), &[]);
    assert_eq!(reverted.status, 303, "{}", reverted.body);
    assert_eq!(app.show("main:servers/coop-2.yaml"), before);
    let subject = git_out(&app.repo(), &["log", "-1", "--format=%s|%an|%P"]);
    assert_eq!(subject.trim(), format!("Revert \"Start coop-2\"|alice|{changed}"));
}

#[test]
fn a_password_change_ends_the_users_other_sessions() {
    let app = TestApp::start();
    let mut here = app.signed_in("alice");
    let mut elsewhere = app.signed_in("alice");
    let short = here.submit("/account", &[("current", PASSWORD), ("new", "short"), ("repeat", "short")]);
    assert_eq!(short.status, 422);
    assert_eq!(elsewhere.get("/").status, 200, "a refused change ends nothing");
    let new = "a much better passphrase";
    let changed = here.submit("/account", &[("current", PASSWORD), ("new", new), ("repeat", new)]);
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(here.get("/").status, 200, "this session goes on");
    assert_eq!(elsewhere.get("/").status, 303, "the other session ended");
    let mut again = app.client();
    assert_eq!(again.post("/login", &[("name", "alice"), ("password", new)]).status, 303);
}

#[test]
fn admins_add_disable_and_reset_users() {
    let app = TestApp::start();
    let mut ada = app.signed_in("ada");
    let added = ada.submit("/users", &[("name", "carol"), ("email", "carol@example.org"), ("password", PASSWORD)]);
    assert_eq!(added.status, 303, "{}", added.body);
    let taken = ada.submit("/users", &[("name", "carol"), ("password", PASSWORD)]);
    assert_eq!(taken.status, 422);
    assert!(taken.body.contains("exists already"), "{}", taken.body);
    let bad = ada.submit("/users", &[("name", "Carol!"), ("password", PASSWORD)]);
    assert_eq!(bad.status, 422);
    let mut carol = app.signed_in("carol");
    assert_eq!(carol.get("/").status, 200);
    assert_eq!(ada.submit("/users/carol/disable", &[]).status, 303);
    assert_eq!(carol.get("/").status, 303, "disabling ends the sessions");
    assert_eq!(app.client().post("/login", &[("name", "carol"), ("password", PASSWORD)]).status, 401);
    assert_eq!(ada.submit("/users/carol/enable", &[]).status, 303);
    assert_eq!(ada.submit("/users/carol/reset", &[("password", "a new one for carol")]).status, 303);
    assert_eq!(app.client().post("/login", &[("name", "carol"), ("password", PASSWORD)]).status, 401);
    assert_eq!(app.client().post("/login", &[("name", "carol"), ("password", "a new one for carol")]).status, 303);
}

#[test]
fn health_and_metrics_answer_for_monitoring() {
    let app = TestApp::start();
    let mut client = app.client();
    let health = client.get("/health");
    assert_eq!(health.status, 200, "{}", health.body);
    let value: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(value["status"], "ok");
    assert_eq!(value["problem"], "the host cannot be looked at", "the missing host is said, in general words: {value}");
    let mut ada = app.signed_in("ada");
    let value: serde_json::Value = serde_json::from_str(&ada.get("/health").body).unwrap();
    assert_eq!(value["problem"], "the host cannot be looked at", "/health tells no host paths: {value}");
    assert!(
        unescape(&ada.get("/").body).contains("/nonexistent/l4d2ctl"),
        "a signed-in admin reads why on the dashboard"
    );
    let metrics = client.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("left4me_servers{sync=\"OutOfSync\"} 3"), "{}", metrics.body);
    assert!(metrics.body.contains("left4me_servers_health{health=\"Unknown\"} 3"), "{}", metrics.body);
    assert!(metrics.body.contains("left4me_revision_valid 1"), "{}", metrics.body);
}

#[test]
fn jobs_are_listed_and_followed_only_by_whom_they_concern() {
    let app = TestApp::start();
    let db = reconciler::db::Db::open(&app.root.path().join("left4me.db")).unwrap();
    let mine = db.create_job("start", "coop-1", Some(&app.head()), "commit").unwrap();
    db.start_job(mine).unwrap();
    db.append_line(mine, "stdout", "coop-1 <started> on 27015").unwrap();
    let theirs = db.create_job("start", "versus-1", Some(&app.head()), "commit").unwrap();
    db.append_line(theirs, "stdout", "versus-1 started").unwrap();
    db.finish_job(theirs, 0).unwrap();

    let mut alice = app.signed_in("alice");
    let list = alice.get("/jobs");
    assert!(
        list.body.contains(&format!("/jobs/{mine}")) && !list.body.contains(&format!("/jobs/{theirs}\"")),
        "{}",
        list.body
    );
    let filtered = alice.get("/jobs?state=succeeded");
    assert!(!filtered.body.contains(&format!("/jobs/{mine}\"")), "{}", filtered.body);
    let page = alice.get(&format!("/jobs/{mine}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("coop-1 &lt;started&gt; on 27015"), "job lines are escaped: {}", page.body);
    assert_eq!(alice.get(&format!("/jobs/{theirs}")).status, 404);
    assert_eq!(alice.get(&format!("/jobs/{theirs}/log")).status, 404);

    // The live log sends what comes after the page, then says when the job ends.
    let (tx, rx) = std::sync::mpsc::channel();
    let url = app.url(&format!("/jobs/{mine}/log?after=1"));
    let cookie = alice.cookie.clone().unwrap();
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(url).header("Cookie", cookie).call().unwrap();
        tx.send(response.body_mut().read_to_string().unwrap()).unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    db.append_line(mine, "stderr", "a later line").unwrap();
    db.finish_job(mine, 1).unwrap();
    let stream = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the stream ends with the job");
    assert!(stream.contains("event: line") && stream.contains("a later line"), "{stream}");
    assert!(!stream.contains("&lt;started&gt;"), "lines before `after` are not sent again: {stream}");
    assert!(stream.contains("event: done") && stream.contains("failed"), "{stream}");
}

#[test]
fn an_admin_edits_an_overlay_file_and_it_keeps_its_mode() {
    let app = TestApp::start();
    // A script overlay's recipe, committed executable, as git keeps a build.sh.
    let repo = app.repo();
    std::fs::create_dir_all(repo.join("overlays/installer")).unwrap();
    std::fs::write(
        repo.join("overlays/installer/overlay.yaml"),
        "apiVersion: left4me/v1\nkind: Overlay\nmetadata: {name: installer}\nspec: {type: script}\n",
    )
    .unwrap();
    std::fs::write(repo.join("overlays/installer/build.sh"), "curl --max-time 120 -O https://example.org/x\n").unwrap();
    git(&repo, &["add", "overlays/installer"]);
    git(&repo, &["update-index", "--chmod=+x", "overlays/installer/build.sh"]);
    git(&repo, &["commit", "--quiet", "--message", "an installer"]);
    app.wait_seen();
    let mut ada = app.signed_in("ada");
    let path = "overlays/installer/build.sh";
    let before = git_out(&app.repo(), &["ls-tree", "main", "--", path]);
    assert!(before.starts_with("100755"), "{before}");
    let editor = ada.get(&format!("/edit?path={path}"));
    assert_eq!(editor.status, 200);
    let content = app.show(&format!("main:{path}")).replace("--max-time 120", "--max-time 60");
    let preview = ada.submit("/edit", &[("path", path), ("content", &content), ("base", &app.head())]);
    assert_eq!(preview.status, 200, "{}", preview.body);
    let fields = hidden_fields(&preview.body);
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(ada.post("/commit", &form).status, 303);
    let after = git_out(&app.repo(), &["ls-tree", "main", "--", path]);
    assert!(after.starts_with("100755"), "the recipe stays executable: {after}");
    assert!(app.show(&format!("main:{path}")).contains("--max-time 60"));
}
