//! The overlay of an instance: `lowerdir` = its config layer, its overlays (first = uppermost),
//! the game build it was rendered for; `upperdir` = the game's own writes.
//!
//! Mounting runs as root from the unit (`ExecStartPre=+l4d2ctl mount %i`). A hardened unit has a
//! mount namespace of its own, made before ExecStartPre runs, so a mount made there would never be
//! seen by the game: the mount is made in PID 1's mount namespace instead, from where it
//! propagates into the unit's (see the sandbox reference note, point 12).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use left4me_state::Name;
use nix::mount::{MntFlags, MsFlags, mount as mount_fs, umount2};
use nix::sched::{CloneFlags, setns};

use crate::error::Error;
use crate::fsutil::{Owner, write_atomic};
use crate::host::{Host, is_under};
use crate::mountinfo::is_mounted;
use crate::{builds, overlay, record};

/// Most layers one instance may stack (its config layer and the base install included).
pub const MAX_LAYERS: usize = 500;

/// The kernel takes mount options up to one page.
const MAX_OPTIONS: usize = 4095;

/// Mounts the instance's tree on `runtime/<name>/merged`. Already mounted → nothing to do.
pub fn mount(host: &Host, name: &Name) -> Result<bool, Error> {
    // Everything is read and checked from where the mount will live: a unit's own namespace may
    // hide $ROOT (ExecStartPre=+ runs in it too).
    enter_init_mount_namespace()?;
    let record = record::read(host, name)?.ok_or_else(|| {
        Error::Invalid(format!("{name} is not initialized; run `l4d2ctl initialize {name} -f <spec>`"))
    })?;
    let paths = host.instance(name);
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
    let merged = paths.merged();
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
    if is_mounted(&merged)? {
        return Ok(false);
    }
    // Relative paths from $ROOT keep the option string short: a page holds more layers.
    std::env::set_current_dir(&host.root).map_err(|e| Error::io(&host.root, e))?;
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
    mount_fs(Some("overlay"), &merged, Some("overlay"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(options.as_str()))
        .map_err(|e| {
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

/// Unmounts the instance's tree and clears overlayfs's leftover `work/work`. Not mounted →
/// nothing to do.
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
    // overlayfs leaves a root-owned, mode-000 work/work behind; the next mount recreates it.
    let leftover = paths.work().join("work");
    if leftover.exists() {
        fs::remove_dir_all(&leftover).map_err(|e| Error::io(&leftover, e))?;
    }
    Ok(was_mounted)
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
