//! Sandbox hosts on a private network: they reach each other by name over a real OpenSSH, reach
//! nothing else, and keep their host key and their server across a reboot.

use std::net::Ipv4Addr;

use left4me_sim::{Network, Sandbox};

/// Where the client side of the tests keeps its key and its known_hosts, inside a sandbox (on its
/// disk: `/root` inside is the machine's).
const CLIENT: &str = "/var/lib/sim-ssh-client";

fn disk(prefix: &str) -> tempfile::TempDir {
    left4me_sim::disk(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), prefix).expect("a disk folder")
}

fn boot(disk: &tempfile::TempDir) -> Sandbox {
    Sandbox::boot(disk.path(), &[]).expect("the sandbox boots")
}

/// Makes `host` a client: a key of its own, authorised for root on `server`, and `server`'s host
/// key known under `name`.
fn trust(host: &Sandbox, server: &Sandbox, name: &str) {
    host.run_ok("mkdir", &["-p", CLIENT]);
    let key = format!("{CLIENT}/id_ed25519");
    host.run_ok("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", "client", "-f", &key]);
    server.authorize_ssh_key("root", &host.run_ok("cat", &[&format!("{key}.pub")]));
    let known = format!("{name} {}", server.host_key());
    host.run_ok("sh", &["-c", "printf '%s\\n' \"$1\" > \"$2\"", "sh", &known, &format!("{CLIENT}/known_hosts")]);
}

/// Runs `command` on `target` as root over ssh from `host`, trusting only the known_hosts
/// `trust` wrote and offering only its key; panics unless it succeeds. Returns its stdout.
fn ssh_ok(host: &Sandbox, target: &str, command: &str) -> String {
    let identity = format!("{CLIENT}/id_ed25519");
    let known = format!("UserKnownHostsFile={CLIENT}/known_hosts");
    let destination = format!("root@{target}");
    let output = host.run(
        "ssh",
        &[
            "-F",
            "/dev/null",
            "-i",
            &identity,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &known,
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            &destination,
            command,
        ],
    );
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(output.status.success(), "ssh {target} {command}: {}{}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}

/// Whether `host` can open a TCP connection to `address`:`port` within a second (on one link an
/// answer takes a millisecond; no answer takes a neighbour lookup's three seconds to fail).
fn connects(host: &Sandbox, address: Ipv4Addr, port: u16) -> bool {
    let probe = format!("exec 3<>/dev/tcp/{address}/{port}");
    host.run("timeout", &["1", "bash", "-c", &probe]).status.success()
}

#[test]
fn hosts_reach_each_other_by_name_over_ssh_and_nothing_else_even_after_a_reboot() {
    let network = Network::new().expect("a network");
    let (disk_a, disk_b) = (disk("net-a-"), disk("net-b-"));
    let (a, b) = (boot(&disk_a), boot(&disk_b));
    let address_a = network.attach(&a, 1).expect("a is attached");
    let address_b = network.attach(&b, 2).expect("b is attached");
    assert_eq!(address_b, network.address(2));
    for host in [&a, &b] {
        host.set_hosts(&[("a", address_a), ("b", address_b)]);
    }
    b.serve_ssh();
    let host_key = b.host_key();
    assert!(host_key.starts_with("ssh-ed25519 "), "{host_key}");
    if let Ok(machines) = std::fs::read_to_string("/etc/ssh/ssh_host_ed25519_key.pub") {
        assert_ne!(machines.trim(), host_key, "the sandbox has a host key of its own");
    }
    trust(&a, &b, "b");

    let own_address = format!("{address_b}/24");
    assert!(ssh_ok(&a, "b", "ip -brief -4 address show dev eth0").contains(&own_address));
    // Traffic stays in the network: an address no host has, and any other network, are unreachable.
    assert!(connects(&a, address_b, 22), "the probe itself works");
    assert!(!connects(&a, network.address(9), 22));
    assert!(!connects(&a, Ipv4Addr::new(1, 1, 1, 1), 80));
    let routes = a.run_ok("ip", &["-4", "route"]);
    assert_eq!(routes.lines().count(), 1, "only the network's own route: {routes}");

    b.power_off();
    assert!(!connects(&a, address_b, 22), "b is off");
    let b = boot(&disk_b);
    network.attach(&b, 2).expect("b is attached again after its reboot");
    assert_eq!(b.run_ok("systemctl", &["is-active", "sim-sshd.service"]).trim(), "active");
    assert_eq!(b.host_key(), host_key, "the host key is kept on the disk");
    assert!(ssh_ok(&a, "b", "ip -brief -4 address show dev eth0").contains(&own_address));
    assert!(b.run_ok("cat", &["/etc/hosts"]).contains("\ta\n"), "/etc/hosts is kept on the disk");
}

#[test]
fn two_networks_with_one_subnet_stay_apart() {
    let subnet = 200;
    let (first, second) = (Network::with_subnet(subnet).unwrap(), Network::with_subnet(subnet).unwrap());
    let disks = [disk("net-x-"), disk("net-y-"), disk("net-z-")];
    let [x, y, z] = disks.each_ref().map(boot);
    // x and z share an address, each on its own network.
    let address = first.attach(&x, 1).unwrap();
    assert_eq!(second.attach(&z, 1).unwrap(), address);
    first.attach(&y, 2).unwrap();
    for server in [&x, &z] {
        server.serve_ssh();
    }
    assert_ne!(x.host_key(), z.host_key(), "each sandbox has a host key of its own");
    // ssh-keyscan prints the keys on stdout and its banners, as comments, on stderr.
    let scanned = y.run_ok("ssh-keyscan", &["-t", "ed25519", &address.to_string()]);
    assert_eq!(scanned.trim(), format!("{address} {}", x.host_key()), "y reaches x, never z");
}
