//! The save path under attack: YAML bombs, owners YAML reads as other types, oversized and
//! repeated files, message bombs, paths git cannot hold, existence probes, and git stopped
//! mid-save. Each is refused with a clear answer, changes nothing, and costs the app little.

use crate::support::{
    Client, HealthWatch, MAX_RSS_KIB, Reply, TestApp, hidden_fields, peak_rss_kib, reset_peak_rss, unescape,
};

/// A blueprint file of `name` whose `metadata.owner` line is `owner` (None: no owner line).
fn blueprint(name: &str, owner: Option<&str>) -> String {
    let owner = owner.map(|o| format!("  owner: {o}\n")).unwrap_or_default();
    format!(
        "apiVersion: left4me/v1\nkind: Blueprint\nmetadata:\n  name: {name}\n{owner}spec:\n  overlays: []\n  \
         arguments: [\"+map\", \"c1m1_hotel\"]\n  config: []\n"
    )
}

/// Previews a raw-editor save of one file.
fn edit(client: &mut Client, app: &TestApp, path: &str, content: &str) -> Reply {
    client.submit("/edit", &[("path", path), ("content", content), ("base", &app.head())])
}

/// Posts a confirmation straight to /commit, as a crafted request would.
fn commit(client: &mut Client, app: &TestApp, path: &str, content: &str, message: &str) -> Reply {
    client.submit("/commit", &[("base", &app.head()), ("message", message), ("path", path), ("content", content)])
}

/// Checks what every answer of the save path keeps to: no path of the host in it.
fn no_host_path(app: &TestApp, reply: &Reply) {
    let root = app.root.path().to_string_lossy().into_owned();
    assert!(!reply.body.contains(&root), "an answer shows a path of the host ({root}): {}", reply.body);
}

/// YAML that aliases expand beyond any bound, in the shapes a reader takes them.
fn alias_bombs() -> Vec<(&'static str, String)> {
    let long = "x".repeat(1024 * 1024);
    let mut laughs = String::from("l0: &l0 \"lol\"\n");
    for level in 1..10 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        laughs.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
    }
    vec![
        ("a 1 MB string referenced 4,000 times", format!("s: &s \"{long}\"\nrefs: [{}]\n", vec!["*s"; 4000].join(","))),
        ("billion laughs", laughs),
        ("an anchor in a key", "? &k [a, b]\n: one\nother: {*k : two}\n".to_owned()),
        (
            "a merge key",
            "base: &b {name: bomb, owner: bob}\napiVersion: left4me/v1\nkind: Server\nmetadata:\n  <<: *b\n".to_owned(),
        ),
        (
            "an owner aliased to the name",
            "apiVersion: left4me/v1\nkind: Server\nmetadata: {name: &n bob, owner: *n}\nspec: {blueprint: versus, port: 27031}\n"
                .to_owned(),
        ),
        ("nested aliases", "a: &a [x]\nb: &b [*a, *a]\nc: [*b, *b]\n".to_owned()),
    ]
}

/// Every alias bomb, as a raw-editor save and as a crafted /commit: refused before any reader
/// expands it, with the reader's reason — or, for an admin (whose save has no owner to check),
/// for its size where it is over the limit of a file.
fn attack_with_aliases(app: &TestApp, client: &mut Client, admin: bool) {
    for (what, bomb) in alias_bombs() {
        for reply in
            [edit(client, app, "servers/bomb.yaml", &bomb), commit(client, app, "servers/bomb.yaml", &bomb, "bomb")]
        {
            assert_eq!(reply.status, 422, "{what}: {}", reply.body);
            let body = unescape(&reply.body);
            let too_large = admin
                && body.contains("servers/bomb.yaml: file is 1.0 MiB; a file in the state repo may be at most 1 MiB");
            assert!(too_large || body.contains("YAML aliases (*name) are not supported"), "{what}: {body}");
            no_host_path(app, &reply);
        }
    }
}

/// Scalar owners of every YAML type, as each reads: a name that is not the user's is refused
/// with the name validation would read; an owner that is no name at all is refused as invalid.
const OTHER_NAMES: &[(&str, &str)] = &[
    ("1337", "1337"),
    ("0x1f", "0x1f"),
    ("0o17", "0o17"),
    ("017", "017"),
    ("0b101", "0b101"),
    ("1_000", "1_000"),
    ("1e3", "1e3"),
    ("0", "0"),
    ("true", "true"),
    ("false", "false"),
    ("yes", "yes"),
    ("no", "no"),
    ("on", "on"),
    ("off", "off"),
    ("y", "y"),
    ("n", "n"),
    ("null", "null"),
    ("!!str 1337", "1337"),
    ("!!str true", "true"),
    ("\"1337\"", "1337"),
    ("\"null\"", "null"),
    ("bob", "bob"),
    ("\"bob\"", "bob"),
    ("'bob'", "bob"),
    ("!!str bob", "bob"),
    ("\"b\\x6fb\"", "bob"),
];

/// Owners that are no name (floats, signs, capitals, null, collections) or no owner at all.
const NOT_NAMES: &[&str] = &[
    "~",
    "",
    ".inf",
    "-.inf",
    "+.inf",
    ".Inf",
    ".nan",
    ".NaN",
    "1.5",
    "-1",
    "+1",
    "True",
    "TRUE",
    "False",
    "NULL",
    "Null",
    "Yes",
    "ON",
    "0x1F",
    "[alice]",
    "{name: alice}",
    "\"alice \"",
    "|\n    alice",
];

/// The user's own name, however YAML spells it.
const OWN_NAME: &[&str] = &["alice", "\"alice\"", "'alice'", "!!str alice", ">-\n    alice", "\"al\\x69ce\""];

fn attack_with_owners(app: &TestApp, alice: &mut Client) {
    for (written, read) in OTHER_NAMES {
        let reply = edit(alice, app, "blueprints/gift.yaml", &blueprint("gift", Some(written)));
        assert_eq!(reply.status, 403, "owner: {written}: {}", reply.body);
        let body = unescape(&reply.body);
        assert!(
            body.contains(&format!("metadata.owner is \"{read}\"; what you save must be owned by you (alice)")),
            "owner: {written}: {body}"
        );
    }
    for written in NOT_NAMES {
        let reply = edit(alice, app, "blueprints/gift.yaml", &blueprint("gift", Some(written)));
        assert!(matches!(reply.status, 403 | 422), "owner: {written}: {}", reply.body);
        assert!(unescape(&reply.body).contains("metadata.owner"), "owner: {written}: {}", reply.body);
        no_host_path(app, &reply);
    }
    let unowned = [
        blueprint("gift", None),
        "apiVersion: left4me/v1\nkind: Blueprint\nspec: {overlays: []}\n".to_owned(),
        "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: null\nspec: {overlays: []}\n".to_owned(),
        "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: [gift]\nspec: {overlays: []}\n".to_owned(),
        "apiVersion: left4me/v1\nkind: Blueprint\nmetadata:\n  name: gift\n  owner: alice\n  owner: bob\n".to_owned(),
    ];
    for document in unowned {
        let reply = edit(alice, app, "blueprints/gift.yaml", &document);
        assert!(matches!(reply.status, 403 | 422), "{document}: {}", reply.body);
        assert!(unescape(&reply.body).contains("metadata"), "{document}: {}", reply.body);
    }
    for written in OWN_NAME {
        let reply = edit(alice, app, "blueprints/gift.yaml", &blueprint("gift", Some(written)));
        assert_eq!(reply.status, 200, "owner: {written}: {}", reply.body);
        assert!(reply.body.contains("Review the change"), "owner: {written}: {}", reply.body);
    }
}

/// Bodies past the app's limit, lists of files past a save's, a file past the state repo's.
fn attack_with_sizes(app: &TestApp, ada: &mut Client, alice: &mut Client) {
    // The app stops reading a body at 4 MiB and answers 413; a client still sending may see
    // the connection closed before it reads the answer. Either way nothing is saved.
    let five_mb = "x".repeat(5 * 1024 * 1024);
    let head = app.head();
    let form = [("base", head.as_str()), ("path", "servers/big.yaml"), ("content", five_mb.as_str())];
    if let Some(reply) = ada.try_submit("/commit", &form) {
        assert_eq!(reply.status, 413, "{}", reply.body);
    }

    // 1,000 times the files a save may list.
    let paths: Vec<String> = (0..64_000).map(|i| format!("servers/s{i}.yaml")).collect();
    let mut form: Vec<(&str, &str)> = vec![("base", &head)];
    form.extend(paths.iter().map(|p| ("path", p.as_str())));
    let reply = ada.submit("/commit", &form);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(reply.body.contains("this save lists 64000 files; a save changes at most 64"), "{}", reply.body);

    let padding = format!("# {}\n", "x".repeat(1536 * 1024));
    let big = format!("{padding}{}", blueprint("gift", Some("alice")));
    for reply in
        [edit(alice, app, "blueprints/gift.yaml", &big), commit(alice, app, "blueprints/gift.yaml", &big, "big")]
    {
        assert_eq!(reply.status, 422, "{}", reply.body);
        assert!(
            unescape(&reply.body)
                .contains("blueprints/gift.yaml: file is 1.5 MiB; a file in the state repo may be at most 1 MiB"),
            "{}",
            reply.body
        );
    }
}

/// Commit messages that are huge, carry NUL or other control characters, or CR LF.
fn attack_with_messages(app: &TestApp, alice: &mut Client) {
    let gift = blueprint("gift", Some("alice"));
    let huge = "m".repeat(3 * 1024 * 1024);
    let cases = [
        (huge.as_str(), "the commit message is 3145728 bytes; at most 4096 are kept"),
        ("a\0b", "the commit message holds the control character U+0000; write it as plain text"),
        ("fake\x1e0000000000000000000000000000000000000000\0mallory", "control character U+001E"),
        ("colour \x1b[31mred", "control character U+001B"),
        ("line\rover", "control character U+000D"),
        ("bell\x07", "control character U+0007"),
    ];
    for (message, why) in cases {
        let reply = commit(alice, app, "blueprints/gift.yaml", &gift, message);
        assert_eq!(reply.status, 422, "{why}: {}", reply.body);
        assert!(unescape(&reply.body).contains(why), "{why}: {}", reply.body);
        no_host_path(app, &reply);
    }
}

#[test]
fn an_alias_bomb_is_refused_before_anything_expands() {
    let app = TestApp::start();
    let commits = app.commits();
    let (mut bob, mut ada) = (app.signed_in("bob"), app.signed_in("ada"));
    reset_peak_rss();
    attack_with_aliases(&app, &mut bob, false);
    // An admin's save is checked by the same reader.
    attack_with_aliases(&app, &mut ada, true);
    assert_eq!(app.commits(), commits, "nothing was committed");
    assert!(peak_rss_kib() < MAX_RSS_KIB, "the app grew to {} KiB", peak_rss_kib());
}

#[test]
fn the_web_reads_yaml_only_through_the_state_crate() {
    // Without a YAML reader of its own, the web crate cannot parse user text but through the
    // state crate's bounded parse_yaml.
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    for reader in ["serde_norway", "libyaml", "serde_yaml", "serde_yml", "yaml-rust", "saphyr"] {
        assert!(!manifest.contains(reader), "web/Cargo.toml depends on {reader}");
    }
    // Every source file, in the folders of the crate's modules too.
    let mut folders = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("serde_norway"), "{} names serde_norway", path.display());
        }
    }
}

#[test]
fn a_save_whose_owner_is_not_the_user_is_refused_whatever_yaml_reads_it_as() {
    let app = TestApp::start();
    let commits = app.commits();
    let mut alice = app.signed_in("alice");
    attack_with_owners(&app, &mut alice);
    assert_eq!(app.commits(), commits, "nothing was committed");
    // The user's own name, quoted, is the user's: the save is committed.
    let mine = blueprint("gift", Some("\"alice\""));
    let preview = edit(&mut alice, &app, "blueprints/gift.yaml", &mine);
    let fields = hidden_fields(&preview.body);
    let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(alice.post("/commit", &form).status, 303);
    assert_eq!(app.commits(), commits + 1);
    let checked = left4me_state::load_revision(&app.repo(), "main").unwrap().1.unwrap();
    assert_eq!(checked.blueprints.get("gift").map(|b| b.owner.as_str()), Some("alice"));
}

#[test]
fn a_save_lists_a_bounded_number_of_files() {
    let app = TestApp::start();
    let commits = app.commits();
    let mut ada = app.signed_in("ada");
    let head = app.head();
    let cfg = |i: usize| format!("overlays/tickrate/files/left4dead2/cfg/extra-{i}.cfg");
    let paths: Vec<String> = (0..65).map(cfg).collect();
    let mut form: Vec<(&str, &str)> = vec![("base", &head), ("message", "many")];
    for path in &paths {
        form.extend([("path", path.as_str()), ("content", "sv_cheats 0\n")]);
    }
    let reply = ada.submit("/commit", &form);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(reply.body.contains("this save lists 65 files; a save changes at most 64"), "{}", reply.body);
    assert_eq!(app.commits(), commits);
    // At the bound, the save is one commit of every file.
    form.truncate(2 + 2 * 64);
    let reply = ada.submit("/commit", &form);
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(app.commits(), commits + 1);
    let changed = crate::support::git_out(&app.repo(), &["diff-tree", "-r", "--name-only", "--no-commit-id", "main"]);
    assert_eq!(changed.lines().count(), 64, "{changed}");
    assert_eq!(app.show(&format!("main:{}", cfg(63))), "sv_cheats 0\n");
}

#[test]
fn the_same_path_twice_in_one_save_is_refused() {
    let app = TestApp::start();
    let commits = app.commits();
    let mut alice = app.signed_in("alice");
    let coop = app.show("main:servers/coop-1.yaml");
    let head = app.head();
    let reply = alice.submit(
        "/commit",
        &[
            ("base", &head),
            ("path", "servers/coop-1.yaml"),
            ("content", &coop.replace("alice's coop", "first")),
            ("path", "servers/coop-1.yaml"),
            ("content", &coop),
        ],
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(unescape(&reply.body).contains("\"servers/coop-1.yaml\" is listed twice in one save"), "{}", reply.body);
    assert_eq!(app.commits(), commits, "no commit, not even an empty one");
}

#[test]
fn commit_messages_are_bounded_and_plain_text() {
    let app = TestApp::start();
    let commits = app.commits();
    let mut alice = app.signed_in("alice");
    attack_with_messages(&app, &mut alice);
    assert_eq!(app.commits(), commits, "nothing was committed");
    // CR LF from a browser is kept as LF; a message at the bound is kept whole.
    let gift = blueprint("gift", Some("alice"));
    let reply = commit(&mut alice, &app, "blueprints/gift.yaml", &gift, "Add gift\r\n\r\nFor the weekend.\r\n");
    assert_eq!(reply.status, 303, "{}", reply.body);
    let message = crate::support::git_out(&app.repo(), &["log", "-1", "--format=%B"]);
    assert_eq!(message.trim_end(), "Add gift\n\nFor the weekend.");
    let longest = "m".repeat(web_bounds::MESSAGE);
    let gift = gift.replace("c1m1_hotel", "c2m1_highway");
    assert_eq!(commit(&mut alice, &app, "blueprints/gift.yaml", &gift, &longest).status, 303);
    assert_eq!(crate::support::git_out(&app.repo(), &["log", "-1", "--format=%B"]).trim_end(), longest);
}

mod web_bounds {
    pub const MESSAGE: usize = 4096;
}

#[test]
fn a_path_git_cannot_hold_is_refused_and_changes_nothing() {
    let app = TestApp::start();
    let commits = app.commits();
    let mut ada = app.signed_in("ada");
    for path in ["overlays/tickrate/files/left4dead2/cfg/server.cfg/x", "servers/coop-1.yaml/x"] {
        let file = path.trim_end_matches("/x");
        for reply in [edit(&mut ada, &app, path, "x\n"), commit(&mut ada, &app, path, "x\n", "under a file")] {
            assert_eq!(reply.status, 422, "{path}: {}", reply.body);
            assert!(
                unescape(&reply.body)
                    .contains(&format!("{path}: cannot be saved: {file} is a file, so it cannot also be a folder")),
                "{path}: {}",
                reply.body
            );
            no_host_path(&app, &reply);
        }
    }
    for path in [
        "overlays/tickrate/files/../../../x",
        "/etc/passwd",
        "overlays/tickrate/files//x",
        "overlays/tickrate/.git/config",
        "overlays/tickrate/files/.git/hooks/pre-commit",
        "servers/",
        "",
    ] {
        let reply = commit(&mut ada, &app, path, "x\n", "bad path");
        assert!(matches!(reply.status, 403 | 422), "{path:?}: {}", reply.body);
        assert!(
            unescape(&reply.body).contains("is not a file of the state repo's resources"),
            "{path:?}: {}",
            reply.body
        );
    }
    assert_eq!(app.commits(), commits, "nothing was committed");
}

#[test]
fn another_users_object_answers_exactly_as_a_missing_one() {
    let app = TestApp::start();
    let mut bob = app.signed_in("bob");
    let head = app.head();
    let server_form = [("blueprint", "versus"), ("port", "27031"), ("state", "running"), ("base", head.as_str())];
    let pairs = [
        ("/servers/coop-1/edit", "/servers/no-such/edit", &server_form[..]),
        (
            "/blueprints/coop/edit",
            "/blueprints/no-such/edit",
            &[("config", "sv_cheats 0"), ("base", head.as_str())][..],
        ),
    ];
    for (theirs, missing, form) in pairs {
        let (theirs_reply, missing_reply) = (bob.submit(theirs, form), bob.submit(missing, form));
        assert_eq!((theirs_reply.status, &theirs_reply.body), (missing_reply.status, &missing_reply.body), "{theirs}");
        assert_eq!(theirs_reply.status, 404);
    }
    for (theirs, missing) in [
        ("/edit?path=servers/coop-1.yaml", "/edit?path=servers/no-such.yaml"),
        ("/edit?path=blueprints/coop.yaml", "/edit?path=blueprints/no-such.yaml"),
    ] {
        let (theirs_reply, missing_reply) = (bob.get(theirs), bob.get(missing));
        assert_eq!((theirs_reply.status, &theirs_reply.body), (missing_reply.status, &missing_reply.body), "{theirs}");
    }
    // A server of bob's on alice's blueprint is told what one on no blueprint is told.
    let new_server = |blueprint: &'static str| {
        [("name", "probe"), ("blueprint", blueprint), ("port", "27031"), ("state", "running"), ("base", head.as_str())]
    };
    let theirs = unescape(&bob.submit("/servers/new", &new_server("coop")).body);
    let missing = unescape(&bob.submit("/servers/new", &new_server("no-such")).body);
    assert!(theirs.contains("spec.blueprint: blueprint coop does not exist; blueprints of bob: versus"), "{theirs}");
    assert!(!theirs.contains("alice") && !theirs.contains("belongs to"), "{theirs}");
    assert_eq!(theirs.replace("coop", "no-such"), missing);
}

#[test]
fn an_alias_carrying_a_reserved_cvar_is_refused_with_why() {
    let app = TestApp::start();
    let commits = app.commits();
    let mut alice = app.signed_in("alice");
    let head = app.head();
    for (line, setting) in [
        ("alias x \"rcon_password hunter2\"; x", "rcon_password"),
        ("alias p \"echo hi; hostport 27099\"", "hostport"),
        ("alias n alias m hostname evil", "hostname"),
    ] {
        let reply = alice.submit(
            "/blueprints/new",
            &[("name", "sneaky"), ("config", line), ("arguments", "+map\nc1m1_hotel"), ("base", &head)],
        );
        assert_eq!(reply.status, 422, "{line}: {}", reply.body);
        let body = unescape(&reply.body);
        assert!(body.contains("config line defines alias"), "{line}: {body}");
        assert!(body.contains(&format!("config line setting {setting} is not allowed")), "{line}: {body}");
    }
    assert_eq!(app.commits(), commits, "nothing was committed");
}

#[test]
fn the_attack_corpus_keeps_the_app_small_and_answering() {
    let app = TestApp::start();
    let commits = app.commits();
    let head = app.head();
    let (mut alice, mut bob, mut ada) = (app.signed_in("alice"), app.signed_in("bob"), app.signed_in("ada"));
    reset_peak_rss();
    let watch = HealthWatch::start(&app);
    attack_with_aliases(&app, &mut bob, false);
    attack_with_owners(&app, &mut alice);
    attack_with_sizes(&app, &mut ada, &mut alice);
    attack_with_messages(&app, &mut alice);
    watch.finish();
    assert_eq!((app.commits(), app.head()), (commits, head), "nothing was committed");
    let peak = peak_rss_kib();
    assert!(peak < MAX_RSS_KIB, "the app grew to {peak} KiB under attack, more than {MAX_RSS_KIB} KiB");
    // And it still saves.
    let reply = alice.submit("/servers/coop-2/power", &[("state", "running")]);
    assert_eq!(reply.status, 303, "{}", reply.body);
}

#[test]
fn a_git_stopped_mid_save_is_said_and_commits_nothing() {
    use std::os::unix::fs::PermissionsExt;

    let app = TestApp::start();
    let (commits, head) = (app.commits(), app.head());
    let work = tempfile::tempdir().unwrap();
    let (fifo, pid_file, once) = (work.path().join("go"), work.path().join("pid"), work.path().join("once"));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // The repo's own hook holds the branch's update (its lock taken) until the test lets go, once.
    let hook = app.repo().join(".git/hooks/reference-transaction");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n[ \"$1\" = prepared ] || exit 0\n[ -e {once} ] && exit 0\nexec >/dev/null 2>&1\ntouch {once}\n\
             echo $PPID > {pid}.tmp && mv {pid}.tmp {pid}\nread line < {fifo}\n",
            once = once.display(),
            pid = pid_file.display(),
            fifo = fifo.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut alice = app.signed_in("alice");
    alice.get("/");
    let coop = app.show("main:servers/coop-2.yaml").replace("alice's coop #2", "renamed");
    let url_head = head.clone();
    let mut saver = alice.clone();
    let save = std::thread::spawn(move || {
        saver.submit(
            "/commit",
            &[("base", &url_head), ("message", "Rename"), ("path", "servers/coop-2.yaml"), ("content", &coop)],
        )
    });
    // The git that moves the branch is a child of this process (the app): stop it as a
    // restart of the service would.
    let mut git = None;
    for _ in 0..1000 {
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            git = Some(pid.trim().parse::<i32>().unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let git = git.expect("the save reached the branch's update");
    let children = children_of_this_process();
    assert!(children.contains(&git), "git {git} is not among the app's children {children:?}");
    let command = std::fs::read(format!("/proc/{git}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&command).contains("update-ref"), "{}", String::from_utf8_lossy(&command));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(git), nix::sys::signal::Signal::SIGTERM).unwrap();
    // Let the hook go (it outlives the git that ran it).
    std::fs::write(&fifo, "go\n").unwrap();

    let reply = save.join().unwrap();
    assert_eq!(reply.status, 503, "{}", reply.body);
    let body = unescape(&reply.body);
    assert!(
        body.contains(
            "the save was interrupted: git was stopped by a signal (SIGTERM); nothing was committed — try again"
        ),
        "{body}"
    );
    no_host_path(&app, &reply);
    assert_eq!((app.commits(), app.head()), (commits, head.clone()), "the branch did not move");
    assert!(!app.repo().join(".git/refs/heads/main.lock").exists(), "no lock is left behind");
    // Trying again saves.
    let coop = app.show("main:servers/coop-2.yaml").replace("alice's coop #2", "renamed");
    let again = alice.submit(
        "/commit",
        &[("base", &head), ("message", "Rename"), ("path", "servers/coop-2.yaml"), ("content", &coop)],
    );
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(app.commits(), commits + 1);
}

/// The PIDs of this process's children, from /proc.
fn children_of_this_process() -> Vec<i32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            children.extend(text.split_whitespace().filter_map(|pid| pid.parse::<i32>().ok()));
        }
    }
    children
}

#[test]
fn a_branch_git_cannot_move_is_said_without_the_hosts_paths() {
    let app = TestApp::start();
    let (commits, head) = (app.commits(), app.head());
    // What a git killed outright (SIGKILL) while moving the branch leaves behind.
    let lock = app.repo().join(".git/refs/heads/main.lock");
    std::fs::write(&lock, format!("{head}\n")).unwrap();
    let mut alice = app.signed_in("alice");
    let coop = app.show("main:servers/coop-2.yaml").replace("alice's coop #2", "renamed");
    let reply = commit(&mut alice, &app, "servers/coop-2.yaml", &coop, "Rename");
    assert_eq!(reply.status, 500, "{}", reply.body);
    let body = unescape(&reply.body);
    assert!(body.contains("git update-ref failed on the state repo; nothing was committed"), "{body}");
    no_host_path(&app, &reply);
    assert_eq!((app.commits(), app.head()), (commits, head));
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(commit(&mut alice, &app, "servers/coop-2.yaml", &coop, "Rename").status, 303);
}

/// A schedule of `owner`'s named `name`, restarting `server` daily.
fn schedule(name: &str, owner: &str, server: &str) -> String {
    format!(
        "apiVersion: left4me/v1\nkind: Schedule\nmetadata: {{name: {name}, owner: {owner}}}\nspec:\n  servers: [{server}]\n  \
         at: daily\n  action: restart\n"
    )
}

#[test]
fn a_user_saves_only_schedules_of_their_own_servers_and_no_alert() {
    let app = TestApp::start();
    let commits = app.commits();
    let mut bob = app.signed_in("bob");
    let alert = "apiVersion: left4me/v1\nkind: Alert\nmetadata: {name: mine}\nspec:\n  provider: webhook\n  \
                 secretRef: MINE\n  events: [job-failed]\n";
    for reply in
        [edit(&mut bob, &app, "alerts/mine.yaml", alert), commit(&mut bob, &app, "alerts/mine.yaml", alert, "mine")]
    {
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert!(unescape(&reply.body).contains("only admins change overlays, alerts"), "{}", reply.body);
    }
    // Owned by another: refused as any object given away is.
    let gift = schedule("gift", "alice", "coop-1");
    let reply = edit(&mut bob, &app, "schedules/gift.yaml", &gift);
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(unescape(&reply.body).contains("metadata.owner is \"alice\"; what you save must be owned by you (bob)"));
    // Alice's own schedule answers as a missing one does.
    let (theirs, missing) =
        (bob.get("/edit?path=schedules/nightly.yaml"), bob.get("/edit?path=schedules/no-such.yaml"));
    assert_eq!((theirs.status, &theirs.body), (missing.status, &missing.body));
    // Bob's schedule of alice's server is refused by validation, exactly as one of no server.
    let mut answers = Vec::new();
    for server in ["coop-1", "no-such"] {
        let document = schedule("probe", "bob", server);
        for reply in [
            edit(&mut bob, &app, "schedules/probe.yaml", &document),
            commit(&mut bob, &app, "schedules/probe.yaml", &document, "probe"),
        ] {
            assert_eq!(reply.status, 422, "{server}: {}", reply.body);
            no_host_path(&app, &reply);
            answers.push(unescape(&reply.body).replace(server, "SERVER"));
        }
    }
    assert!(
        answers[0].contains("spec.servers[0]: server SERVER does not exist; servers of bob: versus-1"),
        "{}",
        answers[0]
    );
    assert!(!answers[0].contains("alice"), "{}", answers[0]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[1], answers[3]);
    assert_eq!(app.commits(), commits, "nothing was committed");
    // Bob's schedule of his own server is his to save.
    let preview = edit(&mut bob, &app, "schedules/mine.yaml", &schedule("mine", "bob", "versus-1"));
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(preview.body.contains("Review the change"), "{}", preview.body);
}
