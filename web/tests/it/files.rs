//! A server's files: its owner lists its merged tree, previews and downloads files, and nothing
//! leaves the tree — not `..` however it is written, not an absolute path, not a symlink the
//! game planted, not a FIFO; anyone else's server is the same 404 as one that does not exist; and
//! the RCON password of its server.cfg is in no answer. The tree is real folders under the test's
//! `$ROOT`, rendered as `l4d2ctl initialize` lays them out.

use std::os::unix::fs::symlink;
use std::path::Path;

use l4d2ctl::record::InstanceRecord;
use left4me_state::Name;

use crate::support::{Client, TestApp};

const PASSWORD: &str = "RconSecretAbcdefgh234567";

/// coop-1 (alice's) and versus-1 (bob's) on the host: their records, config layers with the
/// password in server.cfg, build 100 below, the game's writes above.
fn lay_out(app: &TestApp) {
    let host = l4d2ctl::Host::at(app.root.path());
    let desired = app.app.current().desired.clone().expect("the examples validate");
    for server in ["coop-1", "versus-1"] {
        let name = Name::new(server).unwrap();
        let mut spec = desired.instance_spec(&name).unwrap().clone();
        spec.overlays.clear();
        let digest = spec.digest();
        let paths = host.instance(&name);
        let cfg = paths.layer(&digest).join("left4dead2/cfg");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(
            cfg.join("server.cfg"),
            spec.server_cfg(
                &digest,
                &left4me_state::Secrets { rcon_password: PASSWORD, log_secret: 918_273_645, log_port: 27500 },
            ),
        )
        .unwrap();
        std::fs::write(paths.rcon_password(), format!("{PASSWORD}\n")).unwrap();
        std::fs::write(paths.log_secret(), "918273645\n").unwrap();
        let record = InstanceRecord { digest, spec, build: Some(100) };
        std::fs::write(paths.record(), serde_json::to_string(&record).unwrap()).unwrap();
        std::fs::create_dir_all(paths.upper().join("left4dead2")).unwrap();
        std::fs::create_dir_all(paths.merged()).unwrap();
    }
    let build = host.build(100);
    std::fs::create_dir_all(build.join("left4dead2/addons")).unwrap();
    std::fs::write(build.join("srcds_run"), "#!/bin/sh\n").unwrap();
    std::fs::write(build.join("left4dead2/addons/big.vpk"), big()).unwrap();
    let upper = host.instance(&Name::new("coop-1").unwrap()).upper();
    std::fs::write(upper.join("left4dead2/motd.txt"), "Welcome to coop-1").unwrap();
    symlink("/etc/shadow", upper.join("shadow")).unwrap();
    symlink("../../instances/coop-1/rcon_password", upper.join("password")).unwrap();
    symlink(host.instance(&Name::new("versus-1").unwrap()).dir, upper.join("left4dead2/versus")).unwrap();
    std::fs::write(upper.join("left4dead2/<script>x.txt"), "a name to escape").unwrap();
    let huge = upper.join("left4dead2/huge.log");
    std::fs::write(&huge, "line of the log\n".repeat(8 * 1024)).unwrap();
    std::fs::File::options().write(true).open(&huge).unwrap().set_len(1 << 40).unwrap();
    nix::unistd::mkfifo(&upper.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// 3 MiB that are not the same from one chunk to the next.
fn big() -> Vec<u8> {
    (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
}

/// The raw bytes of a download.
fn bytes(app: &TestApp, client: &Client, path: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent.get(app.url(path)).header("Cookie", client.cookie.as_deref().unwrap()).call().unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap())
}

#[test]
fn the_owner_browses_previews_and_downloads_and_nothing_leaves_the_tree() {
    let app = TestApp::start();
    lay_out(&app);
    let mut alice = app.signed_in("alice");
    let mut answers = Vec::new();

    let page = alice.get("/servers/coop-1");
    assert!(page.body.contains("href=\"/servers/coop-1/files\""), "the server's page links its files");
    let top = alice.get("/servers/coop-1/files");
    assert_eq!(top.status, 200, "{}", top.body);
    assert!(top.body.contains(">left4dead2</a>") && top.body.contains(">srcds_run</a>"), "{}", top.body);
    assert!(top.body.contains("build 100") && top.body.contains("&rarr; &#x2f;etc&#x2f;shadow"), "{}", top.body);
    let folder = alice.get("/servers/coop-1/files?path=left4dead2");
    assert!(folder.body.contains(">cfg</a>") && folder.body.contains("config"), "{}", folder.body);
    assert!(folder.body.contains(">motd.txt</a>") && folder.body.contains("upper"), "{}", folder.body);
    assert!(!folder.body.contains(">motd.txt</a> <span"), "only a link shows a target: {}", folder.body);
    let cfg = alice.get("/servers/coop-1/files?path=left4dead2%2Fcfg%2Fserver.cfg");
    assert_eq!(cfg.status, 200, "{}", cfg.body);
    assert!(cfg.body.contains("rcon_password &quot;(kept on the host, never shown)&quot;"), "{}", cfg.body);
    let motd = alice.get("/servers/coop-1/files?path=left4dead2/motd.txt");
    assert!(motd.body.contains("Welcome to coop-1"), "{}", motd.body);
    let binary = alice.get("/servers/coop-1/files?path=left4dead2/addons/big.vpk");
    assert!(binary.body.contains("id=\"binary\""), "{}", binary.body);
    assert!(folder.body.contains("&lt;script&gt;x.txt") && !folder.body.contains("<script>x"));
    // A file of a TiB: its preview is its first 64 KiB, its download a stream.
    let huge = alice.get("/servers/coop-1/files?path=left4dead2/huge.log");
    assert!(huge.body.contains("id=\"cut\"") && huge.body.contains("line of the log"), "{}", huge.body);
    assert!(huge.body.len() < 200 * 1024, "the preview is bounded: {} bytes", huge.body.len());
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = app.url("/servers/coop-1/files/download?path=left4dead2/huge.log");
    let mut streamed = agent.get(url).header("Cookie", alice.cookie.as_deref().unwrap()).call().unwrap();
    let mut start = vec![0; 1 << 20];
    std::io::Read::read_exact(&mut streamed.body_mut().as_reader(), &mut start).unwrap();
    assert!(start.starts_with(b"line of the log\n"), "the download starts with the file");
    drop(streamed);
    answers.extend([page.body, top.body, folder.body, cfg.body, motd.body, binary.body]);

    let (status, vpk) = bytes(&app, &alice, "/servers/coop-1/files/download?path=left4dead2/addons/big.vpk");
    assert_eq!(status, 200);
    assert!(vpk == big(), "the download is the file, byte for byte ({} bytes)", vpk.len());
    let (status, cfg) = bytes(&app, &alice, "/servers/coop-1/files/download?path=left4dead2/cfg/server.cfg");
    let cfg = String::from_utf8(cfg).unwrap();
    assert_eq!(status, 200);
    assert!(cfg.contains("hostname") && cfg.contains("(kept on the host, never shown)"), "{cfg}");
    answers.push(cfg);

    // Whatever is refused or missing is one answer: the 404 of a server that does not exist.
    let missing = alice.get("/servers/coop-9/files");
    assert_eq!(missing.status, 404);
    let long = "a/".repeat(600);
    for attack in [
        "..",
        "%2e%2e",
        "%2E%2E%2Finstances%2Fcoop-1%2Frcon_password",
        "left4dead2/../../instances/coop-1/rcon_password",
        "left4dead2/%2e%2e/%2e%2e/instances",
        "/etc/passwd",
        "%2Fetc%2Fshadow",
        "left4dead2%00/motd.txt",
        long.as_str(),
        "shadow",
        "password",
        "left4dead2/versus",
        "left4dead2/versus/rcon_password",
        "left4dead2/versus/instance.json",
        "fifo",
        "nothing-here",
    ] {
        for page in ["files", "files/download"] {
            let reply = alice.get(&format!("/servers/coop-1/{page}?path={attack}"));
            assert_eq!((reply.status, &reply.body), (404, &missing.body), "{page} {attack}");
        }
    }

    // Bob: alice's server's files do not exist for him; nor does a name no server may have.
    let mut bob = app.signed_in("bob");
    for path in [
        "/servers/coop-1/files",
        "/servers/coop-1/files?path=left4dead2/cfg/server.cfg",
        "/servers/coop-1/files/download?path=left4dead2/cfg/server.cfg",
        "/servers/Not..A..Name/files",
        "/servers/coop-9/files",
    ] {
        let reply = bob.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.body == missing.body, "{path}: {}", reply.body);
        answers.push(reply.body);
    }
    assert_eq!(bob.get("/servers/versus-1/files").status, 200, "his own server's files are his");
    // An admin sees every server's files.
    assert_eq!(app.signed_in("ada").get("/servers/coop-1/files?path=left4dead2").status, 200);

    for answer in &answers {
        assert!(!answer.contains(PASSWORD), "the RCON password is in an answer: {answer}");
        assert!(!answer.contains("918273645"), "the log secret is in an answer: {answer}");
    }
    assert!(Path::new(&app.root.path().join("instances/coop-1/rcon_password")).exists());
}
