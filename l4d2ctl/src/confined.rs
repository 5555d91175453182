//! Transient units that run third-party work on the host's behalf — a script overlay's recipe, an
//! archive's download — as a user of their own, seeing nothing of `$ROOT` they are not given,
//! denied the host's own and private networks, within time and memory, and ending with the
//! `l4d2ctl` that started them.

use std::net::IpAddr;
use std::process::{Command, Stdio};

use left4me_state::Name;

use crate::api::FailureKind;
use crate::error::Error;
use crate::host::Host;

/// The address ranges a confined unit may not reach: loopback, link-local (cloud metadata at
/// 169.254.169.254), multicast, the private ranges and carrier-grade NAT. (Prefixes, not
/// systemd's names for them: systemd-run does not take those.)
pub const PRIVATE_NETWORKS: &[(&str, &str)] = &[
    ("127.0.0.0/8", "a loopback address"),
    ("::1/128", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("fe80::/10", "a link-local address"),
    ("224.0.0.0/4", "a multicast address"),
    ("ff00::/8", "a multicast address"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("fc00::/7", "a private address"),
];

/// What a kind of confined work may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `build`, `download`: the units are `left4me-<kind>-<name>.service` and its watcher.
    pub kind: &'static str,
    pub seconds: u32,
    pub time: &'static str,
    /// As systemd's `MemoryMax=` takes it, and as said to a person.
    pub memory_max: &'static str,
    pub memory: &'static str,
}

/// A script overlay's build: plugin installers, compilers.
pub const BUILD: Limits = Limits { kind: "build", seconds: 900, time: "15 minutes", memory_max: "2G", memory: "2 GiB" };
/// One archive's download: curl, streaming to l4d2ctl.
pub const DOWNLOAD: Limits =
    Limits { kind: "download", seconds: 600, time: "10 minutes", memory_max: "256M", memory: "256 MiB" };

/// The two units of a piece of confined work: the work itself, and the watcher it is bound to,
/// which ends when the `l4d2ctl` that started it does. (A process cannot be a unit's dependency;
/// a unit that follows it can. `tail --pid` is that unit: coreutils, on every host.)
pub struct Units {
    pub unit: String,
    pub watcher: String,
    pub limits: Limits,
}

/// How a failed unit ended, as systemd recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    TimedOut,
    OutOfMemory,
    /// Its main process was ended by this signal.
    Signal(i32),
    /// One of systemd's own codes (200–243): the unit could not be set up.
    SetUp(i32),
    /// Its main process exited with this code.
    Exit(i32),
    /// systemd could not be asked, or said nothing more.
    Unknown,
}

impl Units {
    pub fn new(limits: Limits, name: &Name) -> Units {
        // `@` is in no overlay's name: one overlay's watcher is never another's work.
        Units {
            unit: format!("left4me-{}-{name}.service", limits.kind),
            watcher: format!("left4me-{}-caller@{name}.service", limits.kind),
            limits,
        }
    }

    /// Stops the units a write of the same overlay left behind, if any: the new one runs alone.
    pub fn stop(&self) {
        for verb in ["stop", "reset-failed"] {
            let _ = Command::new("systemctl")
                .args([verb, "--quiet", &self.unit, &self.watcher])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// `systemd-run --wait --pipe` of the unit, bound to its watcher, with the common
    /// confinement and `settings` of its own; the program and its arguments follow.
    pub fn command(&self, host: &Host, settings: &[String]) -> Command {
        let mut command = Command::new("systemd-run");
        command
            .args(["--quiet", "--wait", "--pipe", "--unit", &self.unit])
            .arg(format!("--property=BindsTo={}", self.watcher))
            .arg(format!("--property=After={}", self.watcher))
            .args(settings.iter().chain(&confinement(host, self.limits)).map(|s| format!("--property={s}")))
            .arg("--setenv=HOME=/tmp");
        command
    }

    /// Starts the watcher of this process; dropped, it is stopped. It watches a sentinel, a
    /// child of this process that the kernel kills when this process dies, not this process
    /// itself: a parent that reads a dead `l4d2ctl`'s output to its end before reaping it (as
    /// `Command::output` does) keeps it a zombie, which `tail --pid` takes for alive, and the
    /// work that holds that output open would never end. The sentinel, orphaned, is reaped by
    /// init at once.
    pub fn watch_caller(&self) -> Result<Watcher<'_>, Error> {
        use std::os::unix::process::CommandExt;
        let parent = nix::unistd::getpid();
        let mut sentinel = Command::new("sleep");
        sentinel.arg("infinity").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: between fork and exec the closure calls only prctl and getppid, both
        // async-signal-safe, and allocates nothing.
        unsafe {
            sentinel.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // This process may have died before the line above: then nobody would kill it.
                match nix::unistd::getppid() == parent {
                    true => Ok(()),
                    false => Err(std::io::Error::from_raw_os_error(nix::errno::Errno::ESRCH as i32)),
                }
            });
        }
        let sentinel = sentinel
            .spawn()
            .map_err(|e| Error::Invalid(format!("cannot run sleep (the sentinel of {}): {e}", self.unit)))?;
        let watcher = Watcher { unit: &self.watcher, sentinel };
        let status = Command::new("systemd-run")
            .args(["--quiet", "--collect", "--unit", &self.watcher])
            .args(["--property=DynamicUser=yes", "--property=PrivateNetwork=yes"])
            .args(["--", "tail", "--sleep-interval=1", &format!("--pid={}", watcher.sentinel.id()), "-f", "/dev/null"])
            .stdin(Stdio::null())
            .status()
            .map_err(|e| Error::Invalid(format!("cannot run systemd-run (for {}): {e}", self.watcher)))?;
        if !status.success() {
            return Err(Error::child(format!("systemd-run of {}", self.watcher), status, FailureKind::Transient));
        }
        Ok(watcher)
    }

    /// How the failed unit ended. The unit, failed, stays loaded until read; then it is let go.
    pub fn ending(&self) -> Ending {
        let shown = crate::systemd::systemctl(&["show", "--property=Result,ExecMainCode,ExecMainStatus", &self.unit]);
        let _ = Command::new("systemctl").args(["reset-failed", "--quiet", &self.unit]).stderr(Stdio::null()).status();
        let Ok(shown) = shown else { return Ending::Unknown };
        let value = |key: &str| shown.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('='));
        let (result, code) = (value("Result"), value("ExecMainCode"));
        let main_status = value("ExecMainStatus").and_then(|s| s.trim().parse::<i32>().ok());
        match (result, code, main_status) {
            (Some("timeout"), _, _) => Ending::TimedOut,
            (Some("oom-kill"), _, _) => Ending::OutOfMemory,
            // CLD_KILLED, CLD_DUMPED: the main process was ended by that signal.
            (_, Some("2" | "3"), Some(signal)) => Ending::Signal(signal),
            (_, Some("1"), Some(code)) if (200..=243).contains(&code) => Ending::SetUp(code),
            (_, Some("1"), Some(code)) if code != 0 => Ending::Exit(code),
            _ => Ending::Unknown,
        }
    }
}

/// A started watcher unit and its sentinel; both end when dropped, once the work is over.
pub struct Watcher<'a> {
    unit: &'a str,
    sentinel: std::process::Child,
}

impl Drop for Watcher<'_> {
    fn drop(&mut self) {
        let _ = Command::new("systemctl").args(["stop", "--quiet", self.unit]).stderr(Stdio::null()).status();
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
    }
}

/// The settings every confined unit has: its own user; of `$ROOT` an empty read-only tmpfs (as
/// the game's unit hides it), into which each kind binds what it is given; nothing writable;
/// the internet, not the host's own or private networks; bounded memory, CPU and time.
fn confinement(host: &Host, limits: Limits) -> Vec<String> {
    let denied: Vec<&str> = PRIVATE_NETWORKS.iter().map(|(range, _)| *range).collect();
    let mut settings = vec![
        "DynamicUser=yes".to_owned(),
        format!("TemporaryFileSystem={}:ro", host.root.display()),
        format!("IPAddressDeny={}", denied.join(" ")),
        format!("MemoryMax={}", limits.memory_max),
        format!("RuntimeMaxSec={}", limits.seconds),
    ];
    settings.extend(
        [
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "PrivateIPC=yes",
            "ProtectProc=invisible",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictNamespaces=yes",
            "RestrictSUIDSGID=yes",
            "RestrictRealtime=yes",
            "LockPersonality=yes",
            "CPUQuota=100%",
            // Stopped (by hand, by its watcher, at shutdown) is a failure, never finished work:
            // systemd counts a main process ended by SIGTERM as a clean exit.
            "KillSignal=SIGKILL",
        ]
        .map(str::to_owned),
    );
    settings
}

/// An address block, `10.77.0.0/24` or a single address, as `LEFT4ME_DOWNLOAD_ALLOW` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    address: IpAddr,
    prefix: u8,
}

impl Block {
    pub fn parse(text: &str) -> Result<Block, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an address or an address block such as 10.1.2.0/24"))?;
        let most = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => most,
            Some(prefix) => match prefix.parse::<u8>() {
                Ok(prefix) if prefix <= most => prefix,
                _ => return Err(format!("{text:?} has no valid prefix length (0 to {most})")),
            },
        };
        Ok(Block { address, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let bits = |address: IpAddr| -> (u128, u32) {
            match address {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ((mine, width), (theirs, other)) = (bits(self.address), bits(address));
        if width != other {
            return false;
        }
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
        mine & mask == theirs & mask
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// What `address` is, when it lies in a range confined units may not reach and no block of
/// `allowed` takes it out.
pub fn denied(address: IpAddr, allowed: &[Block]) -> Option<&'static str> {
    if allowed.iter().any(|block| block.contains(address)) {
        return None;
    }
    PRIVATE_NETWORKS.iter().find_map(|(range, what)| {
        let block = Block::parse(range).expect("the private ranges are valid blocks");
        block.contains(address).then_some(*what)
    })
}

/// The blocks `LEFT4ME_DOWNLOAD_ALLOW` lists (spaces or commas between them): networks a
/// download may reach although they are private, such as a mirror on the LAN.
pub fn download_allow(host: &Host) -> Result<Vec<Block>, Error> {
    host.download_allow
        .split([' ', ','])
        .filter(|word| !word.is_empty())
        .map(|word| Block::parse(word).map_err(|why| Error::Invalid(format!("LEFT4ME_DOWNLOAD_ALLOW: {why}"))))
        .collect()
}

/// The address a URL names literally (`http://127.0.0.1/`, `http://[::1]:8080/`) and what it
/// is, when downloads may not reach it. A host name is left to the unit, which checks every
/// address it connects to (a redirect's too).
pub fn literal_denied(url: &str, allowed: &[Block]) -> Option<(IpAddr, &'static str)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.rsplit_once(':').map_or(host, |(host, _)| host),
    };
    let address: IpAddr = host.parse().ok()?;
    denied(address, allowed).map(|what| (address, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_s_own_and_private_networks_are_denied_unless_allowed() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(denied(ip("127.0.0.1"), &[]), Some("a loopback address"));
        assert_eq!(denied(ip("169.254.169.254"), &[]), Some("a link-local address"));
        assert_eq!(denied(ip("10.77.0.1"), &[]), Some("a private address"));
        assert_eq!(denied(ip("172.31.255.255"), &[]), Some("a private address"));
        assert_eq!(denied(ip("172.32.0.1"), &[]), None);
        assert_eq!(denied(ip("fd00::1"), &[]), Some("a private address"));
        assert_eq!(denied(ip("93.184.216.34"), &[]), None);
        let allowed = [Block::parse("10.77.0.0/24").unwrap()];
        assert_eq!(denied(ip("10.77.0.1"), &allowed), None);
        assert_eq!(denied(ip("10.77.1.1"), &allowed), Some("a private address"));
        assert!(Block::parse("10.77.0.0/33").is_err() && Block::parse("nowhere").is_err());
        assert_eq!(Block::parse("::1").unwrap().to_string(), "::1/128");
        let literal = |url: &str| literal_denied(url, &[]).map(|(address, _)| address.to_string());
        assert_eq!(literal("http://127.0.0.1:8080/x.tar.gz").as_deref(), Some("127.0.0.1"));
        assert_eq!(literal("https://user@169.254.169.254/latest").as_deref(), Some("169.254.169.254"));
        assert_eq!(literal("http://[::1]:80/").as_deref(), Some("::1"));
        assert_eq!(literal("https://sm.alliedmods.net/smdrop/x.tar.gz"), None);
        assert_eq!(literal("https://93.184.216.34/x"), None);
    }
}
