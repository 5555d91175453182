//! The host's network tuning as deploy/install.sh ships it: the sysctl drop-in applied in the
//! host's network namespace, the DSCP marks of the game ports in an nft table of left4me's own,
//! loaded again after a boot, and all of it gone with deploy/uninstall.sh — the host's own
//! ruleset untouched throughout.

use std::path::Path;

use crate::support::{Host, workspace};

const SYSCTL: &str = "/etc/sysctl.d/60-left4me.conf";

fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_l4d2ctl")).parent().expect("the binaries have a folder")
}

impl Host {
    fn install_with(&self, extra: &[&str]) -> std::process::Output {
        let install = workspace().join("deploy/install.sh");
        let mut args = vec!["--bin-dir", bin_dir().to_str().unwrap(), "--no-game"];
        args.extend_from_slice(extra);
        self.run(install.to_str().unwrap(), &args)
    }

    fn sysctl(&self, key: &str) -> String {
        self.ok("sysctl", &["-n", key]).trim().replace('\t', " ")
    }

    fn left4me_table(&self) -> Option<String> {
        let out = self.run("nft", &["list", "table", "inet", "left4me"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[test]
fn install_tunes_the_network_and_uninstall_removes_it() {
    let host = Host::booted();
    // The host's own ruleset, which left4me must leave alone.
    host.ok("nft", &["add", "table", "inet", "host"]);
    let out = host.install_with(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Every setting this namespace may change holds the file's value; the ones a container's
    // namespace only reads (or lacks) are the host's, and said so.
    let file = host.ok("cat", &[SYSCTL]);
    let mut set = 0;
    for line in file.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()) {
        let (key, value) = line.split_once('=').expect("key = value");
        let (key, value) = (key.trim(), value.trim());
        let proc = format!("/proc/sys/{}", key.replace('.', "/"));
        if host.run("test", &["-w", &proc]).status.success() {
            assert_eq!(host.sysctl(key), value, "{key}");
            set += 1;
        } else {
            assert!(String::from_utf8_lossy(&out.stdout).contains(key), "{key} left out unsaid");
        }
    }
    assert!(set >= 3, "the per-namespace settings are set: {file}");
    assert_eq!(host.sysctl("net.ipv4.ip_local_reserved_ports"), "27015-27115");
    assert_eq!(host.sysctl("net.ipv4.udp_rmem_min"), "16384");

    let table = host.left4me_table().expect("the table inet left4me is loaded");
    assert!(table.contains("udp sport 27015-27115 ip dscp set cs4"), "{table}");
    assert!(table.contains("udp sport 27015-27115 ip6 dscp set cs4"), "{table}");

    // Installed again for other ports: one table, the new range, nothing doubled.
    let out = host.install_with(&["--ports", "28000-28010"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = host.left4me_table().expect("the table is loaded");
    assert_eq!(table.matches("dscp set cs4").count(), 2, "{table}");
    assert!(table.contains("udp sport 28000-28010 ip dscp set cs4"), "{table}");
    assert_eq!(host.sysctl("net.ipv4.ip_local_reserved_ports"), "28000-28010");
    let refused = host.install_with(&["--ports", "80-90"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--ports 80-90"), "{refused:?}");

    // A reboot loads the table again (its oneshot unit). The sysctl file is systemd-sysctl's at
    // boot, which the sandbox masks: it would change the machine's own settings.
    let Host { sandbox, disk } = host;
    sandbox.power_off();
    let host = Host::boot_on(disk);
    let table = host.left4me_table().expect("the table is loaded again after a reboot");
    assert!(table.contains("udp sport 28000-28010 ip dscp set cs4"), "{table}");

    // The host's own table again (a boot starts from the rules files, and it had none).
    host.ok("nft", &["add", "table", "inet", "host"]);
    let uninstall = workspace().join("deploy/uninstall.sh");
    host.ok(uninstall.to_str().unwrap(), &[]);
    assert_eq!(host.left4me_table(), None, "the table is gone");
    host.ok("test", &["!", "-e", SYSCTL]);
    host.ok("test", &["!", "-e", "/usr/local/lib/systemd/system/left4me-dscp.service"]);
    host.ok("test", &["!", "-e", "/usr/local/bin/l4d2ctl"]);
    host.ok("nft", &["list", "table", "inet", "host"]);
}
