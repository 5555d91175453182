//! A sandbox host with left4me installed as deploy/install.sh installs it, and a state repo the
//! tests commit to from the host's side.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use left4me_sim::{Git, Sandbox, workspace};

pub struct Host {
    pub sandbox: Sandbox,
    pub disk: tempfile::TempDir,
}

impl Host {
    /// Left4me installed; its service running with a resync every second, or stopped when the
    /// test runs its passes itself (the service would race them).
    pub fn installed(service: bool) -> Host {
        let disk = left4me_sim::disk(Path::new(env!("CARGO_TARGET_TMPDIR")), "reconciler-disk-").unwrap();
        let sandbox = Sandbox::boot(disk.path(), &[]).expect("the sandbox boots");
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_left4me")).parent().unwrap();
        sandbox.install_left4me(bin_dir, true);
        if service {
            sandbox.run_ok("sh", &["-c", "echo LEFT4ME_RESYNC_SECONDS=1 >> /etc/left4me/host.env"]);
            sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
        } else {
            sandbox.run_ok("systemctl", &["disable", "--now", "--quiet", "left4me-reconciler.service"]);
        }
        Host { sandbox, disk }
    }

    /// The state repo, from the host's side.
    pub fn repo(&self) -> PathBuf {
        self.disk.path().join("root/state")
    }

    pub fn git(&self, args: &[&str]) {
        // The host's state repo belongs to its web user; these tests run git as root.
        Git::new(self.repo(), "Alice").any_owner().run(args);
    }

    pub fn commit_examples(&self) {
        let copied =
            Command::new("cp").arg("-a").arg(workspace().join("examples/state/.")).arg(self.repo()).status().unwrap();
        assert!(copied.success());
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--message", "examples"]);
    }

    /// Adds a script overlay with this build.sh to the repo (not committed) and stacks it in the
    /// coop blueprint, committed.
    pub fn stack_script_overlay(&self, name: &str, build: &str) {
        std::fs::create_dir_all(self.repo().join("overlays").join(name)).unwrap();
        std::fs::write(
            self.repo().join(format!("overlays/{name}/overlay.yaml")),
            format!("apiVersion: left4me/v1\nkind: Overlay\nmetadata: {{name: {name}}}\nspec: {{type: script}}\n"),
        )
        .unwrap();
        std::fs::write(self.repo().join(format!("overlays/{name}/build.sh")), build).unwrap();
        self.git(&["add", "--all"]);
        let stacked = format!("overlays: [{name}, tickrate]");
        self.commit("blueprints/coop.yaml", "overlays: [tickrate]", &stacked, &format!("coop: {name}"));
    }

    /// Replaces `from` with `to` in a file of the repo and commits it.
    pub fn commit(&self, file: &str, from: &str, to: &str, message: &str) {
        let path = self.repo().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} in {file}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
        self.git(&["commit", "--quiet", "--all", "--message", message]);
    }

    pub fn left4me(&self, args: &[&str]) -> Output {
        self.sandbox.run("left4me", args)
    }

    pub fn status(&self) -> serde_json::Value {
        let out = self.left4me(&["status", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A server's report in `left4me status` (Sync, Health, players…); null when not there.
    pub fn server(&self, name: &str) -> serde_json::Value {
        self.status()["servers"].as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap_or_default()
    }

    pub fn running(&self, name: &str) -> bool {
        self.server(name)["health"] == "Running"
    }

    /// An instance's status from l4d2ctl (digests, ports, override).
    pub fn instance(&self, name: &str) -> serde_json::Value {
        let text = self.sandbox.run_ok("l4d2ctl", &["status", name, "--json"]);
        serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone()
    }

    /// Polls `check` for up to `seconds`; its last answer.
    pub fn wait_for(&self, seconds: u64, mut check: impl FnMut(&Host) -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        while std::time::Instant::now() < deadline {
            if check(self) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        check(self)
    }

    /// Like [`Host::wait_for`], failing with `what` and the service's journal.
    pub fn expect_within(&self, seconds: u64, what: &str, check: impl FnMut(&Host) -> bool) {
        if !self.wait_for(seconds, check) {
            let out = self.sandbox.run("journalctl", &["-u", "left4me-reconciler", "--no-pager", "-n", "40"]);
            panic!("{what}; journal:\n{}", String::from_utf8_lossy(&out.stdout));
        }
    }
}

pub fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
