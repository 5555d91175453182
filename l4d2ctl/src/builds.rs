//! The game's builds on the host: `$ROOT/builds/<build id>/`, one complete tree per Steam build of
//! app 222860, never changed once installed. A server stacks the build it was rendered for.
//!
//! A build installed over an earlier one shares the inodes of every file the two have in common
//! (hard links): [`flatten`] makes its tree from the earlier build and the delta steamcmd wrote
//! over it. Installing, adopting and removing hold one lock ([`lock`], `builds/.lock`) for their
//! whole length, so two never interleave.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use left4me_state::Name;
use nix::fcntl::{AtFlags, Flock, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use serde::{Deserialize, Serialize};

use crate::api::Game;
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, read_bounded, remove_tree, write_atomic};
use crate::host::Host;
use crate::steam::{self, APP_ID, InstalledBuild};
use crate::{record, running};

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
/// running ones, by their `started.json` (what runs). `legacy` are the running servers that stack
/// `installation/` (a start that names no build, or whose record of it cannot be read).
#[derive(Debug, Default)]
pub struct Uses {
    pub builds: BTreeMap<u64, BTreeSet<Name>>,
    pub legacy: BTreeSet<Name>,
}

pub fn uses(host: &Host) -> Result<Uses, Error> {
    let running = running::running(host)?;
    let unnamed = adopted(host);
    let mut uses = Uses::default();
    for name in record::list(host)? {
        let paths = host.instance(&name);
        if let Ok(Some(record)) = record::load(&paths.record())
            && let Some(id) = record.build.or(unnamed)
        {
            uses.builds.entry(id).or_default().insert(name.clone());
        }
        if !running.contains(&name) {
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

/// Removes `installation/` once it is adopted and no running server stacks it. True: removed.
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
///
/// Every step goes through folder descriptors, each opened without following a symlink, never
/// by a path walked again: the upper is the game user's, who may swap a folder of it for a
/// symlink while it is read, and root must not then move, link or give away anything outside it.
pub fn flatten(lower: Option<&Path>, upper: Option<&Path>, out: &Path) -> Result<(), Error> {
    let lower = lower.map(open_dir).transpose()?;
    let upper = upper.map(open_dir).transpose()?;
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
        return Err(Error::Invalid(format!("cannot make {}", out.display())));
    };
    let parent = open_dir(parent)?;
    let out_dir = make_dir_at(&parent, Path::new(name), out)?;
    flatten_at(lower.as_ref(), upper.as_ref(), &out_dir, out)
}

/// [`flatten`] on open folders; `shown` names `out` in messages.
fn flatten_at(lower: Option<&OwnedFd>, upper: Option<&OwnedFd>, out: &OwnedFd, shown: &Path) -> Result<(), Error> {
    let from = upper.or(lower).ok_or_else(|| Error::Invalid(format!("nothing to make {} of", shown.display())))?;
    let meta = nix::sys::stat::fstat(from).map_err(|e| Error::io(shown, e.into()))?;
    let lower = match upper {
        Some(upper) if is_opaque(upper, shown)? => None,
        _ => lower,
    };
    let mut names = BTreeSet::new();
    for dir in [upper, lower].into_iter().flatten() {
        names.extend(names_in(dir, shown)?);
    }
    let stat = |dir: Option<&OwnedFd>, name: &OsStr| {
        dir.and_then(|dir| nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok())
    };
    for name in names {
        let name = name.as_os_str();
        let target = shown.join(name);
        let kind = |st: &FileStat| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        match (stat(upper, name), stat(lower, name)) {
            (Some(above), _) if kind(&above) == SFlag::S_IFCHR && above.st_rdev == 0 => {}
            (Some(above), below) if kind(&above) == SFlag::S_IFDIR => {
                let up = open_dir_at(upper.expect("an entry above is in the upper"), name, &target)?;
                let down = match (lower, below) {
                    (Some(lower), Some(below)) if kind(&below) == SFlag::S_IFDIR => {
                        Some(open_dir_at(lower, name, &target)?)
                    }
                    _ => None,
                };
                let made = make_dir_at(out, Path::new(name), &target)?;
                flatten_at(down.as_ref(), Some(&up), &made, &target)?;
            }
            (Some(_), _) => {
                let upper = upper.expect("an entry above is in the upper");
                nix::fcntl::renameat(upper, name, out, name).map_err(|e| Error::io(&target, e.into()))?;
                drop_overlay_xattrs(&fd_path(out, Some(name)))?;
            }
            (None, Some(below)) if kind(&below) == SFlag::S_IFDIR => {
                let down = open_dir_at(lower.expect("an entry below is in the lower"), name, &target)?;
                let made = make_dir_at(out, Path::new(name), &target)?;
                flatten_at(Some(&down), None, &made, &target)?;
            }
            (None, Some(below)) if kind(&below) == SFlag::S_IFLNK => {
                copy_symlink(lower.expect("an entry below is in the lower"), out, name, &below, &target)?;
            }
            (None, Some(_)) => {
                let lower = lower.expect("an entry below is in the lower");
                nix::unistd::linkat(lower, name, out, name, AtFlags::empty())
                    .map_err(|e| Error::io(&target, e.into()))?;
            }
            (None, None) => {}
        }
    }
    let (uid, gid) = (nix::unistd::Uid::from_raw(meta.st_uid), nix::unistd::Gid::from_raw(meta.st_gid));
    nix::unistd::fchown(out, Some(uid), Some(gid)).map_err(|e| Error::io(shown, e.into()))?;
    nix::sys::stat::fchmod(out, Mode::from_bits_truncate(meta.st_mode & 0o7777))
        .map_err(|e| Error::io(shown, e.into()))?;
    let (atime, mtime) = times(&meta);
    nix::sys::stat::futimens(out, &atime, &mtime).map_err(|e| Error::io(shown, e.into()))
}

/// A folder opened for walking, refusing a symlink at its last component.
fn open_dir(path: &Path) -> Result<OwnedFd, Error> {
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(path, e.into()))
}

/// The folder `name` of `dir`, never through a symlink.
fn open_dir_at(dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<OwnedFd, Error> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    nix::fcntl::openat(dir, name, flags, Mode::empty()).map_err(|e| Error::io(shown, e.into()))
}

/// A new folder `name` in `dir` (root's, 0700 until [`flatten_at`] gives it its own), opened.
fn make_dir_at(dir: &OwnedFd, name: &Path, shown: &Path) -> Result<OwnedFd, Error> {
    nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o700)).map_err(|e| Error::io(shown, e.into()))?;
    open_dir_at(dir, name.as_os_str(), shown)
}

/// The names in an open folder, read through the kernel's own link to it ([`fd_path`]).
fn names_in(dir: &OwnedFd, shown: &Path) -> Result<Vec<std::ffi::OsString>, Error> {
    let path = fd_path(dir, None);
    let mut names = Vec::new();
    for entry in fs::read_dir(&path).map_err(|e| Error::io(shown, e))? {
        names.push(entry.map_err(|e| Error::io(shown, e))?.file_name());
    }
    Ok(names)
}

/// A path that reaches `name` in the open folder `dir` through the kernel's own link to it,
/// `/proc/self/fd/<n>/<name>`: no folder on the way can be swapped for a symlink. For the calls
/// that take only a path (a listing, extended attributes with their no-follow variants, which
/// leave `name` itself unfollowed).
fn fd_path(dir: &OwnedFd, name: Option<&OsStr>) -> PathBuf {
    use std::os::fd::AsRawFd;
    let folder = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    name.map_or(folder.clone(), |name| folder.join(name))
}

fn copy_symlink(from: &OwnedFd, to: &OwnedFd, name: &OsStr, meta: &FileStat, shown: &Path) -> Result<(), Error> {
    let target = nix::fcntl::readlinkat(from, name).map_err(|e| Error::io(shown, e.into()))?;
    nix::unistd::symlinkat(target.as_os_str(), to, name).map_err(|e| Error::io(shown, e.into()))?;
    let (uid, gid) = (nix::unistd::Uid::from_raw(meta.st_uid), nix::unistd::Gid::from_raw(meta.st_gid));
    nix::unistd::fchownat(to, name, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io(shown, e.into()))?;
    let (atime, mtime) = times(meta);
    nix::sys::stat::utimensat(to, name, &atime, &mtime, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .map_err(|e| Error::io(shown, e.into()))
}

fn times(meta: &FileStat) -> (nix::sys::time::TimeSpec, nix::sys::time::TimeSpec) {
    use nix::sys::time::TimeSpec;
    (TimeSpec::new(meta.st_atime, meta.st_atime_nsec), TimeSpec::new(meta.st_mtime, meta.st_mtime_nsec))
}

const OPAQUE: &str = "trusted.overlay.opaque";

/// Whether overlayfs marked the open upper folder opaque: it hides everything of the lower below
/// it. `shown` names it in messages.
fn is_opaque(dir: &OwnedFd, shown: &Path) -> Result<bool, Error> {
    use std::os::fd::AsRawFd;
    let name = CString::new(OPAQUE).expect("no NUL in a constant");
    let mut value = [0u8; 8];
    // SAFETY: the name is NUL-terminated and lives across the call; the buffer's length is passed
    // with it; the descriptor is open for the call's length.
    let len = unsafe { nix::libc::fgetxattr(dir.as_raw_fd(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    if len < 0 {
        let error = std::io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(nix::libc::ENODATA) | Some(nix::libc::ENOTSUP) => Ok(false),
            _ => Err(Error::io(shown, error)),
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
    use std::os::unix::fs::{MetadataExt, symlink};

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
