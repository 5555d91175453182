//! Bad input gets one clear line on stderr, a non-zero exit, and changes nothing.

use crate::support::{Host, ROOT, text};

fn refused(host: &Host, args: &[&str]) -> String {
    let out = host.l4d2ctl(args);
    assert!(!out.status.success(), "l4d2ctl {args:?} succeeded");
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("l4d2ctl: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

/// A child that is killed and reaped when the test ends, however it ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn instances(host: &Host) -> Vec<String> {
    match std::fs::read_dir(host.root_path(&format!("{ROOT}/instances"))) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let host = Host::installed();
    host.put_example_overlays();
    let good = host.example_spec("coop-1");

    for name in ["../etc", "a/b", "Coop", &"a".repeat(65), ""] {
        let stderr = refused(&host, &["initialize", name, "-f", &good]);
        assert!(stderr.contains("invalid server name"), "{stderr}");
        refused(&host, &["start", name]);
    }
    let stderr = refused(&host, &["initialize", "coop-2", "-f", &good]);
    assert!(stderr.contains("the spec is for coop-1, not coop-2"), "{stderr}");

    let unknown = host.write_spec(
        "unknown",
        r#"{"name":"coop-1","port":27015,"hostname":"x","overlays":[],"arguments":[],"config":[],"prot":1}"#,
    );
    let stderr = refused(&host, &["initialize", "coop-1", "-f", &unknown]);
    assert!(stderr.contains(":1:") && stderr.contains("unknown field `prot`"), "{stderr}");

    // An overlay folder that is a symlink out of $ROOT.
    host.ok("ln", &["-s", "/etc", &format!("{ROOT}/overlays/escape")]);
    let escape = host.write_spec(
        "escape",
        r#"{"name":"coop-1","port":27015,"hostname":"x","overlays":[{"name":"escape","type":"files","digest":"sha256:0"}],"arguments":[],"config":[]}"#,
    );
    let stderr = refused(&host, &["initialize", "coop-1", "-f", &escape]);
    assert!(stderr.contains("resolves to /etc"), "{stderr}");

    refused(&host, &["start", "coop-1"]);
    assert_eq!(instances(&host), Vec::<String>::new(), "nothing was created");
}

#[test]
fn a_port_already_taken_fails_the_start_with_the_games_error() {
    let host = Host::installed();
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    // Something else holds the game's port inside the sandbox.
    let blocker = host
        .sandbox
        .command("python3")
        .args(["-c", "import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 27015)); time.sleep(60)"])
        .spawn()
        .unwrap();
    let _blocker = Reaped(blocker);
    std::thread::sleep(std::time::Duration::from_millis(300));
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    host.l4d2ctl_ok(&["start", "coop-1"]);
    host.assert_gives_up("coop-1");
    let logs = host.l4d2ctl_ok(&["logs", "coop-1", "--lines", "20"]);
    assert!(logs.contains("27015"), "the game's error names the port: {logs}");
}

#[test]
fn a_missing_base_install_is_reported() {
    let host = Host::booted();
    let steamcmd = left4me_sim::built_binary("fake-steamcmd").unwrap();
    let install = crate::support::workspace().join("deploy/install.sh");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_l4d2ctl")).parent().unwrap();
    host.ok(
        install.to_str().unwrap(),
        &["--bin-dir", bin_dir.to_str().unwrap(), "--steamcmd", steamcmd.to_str().unwrap(), "--no-game"],
    );
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    let stderr = refused(&host, &["initialize", "coop-1", "-f", &spec]);
    assert!(
        stderr.contains("the game is not installed (no build in") && stderr.contains("l4d2ctl install"),
        "{stderr}"
    );
    assert_eq!(instances(&host), Vec::<String>::new());
}
