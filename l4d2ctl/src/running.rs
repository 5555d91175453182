//! Which servers' games run, and how the host reaches a running game's tree.
//!
//! A game's tree is mounted only inside the game's own mount namespace (`l4d2ctl mount`, run by
//! its unit's `ExecStartPost=`), never in the host's: a namespace that systemd makes for a new
//! game unit starts as a copy of the host's, so a host holding every running game's overlay made
//! each start dearer the more games ran. That namespace lives exactly as long as the game's
//! processes, and so does the mount. Whether a server's game runs is therefore read from its
//! unit's cgroup — systemd's own record of its processes, one small file per server, no process
//! started — and its running tree is reached through one of those processes, pinned by a pidfd,
//! at `/proc/<pid>/root` + the tree's path, with no symlink followed.

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use left4me_state::Name;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::statfs::{OVERLAYFS_SUPER_MAGIC, fstatfs};

use crate::error::Error;
use crate::host::{Host, unit_name};

/// The game units' slice (`Slice=left4me-game.slice`) in the cgroup tree: systemd nests a
/// slice under the one its name's prefix names.
const GAME_SLICE: &str = "/left4me.slice/left4me-game.slice";

/// The cgroup of server `name`'s unit, as `/proc/<pid>/cgroup` writes it.
fn unit_cgroup(name: &Name) -> String {
    format!("{GAME_SLICE}/{}", unit_name(name))
}

/// The cgroup hierarchy systemd tracks units' processes in: the unified one (cgroup v2, or its
/// `unified/` of a hybrid host), else the named v1 one. None: no cgroup file system at all.
fn hierarchy() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .iter()
                .map(PathBuf::from)
                .find(|dir| dir.join("cgroup.controllers").exists())
                .or_else(|| Some(PathBuf::from("/sys/fs/cgroup/systemd")).filter(|dir| dir.is_dir()))
        })
        .as_deref()
}

/// The processes of server `name`'s unit now (none when it runs none). A cgroup that cannot be
/// read is an error, never "none": what a running game stacks must not be taken for unused.
pub fn processes(name: &Name) -> Result<Vec<i32>, Error> {
    let hierarchy = hierarchy().ok_or_else(|| {
        Error::Invalid("no cgroup file system under /sys/fs/cgroup: which games run is unknown".into())
    })?;
    let procs = hierarchy.join(unit_cgroup(name).trim_start_matches('/')).join("cgroup.procs");
    match fs::read_to_string(&procs) {
        Ok(text) => Ok(text.lines().filter_map(|line| line.trim().parse().ok()).collect()),
        // systemd removes the cgroup of a unit that ran everything out.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(&procs, e)),
    }
}

/// Whether server `name`'s game runs: its unit has processes (starting, running or stopping).
/// While it does, its tree may be mounted and whatever it stacks is in use.
pub fn is_running(name: &Name) -> Result<bool, Error> {
    Ok(!processes(name)?.is_empty())
}

/// The servers of `host` whose games run, from one look at the game slice's cgroups.
pub fn running(host: &Host) -> Result<BTreeSet<Name>, Error> {
    let mut running = BTreeSet::new();
    for name in crate::record::list(host)? {
        if is_running(&name)? {
            running.insert(name);
        }
    }
    Ok(running)
}

/// One process of server `name`'s unit, pinned by a pidfd: a PID used again since it was read
/// is not taken for it.
pub struct GameProcess {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

impl GameProcess {
    /// Process `pid`, if it is one of server `name`'s unit's now.
    pub fn pin(pid: i32, name: &Name) -> Option<GameProcess> {
        let pidfd =
            rustix::process::pidfd_open(rustix::process::Pid::from_raw(pid)?, rustix::process::PidfdFlags::empty())
                .ok()?;
        // Read after the pidfd pins the process: were the PID another's by now, its cgroup says so.
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let expected = unit_cgroup(name);
        let ours = cgroup.lines().any(|line| line.splitn(3, ':').nth(2) == Some(expected.as_str()));
        let process = GameProcess { pid, pidfd };
        (ours && process.alive()).then_some(process)
    }

    /// Whether it still runs: a pidfd is readable once its process has ended.
    pub fn alive(&self) -> bool {
        let mut fds = [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).is_ok_and(|ready| ready == 0)
    }

    /// The tree this process sees at `merged`, when an overlay is mounted there.
    pub fn tree(&self, merged: &Path) -> Option<OwnedFd> {
        let root = fs::File::open(format!("/proc/{}/root", self.pid)).ok()?;
        let dir = open_folder_beneath(&root, merged).ok()?;
        // Opened through /proc by PID: it counts only if the pinned process is still the one.
        (is_overlay(&dir) && self.alive()).then_some(dir)
    }
}

/// The tree server `name`'s game runs on, as its game sees it: opened through one of its unit's
/// processes, from that process's own root. None while the game runs none (stopped, or starting
/// and not mounted yet) or this process may not look into it (only root may).
pub fn tree(host: &Host, name: &Name) -> Option<OwnedFd> {
    let merged = host.instance(name).merged();
    processes(name).ok()?.into_iter().find_map(|pid| GameProcess::pin(pid, name)?.tree(&merged))
}

/// Opens folder `path` (absolute) beneath `root`, crossing mounts but following no symlink.
pub fn open_folder_beneath(root: &impl AsFd, path: &Path) -> nix::Result<OwnedFd> {
    let inside = path.strip_prefix("/").unwrap_or(path);
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, inside, how)
}

/// Whether `dir` is the top of an overlay.
pub fn is_overlay(dir: &impl AsFd) -> bool {
    fstatfs(dir).is_ok_and(|fs| fs.filesystem_type() == OVERLAYFS_SUPER_MAGIC)
}
