//! A fleet of sandbox hosts on one network, set up as an operator sets one up with
//! `deploy/install.sh` and `deploy/add-host.sh`: the first host is the control host (the state
//! repo and the web app, `LEFT4ME_HOST` its name), the others join it as agents following its repo
//! over SSH. For the tests and benchmarks of many hosts.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Network, Sandbox, workspace};

/// How long a host may take to converge on a commit (fetched every 2 s, one pass, a start).
pub const CONVERGE_SECONDS: u64 = 90;
pub const STATE: &str = "/var/lib/left4me/state";

/// One host of the fleet: its sandbox (None while powered off), its disk and its address.
pub struct Member {
    pub name: &'static str,
    pub number: u8,
    pub address: Ipv4Addr,
    disk: tempfile::TempDir,
    sandbox: Option<Sandbox>,
}

impl Member {
    pub fn boot(base: &Path, name: &'static str, number: u8, network: &Network) -> Member {
        let disk = crate::disk(base, &format!("fleet-{name}-")).unwrap();
        let sandbox = Sandbox::boot(disk.path(), &[]).expect("the sandbox boots");
        let address = network.attach(&sandbox, number).expect("the host is attached");
        Member { name, number, address, disk, sandbox: Some(sandbox) }
    }

    pub fn host(&self) -> &Sandbox {
        self.sandbox.as_ref().unwrap_or_else(|| panic!("{} is powered off", self.name))
    }

    pub fn power_off(&mut self) {
        self.sandbox.take().expect("running").power_off();
    }

    /// Boots again on the same disk and plugs the host in again, as after a power cut.
    pub fn power_on(&mut self, network: &Network) {
        let sandbox = Sandbox::boot(self.disk.path(), &[]).expect("the sandbox boots again");
        assert_eq!(network.attach(&sandbox, self.number).unwrap(), self.address);
        self.sandbox = Some(sandbox);
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.host().run_ok("left4me", &["status", "--json"])).unwrap()
    }

    pub fn active(&self, server: &str) -> bool {
        let unit = format!("left4me-server@{server}.service");
        said(&self.host().run("systemctl", &["is-active", &unit])).trim() == "active"
    }

    /// The state repo's `main` on this host.
    pub fn head(&self) -> String {
        self.host().run_ok("git", &["-C", STATE, "rev-parse", "main"]).trim().to_owned()
    }

    /// Polls `check` for up to `seconds`; panics with `what` and this host's reconciler journal.
    pub fn expect_within(&self, seconds: u64, what: &str, mut check: impl FnMut(&Member) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        if !check(self) {
            let journal = self.host().run("journalctl", &["-u", "left4me-reconciler", "--no-pager", "-n", "40"]);
            panic!(
                "{}: {what} within {seconds} s; status:\n{:#}\njournal:\n{}",
                self.name,
                self.status(),
                said(&journal)
            );
        }
    }

    /// Waits until this host applied `head` and runs exactly `servers` of `all`.
    pub fn expect_converged(&self, head: &str, servers: &[&str], all: &[&str]) {
        self.expect_within(CONVERGE_SECONDS, &format!("applies {head} and runs {servers:?}"), |m| {
            m.status()["last_applied"] == head && all.iter().all(|s| m.active(s) == servers.contains(s))
        });
    }
}

/// The arguments of the `deploy/add-host.sh <mode> …` line a run printed.
pub fn printed_command(out: &str, mode: &str) -> Vec<String> {
    let prefix = format!("deploy/add-host.sh {mode} ");
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}…` line printed:\n{out}"));
    let words = shlex::split(line).unwrap_or_else(|| panic!("the printed line is no shell words: {line}"));
    words[2..].to_vec()
}

pub fn add_host(host: &Sandbox, mode: &str, args: &[String]) -> String {
    let script = workspace().join("deploy/add-host.sh");
    let args: Vec<&str> = std::iter::once(mode).chain(args.iter().map(String::as_str)).collect();
    host.run_ok(script.to_str().unwrap(), &args)
}

/// Sets b or c up as an agent of `control` as the README says: `show` on the control host, its
/// line run on the new host (with install.sh's options). Returns the agent's arguments and those
/// of the line it printed for the control host to run.
pub fn join(control: &Member, member: &Member, bin_dir: &Path) -> (Vec<String>, Vec<String>) {
    let shown = add_host(
        control.host(),
        "show",
        &["--name".into(), member.name.into(), "--address".into(), control.address.to_string()],
    );
    let mut agent = printed_command(&shown, "agent");
    let steamcmd = crate::built_binary("fake-steamcmd").unwrap();
    agent.extend(
        [
            "--address",
            &member.address.to_string(),
            "--fetch-seconds",
            "2",
            "--bin-dir",
            bin_dir.to_str().unwrap(),
            "--steamcmd",
            steamcmd.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let joined = add_host(member.host(), "agent", &agent);
    // As install_left4me does for every sandbox host: Steam's Web API on the loopback.
    member.host().serve_steam_api();
    member.host().run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
    let control = printed_command(&joined, "control");
    (agent, control)
}

/// examples/fleet with the hosts at their addresses on this network, without coop-c2.
pub fn fleet_state(members: &[&Member]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crate::copy_dir(&workspace().join("examples/fleet"), dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("servers/coop-c2.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("README.md")).unwrap();
    for member in members {
        let path = dir.path().join(format!("hosts/{}.yaml", member.name));
        let yaml = std::fs::read_to_string(&path).unwrap();
        let yaml: String = yaml
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("address:") { format!("  address: {}", member.address) } else { l.into() }
            })
            .map(|l| l + "\n")
            .collect();
        std::fs::write(&path, yaml).unwrap();
    }
    dir
}

/// Commits `dir` on the control host; its new head.
pub fn commit(control: &Member, dir: &Path, message: &str) -> String {
    control.host().commit_state(dir, message).unwrap();
    control.head()
}

/// Boots `names` (the first the control host) on one network, each knowing the others by name
/// and running sshd; installs left4me on the control host, names it, and joins the others to it
/// as agents, side by side; the control host authorises each. `base`: where the disks are made
/// (a test's `CARGO_TARGET_TMPDIR`); `bin_dir`: the built binaries.
pub fn set_up(base: &Path, bin_dir: &Path, names: &[&'static str]) -> (Network, Vec<Member>) {
    let network = Network::new().expect("a network");
    let members: Vec<Member> =
        names.iter().enumerate().map(|(i, name)| Member::boot(base, name, i as u8 + 1, &network)).collect();
    let known: Vec<(&str, Ipv4Addr)> = members.iter().map(|m| (m.name, m.address)).collect();
    for member in &members {
        member.host().set_hosts(&known);
        member.host().serve_ssh();
    }
    let (control, agents) = members.split_first().expect("a control host");
    control.host().install_left4me(bin_dir, true);
    let name = format!("echo LEFT4ME_HOST={} >> /etc/left4me/host.env", control.name);
    control.host().run_ok("sh", &["-c", &name]);
    // Both read host.env when they start: the web app too needs the name to place the servers.
    control.host().run_ok("systemctl", &["restart", "left4me-reconciler.service", "left4me-web.service"]);
    let joined = std::thread::scope(|s| {
        let joins: Vec<_> = agents.iter().map(|m| s.spawn(|| join(control, m, bin_dir))).collect();
        joins.into_iter().map(|j| j.join().unwrap()).collect::<Vec<_>>()
    });
    for (_, authorise) in &joined {
        add_host(control.host(), "control", authorise);
    }
    (network, members)
}

/// What a command printed, stdout then stderr.
pub fn said(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}
