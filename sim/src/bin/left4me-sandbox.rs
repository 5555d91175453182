//! `left4me-sandbox --disk DIR [--share DIR]…`: boots a real systemd as PID 1 of private namespaces.
//!
//! The sandbox host of docs/DESIGN.md §9. Run as root. It moves itself into a cgroup subtree of its own,
//! unshares mount, UTS, network, PID and cgroup namespaces, and forks the namespace's PID 1, which
//! lays out the file system and execs systemd. It prints `pid <N>` (the host's PID of that init, for
//! `nsenter -t N`) on stdout, then waits until that init ends — killing it with SIGKILL is a power
//! cut, and SIGTERM or SIGINT to this process does exactly that. Then it removes its cgroups, so
//! nothing of the sandbox remains on the host: no process, no mount, no cgroup.
//!
//! The disk (`DIR`) keeps what a machine keeps across reboots: the uppers of overlays over `/etc`,
//! `/var` and `/usr/local`, and `$ROOT` (`/var/lib/left4me`). Booting again on the same disk is a
//! reboot. The disk must not lie under a folder the sandbox lays an overlay over (`/etc`, `/var`,
//! `/usr/local`): an overlay's upper cannot live inside its own lower.
//!
//! Inside, `/run` and `/tmp` are fresh tmpfs, so whatever of the host lies under them is hidden.
//! Each `--share DIR` (and the disk) stays visible at its own path all the same: a checkout or a
//! build under `/tmp` still works.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, execve, fork, getpid, sethostname};

/// Folders the sandbox lays an overlay over; the disk may not be under any of them.
const OVERLAID_ROOTS: &[&str] = &["/etc", "/var", "/usr/local"];

/// Folders overlaid so that the host's files show through but nothing written reaches them.
const OVERLAID: &[(&str, &str)] = &[("/etc", "etc"), ("/var", "var"), ("/usr/local", "usr-local")];

/// Units of a full machine that a sandbox has no use for, or that would touch the host's kernel
/// (sysctls, binfmt handlers, modules) or its console.
const MASKED: &[&str] = &[
    "console-getty.service",
    "getty.target",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "systemd-logind.service",
    "systemd-user-sessions.service",
];

/// The sandbox's PID 1 as the host sees it, for the signal handler.
static INIT: AtomicI32 = AtomicI32::new(0);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("left4me-sandbox: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let usage = || "usage: left4me-sandbox --disk DIR [--share DIR]...".to_owned();
    let mut disk = None;
    let mut shares = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = PathBuf::from(args.next().ok_or_else(usage)?);
        match flag.as_str() {
            "--disk" => disk = Some(value),
            "--share" => {
                shares.push(value.canonicalize().map_err(|e| format!("cannot share {}: {e}", value.display()))?)
            }
            _ => return Err(usage()),
        }
    }
    let disk = disk.ok_or_else(usage)?;
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root: it mounts file systems and creates namespaces".into());
    }
    let disk = prepare_disk(&disk)?;
    shares.push(disk.clone());
    // A share inside another is already seen through it; binding it too would be hidden (or
    // hide) depending on the order.
    let all = shares.clone();
    shares.retain(|share| !all.iter().any(|other| other != share && share.starts_with(other)));
    shares.sort();
    shares.dedup();
    let hierarchies = Hierarchy::all()?;
    let name = format!("left4me-sandbox-{}", getpid());
    let cgroups = Cgroups::create(&hierarchies, &name)?;

    // If whoever started us dies, power the sandbox off rather than leave it running.
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
    let handler = SigAction::new(SigHandler::Handler(power_cut), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only loads an atomic and calls kill(2), both async-signal-safe.
        unsafe { sigaction(signal, &handler) }.map_err(|e| format!("cannot handle {signal}: {e}"))?;
    }

    let result = boot(&disk, &shares, &hierarchies);
    cgroups.remove();
    result
}

fn boot(disk: &Path, shares: &[PathBuf], hierarchies: &[Hierarchy]) -> Result<ExitCode, String> {
    // Only the PID namespace is entered here: its first child becomes PID 1. The other namespaces
    // are the init's alone, so this process keeps the host's view of /sys/fs/cgroup and can
    // remove the sandbox's cgroups after it.
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("cannot create a PID namespace: {e}"))?;
    // The init's end of this pipe closes when it execs systemd (or dies): only then are its
    // namespaces in place for others to enter.
    let (ready_read, ready_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("cannot create a pipe: {e}"))?;
    // SAFETY: this process is single-threaded, so the child may do anything before it execs.
    match unsafe { fork() }.map_err(|e| format!("cannot fork the sandbox's init: {e}"))? {
        ForkResult::Child => {
            drop(ready_read);
            let Err(message) = init(disk, shares, hierarchies);
            eprintln!("left4me-sandbox: init: {message}");
            std::process::exit(1);
        }
        ForkResult::Parent { child } => {
            INIT.store(child.as_raw(), Ordering::SeqCst);
            drop(ready_write);
            let mut ready = std::fs::File::from(ready_read);
            let mut byte = [0u8; 1];
            while matches!(std::io::Read::read(&mut ready, &mut byte), Ok(n) if n > 0) {}
            let mut stdout = std::io::stdout();
            writeln!(stdout, "pid {child}").and_then(|()| stdout.flush()).map_err(|e| format!("stdout: {e}"))?;
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(ExitCode::from(code as u8)),
                    Ok(WaitStatus::Signaled(..)) => return Ok(ExitCode::SUCCESS),
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => return Err(format!("waiting for the sandbox's init: {e}")),
                }
            }
        }
    }
}

extern "C" fn power_cut(_: nix::libc::c_int) {
    let init = INIT.load(Ordering::SeqCst);
    if init > 0 {
        let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
    }
}

fn prepare_disk(disk: &Path) -> Result<PathBuf, String> {
    fs::create_dir_all(disk).map_err(|e| format!("cannot create the disk {}: {e}", disk.display()))?;
    let disk = disk.canonicalize().map_err(|e| format!("cannot resolve the disk {}: {e}", disk.display()))?;
    if let Some(overlaid) = OVERLAID_ROOTS.iter().find(|r| disk.starts_with(r)) {
        return Err(format!(
            "the disk {} lies under {overlaid}, which the sandbox lays an overlay over",
            disk.display()
        ));
    }
    for (_, layer) in OVERLAID {
        for part in ["upper", "work"] {
            let dir = disk.join(layer).join(part);
            fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    let root = disk.join("root");
    fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    Ok(disk)
}

/// Runs as PID 1 of the new namespaces: lays out the file system, then becomes systemd.
fn init(disk: &Path, shares: &[PathBuf], hierarchies: &[Hierarchy]) -> Result<Infallible, String> {
    unshare(
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWCGROUP,
    )
    .map_err(|e| format!("cannot create namespaces: {e}"))?;
    // Held open from before anything hides them, and bound back in at the end.
    let mut held = Vec::new();
    for share in shares {
        let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(share.as_path(), flags, nix::sys::stat::Mode::empty())
            .map_err(|e| format!("cannot open the share {}: {e}", share.display()))?;
        held.push((share, fd));
    }
    let none: Option<&str> = None;
    let mounted = |what: &str, result: nix::Result<()>| result.map_err(|e| format!("cannot mount {what}: {e}"));
    // Private first, so nothing mounted here reaches the host; then shared, as on a systemd host,
    // so later mounts propagate into the private namespaces of services.
    mounted("/ private", mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none))?;
    mounted("/ shared", mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SHARED, none))?;
    let kernel_fs = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mounted("/proc", mount(Some("proc"), "/proc", Some("proc"), kernel_fs, none))?;
    mount_cgroups(hierarchies)?;

    let first_boot = !disk.join("booted").exists();
    for (target, layer) in OVERLAID {
        let options = format!(
            "lowerdir={target},upperdir={},workdir={}",
            disk.join(layer).join("upper").display(),
            disk.join(layer).join("work").display()
        );
        mounted(target, mount(Some("overlay"), *target, Some("overlay"), MsFlags::empty(), Some(options.as_str())))?;
    }
    configure_units(first_boot)?;
    fs::write(disk.join("booted"), "").map_err(|e| format!("cannot mark the disk booted: {e}"))?;

    let root = "/var/lib/left4me";
    fs::create_dir_all(root).map_err(|e| format!("cannot create {root}: {e}"))?;
    mounted(root, mount(Some(&disk.join("root")), root, none, MsFlags::MS_BIND, none))?;
    // A peer group of its own: what is mounted under $ROOT (each server's overlay) shows there only,
    // as on a real host, and not a second time at the disk's own path.
    mounted(&format!("{root} private"), mount(none, root, none, MsFlags::MS_PRIVATE, none))?;
    mounted(&format!("{root} shared"), mount(none, root, none, MsFlags::MS_SHARED, none))?;
    mounted(
        "/run",
        mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=755")),
    )?;
    // systemd sets the hostname from /etc/hostname while booting.
    fs::write("/etc/hostname", "left4me-sandbox\n").map_err(|e| format!("cannot write /etc/hostname: {e}"))?;
    sethostname("left4me-sandbox").map_err(|e| format!("cannot set the hostname: {e}"))?;
    // Last: systemd's boot empties /tmp, which must never be the host's.
    mounted(
        "/tmp",
        mount(Some("tmpfs"), "/tmp", Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777")),
    )?;
    // The shares that /run's or /tmp's tmpfs hid come back at their own paths.
    for (share, fd) in &held {
        if !["/run", "/tmp"].iter().any(|hidden| share.starts_with(hidden)) {
            continue;
        }
        fs::create_dir_all(share).map_err(|e| format!("cannot create {}: {e}", share.display()))?;
        let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
        let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
        mounted(&share.display().to_string(), mount(Some(source.as_str()), share.as_path(), none, flags, none))?;
    }

    let systemd = CString::new("/lib/systemd/systemd").expect("no NUL in a literal");
    let argv = ["/lib/systemd/systemd", "--system", "--unit=multi-user.target", "--log-target=journal-or-kmsg"]
        .map(|a| CString::new(a).expect("no NUL in a literal"));
    // `container` tells systemd it is not the machine's own init, so it leaves hardware alone.
    let env = ["container=left4me-sandbox", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        .map(|a| CString::new(a).expect("no NUL in a literal"));
    execve(&systemd, &argv, &env).map_err(|e| format!("cannot exec systemd: {e}"))
}

/// The units the sandbox boots: on the first boot, drop what the machine image has enabled (its
/// `*.wants`; later boots keep what was enabled inside the sandbox), and mask the units a
/// sandbox must not run.
fn configure_units(first_boot: bool) -> Result<(), String> {
    let units = Path::new("/etc/systemd/system");
    if first_boot {
        let entries = fs::read_dir(units).map_err(|e| format!("cannot list {}: {e}", units.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wants") && path.is_dir() {
                fs::remove_dir_all(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            }
        }
    }
    for unit in MASKED {
        let path = units.join(unit);
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        symlink("/dev/null", &path).map_err(|e| format!("cannot mask {unit}: {e}"))?;
    }
    Ok(())
}

/// A cgroup hierarchy mounted on the host.
struct Hierarchy {
    /// Where the host has it mounted, e.g. `/sys/fs/cgroup/memory`.
    mount_point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    fs_type: String,
    /// The v1 superblock options naming it: `memory`, `none,name=systemd`.
    options: String,
    /// This process's cgroup in it, relative to the hierarchy's root.
    current: String,
}

impl Hierarchy {
    /// The host's cgroup hierarchies, from /proc/self/mountinfo and /proc/self/cgroup.
    fn all() -> Result<Vec<Hierarchy>, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let membership = fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let mut all = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let mount_point = left.split(' ').nth(4).unwrap_or_default();
            let mut right = right.split(' ');
            let (Some(fs_type), Some(_), Some(super_options)) = (right.next(), right.next(), right.next()) else {
                continue;
            };
            if fs_type != "cgroup" && fs_type != "cgroup2" {
                continue;
            }
            let named: Vec<&str> = super_options.split(',').filter(|o| *o != "rw" && *o != "ro").collect();
            let controllers: Vec<&str> = named.iter().copied().filter(|o| !o.starts_with("name=")).collect();
            // /proc/self/cgroup: `ID:controllers:path`, controllers empty for cgroup2.
            let key = if fs_type == "cgroup2" { String::new() } else { named.join(",") };
            let current = membership
                .lines()
                .filter_map(|l| {
                    let mut parts = l.splitn(3, ':').skip(1);
                    parts.next().zip(parts.next())
                })
                .find(|(names, _)| *names == key)
                .map(|(_, path)| path.trim_start_matches('/').to_owned())
                .unwrap_or_default();
            let options = if fs_type == "cgroup" && controllers.is_empty() {
                format!("none,{}", named.join(","))
            } else {
                named.join(",")
            };
            all.push(Hierarchy {
                mount_point: PathBuf::from(mount_point),
                fs_type: fs_type.to_owned(),
                options,
                current,
            });
        }
        if all.is_empty() {
            return Err("no cgroup file system is mounted on this host".into());
        }
        Ok(all)
    }

    fn is_cpuset(&self) -> bool {
        self.fs_type == "cgroup" && self.options.split(',').any(|o| o == "cpuset")
    }
}

/// The sandbox's own cgroup in every hierarchy, nested where this process already is, so that the
/// host's limits on it still hold.
struct Cgroups(Vec<PathBuf>);

impl Cgroups {
    fn create(hierarchies: &[Hierarchy], name: &str) -> Result<Cgroups, String> {
        let mut created = Cgroups(Vec::new());
        for hierarchy in hierarchies {
            let parent = hierarchy.mount_point.join(&hierarchy.current);
            let dir = parent.join(name);
            fs::create_dir(&dir).map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
            created.0.push(dir.clone());
            if hierarchy.is_cpuset() {
                // A v1 cpuset cgroup takes no process until it has CPUs and memory nodes.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = fs::read_to_string(parent.join(file)).map_err(|e| format!("{file}: {e}"))?;
                    fs::write(dir.join(file), value.trim()).map_err(|e| format!("{file}: {e}"))?;
                }
            }
            fs::write(dir.join("cgroup.procs"), getpid().to_string())
                .map_err(|e| format!("cannot enter the cgroup {}: {e}", dir.display()))?;
        }
        Ok(created)
    }

    /// Removes the cgroups, deepest first. The kernel frees a cgroup shortly after its last process
    /// is reaped, so an empty one that is still busy is retried for a moment.
    fn remove(self) {
        // Leave them first: a cgroup holding this process cannot be removed.
        for dir in &self.0 {
            if let Some(parent) = dir.parent() {
                let _ = fs::write(parent.join("cgroup.procs"), getpid().to_string());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in &self.0 {
            let mut tree = Vec::new();
            collect_dirs(dir, &mut tree);
            for cgroup in tree.iter().rev() {
                while let Err(e) = fs::remove_dir(cgroup) {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        break;
                    }
                    if Instant::now() > deadline {
                        eprintln!("left4me-sandbox: cannot remove the cgroup {}: {e}", cgroup.display());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

/// Mounts the cgroup hierarchies afresh: inside the new cgroup namespace each shows the sandbox's
/// own cgroup as its root, so the sandbox's systemd manages only its own subtree.
fn mount_cgroups(hierarchies: &[Hierarchy]) -> Result<(), String> {
    let none: Option<&str> = None;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let base = Path::new("/sys/fs/cgroup");
    // A pure cgroup2 host mounts the one hierarchy on /sys/fs/cgroup itself.
    if let [only] = hierarchies
        && only.fs_type == "cgroup2"
        && only.mount_point == base
    {
        return mount(Some("cgroup2"), base, Some("cgroup2"), flags, none)
            .map_err(|e| format!("cannot mount cgroup2: {e}"));
    }
    mount(Some("tmpfs"), base, Some("tmpfs"), flags, Some("mode=755"))
        .map_err(|e| format!("cannot mount {}: {e}", base.display()))?;
    for hierarchy in hierarchies {
        let target = &hierarchy.mount_point;
        fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        let options = (hierarchy.fs_type == "cgroup").then_some(hierarchy.options.as_str());
        mount(Some(hierarchy.fs_type.as_str()), target, Some(hierarchy.fs_type.as_str()), flags, options)
            .map_err(|e| format!("cannot mount the cgroup hierarchy {}: {e}", target.display()))?;
    }
    Ok(())
}
