//! The sandbox host: a real systemd boots in private namespaces, keeps its disk across power
//! cuts, and leaves nothing behind on the host.

use std::fs;
use std::path::Path;

use left4me_sim::Sandbox;

fn disk() -> tempfile::TempDir {
    left4me_sim::disk(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), "sandbox-disk-").expect("a disk folder")
}

/// Every mount point of the host that mentions `path`.
fn host_mounts_under(path: &Path) -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = path.to_str().unwrap();
    mountinfo.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
}

/// The host's cgroups called `name`, in any hierarchy.
fn cgroups_named(name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name().to_string_lossy() == name {
                found.push(path.display().to_string());
            } else if path.components().count() < 8 {
                pending.push(path);
            }
        }
    }
    found
}

#[test]
fn boots_runs_commands_inside_and_leaves_nothing_behind() {
    let disk = disk();
    // A folder under the host's /tmp, which the sandbox replaces with its own: shared, it stays seen.
    let shared = tempfile::tempdir_in("/tmp").unwrap();
    fs::write(shared.path().join("fixture.txt"), "shared\n").unwrap();
    let sandbox = Sandbox::boot(disk.path(), &[shared.path()]).expect("the sandbox boots");
    let init = sandbox.init_pid();
    let fixture = shared.path().join("fixture.txt");
    assert_eq!(sandbox.run_ok("cat", &[fixture.to_str().unwrap()]), "shared\n");
    let cgroup = sandbox.cgroup_name();
    assert!(!cgroups_named(&cgroup).is_empty(), "the sandbox runs in cgroups of its own");

    assert_eq!(sandbox.run_ok("systemctl", &["is-system-running"]).trim(), "running");
    assert_eq!(sandbox.run_ok("hostname", &[]).trim(), "left4me-sandbox");
    // PID 1 inside is systemd, and only the sandbox's own units run: nothing the image enabled.
    assert_eq!(sandbox.run_ok("cat", &["/proc/1/comm"]).trim(), "systemd");
    let services = sandbox.run_ok("systemctl", &["list-units", "--type=service", "--state=running", "--no-legend"]);
    assert!(!services.contains("postgresql"), "{services}");
    // The product's production paths exist and are the sandbox's own.
    sandbox.run_ok("mkdir", &["-p", "/etc/left4me", "/usr/local/lib/systemd/system"]);
    sandbox.run_ok("sh", &["-c", "echo sandbox > /etc/left4me/host.env && echo data > /var/lib/left4me/marker"]);
    assert!(!Path::new("/etc/left4me/host.env").exists(), "the host's /etc stays untouched");
    assert_eq!(fs::read_to_string(disk.path().join("root/marker")).unwrap(), "data\n", "$ROOT is on the disk");
    // /tmp inside is private.
    sandbox.run_ok("sh", &["-c", "echo x > /tmp/left4me-sandbox-probe"]);
    assert!(!Path::new("/tmp/left4me-sandbox-probe").exists());
    // Its own network: loopback is up, nothing else.
    let links = sandbox.run_ok("ip", &["-brief", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(!host_mounts_under(disk.path()).iter().any(|m| m.contains("overlay")), "no mount reaches the host");

    sandbox.power_off();
    assert!(!Path::new(&format!("/proc/{init}")).exists(), "the sandbox's init is gone");
    assert_eq!(host_mounts_under(disk.path()), Vec::<String>::new());
    assert_eq!(cgroups_named(&cgroup), Vec::<String>::new());
}

#[test]
fn power_cut_and_boot_again_is_a_reboot() {
    let disk = disk();
    let sandbox = Sandbox::boot(disk.path(), &[]).expect("the sandbox boots");
    sandbox.run_ok(
        "sh",
        &[
            "-c",
            "printf '[Unit]\\nDescription=probe\\n[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n' \
             > /etc/systemd/system/left4me-probe.service && systemctl enable --now left4me-probe.service",
        ],
    );
    assert_eq!(sandbox.run_ok("systemctl", &["is-active", "left4me-probe.service"]).trim(), "active");
    sandbox.power_off();

    let sandbox = Sandbox::boot(disk.path(), &[]).expect("the sandbox boots again");
    let cgroup = sandbox.cgroup_name();
    // Enabled units come back; the rest of the disk is kept too.
    assert_eq!(sandbox.run_ok("systemctl", &["is-active", "left4me-probe.service"]).trim(), "active");
    assert!(sandbox.run_ok("ls", &["/etc/systemd/system"]).contains("left4me-probe.service"));
    sandbox.power_off();
    assert_eq!(cgroups_named(&cgroup), Vec::<String>::new());
}
