//! Archive overlays on a sandbox host: archives served from a test host on the sandbox's own
//! network (an address of its loopback, 10.77.0.1, which downloads are denied unless
//! `LEFT4ME_DOWNLOAD_ALLOW` allows it), downloaded by curl in the confined unit, checked against
//! their pinned SHA-256, cached, and unpacked — or refused when hostile.

use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use left4me_sim::built_binary;
use serde_json::json;

use crate::support::{Host, ROOT, text};

const DIGEST: &str = "sha256:0abc";
/// The test host's name; the sandbox's /etc/hosts gives it the test address.
const SITE: &str = "http://archives.test:8080";

/// A sandbox with left4me installed and a download site on its own network.
struct Site {
    host: Host,
    server: std::process::Child,
    /// Shared with the sandbox: the files the site serves, and the log of what was asked for.
    folder: std::path::PathBuf,
}

impl Site {
    /// `allow`: the site's network is put in `LEFT4ME_DOWNLOAD_ALLOW`.
    fn start(allow: bool) -> Site {
        let host = Host::installed();
        host.ok("ip", &["address", "add", "10.77.0.1/32", "dev", "lo"]);
        host.ok("sh", &["-c", "echo '10.77.0.1 archives.test' >> /etc/hosts"]);
        if allow {
            host.ok("sh", &["-c", "echo LEFT4ME_DOWNLOAD_ALLOW=10.77.0.0/24 >> /etc/left4me/host.env"]);
        }
        let folder = host.shared_dir().join("site");
        std::fs::create_dir_all(&folder).unwrap();
        let server = built_binary("sim-http").expect("sim-http is built");
        let mut server = host
            .sandbox
            .command(server.to_str().unwrap())
            .args(["10.77.0.1:8080", folder.to_str().unwrap(), folder.join(".requests").to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "listening");
        Site { host, server, folder }
    }

    /// Serves `bytes` as `/<name>`; returns its URL and SHA-256.
    fn serve(&self, name: &str, bytes: &[u8]) -> (String, String) {
        std::fs::write(self.folder.join(name), bytes).unwrap();
        let (hash, _) = l4d2ctl::archive::sha256(bytes).unwrap();
        (format!("{SITE}/{name}"), hash)
    }

    /// How many requests the site answered.
    fn requests(&self) -> usize {
        std::fs::read_to_string(self.folder.join(".requests")).map_or(0, |log| log.lines().count())
    }

    /// `l4d2ctl --json overlay unpack <name>` with `sources` on stdin.
    fn unpack(&self, name: &str, sources: &serde_json::Value) -> std::process::Output {
        let mut child = self
            .host
            .sandbox
            .command("l4d2ctl")
            .args(["--json", "overlay", "unpack", name, "--digest", DIGEST])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(sources.to_string().as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// A refused unpack: its message, after checking that it failed as `kind` says.
    fn refused(&self, name: &str, sources: &serde_json::Value, kind: &str) -> String {
        let out = self.unpack(name, sources);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{name} was refused: {stdout}{stderr}");
        assert!(stdout.contains(&format!("\"kind\":\"{kind}\"")), "{name} failed {kind}: {stdout}");
        assert!(!self.host.root_path(&format!("{ROOT}/overlays/{name}")).exists(), "no overlay {name}");
        stderr
    }

    fn file(&self, path: &str) -> String {
        std::fs::read_to_string(self.host.root_path(&format!("{ROOT}/{path}"))).unwrap()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn archives_unpack_in_order_a_server_sees_them_and_a_second_unpack_uses_the_cache() {
    let site = Site::start(true);
    // SourceMod's shape: one top folder to strip, a set-user-ID binary, a config a later archive replaces.
    let sourcemod = tar_gz(&[
        ("sourcemod-1.12/addons/sourcemod/bin/sourcemod_mm_i486.so", Entry::File(b"\x7fELF", 0o4755)),
        ("sourcemod-1.12/addons/sourcemod/configs/core.cfg", Entry::File(b"core 1\n", 0o644)),
        ("sourcemod-1.12/addons/sourcemod/plugins/link.smx", Entry::Symlink("../bin/sourcemod_mm_i486.so")),
    ]);
    let pack = zip(&[("addons/sourcemod/configs/core.cfg", b"core 2\n"), ("cfg/cfgogl/zonemod.cfg", b"zonemod\n")]);
    let (sm_url, sm_hash) = site.serve("sourcemod.tar.gz", &sourcemod);
    let (pack_url, pack_hash) = site.serve("pack.zip", &pack);
    let sources = json!([
        {"url": sm_url, "sha256": sm_hash, "strip": 1, "into": "left4dead2"},
        {"url": pack_url, "sha256": pack_hash, "into": "left4dead2"},
    ]);
    let out = site.unpack("mods", &sources);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let sm = "overlays/mods/left4dead2/addons/sourcemod";
    assert_eq!(site.file(&format!("{sm}/configs/core.cfg")), "core 2\n", "the later archive wins");
    assert_eq!(site.file("overlays/mods/left4dead2/cfg/cfgogl/zonemod.cfg"), "zonemod\n");
    let binary =
        std::fs::symlink_metadata(site.host.root_path(&format!("{ROOT}/{sm}/bin/sourcemod_mm_i486.so"))).unwrap();
    assert_eq!(binary.mode() & 0o7777, 0o755, "set-ID bits dropped, the executable bit kept");
    let game_uid: u32 = site.host.ok("id", &["-u", "left4me"]).trim().parse().unwrap();
    assert_eq!(binary.uid(), game_uid, "the game user's");
    let link = std::fs::read_link(site.host.root_path(&format!("{ROOT}/{sm}/plugins/link.smx"))).unwrap();
    assert_eq!(link, std::path::Path::new("../bin/sourcemod_mm_i486.so"));
    assert_eq!(site.requests(), 2, "each archive downloaded once");
    for hash in [&sm_hash, &pack_hash] {
        assert!(site.host.root_path(&format!("{ROOT}/archives/{hash}")).is_file(), "{hash} is cached");
    }

    // A server stacking the overlay sees its files in its tree.
    site.host.put_example_overlays();
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(site.host.example_spec("coop-1")).unwrap()).unwrap();
    spec["overlays"].as_array_mut().unwrap().insert(0, json!({"name": "mods", "type": "archive", "digest": DIGEST}));
    let spec = site.host.write_spec("coop-1-mods", &spec.to_string());
    site.host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    site.host.l4d2ctl_ok(&["start", "coop-1"]);
    assert!(site.host.wait_for(15, |h| h.answered("coop-1")).is_some(), "coop-1 runs");
    let merged = format!("{}/left4dead2", site.host.sandbox.game_tree("coop-1"));
    assert_eq!(site.host.ok("cat", &[&format!("{merged}/cfg/cfgogl/zonemod.cfg")]), "zonemod\n");

    // Again: from the cache, nothing downloaded.
    let out = site.unpack("mods", &sources);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(site.requests(), 2, "the second unpack downloaded nothing");

    // A cached file that changed is not used: it is downloaded again.
    std::fs::write(site.host.root_path(&format!("{ROOT}/archives/{pack_hash}")), b"tampered").unwrap();
    let out = site.unpack("mods", &sources);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("downloading it again"), "{}", text(&out.stderr));
    assert_eq!(site.requests(), 3, "only the changed archive was downloaded again");
    assert_eq!(site.file("overlays/mods/left4dead2/cfg/cfgogl/zonemod.cfg"), "zonemod\n");
}

#[test]
fn a_wrong_hash_is_refused_with_both_hashes_and_changes_nothing() {
    let site = Site::start(true);
    let (url, hash) = site.serve("good.zip", &zip(&[("left4dead2/cfg/which.cfg", b"first\n")]));
    let out = site.unpack("mods", &json!([{"url": url, "sha256": hash}]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cache = site.host.root_path(&format!("{ROOT}/archives"));
    let cached = || std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(cached(), 1);

    let (url, actual) = site.serve("changed.zip", &zip(&[("left4dead2/cfg/which.cfg", b"second\n")]));
    let pinned = "0".repeat(64);
    let out = site.unpack("mods", &json!([{"url": url, "sha256": pinned}]));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&actual) && stderr.contains(&pinned), "both hashes are named: {stderr}");
    assert!(stdout.contains("\"kind\":\"permanent\""), "{stdout}");
    assert_eq!(site.file("overlays/mods/left4dead2/cfg/which.cfg"), "first\n", "the overlay is as it was");
    assert_eq!(cached(), 1, "nothing was kept in the cache");
    let listing = site.host.ok("ls", &["-A", &format!("{ROOT}/overlays")]);
    assert!(!listing.contains(".staging-"), "{listing}");
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let site = Site::start(true);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", tar_gz(&[("a/../../../x", Entry::File(b"x", 0o644))]), "which leaves the overlay"),
        ("absolute", tar_gz(&[("/etc/cron.d/x", Entry::File(b"x", 0o644))]), "which leaves the overlay"),
        ("link-out", tar_gz(&[("left4dead2/out", Entry::Symlink("../../../../etc"))]), "leaves the overlay"),
        (
            "through-link",
            tar_gz(&[("left4dead2/l", Entry::Symlink(".")), ("left4dead2/l/x", Entry::File(b"x", 0o644))]),
            "symlinks are never followed",
        ),
        ("device", tar_gz(&[("left4dead2/null", Entry::CharDevice)]), "not a file, folder or symlink"),
        ("not-archive", b"#!/bin/sh\necho no\n".to_vec(), "is neither a .tar.gz nor a .zip"),
    ];
    for (name, bytes, why) in &cases {
        let (url, hash) = site.serve(&format!("{name}.bin"), bytes);
        let stderr = site.refused(name, &json!([{"url": url, "sha256": hash}]), "permanent");
        assert!(stderr.contains(why), "{name}: {stderr}");
    }
    // A zip of more entries than an overlay may hold is refused before anything is written.
    let names: Vec<String> = (0..200_001).map(|n| format!("f/{n}")).collect();
    let bomb = zip(&names.iter().map(|n| (n.as_str(), &b""[..])).collect::<Vec<_>>());
    let (url, hash) = site.serve("bomb.zip", &bomb);
    let stderr = site.refused("bomb", &json!([{"url": url, "sha256": hash}]), "permanent");
    assert!(stderr.contains("200001 entries") && stderr.contains("archive bomb"), "{stderr}");
    assert!(!site.host.root_path(&format!("{ROOT}/x")).exists() && !site.host.root_path("/etc/cron.d/x").exists());
    let listing = site.host.ok("ls", &["-A", &format!("{ROOT}/overlays")]);
    assert!(!listing.contains(".staging-"), "{listing}");
}

#[test]
fn downloads_may_not_reach_the_host_s_own_or_private_networks() {
    let site = Site::start(false);
    let (_, hash) = site.serve("a.zip", &zip(&[("left4dead2/a.cfg", b"a\n")]));
    for (url, what) in [
        ("http://127.0.0.1:8080/a.zip", "127.0.0.1, a loopback address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254, a link-local address"),
        ("http://10.77.0.1:8080/a.zip", "10.77.0.1, a private address"),
    ] {
        let stderr = site.refused("lan", &json!([{"url": url, "sha256": hash}]), "permanent");
        assert!(stderr.contains(what) && stderr.contains("LEFT4ME_DOWNLOAD_ALLOW"), "{url}: {stderr}");
    }
    // By name, the address is only known to curl: the unit's IPAddressDeny= drops what it sends
    // there, so the connection never answers.
    let stderr = site.refused("lan", &json!([{"url": format!("{SITE}/a.zip"), "sha256": hash}]), "transient");
    assert!(stderr.contains("private network") && stderr.contains("LEFT4ME_DOWNLOAD_ALLOW"), "{stderr}");
    assert_eq!(site.requests(), 0, "the site was never reached");
}

enum Entry {
    File(&'static [u8], u32),
    Symlink(&'static str),
    CharDevice,
}

/// A gzipped tar of `entries`, paths written as given (`..` and absolute ones too, as a hostile
/// archive would).
fn tar_gz(entries: &[(&str, Entry)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, entry) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        let data: &[u8] = match entry {
            Entry::File(data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                data
            }
            Entry::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                header.set_mode(0o777);
                b""
            }
            Entry::CharDevice => {
                header.set_entry_type(tar::EntryType::Char);
                header.set_mode(0o666);
                b""
            }
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in files {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}
