//! A private network for sandbox hosts: a "switch" network namespace holding a Linux bridge, and
//! one veth pair per attached host, its host end `eth0` inside the sandbox's own namespace.
//!
//! The switch namespace belongs to one process (`unshare --net` running a shell that waits for its
//! stdin to close). Nothing is mounted or named on the machine for it, so when that process ends —
//! dropped, or because the test process died and the pipe's last writer with it — the kernel
//! removes the namespace, the bridge and every veth end in it; each veth's other end goes too.
//! Every switch and every sandbox is a namespace of its own, so two networks with the same subnet,
//! in one process or in tests running side by side, never see each other's traffic.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sandbox::Sandbox;

/// The bridge inside the switch namespace.
const BRIDGE: &str = "br0";
/// The sandbox's end of its link.
const SANDBOX_LINK: &str = "eth0";
/// How long the switch's namespace may take to appear.
const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot start {what}: {cause}")]
    Spawn { what: String, cause: std::io::Error },
    #[error("the switch's network namespace did not appear: {0}")]
    Switch(String),
    #[error("`{command}` failed: {stderr}")]
    Ip { command: String, stderr: String },
    #[error("host number {0} is not an address of a /24 host (1 to 254)")]
    HostNumber(u8),
}

/// A private L2 network, 10.77.`subnet`.0/24. Dropping it ends the switch and with it every link.
pub struct Network {
    /// The process whose network namespace is the switch.
    switch: Child,
    /// The switch's stdin: while it is open the switch waits; when this process dies it closes.
    _lifeline: ChildStdin,
    subnet: u8,
}

impl Network {
    /// A network with a subnet of its own among the networks of this process.
    pub fn new() -> Result<Network, NetworkError> {
        Network::with_subnet(next_subnet())
    }

    /// A network on 10.77.`subnet`.0/24, for a test that two networks with one subnet stay apart.
    pub fn with_subnet(subnet: u8) -> Result<Network, NetworkError> {
        let mut switch = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", "read -r line"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|cause| NetworkError::Spawn { what: "unshare --net".into(), cause })?;
        let lifeline = switch.stdin.take().expect("stdin was piped");
        let network = Network { switch, _lifeline: lifeline, subnet };
        network.wait_for_namespace()?;
        network.in_switch(&["link", "add", BRIDGE, "type", "bridge"])?;
        network.in_switch(&["link", "set", BRIDGE, "up"])?;
        Ok(network)
    }

    /// Until `unshare` has made the namespace, the process is still in the machine's.
    fn wait_for_namespace(&self) -> Result<(), NetworkError> {
        let ours = namespace_of("self");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let theirs = namespace_of(&self.switch_pid().to_string());
            match theirs {
                Some(ns) if Some(&ns) != ours.as_ref() => return Ok(()),
                None => return Err(NetworkError::Switch("unshare --net ended; see its stderr above".into())),
                Some(_) if Instant::now() > deadline => {
                    return Err(NetworkError::Switch(format!("still the machine's after {START_TIMEOUT:?}")));
                }
                Some(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// The third octet of the network's addresses.
    pub fn subnet(&self) -> u8 {
        self.subnet
    }

    /// The address host `host_number` has on this network.
    pub fn address(&self, host_number: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, host_number)
    }

    /// Links `sandbox` to the network as host `host_number`: `eth0` inside it, up, with the
    /// address 10.77.`subnet`.`host_number`/24, which this returns. A sandbox booted again (a new
    /// namespace: its old link went with the old one) is attached again the same way; whatever was
    /// attached as that host number before is unplugged first.
    pub fn attach(&self, sandbox: &Sandbox, host_number: u8) -> Result<Ipv4Addr, NetworkError> {
        if host_number == 0 || host_number == 255 {
            return Err(NetworkError::HostNumber(host_number));
        }
        let port = format!("host{host_number}");
        self.unplug(&port)?;
        let init = sandbox.init_pid().to_string();
        let (port_mac, host_mac) = (self.mac(0, host_number), self.mac(1, host_number));
        let veth = format!(
            "link add {port} address {port_mac} type veth peer name {SANDBOX_LINK} address {host_mac} netns {init}"
        );
        self.in_switch(&veth.split(' ').collect::<Vec<_>>())?;
        self.in_switch(&["link", "set", &port, "master", BRIDGE, "up"])?;
        let address = self.address(host_number);
        ip(&init, &["address", "add", &format!("{address}/24"), "dev", SANDBOX_LINK])?;
        ip(&init, &["link", "set", SANDBOX_LINK, "up"])?;
        Ok(address)
    }

    /// The hardware address of host `host_number`'s end of its link (`side` 1) or of the switch's
    /// (`side` 0): fixed, so that a host booted again keeps its address as a machine keeps its
    /// network card, and its neighbours' ARP caches stay true.
    fn mac(&self, side: u8, host_number: u8) -> String {
        // 0x02: a locally administered unicast address.
        format!("02:77:{:02x}:{side:02x}:00:{host_number:02x}", self.subnet)
    }

    /// Removes the switch's port `port` if it is there. The kernel removes a veth whose peer's
    /// namespace ended, but only some time after: a host booted again may be attached before.
    fn unplug(&self, port: &str) -> Result<(), NetworkError> {
        let switch = self.switch_pid().to_string();
        let shown = nsenter_ip(&switch, &["link", "show", port])
            .output()
            .map_err(|cause| NetworkError::Spawn { what: "nsenter".into(), cause })?;
        if shown.status.success() {
            // Gone already by now is as good as removed.
            let _ = nsenter_ip(&switch, &["link", "delete", port]).output();
        }
        Ok(())
    }

    fn in_switch(&self, args: &[&str]) -> Result<(), NetworkError> {
        ip(&self.switch_pid().to_string(), args)
    }

    fn switch_pid(&self) -> u32 {
        self.switch.id()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.switch.kill();
        let _ = self.switch.wait();
    }
}

/// A subnet no other network of this process has (for the first 254), varying between processes
/// only so that addresses in logs tell networks apart: a clash would be harmless.
fn next_subnet() -> u8 {
    static CREATED: AtomicU32 = AtomicU32::new(0);
    let nth = CREATED.fetch_add(1, Ordering::Relaxed);
    u8::try_from(std::process::id().wrapping_add(nth) % 254 + 1).expect("below 255")
}

/// The network namespace of `/proc/<pid>`, or None once the process is gone.
fn namespace_of(pid: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

fn nsenter_ip(pid: &str, args: &[&str]) -> Command {
    let mut command = Command::new("nsenter");
    command.args(["-t", pid, "-n", "--", "ip"]).args(args);
    command
}

/// Runs `ip` in the network namespace of process `pid`.
fn ip(pid: &str, args: &[&str]) -> Result<(), NetworkError> {
    let output = nsenter_ip(pid, args)
        .stdin(Stdio::null())
        .output()
        .map_err(|cause| NetworkError::Spawn { what: "nsenter … ip".into(), cause })?;
    if output.status.success() {
        return Ok(());
    }
    Err(NetworkError::Ip {
        command: format!("ip {} (in the network namespace of PID {pid})", args.join(" ")),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}
