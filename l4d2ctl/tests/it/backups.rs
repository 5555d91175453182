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

/// coop-1's tree where its game sees it, in its own namespace.
const MERGED: &str = "/var/lib/left4me/runtime/coop-1/merged";

/// Runs `script` as the game's user, on the host.
fn game(host: &Host, script: &str) {
    host.ok("runuser", &["-u", "left4me", "--", "sh", "-c", script]);
}

/// Runs `script` as coop-1's running game, in its namespaces, where its tree is at [`MERGED`].
fn in_game(host: &Host, script: &str) {
    let out = host.as_game("coop-1", script);
    assert!(out.status.success(), "as coop-1's game, `{script}` failed: {}", text(&out.stderr));
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
    let merged = host.sandbox.game_tree("coop-1");
    host.ok(
        "sh",
        &[
            "-c",
            &format!(
                "set -e; cd {merged}/left4dead2; mkdir -p addons/sourcemod/data logs; \
                 chown left4me:left4me addons/sourcemod/data logs; echo 'banid 0 STEAM_1:0:1' > cfg/banned_user.cfg; \
                 rm gone.txt; rm -r maps-old; mkdir maps-old; echo new > maps-old/b.txt"
            ),
        ],
    );
    in_game(
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
    let merged = host.sandbox.game_tree("coop-1");
    in_game(
        &host,
        &format!(
            "set -e; cd {MERGED}/left4dead2; printf 'changed' > addons/sourcemod/data/clientprefs.sq3; \
             echo later > logs/L1202.log; rm logs/shadow-link"
        ),
    );
    host.ok("sh", &["-c", &format!("cd {merged}/left4dead2 && echo back > gone.txt && rm maps-old/b.txt")]);
    assert_ne!(listing(&upper), before);
    let restored = write(&host, &["restore", "coop-1", &taken.id]);
    let Ok(Outcome::Restored { backup, kept, started, .. }) = restored else { panic!("{restored:?}") };
    assert_eq!((backup.as_str(), started, kept.reason.as_str()), (taken.id.as_str(), true, "before restore"));
    assert_eq!(listing(&upper), before, "the data is exactly back");
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 runs again");
    // A new start: a new namespace of a new process.
    let merged = host.sandbox.game_tree("coop-1");
    let data = host.ok("cat", &[&format!("{merged}/left4dead2/addons/sourcemod/data/clientprefs.sq3")]);
    assert_eq!(data, "sqlite", "the game sees its data back");
    assert!(!host.run("test", &["-e", &format!("{merged}/left4dead2/gone.txt")]).status.success(), "whiteout");
    assert_eq!(host.ok("ls", &[&format!("{merged}/left4dead2/maps-old")]).trim(), "b.txt", "opaque");
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

const REPOSITORY: &str = "/var/lib/restic-test";
const PASSWORD: &str = "/etc/left4me/restic-password";

/// A restic repository folder inside the sandbox, named in host.env with its password file.
fn with_restic(host: &Host) {
    host.ok(
        "sh",
        &[
            "-c",
            &format!(
                "set -e; umask 077; echo 'a long enough password' > {PASSWORD}; \
                 RESTIC_PASSWORD_FILE={PASSWORD} restic init --quiet --repo {REPOSITORY}; \
                 printf 'LEFT4ME_RESTIC_REPOSITORY={REPOSITORY}\\nLEFT4ME_RESTIC_PASSWORD_FILE={PASSWORD}\\n' \
                 >> /etc/left4me/host.env"
            ),
        ],
    );
}

fn snapshots_in_restic(host: &Host) -> usize {
    let out = host.ok(
        "sh",
        &[
            "-c",
            &format!("RESTIC_PASSWORD_FILE={PASSWORD} restic snapshots --json --repo {REPOSITORY} --tag server:coop-1"),
        ],
    );
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap().len()
}

#[test]
fn restic_is_a_second_target_restored_from_when_the_host_has_lost_the_file() {
    let host = Host::installed();
    host.initialize_example("coop-1");
    game(
        &host,
        &format!(
            "set -e; mkdir -p {UPPER}/left4dead2/addons/sourcemod/data; \
             printf 'one' > {UPPER}/left4dead2/addons/sourcemod/data/clientprefs.sq3; ln -s ../x {UPPER}/link"
        ),
    );
    with_restic(&host);
    let upper = host.root_path(UPPER);
    let before = listing(&upper);

    let (taken, _) = backed_up(&host, &["backup", "coop-1", "--keep", "2"]);
    assert!(taken.local && taken.restic, "{taken:?}");
    assert_eq!(snapshots_in_restic(&host), 1);
    assert_eq!(backups(&host).iter().map(|b| (b.local, b.restic)).collect::<Vec<_>>(), vec![(true, true)]);

    // The host loses the file; the data changes; the backup comes back from restic.
    game(&host, &format!("printf 'two' > {UPPER}/left4dead2/addons/sourcemod/data/clientprefs.sq3; touch {UPPER}/new"));
    host.ok("rm", &[&format!("{FOLDER}/{}.tar.gz", taken.id), &format!("{FOLDER}/{}.json", taken.id)]);
    let listed = backups(&host);
    assert_eq!(
        listed.iter().map(|b| (b.id.as_str(), b.local, b.restic)).collect::<Vec<_>>(),
        vec![(taken.id.as_str(), false, true)]
    );
    assert_eq!(listed[0].reason, "manual", "the reason is kept in restic too");
    let restored = write(&host, &["restore", "coop-1", &taken.id]);
    let Ok(Outcome::Restored { started, kept, .. }) = restored else { panic!("{restored:?}") };
    assert!(!started, "it did not run, so it is not started");
    assert_eq!(kept.reason, "before restore");
    assert_eq!(listing(&upper), before, "the data is exactly back, from restic");
    assert!(!host.ok("ls", &["-A", FOLDER]).contains(".tmp"), "no copy of restic's file left behind");

    // Kept to two in restic as well: the oldest snapshots are forgotten, whatever their sizes
    // and reasons.
    for n in 1..=3 {
        game(&host, &format!("head -c {n}000 /dev/urandom > {UPPER}/grows"));
        backed_up(&host, &["backup", "coop-1", "--keep", "2"]);
    }
    assert_eq!(snapshots_in_restic(&host), 2);
    assert_eq!(backups(&host).iter().filter(|b| b.restic).count(), 2);
    // A host's snapshots are its own: another name (a new host taking over names the old one)
    // sees another host's.
    let as_host = |name: &str| -> usize {
        let out = host.ok("sh", &["-c", &format!("LEFT4ME_RESTIC_HOST={name} l4d2ctl backups coop-1 --json")]);
        serde_json::from_str::<Vec<Backup>>(&out).unwrap().iter().filter(|b| b.restic).count()
    };
    assert_eq!(as_host("elsewhere"), 0);
    assert_eq!(as_host("$(hostname)"), 2);

    // restic failing (a wrong password) keeps the backup on the host and says both.
    host.ok("sh", &["-c", &format!("echo wrong > {PASSWORD}")]);
    let failed = write(&host, &["backup", "coop-1"]).expect_err("restic failed");
    assert!(failed.contains("on this host") && failed.contains("restic"), "{failed}");
    let id = failed.split("backed up as ").nth(1).and_then(|r| r.split(' ').next()).unwrap().to_owned();
    assert!(host.run("test", &["-f", &format!("{FOLDER}/{id}.tar.gz")]).status.success(), "{failed}");
}

/// A gzipped tar of `entries` as given — names, types and link targets no honest writer makes.
fn crafted(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, kind, target) in entries {
        let mut header = tar::Header::new_gnu();
        let name = &mut header.as_gnu_mut().unwrap().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        // A PAX header's records are its data; any other's third field is its link's target.
        if !target.is_empty() && *kind != tar::EntryType::XHeader {
            header.set_link_name(target).unwrap();
        }
        let data: &[u8] = match kind {
            tar::EntryType::Regular => b"crafted\n",
            tar::EntryType::XHeader => target.as_bytes(),
            _ => b"",
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// One PAX record of an extended attribute, its length counting its own digits.
fn xattr_record(key: &str, value: &str) -> String {
    let body = format!(" SCHILY.xattr.{key}={value}\n");
    let mut len = body.len() + 1;
    while len != body.len() + len.to_string().len() {
        len = body.len() + len.to_string().len();
    }
    format!("{len}{body}")
}

/// Places `bytes` as the backup `id` of `server`, as root would have.
fn place_backup(host: &Host, server: &str, id: &str, bytes: &[u8]) {
    let shared = host.shared_dir().join(format!("{id}.tar.gz"));
    fs::write(&shared, bytes).unwrap();
    let folder = format!("{ROOT}/backups/{server}");
    host.ok("sh", &["-c", &format!("mkdir -p {folder} && cp {} {folder}/{id}.tar.gz", shared.display())]);
}

#[test]
fn a_restore_of_what_is_no_backup_of_the_server_or_would_leave_its_data_is_refused_with_nothing_changed() {
    use tar::EntryType::{Block, Directory, Link, Regular, Symlink, XHeader};
    let host = Host::installed();
    host.start_example("coop-1");
    write_game_data_without_base(&host);
    let (taken, _) = backed_up(&host, &["backup", "coop-1"]);
    let upper = host.root_path(UPPER);
    let before = listing(&upper);
    let pid = host.status_json("coop-1")["main_pid"].clone();
    assert!(pid.is_u64(), "it runs");
    // Another server's backup, under an id coop-1 has none of.
    let other = fs::read(host.root_path(&format!("{FOLDER}/{}.tar.gz", taken.id))).unwrap();
    place_backup(&host, "versus-2", "2026-01-01T00-00-00Z", &other);
    let crafted_backups = [
        ("2026-01-02T00-00-00Z", crafted(&[("../../../../etc/crafted", Regular, "")]), "leaves the server's data"),
        ("2026-01-03T00-00-00Z", crafted(&[("/etc/crafted", Regular, "")]), "leaves the server's data"),
        ("2026-01-04T00-00-00Z", crafted(&[("left4dead2/passwd", Link, "/etc/passwd")]), "hard links"),
        ("2026-01-05T00-00-00Z", crafted(&[("sda", Block, "")]), "devices other than whiteouts"),
        (
            "2026-01-06T00-00-00Z",
            crafted(&[("out", Symlink, "/etc"), ("out/crafted", Regular, "")]),
            "out/crafted below out, which is no folder",
        ),
        (
            "2026-01-07T00-00-00Z",
            crafted(&[("a", Directory, ""), ("a/b", Regular, ""), ("a/b", Regular, "")]),
            "a/b twice",
        ),
        (
            "2026-01-08T00-00-00Z",
            crafted(&[("pax", XHeader, &xattr_record("security.capability", "x")), ("su", Regular, "")]),
            "the extended attribute security.capability",
        ),
    ];
    for (id, bytes, _) in &crafted_backups {
        place_backup(&host, "coop-1", id, bytes);
    }
    let mut refused = vec![
        ("coop-1", "../x", "is not a backup's id".to_owned()),
        ("coop-1", "/etc/passwd", "is not a backup's id".to_owned()),
        ("coop-1", "2026-01-01T00-00-00Z", "coop-1 has no backup 2026-01-01T00-00-00Z".to_owned()),
        ("nosuch-1", taken.id.as_str(), "nosuch-1 is not initialized".to_owned()),
    ];
    refused.extend(crafted_backups.iter().map(|(id, _, why)| ("coop-1", *id, (*why).to_owned())));
    for (server, id, why) in &refused {
        let out = host.l4d2ctl(&["restore", server, id]);
        assert!(!out.status.success(), "{server} {id}");
        assert!(text(&out.stderr).contains(why.as_str()), "{server} {id}: {}", text(&out.stderr));
        assert_eq!(listing(&upper), before, "{server} {id}: the data is as it was");
    }
    assert!(!host.run("test", &["-e", "/etc/crafted"]).status.success(), "nothing written outside");
    assert_eq!(host.status_json("coop-1")["main_pid"], pid, "never stopped");
    let files = host.ok("ls", &["-A", FOLDER]);
    assert_eq!(
        files.lines().filter(|f| f.ends_with(".json") && *f != "restic.json").count(),
        1,
        "no backup before a refused restore: {files}"
    );
    assert!(!host.ok("ls", &["-A", &format!("{ROOT}/runtime/coop-1")]).contains(".upper-restore"));

    // A backup that fails halfway (an attribute longer than the kernel sets, found only then):
    // the old data stays, the server runs again, nothing of the half is left.
    let long = "v".repeat(70_000);
    let halfway =
        crafted(&[("a", Directory, ""), ("pax", XHeader, &xattr_record("user.long", &long)), ("a/b", Regular, "")]);
    place_backup(&host, "coop-1", "2026-01-09T00-00-00Z", &halfway);
    let out = host.l4d2ctl(&["restore", "coop-1", "2026-01-09T00-00-00Z"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("cannot restore a/b"), "{}", text(&out.stderr));
    assert_eq!(listing(&upper), before, "the data is as it was");
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 runs again");
    assert!(!host.ok("ls", &["-A", &format!("{ROOT}/runtime/coop-1")]).contains(".upper-restore"));
}

/// Data of the game's own, in folders of its own (no base file touched).
fn write_game_data_without_base(host: &Host) {
    let merged = host.sandbox.game_tree("coop-1");
    host.ok(
        "sh",
        &["-c", &format!("set -e; mkdir -p {merged}/left4dead2/logs; chown left4me:left4me {merged}/left4dead2/logs")],
    );
    in_game(host, &format!("echo 'L 12/01/2026' > {MERGED}/left4dead2/logs/L1201.log"));
}

#[test]
fn a_symlink_the_game_plants_for_its_backups_folder_makes_root_read_or_write_nothing_through_it() {
    let host = Host::installed();
    host.initialize_example("coop-1");
    game(&host, &format!("echo data > {UPPER}/data.txt"));
    let (taken, _) = backed_up(&host, &["backup", "coop-1"]);
    // A folder of root's with a backup-shaped file the game's user may not read.
    host.ok("sh", &["-c", &format!("set -e; mkdir -p /var/lib/roots-own/coop-1; chmod 0700 /var/lib/roots-own; cp {FOLDER}/{}.tar.gz /var/lib/roots-own/coop-1/2026-01-01T00-00-00Z.tar.gz", taken.id)]);
    let roots_own = || host.ok("sh", &["-c", "ls -lAnR --time-style=+%s /var/lib/roots-own"]);
    let untouched = roots_own();
    // The game's user owns $ROOT: it moves the backups aside and puts symlinks in their place —
    // the whole folder, then the server's own.
    game(&host, &format!("mv {ROOT}/backups {ROOT}/backups.moved && ln -s /var/lib/roots-own {ROOT}/backups"));
    for args in [vec!["backup", "coop-1"], vec!["backups", "coop-1"], vec!["restore", "coop-1", "2026-01-01T00-00-00Z"]]
    {
        let out = host.l4d2ctl(&args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains("is a symlink"), "{args:?}: {}", text(&out.stderr));
    }
    // A backups folder of its own with the link in it: refused as none of root's, before the
    // link is looked at.
    game(
        &host,
        &format!("rm {ROOT}/backups && mkdir {ROOT}/backups && ln -s /var/lib/roots-own/coop-1 {ROOT}/backups/coop-1"),
    );
    for args in [vec!["backup", "coop-1"], vec!["restore", "coop-1", "2026-01-01T00-00-00Z"]] {
        let out = host.l4d2ctl(&args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains("not root"), "{args:?}: {}", text(&out.stderr));
    }
    assert_eq!(roots_own(), untouched, "nothing read into the game's reach, nothing written");
    assert_eq!(host.ok("cat", &[&format!("{UPPER}/data.txt")]), "data\n", "the data is as it was");

    // The runtime folder swapped for a link to a folder of root's shaped like one: its secret
    // is never packed into a file the game's group may read.
    host.ok("sh", &["-c", &format!("rm -r {ROOT}/backups && mv {ROOT}/backups.moved {ROOT}/backups")]);
    host.ok(
        "sh",
        &["-c", "mkdir -p /var/lib/roots-own/coop-1/upper && echo secret > /var/lib/roots-own/coop-1/upper/key"],
    );
    game(&host, &format!("mv {ROOT}/runtime {ROOT}/runtime.moved && ln -s /var/lib/roots-own {ROOT}/runtime"));
    let out = host.l4d2ctl(&["backup", "coop-1"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("is a symlink"), "{}", text(&out.stderr));
    let listed = host.ok("sh", &["-c", &format!("ls {FOLDER}")]);
    assert_eq!(listed.lines().filter(|f| f.ends_with(".tar.gz")).count(), 1, "only the first backup: {listed}");
}

#[test]
fn a_write_to_a_server_waits_for_the_backup_or_restore_that_holds_it() {
    let host = Host::installed();
    host.initialize_example("coop-1");
    // A backup halfway, as far as the lock says: the reconciler's delete (which no pass lock
    // keeps apart from a backup job) waits for it, then deletes.
    let lock = format!("{ROOT}/locks/coop-1.lock");
    host.ok("sh", &["-c", &format!("mkdir -p {ROOT}/locks && touch {lock}")]);
    let out = host
        .ok("sh", &["-c", &format!("flock {lock} sleep 3 & sleep 1; l4d2ctl --reconciler delete coop-1 2>&1; wait")]);
    assert!(out.contains("waiting for another write to coop-1 to end"), "{out}");
    assert!(out.contains("coop-1: deleted"), "{out}");
}

#[test]
fn a_killed_backup_is_never_listed_and_what_it_left_goes_with_the_next() {
    let host = Host::installed();
    host.initialize_example("coop-1");
    // Enough data that the backup is still writing when it is killed.
    game(&host, &format!("head -c 64M /dev/urandom > {UPPER}/big.dem"));
    let killed = host.run("timeout", &["-s", "KILL", "1", "l4d2ctl", "backup", "coop-1"]);
    assert!(!killed.status.success(), "killed halfway: {}", text(&killed.stdout));
    assert!(backups(&host).is_empty(), "nothing listed");
    let left = host.ok("ls", &["-A", FOLDER]);
    assert!(left.lines().any(|f| f.starts_with('.') && f.ends_with(".tar.gz.tmp")), "{left}");
    let (taken, _) = backed_up(&host, &["backup", "coop-1"]);
    assert_eq!(backups(&host), vec![taken.clone()]);
    let files = host.ok("ls", &["-A", FOLDER]);
    let expected = format!("{id}.json\n{id}.tar.gz\n", id = taken.id);
    assert_eq!(files, expected, "the leftover is gone");

    // A restic repository named without its password file: the backup on the host is taken all
    // the same, and the failure says both.
    let half = host.run("sh", &["-c", "LEFT4ME_RESTIC_REPOSITORY=/var/lib/nowhere l4d2ctl backup coop-1"]);
    assert!(!half.status.success());
    let said = text(&half.stderr);
    assert!(said.contains("on this host") && said.contains("LEFT4ME_RESTIC_PASSWORD_FILE"), "{said}");
    assert_eq!(backups(&host).len(), 2, "{said}");
}

#[test]
fn what_the_game_user_plants_where_root_keeps_backups_and_locks_is_refused_by_name_and_never_waited_on() {
    let host = Host::installed();
    host.initialize_example("coop-1");
    game(&host, &format!("echo data > {UPPER}/data.txt"));
    // The game's user owns $ROOT: it makes the backups folders before root does.
    game(&host, &format!("mv {ROOT}/backups {ROOT}/backups.moved 2>/dev/null; mkdir -p {FOLDER}"));
    for args in [vec!["backup", "coop-1"], vec!["restore", "coop-1", "2026-01-01T00-00-00Z"]] {
        let out = host.l4d2ctl(&args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out.stdout));
        let said = text(&out.stderr);
        assert!(said.contains("not root") && said.contains("remove it"), "{args:?}: {said}");
    }
    host.ok("rm", &["-rf", &format!("{ROOT}/backups"), &format!("{ROOT}/backups.moved")]);
    let (taken, _) = backed_up(&host, &["backup", "coop-1"]);

    // A backup's file root did not write as it is: the game's, or a second link to root's.
    host.ok(
        "sh",
        &[
            "-c",
            &format!(
                "set -e; cd {FOLDER}; cp {id}.tar.gz 2026-01-01T00-00-00Z.tar.gz; \
                 chown left4me 2026-01-01T00-00-00Z.tar.gz; ln {id}.tar.gz 2026-01-02T00-00-00Z.tar.gz",
                id = taken.id
            ),
        ],
    );
    game(&host, &format!("echo changed > {UPPER}/data.txt"));
    for id in ["2026-01-01T00-00-00Z", "2026-01-02T00-00-00Z"] {
        let out = host.l4d2ctl(&["restore", "coop-1", id]);
        assert!(!out.status.success(), "{id}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains("not root's own file of one link"), "{id}: {}", text(&out.stderr));
        assert_eq!(host.ok("cat", &[&format!("{UPPER}/data.txt")]), "changed\n", "{id}: the data is as it was");
    }

    // A FIFO in place of the pass lock: refused at once, naming it, never opened to wait on.
    game(&host, &format!("rm -f {ROOT}/left4me.lock && mkfifo {ROOT}/left4me.lock"));
    let out = host.run("timeout", &["30", "l4d2ctl", "backup", "coop-1"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let said = text(&out.stderr);
    assert!(said.contains("left4me.lock") && said.contains("remove it"), "{said}");
}

#[test]
fn a_backup_beyond_the_hosts_limit_is_refused_naming_the_server_its_size_and_the_setting() {
    let host = Host::installed();
    host.initialize_example("coop-1");
    // A sparse file costs the game's user no disk, and counts whole: it is what a restore writes.
    game(&host, &format!("set -e; echo data > {UPPER}/data.txt; truncate -s 64M {UPPER}/huge.dem"));
    let out = host.run("sh", &["-c", "LEFT4ME_BACKUP_MAX_BYTES=1000000 l4d2ctl backup coop-1"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let said = text(&out.stderr);
    let total = (64u64 << 20) + 5;
    assert!(
        said.contains("coop-1")
            && said.contains(&format!("{total} bytes"))
            && said.contains("LEFT4ME_BACKUP_MAX_BYTES"),
        "{said}"
    );
    let left = host.ok("sh", &["-c", &format!("ls -A {FOLDER} 2>/dev/null || true")]);
    assert!(left.trim().is_empty(), "nothing written: {left}");

    // Within the host's limit it is taken; restored on a host of a lower one, it is refused
    // before anything changes.
    let (taken, _) = backed_up(&host, &["backup", "coop-1"]);
    game(&host, &format!("echo changed > {UPPER}/data.txt"));
    let out = host.run("sh", &["-c", &format!("LEFT4ME_BACKUP_MAX_BYTES=1000000 l4d2ctl restore coop-1 {}", taken.id)]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("unpacks to more than 1000000 bytes"), "{}", text(&out.stderr));
    assert_eq!(host.ok("cat", &[&format!("{UPPER}/data.txt")]), "changed\n", "the data is as it was");
    assert_eq!(backups(&host).len(), 1, "no backup taken for a refused restore");
}

/// A server moving in from another host brings the archive that host made when it let the
/// server go: its data is put in place exactly, before the game's first start here — and what is
/// not root's own file of a tree that stays inside the server is refused with nothing changed.
#[test]
fn a_server_moving_in_receives_its_data_exactly_and_nothing_but_roots_own_archive() {
    use tar::EntryType::Regular;
    let host = Host::installed();
    host.start_example("coop-1");
    write_game_data_without_base(&host);
    let upper = host.root_path(UPPER);
    let before = listing(&upper);
    // The old host lets it go: its delete archives the data, readable by the web's group (the
    // host it moves to takes it through `left4me remote`, which runs as that user).
    let deleted = write(&host, &["delete", "coop-1"]);
    let Ok(Outcome::Deleted { archive: Some(archive), .. }) = deleted else { panic!("{deleted:?}") };
    let archive = archive.display().to_string();
    assert_eq!(host.ok("stat", &["-c", "%U:%G %a", &archive]).trim(), "root:left4me 640");
    assert_eq!(host.ok("stat", &["-c", "%U:%G %a", &format!("{ROOT}/archive")]).trim(), "root:left4me 750");

    // The new host: created, not started, its data from the archive waiting in incoming/.
    host.initialize_example("coop-1");
    let incoming = format!("{ROOT}/incoming");
    let file = format!("{incoming}/coop-1.tar");
    host.ok("sh", &["-c", &format!("mkdir -p -m 700 {incoming} && cp {archive} {file} && chmod 600 {file}")]);
    let planted = [
        (format!("ln -sf {archive} {file}"), "coop-1.tar"),
        (format!("cp {archive} {file}.x && rm -f {file} && ln {file}.x {file}"), "one link"),
        (format!("rm -f {file} {file}.x && cp {archive} {file} && chown left4me {file}"), "root's own"),
    ];
    for (plant, why) in &planted {
        host.ok("sh", &["-c", plant]);
        let out = host.l4d2ctl(&["receive", "coop-1"]);
        assert!(!out.status.success(), "{plant}");
        assert!(text(&out.stderr).contains(why), "{plant}: {}", text(&out.stderr));
        assert!(listing(&upper).is_empty(), "{plant}: nothing received");
    }
    let escaping = crafted(&[("../../../../etc/crafted", Regular, "")]);
    fs::write(host.shared_dir().join("escaping.tar"), &escaping).unwrap();
    let shared = host.shared_dir().join("escaping.tar").display().to_string();
    host.ok("sh", &["-c", &format!("rm -f {file} && cp {shared} {file} && chown root {file}")]);
    let out = host.l4d2ctl(&["receive", "coop-1"]);
    assert!(text(&out.stderr).contains("leaves the server's data"), "{}", text(&out.stderr));
    assert!(!host.run("test", &["-e", "/etc/crafted"]).status.success(), "nothing written outside");

    host.ok("sh", &["-c", &format!("cp {archive} {file} && chmod 600 {file}")]);
    let received = write(&host, &["receive", "coop-1"]);
    assert!(matches!(received, Ok(Outcome::Received { entries, .. }) if entries > 0), "{received:?}");
    assert_eq!(listing(&upper), before, "the data is exactly as the old host had it");
    assert!(!host.run("test", &["-e", &file]).status.success(), "received once");
    let out = host.l4d2ctl(&["receive", "coop-1"]);
    assert!(text(&out.stderr).contains("nothing to receive"), "{}", text(&out.stderr));
    host.start_example("coop-1");
    let merged = host.sandbox.game_tree("coop-1");
    assert_eq!(host.ok("cat", &[&format!("{merged}/left4dead2/logs/L1201.log")]), "L 12/01/2026\n");
}
