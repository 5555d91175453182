//! A sandbox host with left4me installed as `deploy/install.sh` installs it, and the examples'
//! specs rendered by the state model.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use left4me_sim::{Sandbox, built_binary};
use left4me_state::Name;

/// The sandbox's `$ROOT`.
pub const ROOT: &str = "/var/lib/left4me";

pub struct Host {
    pub sandbox: Sandbox,
    pub disk: tempfile::TempDir,
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_l4d2ctl")).parent().unwrap().to_path_buf()
}

impl Host {
    /// Boots a sandbox and runs `deploy/install.sh` in it, with fake-steamcmd for steamcmd.
    pub fn installed() -> Host {
        let host = Host::booted();
        let steamcmd = built_binary("fake-steamcmd").expect("fake-steamcmd is built");
        built_binary("sim-srcds").expect("sim-srcds is built, next to fake-steamcmd");
        let install = workspace().join("deploy/install.sh");
        host.ok(
            install.to_str().unwrap(),
            &["--bin-dir", bin_dir().to_str().unwrap(), "--steamcmd", steamcmd.to_str().unwrap()],
        );
        host
    }

    pub fn booted() -> Host {
        let disk = left4me_sim::disk(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), "l4d2ctl-disk-").unwrap();
        Host::boot_on(disk)
    }

    /// Boots on a disk that may have booted before: a reboot.
    pub fn boot_on(disk: tempfile::TempDir) -> Host {
        let workspace = workspace();
        let sandbox = Sandbox::boot(disk.path(), &[&workspace]).expect("the sandbox boots");
        Host { sandbox, disk }
    }

    /// Runs a command inside; panics with its output unless it succeeds.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        self.sandbox.run_ok(program, args)
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.sandbox.run(program, args)
    }

    /// Runs `script` as the game of server `name` runs: in its unit's user and mount namespaces,
    /// as the game's user (where its tree is at `$ROOT/runtime/<name>/merged`).
    pub fn as_game(&self, name: &str, script: &str) -> Output {
        let unit = format!("left4me-server@{name}.service");
        let pid = self.ok("systemctl", &["show", "--property=MainPID", "--value", &unit]).trim().to_owned();
        let uid = self.ok("id", &["-u", "left4me"]).trim().to_owned();
        let gid = self.ok("id", &["-g", "left4me"]).trim().to_owned();
        // Its user namespace, when it has one of its own (nsenter cannot enter the one it is in).
        let own = |pid: &str| self.ok("readlink", &[&format!("/proc/{pid}/ns/user")]);
        let namespaces: &[&str] = if own(&pid) == own("self") { &["-m"] } else { &["-U", "-m"] };
        let mut args = vec!["-t", pid.as_str()];
        args.extend(namespaces);
        args.extend(["-S", &uid, "-G", &gid, "--", "sh", "-c", script]);
        self.run("nsenter", &args)
    }

    pub fn l4d2ctl(&self, args: &[&str]) -> Output {
        self.run("l4d2ctl", args)
    }

    pub fn l4d2ctl_ok(&self, args: &[&str]) -> String {
        self.ok("l4d2ctl", args)
    }

    /// The host-side path of a path under the sandbox's `$ROOT`.
    pub fn root_path(&self, inside: &str) -> PathBuf {
        self.disk.path().join("root").join(inside.trim_start_matches(ROOT).trim_start_matches('/'))
    }

    /// A folder visible at the same path inside and outside the sandbox.
    pub fn shared_dir(&self) -> PathBuf {
        let dir = self.disk.path().join("shared");
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Materialises an example overlay's files under `$ROOT/overlays/<name>`, as the reconciler will.
    pub fn put_overlay(&self, name: &str, files: &[(&str, &str)]) {
        for (path, contents) in files {
            let target = self.root_path(&format!("{ROOT}/overlays/{name}/{path}"));
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::write(target, contents).unwrap();
        }
    }

    /// Renders an example server's spec with the state model and writes it where the sandbox
    /// sees it; returns its path.
    pub fn example_spec(&self, server: &str) -> String {
        let state = left4me_state::load_dir(&workspace().join("examples/state")).unwrap().unwrap();
        let spec = state.instance_spec(&Name::new(server).unwrap()).unwrap();
        self.write_spec(server, &spec.to_json())
    }

    pub fn write_spec(&self, file: &str, text: &str) -> String {
        let path = self.shared_dir().join(format!("{file}.json"));
        fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// The example `tickrate` overlay, materialised from the examples.
    pub fn put_example_overlays(&self) {
        let cfg =
            fs::read_to_string(workspace().join("examples/state/overlays/tickrate/files/left4dead2/cfg/server.cfg"))
                .unwrap();
        self.put_overlay("tickrate", &[("left4dead2/cfg/server.cfg", &cfg)]);
    }

    /// Materialises the example overlays and initializes an example server.
    pub fn initialize_example(&self, server: &str) {
        self.put_example_overlays();
        let spec = self.example_spec(server);
        self.l4d2ctl_ok(&["initialize", server, "-f", &spec]);
    }

    /// Installs, materialises the example overlays, initializes and starts an example server, and
    /// waits until it answers A2S. Returns its status.
    pub fn start_example(&self, server: &str) -> serde_json::Value {
        self.initialize_example(server);
        self.l4d2ctl_ok(&["start", server]);
        self.wait_for(15, |h| h.answered(server))
            .unwrap_or_else(|| panic!("{server} never answered: {}", logs(self, server)))
    }

    /// The status of a server that answers A2S.
    pub fn answered(&self, name: &str) -> Option<serde_json::Value> {
        let status = self.status_json(name);
        (!status["query"].is_null()).then_some(status)
    }

    /// Waits until a failing server's unit gives up, and checks that it was restarted up to the
    /// limit (StartLimitBurst=5 within 60 s) and then stays failed.
    pub fn assert_gives_up(&self, name: &str) -> serde_json::Value {
        let status = self
            .wait_for(60, |h| {
                let s = h.status_json(name);
                (s["active_state"] == "failed").then_some(s)
            })
            .unwrap_or_else(|| panic!("{name} kept restarting: {}", self.status_json(name)));
        let restarts = status["restarts"].as_u64().unwrap();
        assert!(restarts >= 4, "restarted up to the limit: {status}");
        std::thread::sleep(std::time::Duration::from_secs(3));
        let later = self.status_json(name);
        assert_eq!(
            (later["active_state"].as_str(), later["restarts"].as_u64()),
            (Some("failed"), Some(restarts)),
            "no more restarts after the limit"
        );
        status
    }

    pub fn status_json(&self, name: &str) -> serde_json::Value {
        let text = self.l4d2ctl_ok(&["status", name, "--json"]);
        let all: serde_json::Value = serde_json::from_str(&text).unwrap();
        all[0].clone()
    }

    /// Polls `check` for up to `seconds`, returning its last result.
    pub fn wait_for<T>(&self, seconds: u64, mut check: impl FnMut(&Host) -> Option<T>) -> Option<T> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            if let Some(value) = check(self) {
                return Some(value);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn logs(host: &Host, server: &str) -> String {
    text(&host.l4d2ctl(&["logs", server, "--lines", "50"]).stdout)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `--json` messages of a write, one per line.
pub fn read_messages(stdout: &[u8]) -> Vec<l4d2ctl::api::Message> {
    text(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is no message: {e}")))
        .collect()
}
