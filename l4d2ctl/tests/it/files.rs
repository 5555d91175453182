//! `l4d2ctl files` on a real host: a running server's merged tree over a real overlayfs mount —
//! a base file the game deleted (a whiteout), a base folder it replaced (an opaque folder) — read
//! as root and as the game's user, the web app's, with the layer of each entry; and what the game
//! plants in its upper layer (symlinks out, a FIFO) read through nothing.

use std::fs;

use crate::support::{Host, ROOT, text};

/// coop-1's tree where its game sees it, in its own namespace.
const MERGED: &str = "/var/lib/left4me/runtime/coop-1/merged";

/// Runs `script` as coop-1's running game, in its namespaces, where its tree is at [`MERGED`].
fn in_game(host: &Host, script: &str) {
    let out = host.as_game("coop-1", script);
    assert!(out.status.success(), "as coop-1's game, `{script}` failed: {}", text(&out.stderr));
}

/// `l4d2ctl files coop-1 <args> --json`, as root or as the game's user.
fn files(host: &Host, as_game: bool, args: &[&str]) -> std::process::Output {
    let mut argv = vec!["--reuid=left4me", "--regid=left4me", "--init-groups", "l4d2ctl", "files", "coop-1"];
    if !as_game {
        argv.drain(..3);
    }
    argv.extend(args);
    argv.push("--json");
    if as_game { host.run("setpriv", &argv) } else { host.run(argv[0], &argv[1..]) }
}

/// Each entry of a folder: its name, kind, layer and link target.
type Entry = (String, String, String, Option<String>);

fn listing(host: &Host, as_game: bool, path: &str) -> Vec<Entry> {
    let out = files(host, as_game, &[path]);
    assert!(out.status.success(), "files {path}: {}", text(&out.stderr));
    let listing: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    let field = |e: &serde_json::Value, key: &str| e[key].as_str().map(str::to_owned);
    let entries = listing["entries"].as_array().unwrap().iter();
    entries
        .map(|e| (field(e, "name").unwrap(), field(e, "kind").unwrap(), field(e, "layer").unwrap(), field(e, "target")))
        .collect()
}

fn names(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|(name, ..)| name.as_str()).collect()
}

#[test]
fn files_shows_the_merge_the_game_sees_and_reads_nothing_the_game_planted() {
    let host = Host::installed();
    let game_json: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(&["game", "--json"])).unwrap();
    let build = game_json["installed"][0].clone();
    let base = host.root_path(&format!("{ROOT}/builds/{build}/left4dead2"));
    fs::write(base.join("gone.txt"), "from the base\n").unwrap();
    fs::create_dir_all(base.join("maps-old")).unwrap();
    fs::write(base.join("maps-old/a.txt"), "a\n").unwrap();
    host.start_example("coop-1");
    let merged = host.sandbox.game_tree("coop-1");
    host.ok(
        "sh",
        &[
            "-c",
            &format!(
                "set -e; cd {merged}/left4dead2; mkdir logs; chown left4me:left4me logs; rm gone.txt; \
                 rm -r maps-old; mkdir maps-old; echo new > maps-old/b.txt"
            ),
        ],
    );
    in_game(
        &host,
        &format!(
            "set -e; cd {MERGED}/left4dead2/logs; echo 'L 12/01/2026' > L1201.log; ln -s /etc/shadow shadow; \
             ln -s ../../instances/coop-1/rcon_password password; ln -s /var/lib/left4me/instances up; mkfifo fifo"
        ),
    );
    let password = fs::read_to_string(host.root_path(&format!("{ROOT}/instances/coop-1/rcon_password"))).unwrap();

    for as_game in [false, true] {
        let top = listing(&host, as_game, "left4dead2");
        let layer = |name: &str| top.iter().find(|e| e.0 == name).map(|e| e.2.clone());
        assert!(!names(&top).contains(&"gone.txt"), "the game deleted it: {top:?}");
        assert_eq!(layer("cfg").as_deref(), Some("config"), "{top:?}");
        assert_eq!(layer("maps-old").as_deref(), Some("upper"), "{top:?}");
        assert_eq!(layer("logs").as_deref(), Some("upper"), "{top:?}");
        // The folder the game made again holds only its new file, for root, who reads the opaque
        // mark. The game's user (the web app) reads no such mark, and a running game's own tree
        // is in a user namespace of its own, closed to any other process of that user: it sees
        // the folder merged with the one below.
        let expected: &[&str] = if as_game { &["a.txt", "b.txt"] } else { &["b.txt"] };
        assert_eq!(names(&listing(&host, as_game, "left4dead2/maps-old")), expected, "as the game: {as_game}");
        let logs = listing(&host, as_game, "left4dead2/logs");
        let shadow = logs.iter().find(|e| e.0 == "shadow").unwrap();
        assert_eq!((shadow.1.as_str(), shadow.3.as_deref()), ("link", Some("/etc/shadow")));
        assert_eq!(logs.iter().find(|e| e.0 == "fifo").unwrap().1, "other");

        let cfg = files(&host, as_game, &["left4dead2/cfg/server.cfg", "--cat"]);
        let preview: serde_json::Value = serde_json::from_slice(&cfg.stdout).unwrap();
        let shown = preview["text"].as_str().unwrap();
        assert!(shown.contains("hostname") && !shown.contains(password.trim()), "{shown}");
        for planted in ["shadow", "password", "up/coop-1/rcon_password", "fifo"] {
            let out = files(&host, as_game, &[&format!("left4dead2/logs/{planted}"), "--cat"]);
            assert!(!out.status.success(), "{planted}: {}", text(&out.stdout));
            assert!(text(&out.stderr).contains("coop-1: left4dead2/logs/"), "{planted}: {}", text(&out.stderr));
            assert!(!text(&out.stdout).contains(password.trim()));
        }
    }
    for refused in ["..", "../instances", "left4dead2/../../instances", "/etc"] {
        let out = files(&host, false, &[refused]);
        assert!(!out.status.success() && text(&out.stderr).contains("is refused"), "{refused}: {}", text(&out.stderr));
    }
    let bad = host.l4d2ctl(&["files", "Not..A..Name"]);
    assert!(text(&bad.stderr).contains("invalid server name"), "{}", text(&bad.stderr));

    // Rendered anew while it runs, it still runs the config layer it started with.
    let server_cfg = |host: &Host| {
        let out = files(host, true, &["left4dead2/cfg/server.cfg", "--cat"]);
        let preview: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        preview["text"].as_str().unwrap().to_owned()
    };
    let running = server_cfg(&host);
    let mut spec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(host.example_spec("coop-1")).unwrap()).unwrap();
    spec["hostname"] = "coop-1 renamed".into();
    let renamed = host.write_spec("coop-1-renamed", &spec.to_string());
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &renamed]);
    assert_eq!(server_cfg(&host), running, "what the running game has");

    // Stopped, the merge is computed from the layers alone, and root still sees the opaque mark.
    host.l4d2ctl_ok(&["stop", "coop-1"]);
    assert!(server_cfg(&host).contains("hostname \"coop-1 renamed\""), "its next start's: {}", server_cfg(&host));
    assert_eq!(names(&listing(&host, false, "left4dead2/maps-old")), ["b.txt"]);
    assert!(!names(&listing(&host, false, "left4dead2")).contains(&"gone.txt"));
}
