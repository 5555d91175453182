//! Backups of what a server wrote itself, on a real host: taken from a running server, listed,
//! restored over changed data exactly, pruned, sent to and restored from a real restic
//! repository — and against what the game's user and a crafted file can do to them.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use l4d2ctl::api::{Backup, Message, Outcome};
use sha2::Digest as _;

use crate::support::{Host, ROOT, read_messages, text};

const UPPER: &str = "/var/lib/left4me/runtime/coop-1/upper";
const MERGED: &str = "/var/lib/left4me/runtime/coop-1/merged";
const FOLDER: &str = "/var/lib/left4me/backups/coop-1";

/// Every entry below `dir` as one line: its path, type, mode, owner, mtime, size and the hash of
/// its contents (a link's target, a device's numbers) and extended attributes.
fn listing(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut folders = vec![PathBuf::new()];
    while let Some(folder) = folders.pop() {
        let mut entries: Vec<_> = fs::read_dir(dir.join(&folder)).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let inside = folder.join(entry.file_name());
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            let kind = meta.file_type();
            let (what, what_in) = if kind.is_dir() {
                folders.push(inside.clone());
                ("d", String::new())
            } else if kind.is_file() {
                ("f", format!("{} {:x}", meta.size(), sha2::Sha256::digest(fs::read(entry.path()).unwrap())))
            } else if kind.is_symlink() {
                ("l", fs::read_link(entry.path()).unwrap().display().to_string())
            } else if kind.is_char_device() {
                ("c", format!("{}", meta.rdev()))
            } else {
                ("?", String::new())
            };
            // A folder's mtime moves with the overlay's bookkeeping in it; the rest must be exact.
            let mtime = if kind.is_dir() { String::new() } else { meta.mtime().to_string() };
            lines.push(format!(
                "{} {what} {:o} {}:{} {mtime} {what_in} {}",
                inside.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                xattrs(&entry.path()).join(",")
            ));
        }
    }
    lines
}

fn xattrs(path: &Path) -> Vec<String> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: the buffer is as long as the length passed.
    let n = unsafe { nix::libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut found = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let key = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let n = unsafe { nix::libc::lgetxattr(c.as_ptr(), key.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        value.truncate(n.max(0) as usize);
        found.push(format!("{}={:?}", String::from_utf8_lossy(name), String::from_utf8_lossy(&value)));
    }
    found.sort();
    found
}

fn game(host: &Host, script: &str) {
    host.ok("runuser", &["-u", "left4me", "--", "sh", "-c", script]);
}

/// `l4d2ctl --json <args>`: its outcome, or its failure's message.
fn write(host: &Host, args: &[&str]) -> Result<Outcome, String> {
    let mut argv = vec!["--json"];
    argv.extend(args);
    let out = host.l4d2ctl(&argv);
    let messages = read_messages(&out.stdout);
    match messages.last() {
        Some(Message::Done { outcome }) if out.status.success() => Ok(outcome.clone()),
        Some(Message::Failed { failure }) => Err(failure.message.clone()),
        _ => Err(format!("{}\n{}", text(&out.stdout), text(&out.stderr))),
    }
}

fn backed_up(host: &Host, args: &[&str]) -> (Backup, Vec<String>) {
    match write(host, args) {
        Ok(Outcome::BackedUp { backup, removed, .. }) => (backup, removed),
        other => panic!("{args:?}: {other:?}"),
    }
}

/// The list the web app reads: as the game's user.
fn backups(host: &Host) -> Vec<Backup> {
    let out = host.ok(
        "setpriv",
        &["--reuid=left4me", "--regid=left4me", "--init-groups", "l4d2ctl", "backups", "coop-1", "--json"],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"))
}

/// A build's base files the game will delete (a whiteout) and a folder it will replace (an
/// opaque folder), then coop-1 started on it.
fn start_with_base_files(host: &Host) {
    let game: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(&["game", "--json"])).unwrap();
    let base = host.root_path(&format!("{ROOT}/builds/{}/left4dead2", game["installed"][0]));
    fs::write(base.join("gone.txt"), "from the base\n").unwrap();
    fs::create_dir_all(base.join("maps-old")).unwrap();
    fs::write(base.join("maps-old/a.txt"), "a\n").unwrap();
    host.start_example("coop-1");
}

/// What a server writes over its life: SourceMod's data, a ban list, a log, a link out of its
/// tree; a base file deleted, a base folder replaced.
fn write_game_data(host: &Host) {
    // The folders SourceMod and the game log into are the game's (an overlay makes them so); the
    // rest of the base belongs to root, who deletes through the tree what the game may not.
    host.ok(
        "sh",
        &[
            "-c",
            &format!(
                "set -e; cd {MERGED}/left4dead2; mkdir -p addons/sourcemod/data logs; \
                 chown left4me:left4me addons/sourcemod/data logs; echo 'banid 0 STEAM_1:0:1' > cfg/banned_user.cfg; \
                 rm gone.txt; rm -r maps-old; mkdir maps-old; echo new > maps-old/b.txt"
            ),
        ],
    );
    game(
        host,
        &format!(
            "set -e; cd {MERGED}/left4dead2; printf 'sqlite' > addons/sourcemod/data/clientprefs.sq3; \
             chmod 600 addons/sourcemod/data/clientprefs.sq3; echo 'L 12/01/2026' > logs/L1201.log; \
             touch -d '2026-01-02 03:04:05' logs/L1201.log; ln -s /etc/shadow logs/shadow-link"
        ),
    );
}

#[test]
fn a_backup_is_taken_listed_restored_exactly_over_changed_data_and_pruned_to_keep() {
    let host = Host::installed();
    start_with_base_files(&host);
    write_game_data(&host);
    let upper = host.root_path(UPPER);
    let before = listing(&upper);
    let joined = before.join("\n");
    assert!(joined.contains("left4dead2/gone.txt c 0 "), "a whiteout to keep:\n{joined}");
    assert!(joined.contains("trusted.overlay.opaque=\"y\""), "an opaque folder to keep:\n{joined}");
    assert!(joined.contains("shadow-link l 777") && joined.contains("/etc/shadow"), "a link out:\n{joined}");

    // What a killed backup left is never listed, and goes with the next backup.
    host.ok("sh", &["-c", &format!("mkdir -p {FOLDER} && echo half > {FOLDER}/.2026-01-01T00-00-00Z.tar.gz.tmp")]);
    let (taken, removed) = backed_up(&host, &["backup", "coop-1"]);
    assert_eq!((taken.reason.as_str(), taken.local, taken.restic, removed.len()), ("manual", true, false, 0));
    assert!(!host.run("test", &["-e", &format!("{FOLDER}/.2026-01-01T00-00-00Z.tar.gz.tmp")]).status.success());
    let file = format!("{FOLDER}/{}.tar.gz", taken.id);
    assert_eq!(host.ok("stat", &["-c", "%U:%G %a", &file]).trim(), "root:left4me 640");
    assert_eq!(host.ok("stat", &["-c", "%U:%G %a", FOLDER]).trim(), "root:left4me 750");
    // The link is in the backup as a link; nothing of what it points at.
    let tar = host.ok("tar", &["-tvzf", &file]);
    assert!(tar.lines().any(|l| l.starts_with('l') && l.contains("logs/shadow-link -> /etc/shadow")), "{tar}");
    assert_eq!(backups(&host), vec![taken.clone()], "listed for the web's user");

    // The data changes: files written, one removed, the deleted base file back, the link gone.
    game(
        &host,
        &format!(
            "set -e; cd {MERGED}/left4dead2; printf 'changed' > addons/sourcemod/data/clientprefs.sq3; \
             echo later > logs/L1202.log; rm logs/shadow-link"
        ),
    );
    host.ok("sh", &["-c", &format!("cd {MERGED}/left4dead2 && echo back > gone.txt && rm maps-old/b.txt")]);
    assert_ne!(listing(&upper), before);
    let restored = write(&host, &["restore", "coop-1", &taken.id]);
    let Ok(Outcome::Restored { backup, kept, started, .. }) = restored else { panic!("{restored:?}") };
    assert_eq!((backup.as_str(), started, kept.reason.as_str()), (taken.id.as_str(), true, "before restore"));
    assert_eq!(listing(&upper), before, "the data is exactly back");
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 runs again");
    let merged = host.ok("cat", &[&format!("{MERGED}/left4dead2/addons/sourcemod/data/clientprefs.sq3")]);
    assert_eq!(merged, "sqlite", "the game sees its data back");
    assert!(!host.run("test", &["-e", &format!("{MERGED}/left4dead2/gone.txt")]).status.success(), "whiteout");
    assert_eq!(host.ok("ls", &[&format!("{MERGED}/left4dead2/maps-old")]).trim(), "b.txt", "opaque");
    let listed: Vec<String> = backups(&host).into_iter().map(|b| b.id).collect();
    assert_eq!(listed, vec![kept.id.clone(), taken.id.clone()], "newest first");

    // Four more with --keep 2: the two newest are left, the oldest removed first.
    let mut ids = Vec::new();
    for round in 0..4 {
        let (b, removed) = backed_up(&host, &["backup", "coop-1", "--reason", "schedule nightly", "--keep", "2"]);
        assert_eq!(removed.len(), 1, "round {round}: {removed:?}");
        ids.push(b.id);
    }
    let left = backups(&host);
    let left_ids: Vec<&str> = left.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(left_ids, vec![ids[3].as_str(), ids[2].as_str()]);
    assert!(left.iter().all(|b| b.reason == "schedule nightly"), "{left:?}");
    let files = host.ok("ls", &["-A", FOLDER]);
    assert_eq!(files.lines().filter(|f| f.ends_with(".tar.gz")).count(), 2, "{files}");
    assert_eq!(files.lines().filter(|f| f.ends_with(".json")).count(), 2, "{files}");
}
