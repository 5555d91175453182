//! The overlay of an instance: `lowerdir` = its config layer, its overlays (first = uppermost),
//! the game build it was rendered for; `upperdir` = the game's own writes.
//!
//! The tree is mounted inside the game's own mount namespace only, never the host's (see
//! `running`): the unit starts `l4d2ctl exec %i` (`Type=exec`), which waits for its tree, and
//! then runs `ExecStartPost=+l4d2ctl mount %i` as root. That makes the overlay in a throwaway
//! namespace of its own, clones it detached (`open_tree`), enters the game's namespace
//! (`$MAINPID`, by a pidfd, checked to be the unit's) and moves the clone onto the tree's folder
//! there (`move_mount`). The host's namespace, and so every namespace systemd makes for the next
//! game, never holds it; it ends with the game's processes.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use left4me_state::Name;
use nix::mount::{MntFlags, MsFlags, mount as mount_fs, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns, unshare};
use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};

use crate::error::Error;
use crate::fsutil::{Owner, write_atomic};
use crate::host::{Host, is_under, unit_name};
use crate::mountinfo::is_mounted;
use crate::running::{self, GameProcess};
use crate::{builds, overlay, record, systemd};

/// Most layers one instance may stack (its config layer and the base install included).
pub const MAX_LAYERS: usize = 500;

/// The kernel takes mount options up to one page.
const MAX_OPTIONS: usize = 4095;

/// Mounts the instance's tree on `runtime/<name>/merged` inside its running game's own mount
/// namespace: the unit's main process, `$MAINPID` from systemd as its `ExecStartPost=`, which
/// always mounts a new tree on top; by hand, asked of systemd, and a game that has its tree
/// already is left as it is (false).
pub fn mount(host: &Host, name: &Name) -> Result<bool, Error> {
    // Everything is read and checked from the host's namespace: a unit's own may hide $ROOT.
    enter_init_mount_namespace()?;
    let record = record::read(host, name)?.ok_or_else(|| {
        Error::Invalid(format!("{name} is not initialized; run `l4d2ctl initialize {name} -f <spec>`"))
    })?;
    let paths = host.instance(name);
    // One mount of a server at a time: one by hand never races its unit's.
    let _mounting = crate::fsutil::lock(&paths.runtime.join("mount.lock"), || ())?;
    let (game, by_hand, invocation) = find_game(name)?;
    let merged = paths.merged();
    if by_hand && game.tree(&merged).is_some() {
        return Ok(false);
    }
    // A tree a start from before left in the host's namespace (no unit unmounts any more).
    if is_mounted(&merged)? {
        detach_left_tree(&merged)?;
    }
    let mut lower = vec![paths.layer(&record.digest)];
    lower.extend(record.spec.overlays.iter().map(|layer| host.overlay(&layer.name)));
    let (base, build) = builds::layer(host, record.build);
    // A start on the base install from before builds keeps it from being removed until mounted.
    let legacy = match build {
        None => Some(builds::legacy_lock(host)?),
        Some(_) => None,
    };
    lower.push(base);
    if lower.len() > MAX_LAYERS {
        return Err(Error::Invalid(format!("{name} stacks {} layers; at most {MAX_LAYERS} are allowed", lower.len())));
    }
    for dir in &lower {
        check_lowerdir(host, name, dir)?;
    }
    // What this start runs, so that status can tell a running server rendered since from a
    // current one.
    // The overlay folders by inode: a folder replaced by a newer write is renamed aside, keeping its
    // inode, and may be collected only once no running server stacks it.
    let overlay_inodes: Vec<u64> = lower
        .iter()
        .filter(|dir| dir.starts_with(host.overlays()))
        .filter_map(|dir| fs::metadata(dir).ok().map(|m| m.ino()))
        .collect();
    let mut started = serde_json::json!({
        "digest": record.digest,
        "port": record.spec.port.number(),
        "overlay_inodes": overlay_inodes,
    });
    // No build: it stacks installation/, as every start did before builds.
    if let Some(build) = build {
        started["build"] = build.into();
    }
    write_atomic(&paths.started(), format!("{started}\n").as_bytes(), 0o644, Owner::root())?;
    // overlayfs leaves a root-owned, mode-000 work/work behind; the mount makes it again.
    clear_work(&paths.work())?;
    // Relative paths from $ROOT keep the option string short: a page holds more layers.
    let relative = |path: &Path| path.strip_prefix(&host.root).unwrap_or(path).display().to_string();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.iter().map(|d| relative(d)).collect::<Vec<_>>().join(":"),
        relative(&paths.upper()),
        relative(&paths.work())
    );
    if options.len() > MAX_OPTIONS {
        return Err(Error::Invalid(format!(
            "{name} stacks too many overlays for one mount ({} bytes of options)",
            options.len()
        )));
    }
    let runtime = fs::File::open(&paths.runtime).map_err(|e| Error::io(&paths.runtime, e))?;
    let made = Made { runtime, invocation };
    attach(&game, host, &merged, &options, &made).map_err(|e| {
        // The kernel says only ENOENT; which folder is missing is what an operator needs.
        let missing = [("upperdir", paths.upper()), ("workdir", paths.work()), ("mount point", merged.clone())]
            .into_iter()
            .chain(lower.iter().map(|dir| ("lowerdir", dir.clone())))
            .find(|(_, dir)| !dir.is_dir())
            .map(|(what, dir)| {
                format!(" ({what} {} is missing; a pass or `l4d2ctl initialize` creates it again)", dir.display())
            })
            .unwrap_or_default();
        Error::Invalid(format!("cannot mount the overlay of {name} on {}: {e}{missing}", merged.display()))
    })?;
    // This start may have let go of an overlay folder an earlier one stacked, or of the base
    // install from before builds.
    overlay::collect_replaced(host)?;
    drop(legacy);
    builds::collect_legacy(host)?;
    // Earlier renders' layers served earlier starts; this start mounted the current one, and
    // nothing else mounts them.
    let current = paths.layer(&record.digest);
    for entry in fs::read_dir(paths.layers()).map_err(|e| Error::io(paths.layers(), e))?.flatten() {
        if entry.path() != current {
            fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(true)
}

/// Unmounts a tree left mounted in the host's own namespace (by a start from before trees were
/// mounted in their game's namespace only) and clears overlayfs's leftover `work/work`. Nothing
/// mounted → nothing to do. A running game's own tree is not touched: it ends with the game.
pub fn umount(host: &Host, name: &Name) -> Result<bool, Error> {
    let paths = host.instance(name);
    enter_init_mount_namespace()?;
    let merged = paths.merged();
    let was_mounted = is_mounted(&merged)?;
    if was_mounted {
        umount2(&merged, MntFlags::empty())
            .or_else(|e| if e == nix::errno::Errno::EBUSY { umount2(&merged, MntFlags::MNT_DETACH) } else { Err(e) })
            .map_err(|e| Error::Invalid(format!("cannot unmount {}: {e}", merged.display())))?;
    }
    clear_work(&paths.work())?;
    Ok(was_mounted)
}

/// Removes the `work/work` overlayfs leaves in a work folder (root's, mode 000).
fn clear_work(work: &Path) -> Result<(), Error> {
    let leftover = work.join("work");
    match fs::symlink_metadata(&leftover) {
        Ok(_) => fs::remove_dir_all(&leftover).map_err(|e| Error::io(&leftover, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&leftover, e)),
    }
}

/// A lower layer must be one of this instance's allowed folders once every symlink is resolved:
/// its config layer, an overlay folder, a game build (`builds/<id>`, not a staging folder), or the
/// base install from before builds — never anything else on the host.
pub fn check_lowerdir(host: &Host, name: &Name, dir: &Path) -> Result<PathBuf, Error> {
    let root = host.root.canonicalize().map_err(|e| Error::io(&host.root, e))?;
    let real = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let in_layers = real.parent() == Some(root.join("instances").join(name.as_str()).join("layers").as_path());
    let in_overlays = real.parent() == Some(root.join("overlays").as_path());
    let is_build = real.parent() == Some(root.join("builds").as_path())
        && real.file_name().and_then(|n| n.to_str()).and_then(builds::parse_id).is_some();
    if !((in_layers || in_overlays || is_build) && real.is_dir() || real == root.join("installation")) {
        return Err(Error::Invalid(format!(
            "{} resolves to {}, which is not a layer left4me may stack (its overlays, a game build, the base install)",
            dir.display(),
            real.display()
        )));
    }
    if !is_under(&real, &root) {
        return Err(Error::Invalid(format!("{} lies outside {}", real.display(), root.display())));
    }
    Ok(real)
}

/// Moves this process into PID 1's mount namespace, unless it is there already.
fn enter_init_mount_namespace() -> Result<(), Error> {
    let own = fs::metadata("/proc/self/ns/mnt").map_err(|e| Error::io("/proc/self/ns/mnt", e))?;
    let init = fs::metadata("/proc/1/ns/mnt").map_err(|e| Error::io("/proc/1/ns/mnt", e))?;
    if own.ino() == init.ino() && own.dev() == init.dev() {
        return Ok(());
    }
    let file = fs::File::open("/proc/1/ns/mnt").map_err(|e| Error::io("/proc/1/ns/mnt", e))?;
    setns(&file, CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::Invalid(format!("cannot enter PID 1's mount namespace: {e}")))
}

/// A server's game as its unit's main process, pinned (see [`GameProcess::pin`]), with a mount
/// namespace other than the host's; and whether it was asked of systemd (a mount by hand) rather
/// than given by it (`$MAINPID`, to the unit's `ExecStartPost=`).
fn find_game(name: &Name) -> Result<(GameProcess, bool, String), Error> {
    let unit = unit_name(name);
    let (pid, invocation, by_hand) = match (std::env::var("MAINPID"), std::env::var("INVOCATION_ID")) {
        (Ok(pid), Ok(invocation)) => (pid, invocation, false),
        _ => {
            let shown = systemd::systemctl(&["show", "--property=MainPID,InvocationID", "--", &unit])?;
            let value =
                |key: &str| shown.lines().find_map(|line| line.strip_prefix(key)).unwrap_or_default().trim().to_owned();
            (value("MainPID="), value("InvocationID="), true)
        }
    };
    let not_running = || {
        Error::NotNow(format!(
            "{name} is not running: its tree is mounted inside its game's own namespace as its unit \
             starts; start it with `l4d2ctl start {name}`"
        ))
    };
    let pid: i32 = pid.trim().parse().ok().filter(|pid| *pid > 0).ok_or_else(not_running)?;
    let game = GameProcess::pin(pid, name)
        .ok_or_else(|| Error::Invalid(format!("process {pid} is not {unit}'s: its tree is not mounted there")))?;
    let own = fs::metadata(format!("/proc/{pid}/ns/mnt")).map_err(|_| not_running())?;
    let host = fs::metadata("/proc/self/ns/mnt").map_err(|e| Error::io("/proc/self/ns/mnt", e))?;
    if (own.dev(), own.ino()) == (host.dev(), host.ino()) {
        return Err(Error::Invalid(format!(
            "{unit} runs in the host's own mount namespace, where its tree would be every game's; \
             run `l4d2ctl install` to write its unit again"
        )));
    }
    // The start's own id, which its `l4d2ctl exec` waits to see named (see [`await_tree`]).
    if invocation.len() != 32 || !invocation.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!("{unit} has no invocation id systemd gave it ({invocation:?})")));
    }
    Ok((game, by_hand, invocation))
}

/// What names this start's tree to its game: the folder of `runtime/<name>/` (opened in the
/// host's namespace) and the start's invocation id, written to [`TREE_OF`] there just before the
/// tree is moved in.
struct Made {
    runtime: fs::File,
    invocation: String,
}

/// The file in `runtime/<name>/` naming the start whose tree is mounted (its invocation id).
const TREE_OF: &str = "tree-of";

/// Makes the overlay (`options`, paths relative to `$ROOT`) and puts it on `merged` in `game`'s
/// namespace. A thread of its own does it, so this process stays in the host's namespace.
fn attach(game: &GameProcess, host: &Host, merged: &Path, options: &str, made: &Made) -> Result<(), String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| attach_here(game, host, merged, options, made))
            .join()
            .unwrap_or_else(|_| Err("it panicked".into()))
    })
}

fn attach_here(game: &GameProcess, host: &Host, merged: &Path, options: &str, made: &Made) -> Result<(), String> {
    // A throwaway namespace, private, so that the mount made in it reaches no other.
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS).map_err(|e| format!("cannot unshare: {e}"))?;
    mount_fs(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("cannot make a private namespace: {e}"))?;
    std::env::set_current_dir(&host.root).map_err(|e| format!("{}: {e}", host.root.display()))?;
    mount_fs(Some("overlay"), merged, Some("overlay"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(options))
        .map_err(|e| e.to_string())?;
    let tree = open_tree(rustix::fs::CWD, merged, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC)
        .map_err(|e| format!("cannot clone the mount: {e}"))?;
    setns(&game.pidfd, CloneFlags::CLONE_NEWNS).map_err(|e| format!("cannot enter the game's namespace: {e}"))?;
    // The game's namespace is the game's: its folder is found with no symlink followed.
    let root = fs::File::open("/").map_err(|e| format!("/ in the game's namespace: {e}"))?;
    let open = || {
        running::open_folder_beneath(&root, merged)
            .map_err(|e| format!("{} in the game's namespace: {e}", merged.display()))
    };
    let mut target = open()?;
    // An overlay there already came with the namespace's copy of the host's: a tree a start from
    // before left in the host's. It goes (the game waits for this start's, below).
    if running::is_overlay(&target) {
        let at = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&target));
        umount2(at.as_str(), MntFlags::MNT_DETACH).map_err(|e| format!("cannot unmount the tree from before: {e}"))?;
        target = open()?;
    }
    name_the_start(made).map_err(|e| format!("cannot write {TREE_OF}: {e}"))?;
    let flags = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
    move_mount(&tree, "", &target, "", flags).map_err(|e| format!("cannot put it in the game's namespace: {e}"))
}

/// Names this start in `runtime/<name>/tree-of`, through the folder opened in the host's
/// namespace (this thread is in the game's), written aside and renamed in.
fn name_the_start(made: &Made) -> nix::Result<()> {
    use nix::fcntl::{OFlag, openat, renameat};
    use nix::sys::stat::Mode;
    let aside = format!(".{TREE_OF}");
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let file = openat(&made.runtime, aside.as_str(), flags, Mode::from_bits_truncate(0o644))?;
    // Readable by the game's user whatever the umask (the unit's is 0027).
    nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(0o644))?;
    let mut file = fs::File::from(file);
    std::io::Write::write_all(&mut file, format!("{}\n", made.invocation).as_bytes())
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO)))?;
    renameat(&made.runtime, aside.as_str(), &made.runtime, TREE_OF)
}

/// Waits, in the game's own namespace, until this start's tree is mounted on `merged` (by its
/// unit's `ExecStartPost=`): an overlay there, and `runtime/<name>/tree-of` naming this start
/// (`$INVOCATION_ID`, which systemd gives every process of one start), written just before the
/// tree is moved in — so that a tree from before, which the namespace may have copied from the
/// host's, is never taken for it. The namespace's mount table wakes a poll on each change.
pub fn await_tree(merged: &Path, within: Duration) -> Result<(), Error> {
    let table = fs::File::open("/proc/self/mountinfo").map_err(|e| Error::io("/proc/self/mountinfo", e))?;
    let invocation = std::env::var("INVOCATION_ID").unwrap_or_default();
    let named = merged.with_file_name(TREE_OF);
    let deadline = Instant::now() + within;
    loop {
        // The table was opened before the first look: a change after it wakes the poll below.
        let mounted = fs::File::open(merged).is_ok_and(|dir| running::is_overlay(&dir));
        if mounted && fs::read_to_string(&named).is_ok_and(|text| text.trim() == invocation) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Invalid(format!(
                "{} was not mounted within {} s; its unit's `l4d2ctl mount` says why (journalctl -u the unit)",
                merged.display(),
                within.as_secs()
            )));
        }
        let wait = PollTimeout::try_from(left.min(Duration::from_secs(1))).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(table.as_fd(), PollFlags::POLLPRI)];
        match poll(&mut fds, wait) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::Invalid(format!("cannot wait for {}: {e}", merged.display()))),
        }
    }
}

/// Unmounts the trees that starts from before left in the host's namespace (when units unmounted
/// them at the stop) for the servers whose games run no more: the next start of each would
/// otherwise find its old tree in its namespace's copy of the host's. Returns those servers.
pub fn clear_host_trees(host: &Host) -> Result<Vec<Name>, Error> {
    let mounts = crate::mountinfo::mount_points()?;
    let mut cleared = Vec::new();
    for name in record::list(host)? {
        let merged = host.instance(&name).merged();
        if mounts.contains(&merged) && !running::is_running(&name)? {
            detach_left_tree(&merged)?;
            cleared.push(name);
        }
    }
    Ok(cleared)
}

/// Detaches the tree a start from before left mounted on `merged` in this namespace.
fn detach_left_tree(merged: &Path) -> Result<(), Error> {
    umount2(merged, MntFlags::MNT_DETACH)
        .map_err(|e| Error::Invalid(format!("cannot unmount {} left from before: {e}", merged.display())))
}
