//! The sandbox host (docs/DESIGN.md §9): a real systemd as PID 1 of private namespaces, on a disk
//! folder that survives power cuts, with commands run inside through `nsenter`.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a boot may take before it counts as failed.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A booted sandbox host. Dropping it cuts the power.
pub struct Sandbox {
    helper: Child,
    /// The host's PID of the sandbox's systemd.
    init: i32,
    disk: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0} is not built; build the workspace's binaries first (cargo build --workspace)")]
    NotBuilt(PathBuf),
    #[error("cannot start {what}: {cause}")]
    Spawn { what: String, cause: std::io::Error },
    #[error("the sandbox did not boot: {0}")]
    Boot(String),
}

/// A fresh disk folder for a sandbox, removed when dropped. It lies in `base` (a test's
/// `CARGO_TARGET_TMPDIR`) unless that is under a folder the sandbox lays an overlay over
/// (`/etc`, `/var`, `/usr/local`), where an overlay's upper cannot live: then in
/// `/srv/left4me-sandboxes`.
pub fn disk(base: &Path, prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let overlaid = ["/etc", "/var", "/usr/local"].iter().any(|o| base.starts_with(o));
    let base = if overlaid { PathBuf::from("/srv/left4me-sandboxes") } else { base.to_path_buf() };
    std::fs::create_dir_all(&base)?;
    tempfile::Builder::new().prefix(prefix).tempdir_in(base)
}

/// A port free for both UDP and TCP on loopback when asked, and never handed out twice in this
/// process, so that tests running side by side do not start game servers on each other's ports.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::net::{TcpListener, UdpSocket};
    use std::sync::Mutex;
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("loopback has ephemeral UDP ports");
        let port = udp.local_addr().expect("a bound socket has an address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut taken = TAKEN.lock().expect("no test panics while holding the port set");
        if taken.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// The root of this workspace (its `deploy/`, `examples/`).
pub fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The port fake-steam-api listens on inside a sandbox host.
pub const STEAM_API_PORT: u16 = 27080;
/// Where [`Sandbox::serve_webhook`] listens on the host's loopback.
pub const WEBHOOK_PORT: u16 = 27090;
/// Where sim-webhook keeps its log (`requests.jsonl`) and its knob (`fail`) on the host.
pub const WEBHOOK_DIR: &str = "/var/lib/sim-webhook";

/// What fake-steam-api knows on a fresh host: the collection examples/state's campaigns overlay
/// lists, holding one item the overlay lists itself and one of its own.
const STEAM_API_EXAMPLES: &str = r#"{"collections": {"3014185046": [1575673903, 2784163006]}}"#;

/// The sandbox's own ssh host key (its `.pub` beside it).
const SSH_HOST_KEY: &str = "/etc/ssh/ssh_host_ed25519_key";
/// Where [`Sandbox::authorize_ssh_key`] keeps each user's authorized keys, as `<folder>/<user>`.
const SSH_AUTHORIZED_KEYS: &str = "/etc/ssh/authorized_keys";
/// The sandbox's sshd: Debian's `ssh.service`, minus what a sandbox has no use for (its
/// `/etc/default/ssh`, the `sshd_not_to_be_run` switch), logging to the journal.
const SSHD_UNIT: &str = "[Unit]\nDescription=OpenSSH server of the sandbox host (left4me-sim)\n\
After=network.target\n\
[Service]\nType=notify\nExecStartPre=/usr/sbin/sshd -t\nExecStart=/usr/sbin/sshd -D -e\n\
ExecReload=/usr/sbin/sshd -t\nExecReload=/bin/kill -HUP $MAINPID\nKillMode=process\n\
Restart=on-failure\nRestartPreventExitStatus=255\nRuntimeDirectory=sshd\nRuntimeDirectoryMode=0755\n\
[Install]\nWantedBy=multi-user.target\n";

/// The path of a binary of this workspace, built next to the running test or program.
pub fn built_binary(name: &str) -> Result<PathBuf, SandboxError> {
    let exe = std::env::current_exe().map_err(|cause| SandboxError::Spawn { what: "current_exe".into(), cause })?;
    // Tests run from target/<profile>/deps/, binaries sit in target/<profile>/.
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join(name));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(name));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| SandboxError::NotBuilt(PathBuf::from(name)))
}

impl Sandbox {
    /// Boots on `disk` (created when missing; booting again on the same disk is a reboot) and
    /// waits until systemd reports the system running. The disk, `shares` and the folder of the
    /// built binaries stay visible inside at their own paths, wherever they are.
    pub fn boot(disk: &Path, shares: &[&Path]) -> Result<Sandbox, SandboxError> {
        let helper_path = built_binary("left4me-sandbox")?;
        let mut command = Command::new(&helper_path);
        command.arg("--disk").arg(disk);
        if let Some(binaries) = helper_path.parent() {
            command.arg("--share").arg(binaries);
        }
        command.arg("--share").arg(workspace());
        for share in shares {
            command.arg("--share").arg(share);
        }
        let mut helper = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|cause| SandboxError::Spawn { what: helper_path.display().to_string(), cause })?;
        let stdout = helper.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(BOOT_TIMEOUT).unwrap_or_default();
        let Some(init) = line.trim().strip_prefix("pid ").and_then(|p| p.parse().ok()) else {
            let _ = helper.kill();
            let status = helper.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(SandboxError::Boot(format!(
                "left4me-sandbox gave no init PID ({status}); see its stderr above"
            )));
        };
        let sandbox = Sandbox { helper, init, disk: disk.to_path_buf() };
        sandbox.wait_running()?;
        Ok(sandbox)
    }

    fn wait_running(&self) -> Result<(), SandboxError> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        // Until systemd has opened its socket, systemctl cannot reach it and answers at once.
        loop {
            let state = text(&self.run("systemctl", &["is-system-running"]).stdout).trim().to_owned();
            if !state.is_empty() && state != "offline" {
                break;
            }
            if Instant::now() > deadline {
                return Err(SandboxError::Boot(format!("systemd never answered\n{}", self.report())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut child = self
            .command("systemctl")
            .args(["is-system-running", "--wait"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|cause| SandboxError::Spawn { what: "nsenter".into(), cause })?;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SandboxError::Boot(format!("not running after {BOOT_TIMEOUT:?}\n{}", self.report())));
                }
            }
        }
        let output = child.wait_with_output().map_err(|cause| SandboxError::Spawn { what: "nsenter".into(), cause })?;
        let state = text(&output.stdout).trim().to_owned();
        if state != "running" {
            let stderr = text(&output.stderr);
            return Err(SandboxError::Boot(format!("systemd reports {state:?} {stderr}\n{}", self.report())));
        }
        Ok(())
    }

    /// What went wrong, for a failed boot: failed units and the end of the journal.
    fn report(&self) -> String {
        let failed = self.run("systemctl", &["--failed", "--no-pager", "--no-legend"]);
        let journal = self.run("journalctl", &["--boot", "--no-pager", "--lines=40"]);
        format!("failed units:\n{}\njournal:\n{}", text(&failed.stdout), text(&journal.stdout))
    }

    /// A command that runs inside the sandbox, in all its namespaces, with a clean environment.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.init.to_string(), "-m", "-u", "-n", "-p", "-C", "--wd=/", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8");
        command
    }

    /// Runs a command inside and returns its output, whatever its exit status.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).output().unwrap_or_else(|e| panic!("nsenter cannot run {program}: {e}"))
    }

    /// Runs a command inside and panics, with its output, unless it succeeds. Returns its stdout.
    pub fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let output = self.run(program, args);
        assert!(
            output.status.success(),
            "in the sandbox, `{program} {}` failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Installs left4me as `deploy/install.sh` does on a real host, with the binaries of
    /// `bin_dir` and fake-steamcmd for steamcmd (`--no-game` skips the game). Returns its output.
    pub fn install_left4me(&self, bin_dir: &Path, game: bool) -> String {
        let steamcmd = built_binary("fake-steamcmd").expect("fake-steamcmd is built");
        let install = workspace().join("deploy/install.sh");
        let mut args = vec![
            "--bin-dir",
            bin_dir.to_str().expect("a UTF-8 path"),
            "--steamcmd",
            steamcmd.to_str().expect("a UTF-8 path"),
        ];
        if !game {
            args.push("--no-game");
        }
        let installed = self.run_ok(install.to_str().expect("a UTF-8 path"), &args);
        self.serve_steam_api();
        installed
    }

    /// Starts `fake-steam-api` on the host's loopback (unit `fake-steam-api.service`, enabled, so
    /// it is back after a reboot; port [`STEAM_API_PORT`]) and points the host's
    /// `LEFT4ME_STEAM_API` at it. It answers from
    /// `/var/lib/fake-steamcmd/steam-api.json`, which this writes when missing with the example
    /// state's collection, so the examples converge as they would against Steam.
    pub fn serve_steam_api(&self) {
        let api = built_binary("fake-steam-api").expect("fake-steam-api is built");
        let state = "/var/lib/fake-steamcmd";
        self.run_ok("mkdir", &["-p", state]);
        let known = format!("{state}/steam-api.json");
        self.run_ok("sh", &["-c", &format!("[ -e {known} ] || echo '{STEAM_API_EXAMPLES}' > {known}")]);
        let listen = format!("127.0.0.1:{STEAM_API_PORT}");
        let api = api.to_str().expect("a UTF-8 path");
        let unit = format!(
            "[Unit]\nDescription=fake-steam-api\n[Service]\nExecStart={api} --listen {listen}\n\
             [Install]\nWantedBy=multi-user.target\n"
        );
        self.run_ok("sh", &["-c", &format!("printf '{unit}' > /etc/systemd/system/fake-steam-api.service")]);
        self.run_ok("systemctl", &["enable", "--now", "--quiet", "fake-steam-api.service"]);
        let line = format!("LEFT4ME_STEAM_API=http://{listen}");
        self.run_ok("sh", &["-c", &format!("echo {line} >> /etc/left4me/host.env")]);
    }

    /// Starts `sim-webhook` on the host's loopback (unit `sim-webhook.service`, port
    /// [`WEBHOOK_PORT`], recording in [`WEBHOOK_DIR`]); returns its base URL.
    pub fn serve_webhook(&self) -> String {
        let receiver = built_binary("sim-webhook").expect("sim-webhook is built");
        let receiver = receiver.to_str().expect("a UTF-8 path");
        let listen = format!("127.0.0.1:{WEBHOOK_PORT}");
        let unit = format!(
            "[Unit]\nDescription=sim-webhook\n[Service]\nExecStart={receiver} --listen {listen} --dir {WEBHOOK_DIR}\n\
             [Install]\nWantedBy=multi-user.target\n"
        );
        self.run_ok("sh", &["-c", &format!("printf '{unit}' > /etc/systemd/system/sim-webhook.service")]);
        self.run_ok("systemctl", &["enable", "--now", "--quiet", "sim-webhook.service"]);
        format!("http://{listen}")
    }

    /// Names hosts in the sandbox's `/etc/hosts` (kept on its disk): each name resolves to its
    /// address from now on. Earlier entries of these names go; every other line stays, localhost's
    /// among them.
    pub fn set_hosts(&self, entries: &[(&str, Ipv4Addr)]) {
        for (name, _) in entries {
            assert!(
                !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '#'),
                "{name:?} is no host name"
            );
        }
        let current = self.run_ok("cat", &["/etc/hosts"]);
        self.write_file("/etc/hosts", &hosts_with(&current, entries));
    }

    /// Runs a real OpenSSH server inside: `/usr/sbin/sshd` as the enabled unit `sim-sshd.service`
    /// (so it is back after a reboot on the same disk), port 22 on every address, with the
    /// machine's `/etc/ssh/sshd_config` and, in `sshd_config.d/sim-sshd.conf`, a host key of the
    /// sandbox's own and a second place for authorized keys ([`Sandbox::authorize_ssh_key`]);
    /// users other than root may log in. Debian's own `ssh.service` stays off: a sandbox's first boot drops the machine's enabled
    /// units.
    pub fn serve_ssh(&self) {
        self.own_host_key();
        self.run_ok("mkdir", &["-p", "/etc/ssh/sshd_config.d"]);
        let config = format!(
            "# left4me-sim: the sandbox's own host key, and authorized keys kept on the sandbox's disk\n\
             # (its /root is the machine's).\nHostKey {SSH_HOST_KEY}\n\
             AuthorizedKeysFile .ssh/authorized_keys {SSH_AUTHORIZED_KEYS}/%u\n"
        );
        self.write_file("/etc/ssh/sshd_config.d/sim-sshd.conf", &config);
        self.write_file("/etc/systemd/system/sim-sshd.service", SSHD_UNIT);
        self.let_users_log_in();
        self.run_ok("systemctl", &["enable", "--now", "--quiet", "sim-sshd.service"]);
    }

    /// Users other than root may log in over ssh: `/run/nologin`, which systemd makes at each boot
    /// and `systemd-user-sessions.service` removes once booted — a unit the sandbox masks — is
    /// never made again (an empty `tmpfiles.d` file of the same name, on the disk, overrides
    /// systemd's) and goes now. Else pam_nologin refuses every user but root.
    fn let_users_log_in(&self) {
        self.write_file("/etc/tmpfiles.d/systemd-nologin.conf", "# left4me-sim: no /run/nologin (see serve_ssh)\n");
        self.run_ok("rm", &["-f", "/run/nologin"]);
    }

    /// The sandbox's ed25519 host key, generated once and kept on its disk. The machine's keys show
    /// through the overlay over `/etc` until then, and a host must never present those.
    fn own_host_key(&self) {
        let inside = self.run("cat", &[&format!("{SSH_HOST_KEY}.pub")]);
        let machines = std::fs::read(format!("{SSH_HOST_KEY}.pub")).ok();
        if inside.status.success() && Some(&inside.stdout) != machines.as_ref() {
            return;
        }
        self.run_ok("sh", &["-c", "rm -f /etc/ssh/ssh_host_*"]);
        self.run_ok("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", SSH_HOST_KEY]);
    }

    /// The sandbox's public host key line (`ssh-ed25519 AAAA…`), for a `known_hosts` elsewhere.
    /// Needs [`Sandbox::serve_ssh`] first.
    pub fn host_key(&self) -> String {
        self.run_ok("cat", &[&format!("{SSH_HOST_KEY}.pub")]).trim().to_owned()
    }

    /// Lets `public_key` (an `authorized_keys` line, options such as `command="…"` included) log
    /// in as `user`. The keys live in `/etc/ssh/authorized_keys/<user>`, on the sandbox's disk:
    /// `/root` inside is the machine's own. sshd reads them once [`Sandbox::serve_ssh`] ran.
    pub fn authorize_ssh_key(&self, user: &str, public_key: &str) {
        self.run_ok("mkdir", &["-p", SSH_AUTHORIZED_KEYS]);
        let path = format!("{SSH_AUTHORIZED_KEYS}/{user}");
        let current = self.run("cat", &[&path]);
        let mut keys = if current.status.success() { text(&current.stdout) } else { String::new() };
        keys.push_str(public_key.trim());
        keys.push('\n');
        self.write_file(&path, &keys);
    }

    /// Writes `contents` to `path` inside, replacing it whole (a new file renamed over it).
    fn write_file(&self, path: &str, contents: &str) {
        use std::io::Write;
        let mut child = self
            .command("sh")
            .args(["-c", "cat > \"$1.new\" && mv \"$1.new\" \"$1\"", "sh", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("nsenter cannot write {path}: {e}"));
        let mut stdin = child.stdin.take().expect("stdin was piped");
        stdin.write_all(contents.as_bytes()).unwrap_or_else(|e| panic!("writing {path} in the sandbox: {e}"));
        drop(stdin);
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("writing {path} in the sandbox: {e}"));
        assert!(output.status.success(), "in the sandbox, writing {path} failed: {}", text(&output.stderr));
    }

    /// Commits the files of `from` to the installed host's state repo as the web app's user
    /// (`left4me`), as a person's push would. Needs `install_left4me` first.
    pub fn commit_state(&self, from: &Path, message: &str) -> Result<(), String> {
        copy_dir(from, &self.disk.join("root/state")).map_err(|e| format!("copying {}: {e}", from.display()))?;
        let inside = |args: &[&str]| {
            let output = self.run(args[0], &args[1..]);
            if output.status.success() {
                Ok(())
            } else {
                Err(format!("`{}` failed: {}", args.join(" "), text(&output.stderr)))
            }
        };
        inside(&["chown", "-R", "left4me:left4me", "/var/lib/left4me/state"])?;
        let git = ["runuser", "-u", "left4me", "--", "git", "-C", "/var/lib/left4me/state"];
        let who = ["-c", "user.name=left4me", "-c", "user.email=left4me@left4me.invalid"];
        inside(&[&git[..], &who[..], &["add", "--all"]].concat())?;
        inside(&[&git[..], &who[..], &["commit", "--quiet", "--message", message]].concat())
    }

    /// The tree server `name`'s game runs on, as a path inside the sandbox: a game's tree is
    /// mounted in its own mount namespace only, so it is reached through its unit's main process
    /// (`/proc/<pid>/root` + the tree's path). Panics unless the server runs.
    pub fn game_tree(&self, name: &str) -> String {
        let unit = format!("left4me-server@{name}.service");
        let pid = self.run_ok("systemctl", &["show", "--property=MainPID", "--value", &unit]);
        let pid = pid.trim();
        assert!(!pid.is_empty() && pid != "0", "{unit} runs no process");
        format!("/proc/{pid}/root/var/lib/left4me/runtime/{name}/merged")
    }

    /// The host's PID of the sandbox's systemd.
    pub fn init_pid(&self) -> i32 {
        self.init
    }

    /// The name of the sandbox's cgroup in each of the host's hierarchies.
    pub fn cgroup_name(&self) -> String {
        format!("left4me-sandbox-{}", self.helper.id())
    }

    pub fn disk(&self) -> &Path {
        &self.disk
    }

    /// Cuts the power: every process of the sandbox dies at once and its mounts go with its
    /// namespace. The disk stays, so booting on it again is a reboot.
    pub fn power_off(mut self) {
        self.cut_power();
    }

    fn cut_power(&mut self) {
        // SIGTERM to the helper kills the init with SIGKILL, then the helper removes the cgroups.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.helper.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.helper.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if matches!(self.helper.try_wait(), Ok(None)) {
            self.cut_power();
        }
    }
}

/// `/etc/hosts` with `entries` added, each name dropped from any line that named it before (a line
/// left with no name goes).
fn hosts_with(current: &str, entries: &[(&str, Ipv4Addr)]) -> String {
    let named = |name: &str| entries.iter().any(|(n, _)| *n == name);
    let mut hosts = String::new();
    for line in current.lines() {
        let data = line.split('#').next().unwrap_or_default();
        let mut fields = data.split_whitespace();
        let Some(address) = fields.next() else {
            hosts.push_str(line);
            hosts.push('\n');
            continue;
        };
        let names: Vec<&str> = fields.collect();
        let kept: Vec<&str> = names.iter().copied().filter(|n| !named(n)).collect();
        if kept.len() == names.len() {
            hosts.push_str(line);
            hosts.push('\n');
        } else if !kept.is_empty() {
            hosts.push_str(&format!("{address}\t{}\n", kept.join(" ")));
        }
    }
    for (name, address) in entries {
        hosts.push_str(&format!("{address}\t{name}\n"));
    }
    hosts
}

/// Copies a folder of plain files and folders.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_replace_earlier_entries_of_their_names_and_keep_every_other_line() {
        let current = "127.0.0.1\tlocalhost\n# a comment naming b\n\n10.0.0.2 b\n10.0.0.3 c a # old\n::1 localhost ip6-localhost\n";
        let b = Ipv4Addr::new(10, 77, 1, 2);
        let a = Ipv4Addr::new(10, 77, 1, 1);
        let hosts = hosts_with(current, &[("a", a), ("b", b)]);
        assert_eq!(
            hosts,
            "127.0.0.1\tlocalhost\n# a comment naming b\n\n10.0.0.3\tc\n::1 localhost ip6-localhost\n\
             10.77.1.1\ta\n10.77.1.2\tb\n"
        );
        assert_eq!(hosts_with(&hosts, &[("a", a), ("b", b)]), hosts, "setting them again changes nothing");
    }

    #[test]
    fn a_disk_never_lies_where_the_sandbox_lays_an_overlay() {
        let under_var = disk(Path::new("/var/tmp"), "left4me-disk-test-").unwrap();
        assert!(under_var.path().starts_with("/srv/left4me-sandboxes"), "{}", under_var.path().display());
        let target = std::env::temp_dir();
        let elsewhere = disk(&target, "left4me-disk-test-").unwrap();
        assert!(elsewhere.path().starts_with(&target));
    }
}
