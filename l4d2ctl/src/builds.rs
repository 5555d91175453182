//! The game's builds on the host: `$ROOT/builds/<build id>/`, one complete tree per Steam build of
//! app 222860, never changed once installed. A server stacks the build it was rendered for.
//!
//! A build installed over an earlier one shares the inodes of every file the two have in common
//! (hard links): [`flatten`] makes its tree from the earlier build and the delta steamcmd wrote
//! over it. Installing, adopting and removing hold one lock ([`lock`], `builds/.lock`) for their
//! whole length, so two never interleave.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use left4me_state::Name;
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use crate::api::Game;
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, lchown, read_bounded, remove_tree, write_atomic};
use crate::host::Host;
use crate::steam::{self, APP_ID, InstalledBuild};
use crate::{mountinfo, record};

/// A manifest or a small record of ours is far below this; more is no such file.
const MAX_SMALL_FILE: u64 = 1 << 20;

/// What Steam last said of a branch, `builds/published.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub branch: String,
    pub build: u64,
    /// RFC 3339, UTC.
    pub checked_at: String,
}

/// The lock of the builds: held, no other install, adoption or removal runs.
pub struct Lock {
    _flock: Flock<fs::File>,
}

/// Takes the builds' lock, waiting for whoever holds it.
pub fn lock(host: &Host) -> Result<Lock, Error> {
    ensure_dir(&host.builds(), 0o755, Owner::root())?;
    let flock = crate::fsutil::lock(&host.builds().join(".lock"), || {
        eprintln!("l4d2ctl: waiting for another install, adoption or removal of a game build to end")
    })?;
    Ok(Lock { _flock: flock })
}

/// The build id a folder name spells, written as Steam writes it (digits, no leading zero).
pub fn parse_id(text: &str) -> Option<u64> {
    let id: u64 = text.parse().ok()?;
    (id.to_string() == text).then_some(id)
}

/// The builds installed, ascending: the folders of `builds/` named by a build id (a symlink there
/// is no build).
pub fn installed(host: &Host) -> Result<Vec<u64>, Error> {
    let mut ids: Vec<u64> = crate::fsutil::entries(&host.builds())?
        .into_iter()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| parse_id(&entry.file_name().to_string_lossy()))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

pub fn is_installed(host: &Host, id: u64) -> bool {
    fs::symlink_metadata(host.build(id)).is_ok_and(|meta| meta.is_dir())
}

/// The words of a refusal that names what is installed.
pub fn list(ids: &[u64]) -> String {
    match ids {
        [] => "none".to_owned(),
        ids => ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
    }
}

/// What the last `game check` (or install) recorded; None before any, or when it cannot be read.
pub fn published(host: &Host) -> Option<Published> {
    read_bounded(&host.builds().join("published.json"), MAX_SMALL_FILE)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

pub fn write_published(host: &Host, published: &Published) -> Result<(), Error> {
    ensure_dir(&host.builds(), 0o755, Owner::root())?;
    let mut json = serde_json::to_vec(published).expect("a published build always serializes");
    json.push(b'\n');
    write_atomic(&host.builds().join("published.json"), &json, 0o644, Owner::root()).map(|_| ())
}

/// The build a tree holds, as its `steamapps/appmanifest_222860.acf` says, or why it says none.
pub fn manifest(tree: &Path) -> Result<InstalledBuild, String> {
    let path = tree.join(format!("steamapps/appmanifest_{APP_ID}.acf"));
    let bytes = read_bounded(&path, MAX_SMALL_FILE)
        .ok_or_else(|| format!("{} is missing or not a readable file", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    steam::installed_build(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The build of the base install from before builds (`installation/`), when its manifest is
/// complete.
pub fn legacy(host: &Host) -> Option<u64> {
    let base = host.installation();
    // A symlink there is no base install: it is never adopted, so it is no build either.
    if !fs::symlink_metadata(&base).is_ok_and(|meta| meta.is_dir()) {
        return None;
    }
    manifest(&base).ok().filter(|build| build.complete).map(|build| build.build_id)
}

/// The build `installation/` was adopted as (`builds/adopted`), if it was.
pub fn adopted(host: &Host) -> Option<u64> {
    let bytes = read_bounded(&host.builds().join("adopted"), 64)?;
    parse_id(String::from_utf8_lossy(&bytes).trim())
}

/// The build a record or a start without one stands for: it stacks `installation/`, which is
/// the build it was adopted as, else the build its manifest names.
pub fn unnamed(host: &Host) -> Option<u64> {
    adopted(host).or_else(|| legacy(host))
}

/// The lowest layer of a server rendered for `build`, and the build it is. None: the base
/// install from before builds — once adopted, the adopted build, so that its next start frees
/// `installation/`.
pub fn layer(host: &Host, build: Option<u64>) -> (PathBuf, Option<u64>) {
    match build.or_else(|| adopted(host).filter(|id| is_installed(host, *id))) {
        Some(id) => (host.build(id), Some(id)),
        None => (host.installation(), None),
    }
}

/// The builds of the host and what Steam last said, for `l4d2ctl game` and every observation:
/// a folder listing and two small files, no process.
pub fn game(host: &Host) -> Result<Game, Error> {
    let installed = installed(host)?;
    let published = published(host);
    let adoptable = legacy(host).filter(|id| !installed.contains(id));
    Ok(Game {
        installed,
        published: published.as_ref().map(|p| p.build),
        branch: published.as_ref().map(|p| p.branch.clone()),
        checked_at: published.map(|p| p.checked_at),
        adoptable,
    })
}

/// Which servers stack which build: by their records (what their next start stacks) and, for
/// mounted ones, by their `started.json` (what runs). `legacy` are the mounted servers that stack
/// `installation/` (a start that names no build, or whose record of it cannot be read).
#[derive(Debug, Default)]
pub struct Uses {
    pub builds: BTreeMap<u64, BTreeSet<Name>>,
    pub legacy: BTreeSet<Name>,
}

pub fn uses(host: &Host) -> Result<Uses, Error> {
    let mounts = mountinfo::mount_points()?;
    let unnamed = adopted(host);
    let mut uses = Uses::default();
    for name in record::list(host)? {
        let paths = host.instance(&name);
        if let Ok(Some(record)) = record::load(&paths.record())
            && let Some(id) = record.build.or(unnamed)
        {
            uses.builds.entry(id).or_default().insert(name.clone());
        }
        if !mounts.contains(&paths.merged()) {
            continue;
        }
        match started_build(&paths.started()) {
            Some(Some(id)) => {
                uses.builds.entry(id).or_default().insert(name);
            }
            _ => {
                uses.legacy.insert(name);
            }
        }
    }
    Ok(uses)
}

/// The build a `started.json` names: None when it cannot be read, Some(None) when it names none
/// (a start on `installation/`).
pub fn started_build(path: &Path) -> Option<Option<u64>> {
    let bytes = read_bounded(path, MAX_SMALL_FILE)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(value["build"].as_u64())
}

/// Removes the build `id`, unless a server stacks it. False: it was not installed. The base
/// install from before builds goes too once nothing stacks it.
pub fn remove(host: &Host, _lock: &Lock, id: u64) -> Result<bool, Error> {
    collect_legacy(host)?;
    if !is_installed(host, id) {
        return Ok(false);
    }
    if let Some(servers) = uses(host)?.builds.get(&id).filter(|servers| !servers.is_empty()) {
        let names: Vec<&str> = servers.iter().map(Name::as_str).collect();
        return Err(Error::Invalid(format!(
            "build {id} is stacked by {}; render them for another build (`l4d2ctl initialize <name> -f <spec> \
             --build <other>`) and restart the running ones, then remove it",
            names.join(", ")
        )));
    }
    remove_tree(&host.build(id))?;
    if adopted(host) == Some(id) {
        let path = host.builds().join("adopted");
        fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(true)
}

/// Adopts the base install from before builds (`installation/`) as the build its complete
/// manifest names: `builds/<id>` made as a hard-link tree of it (nothing downloaded, no server
/// touched: running servers keep their mount on `installation/`, which goes once none stacks it).
/// None: there is nothing to adopt (no `installation/`, or no complete build in it, said why).
pub fn adopt(host: &Host, _lock: &Lock, say: &mut dyn FnMut(String)) -> Result<Option<u64>, Error> {
    let base = host.installation();
    if !fs::symlink_metadata(&base).is_ok_and(|meta| meta.is_dir()) {
        return Ok(None);
    }
    let id = match manifest(&base) {
        Ok(build) if build.complete => build.build_id,
        Ok(build) => {
            say(format!("l4d2ctl: {} holds build {} only in part; not adopted", base.display(), build.build_id));
            return Ok(None);
        }
        Err(cause) => {
            say(format!("l4d2ctl: {} holds no build that can be adopted: {cause}", base.display()));
            return Ok(None);
        }
    };
    if !is_installed(host, id) {
        let staging = Staging::new(host, id)?;
        let tree = staging.tree();
        flatten(Some(&base), None, &tree)?;
        staging.finish(id)?;
        say(format!("l4d2ctl: adopted {} as build {id} ({})", base.display(), host.build(id).display()));
    }
    write_atomic(&host.builds().join("adopted"), format!("{id}\n").as_bytes(), 0o644, Owner::root())?;
    if collect_legacy(host)? {
        say(format!("l4d2ctl: removed {}: no running server stacks it", base.display()));
    }
    Ok(Some(id))
}

/// Removes `installation/` once it is adopted and no mounted server stacks it. True: removed.
pub fn collect_legacy(host: &Host) -> Result<bool, Error> {
    let base = host.installation();
    let Some(id) = adopted(host) else { return Ok(false) };
    if !is_installed(host, id) || !fs::symlink_metadata(&base).is_ok_and(|meta| meta.is_dir()) {
        return Ok(false);
    }
    // A start resolving to installation/ holds this lock until it has mounted.
    let _legacy = legacy_lock(host)?;
    if !uses(host)?.legacy.is_empty() {
        return Ok(false);
    }
    remove_tree(&base)?;
    Ok(true)
}

/// Held by a mount that stacks `installation/` until it is mounted, and by [`collect_legacy`]
/// while it looks and removes: a mount never stacks a folder being removed.
pub fn legacy_lock(host: &Host) -> Result<Flock<fs::File>, Error> {
    ensure_dir(&host.builds(), 0o755, Owner::root())?;
    crate::fsutil::lock(&host.builds().join(".legacy.lock"), || ())
}

/// A build being made: `builds/.staging-<id>-<pid>/`, root's and the game group's only (steamcmd
/// runs as the game's user and must reach its install folder inside). Dropped, it is removed, so
/// a failure leaves no installed build changed and nothing behind.
pub struct Staging {
    pub dir: PathBuf,
    builds: PathBuf,
}

impl Staging {
    pub fn new(host: &Host, id: u64) -> Result<Staging, Error> {
        let game = Owner::user(&host.user)?;
        let dir = host.builds().join(format!(".staging-{id}-{}", std::process::id()));
        remove_tree(&dir)?;
        ensure_dir(&dir, 0o750, game.root_with_group_of())?;
        Ok(Staging { dir, builds: host.builds() })
    }

    /// The new build's own tree.
    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// Puts the finished tree in as `builds/<id>`, on disk first.
    pub fn finish(self, id: u64) -> Result<(), Error> {
        let file = fs::File::open(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        nix::unistd::syncfs(&file).map_err(|e| Error::io(&self.dir, e.into()))?;
        let target = self.builds.join(id.to_string());
        fs::rename(self.tree(), &target).map_err(|e| Error::io(&target, e))?;
        fs::File::open(&self.builds).and_then(|dir| dir.sync_all()).map_err(|e| Error::io(&self.builds, e))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// Removes the staging folders of installs that died. The caller holds the lock, so no live
/// install has one.
pub fn remove_leftovers(host: &Host, _lock: &Lock) -> Result<(), Error> {
    for entry in crate::fsutil::entries(&host.builds())? {
        if entry.file_name().to_string_lossy().starts_with(".staging-") {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Makes `out` the tree overlayfs would show for `upper` over `lower`, as a tree of its own: the
/// lower's files the upper does not shadow as hard links, the upper's own files moved in, a
/// whiteout (a 0/0 character device) dropping the lower's entry, an opaque folder
/// (`trusted.overlay.opaque` = `y`) taking nothing of the lower below it, symlinks copied, and
/// folders made anew with their owner, mode and times. Nothing of `lower` is changed. With no
/// upper it is a hard-link copy of `lower`.
pub fn flatten(lower: Option<&Path>, upper: Option<&Path>, out: &Path) -> Result<(), Error> {
    let from = upper.or(lower).ok_or_else(|| Error::Invalid(format!("nothing to make {} of", out.display())))?;
    let meta = fs::symlink_metadata(from).map_err(|e| Error::io(from, e))?;
    fs::create_dir(out).map_err(|e| Error::io(out, e))?;
    let lower = match upper {
        Some(upper) if is_opaque(upper)? => None,
        _ => lower,
    };
    let mut names = BTreeSet::new();
    for dir in [upper, lower].into_iter().flatten() {
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            names.insert(entry.map_err(|e| Error::io(dir, e))?.file_name());
        }
    }
    for name in names {
        let target = out.join(&name);
        let above = upper.map(|dir| dir.join(&name)).and_then(|path| Some((fs::symlink_metadata(&path).ok()?, path)));
        let below = lower.map(|dir| dir.join(&name)).and_then(|path| Some((fs::symlink_metadata(&path).ok()?, path)));
        match (above, below) {
            (Some((meta, _)), _) if is_whiteout(&meta) => {}
            (Some((meta, path)), below) if meta.is_dir() => {
                let below = below.filter(|(meta, _)| meta.is_dir()).map(|(_, path)| path);
                flatten(below.as_deref(), Some(&path), &target)?;
            }
            (Some((_, path)), _) => {
                fs::rename(&path, &target).map_err(|e| Error::io(&target, e))?;
                drop_overlay_xattrs(&target)?;
            }
            (None, Some((meta, path))) if meta.is_dir() => flatten(Some(&path), None, &target)?,
            (None, Some((meta, path))) if meta.file_type().is_symlink() => copy_symlink(&path, &target, &meta)?,
            (None, Some((_, path))) => fs::hard_link(&path, &target).map_err(|e| Error::io(&target, e))?,
            (None, None) => {}
        }
    }
    let owner = Owner { uid: nix::unistd::Uid::from_raw(meta.uid()), gid: nix::unistd::Gid::from_raw(meta.gid()) };
    lchown(out, owner)?;
    fs::set_permissions(out, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(|e| Error::io(out, e))?;
    set_times(out, &meta)
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn copy_symlink(from: &Path, to: &Path, meta: &fs::Metadata) -> Result<(), Error> {
    let target = fs::read_link(from).map_err(|e| Error::io(from, e))?;
    std::os::unix::fs::symlink(&target, to).map_err(|e| Error::io(to, e))?;
    lchown(to, Owner { uid: nix::unistd::Uid::from_raw(meta.uid()), gid: nix::unistd::Gid::from_raw(meta.gid()) })?;
    set_times(to, meta)
}

fn set_times(path: &Path, meta: &fs::Metadata) -> Result<(), Error> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(nix::fcntl::AT_FDCWD, path, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| Error::io(path, e.into()))
}

const OPAQUE: &str = "trusted.overlay.opaque";

/// Whether overlayfs marked the upper folder opaque: it hides everything of the lower below it.
fn is_opaque(dir: &Path) -> Result<bool, Error> {
    let path = c_path(dir)?;
    let name = CString::new(OPAQUE).expect("no NUL in a constant");
    let mut value = [0u8; 8];
    // SAFETY: both strings are NUL-terminated and live across the call; the buffer's length is
    // passed with it.
    let len = unsafe { nix::libc::lgetxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    if len < 0 {
        let error = std::io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(nix::libc::ENODATA) | Some(nix::libc::ENOTSUP) => Ok(false),
            _ => Err(Error::io(dir, error)),
        };
    }
    Ok(&value[..len as usize] == b"y")
}

/// Drops the `trusted.overlay.*` attributes a copy-up left on a file moved out of the upper: in
/// the new build, itself a lower layer of servers, they would mean something to overlayfs.
fn drop_overlay_xattrs(path: &Path) -> Result<(), Error> {
    let c = c_path(path)?;
    let mut names = vec![0u8; 4096];
    // SAFETY: the path is NUL-terminated; the buffer's length is passed with it.
    let len = unsafe { nix::libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if len < 0 {
        let error = std::io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(nix::libc::ENOTSUP) => Ok(()),
            _ => Err(Error::io(path, error)),
        };
    }
    names.truncate(len as usize);
    for name in names.split(|b| *b == 0).filter(|name| name.starts_with(b"trusted.overlay.")) {
        let name = CString::new(name).expect("split at every NUL");
        // SAFETY: both strings are NUL-terminated and live across the call.
        if unsafe { nix::libc::lremovexattr(c.as_ptr(), name.as_ptr()) } < 0 {
            return Err(Error::io(path, std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn c_path(path: &Path) -> Result<CString, Error> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("{} holds a NUL byte", path.display())))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn a_flattened_tree_links_the_lower_and_takes_the_upper() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper, out) = (dir.path().join("lower"), dir.path().join("upper"), dir.path().join("out"));
        write(&lower.join("same.txt"), "same");
        write(&lower.join("changed.txt"), "old");
        write(&lower.join("gone.txt"), "gone");
        write(&lower.join("sub/deep.txt"), "deep");
        write(&lower.join("replaced/old.txt"), "old");
        symlink("same.txt", lower.join("link")).unwrap();
        write(&upper.join("changed.txt"), "new");
        write(&upper.join("sub/new.txt"), "new");
        fs::create_dir_all(upper.join("replaced")).unwrap();
        write(&upper.join("replaced/fresh.txt"), "fresh");
        // A whiteout is a 0/0 character device: making one needs root, so this part runs as root.
        let root = nix::unistd::geteuid().is_root();
        if root {
            let whiteout = c_path(&upper.join("gone.txt")).unwrap();
            // SAFETY: a NUL-terminated path.
            assert_eq!(unsafe { nix::libc::mknod(whiteout.as_ptr(), nix::libc::S_IFCHR | 0o600, 0) }, 0);
            let opaque = c_path(&upper.join("replaced")).unwrap();
            let name = CString::new(OPAQUE).unwrap();
            // SAFETY: NUL-terminated strings and a buffer with its length.
            let set = unsafe { nix::libc::lsetxattr(opaque.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
            assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
        }
        flatten(Some(&lower), Some(&upper), &out).unwrap();

        let ino = |path: &Path| fs::symlink_metadata(path).unwrap().ino();
        assert_eq!(ino(&out.join("same.txt")), ino(&lower.join("same.txt")), "unchanged: the same inode");
        assert_eq!(ino(&out.join("sub/deep.txt")), ino(&lower.join("sub/deep.txt")));
        assert_eq!(fs::read_to_string(out.join("changed.txt")).unwrap(), "new");
        assert_eq!(fs::read_to_string(lower.join("changed.txt")).unwrap(), "old", "the lower is unchanged");
        assert_eq!(fs::read_to_string(out.join("sub/new.txt")).unwrap(), "new");
        assert_eq!(fs::read_link(out.join("link")).unwrap(), Path::new("same.txt"));
        assert_ne!(ino(&out.join("sub")), ino(&lower.join("sub")), "folders are made anew");
        if root {
            assert!(!out.join("gone.txt").exists(), "a whiteout drops the lower's file");
            assert!(!out.join("replaced/old.txt").exists(), "an opaque folder takes nothing of the lower");
            assert!(lower.join("gone.txt").exists() && lower.join("replaced/old.txt").exists());
        }
        assert_eq!(fs::read_to_string(out.join("replaced/fresh.txt")).unwrap(), "fresh");
    }

    #[test]
    fn build_ids_are_digits_as_steam_writes_them() {
        assert_eq!(parse_id("16046151"), Some(16_046_151));
        for bad in ["", "007", "-1", "12a", ".staging-1-2", "published.json", "99999999999999999999999"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
