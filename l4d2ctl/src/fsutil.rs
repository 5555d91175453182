//! File writes that are atomic and idempotent, and the owners they are written for.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid, User};

use crate::error::Error;

/// Who a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: Uid,
    pub gid: Gid,
}

impl Owner {
    pub fn root() -> Owner {
        Owner { uid: Uid::from_raw(0), gid: Gid::from_raw(0) }
    }

    /// A system user by name, with its primary group.
    pub fn user(name: &str) -> Result<Owner, Error> {
        match User::from_name(name) {
            Ok(Some(user)) => Ok(Owner { uid: user.uid, gid: user.gid }),
            Ok(None) => Err(Error::Invalid(format!(
                "the user {name:?} does not exist; create it (deploy/install.sh does) or set LEFT4ME_USER"
            ))),
            Err(e) => Err(Error::Invalid(format!("cannot look up the user {name:?}: {e}"))),
        }
    }

    /// Owned by root, in this owner's group: readable by the game, writable by nobody but root.
    pub fn root_with_group_of(self) -> Owner {
        Owner { uid: Uid::from_raw(0), gid: self.gid }
    }
}

/// Writes `contents` to `path` so that readers see the old file or the new one, never a part:
/// a temporary file in the same folder, fsynced, then renamed over. Returns false, touching
/// nothing, when the file already holds exactly this, with this mode and owner.
///
/// Safe in a folder another user may write (`$ROOT` belongs to the game's user): the temporary
/// file is made anew (`O_EXCL`, `O_NOFOLLOW`), and given its mode and owner through its own
/// descriptor, so a symlink planted at its name makes the write fail instead of making root
/// truncate or hand over the file it points to; the rename replaces a symlink at `path` itself.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, owner: Owner) -> Result<bool, Error> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        use std::os::unix::fs::MetadataExt;
        let same_meta = meta.is_file()
            && meta.mode() & 0o7777 == mode
            && meta.uid() == owner.uid.as_raw()
            && meta.gid() == owner.gid.as_raw();
        if same_meta && meta.len() == contents.len() as u64 && fs::read(path).is_ok_and(|old| old == contents) {
            return Ok(false);
        }
    }
    let dir = path.parent().ok_or_else(|| Error::Invalid(format!("{} has no folder", path.display())))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    // What a write of this process that was killed left (removing a symlink removes the link).
    let _ = fs::remove_file(&temp);
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&temp)
            .map_err(|e| Error::io(&temp, e))?;
        // Permissions and owner before the contents, so a secret is never readable by others.
        std::os::unix::fs::fchown(&file, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
            .map_err(|e| Error::io(&temp, e))?;
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| Error::io(&temp, e))?;
        file.write_all(contents).map_err(|e| Error::io(&temp, e))?;
        file.sync_all().map_err(|e| Error::io(&temp, e))?;
        fs::rename(&temp, path).map_err(|e| Error::io(path, e))?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| true)
}

/// The contents of the regular file at `path`, at most `max` bytes of it; None when it is not
/// there, not a regular file (a symlink, a FIFO that would block a reader for ever), or larger.
/// For files in a folder another user may write.
pub fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut contents = Vec::new();
    file.take(max + 1).read_to_end(&mut contents).ok()?;
    (contents.len() as u64 <= max).then_some(contents)
}

/// Creates a folder (and its parents) and sets its mode and owner — never through a symlink.
///
/// `$ROOT` belongs to the game's user, who may rename what lies in it and put a symlink in its
/// place: a folder root then made, chmod'ed or chown'ed by path would be the symlink's target
/// (`/etc`, given to the game's user). So no component of `path` may be a symlink
/// (`RESOLVE_NO_SYMLINKS`); a missing folder is made inside the folder descriptor checked above
/// it, and the mode and owner are set through the folder's own descriptor.
pub fn ensure_dir(path: &Path, mode: u32, owner: Owner) -> Result<(), Error> {
    open_dir(path, mode, owner).map(drop)
}

/// [`ensure_dir`], keeping the folder open: what is then made in it through the descriptor is
/// made in this folder, whatever is renamed above it meanwhile.
pub fn open_dir(path: &Path, mode: u32, owner: Owner) -> Result<std::os::fd::OwnedFd, Error> {
    let dir = open_dir_creating(path)?;
    nix::sys::stat::fchmod(&dir, nix::sys::stat::Mode::from_bits_truncate(mode))
        .map_err(|e| Error::io(path, e.into()))?;
    nix::unistd::fchown(&dir, Some(owner.uid), Some(owner.gid)).map_err(|e| Error::io(path, e.into()))?;
    Ok(dir)
}

/// The folder at `path`, opened with no symlink followed anywhere on its path; None when it is
/// not there.
pub fn open_existing_dir(path: &Path) -> Result<Option<std::os::fd::OwnedFd>, Error> {
    use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2};
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    match openat2(AT_FDCWD, path, how) {
        Ok(dir) => Ok(Some(dir)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(nix::errno::Errno::ELOOP) => Err(Error::Invalid(format!(
            "{}: it or a folder above it is a symlink; left4me reads no folder through one (remove it, and look \
             at who put it there)",
            path.display()
        ))),
        Err(e) => Err(Error::io(path, e.into())),
    }
}

/// The folder at `path`, made (with its missing parents, 0755) when missing, opened with no
/// symlink followed anywhere on its path.
fn open_dir_creating(path: &Path) -> Result<std::os::fd::OwnedFd, Error> {
    use nix::errno::Errno;
    use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat2};
    let how = || {
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS)
    };
    // The kernel says ELOOP or ENOTDIR for a symlink, as it meets it; which one is found by looking.
    let symlinked = || path.ancestors().any(|p| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()));
    let refused = |e: Errno| match e {
        Errno::ELOOP | Errno::ENOTDIR if symlinked() => Error::Invalid(format!(
            "{}: it or a folder above it is a symlink; left4me makes no folder through a symlink (remove it, \
             and look at who put it there)",
            path.display()
        )),
        Errno::ENOTDIR => Error::Invalid(format!("{}: it or a part of its path is not a folder", path.display())),
        e => Error::io(path, e.into()),
    };
    match openat2(AT_FDCWD, path, how()) {
        Ok(dir) => return Ok(dir),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(refused(e)),
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Invalid(format!("{}: cannot make this folder", path.display())));
    };
    let parent = open_dir_creating(parent)?;
    match nix::sys::stat::mkdirat(&parent, name, nix::sys::stat::Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(Error::io(path, e.into())),
    }
    openat2(&parent, name, how()).map_err(refused)
}

/// Sets the owner of `path` itself, not of what a symlink points to.
pub fn lchown(path: &Path, owner: Owner) -> Result<(), Error> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(owner.uid),
        Some(owner.gid),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io(path, e.into()))
}

/// The entries of a folder; a missing folder has none.
pub fn entries(dir: &Path) -> Result<Vec<fs::DirEntry>, Error> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Removes a folder and everything in it; a missing folder is already removed.
pub fn remove_tree(path: &Path) -> Result<(), Error> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Takes an exclusive lock on the file `path` (created when missing), waiting as long as another
/// process holds it. Released when dropped, or when the holder dies. `waiting` is told once the
/// wait passes a second (most holders are done sooner, and a notice for those would be noise).
pub fn lock(path: &Path, waiting: impl FnOnce()) -> Result<Flock<fs::File>, Error> {
    let started = std::time::Instant::now();
    let mut waiting = Some(waiting);
    loop {
        if let Some(lock) = try_lock(path)? {
            return Ok(lock);
        }
        if started.elapsed() > std::time::Duration::from_secs(1)
            && let Some(tell) = waiting.take()
        {
            tell();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The lock on `path` if nobody holds it, else None.
///
/// A lock file may lie in a folder another user can write (`$ROOT` is the game's user's): it is
/// made 0600, opened as itself (no symlink followed), without blocking (a FIFO planted at its
/// name would hang the opener for ever), and used only if it is a regular file of this user's
/// with one link; anything else is refused, saying to remove it.
pub fn try_lock(path: &Path) -> Result<Option<Flock<fs::File>>, Error> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => not_a_lock(path, "a symlink"),
            _ => Error::io(path, e),
        })?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_a_lock(path, "not a regular file"));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() || meta.nlink() != 1 {
        return Err(not_a_lock(path, "not this user's own file of one link"));
    }
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io(path, e.into())),
    }
}

fn not_a_lock(path: &Path, what: &str) -> Error {
    Error::Invalid(format!(
        "{}: this lock file is {what}, so left4me did not make it; remove it (and look at who put it there)",
        path.display()
    ))
}

/// Gives the folder `dir` and everything under it to `owner` (symlinks themselves, never what
/// they point to), and the folder the mode `mode`. Walked without recursion: the tree is what a
/// build made of it, as deep as it liked.
pub fn hand_over(dir: &Path, mode: u32, owner: Owner) -> Result<(), Error> {
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).map_err(|e| Error::io(&folder, e))? {
            let entry = entry.map_err(|e| Error::io(&folder, e))?;
            let path = entry.path();
            lchown(&path, owner)?;
            if entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir() {
                folders.push(path);
            }
        }
    }
    lchown(dir, owner)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    fn me() -> Owner {
        Owner { uid: nix::unistd::getuid(), gid: nix::unistd::getgid() }
    }

    #[test]
    fn a_folder_is_never_made_or_given_away_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let elsewhere = root.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).unwrap();
        // The folder itself replaced by a symlink: refused, the target's mode untouched.
        symlink(&elsewhere, root.join("workshop")).unwrap();
        let refused = ensure_dir(&root.join("workshop"), 0o755, me()).unwrap_err().to_string();
        assert!(refused.contains("is a symlink"), "{refused}");
        assert_eq!(fs::metadata(&elsewhere).unwrap().mode() & 0o777, 0o700);
        // A symlink above it: nothing is made in the target.
        let below = ensure_dir(&root.join("workshop/.steamcmd"), 0o755, me()).unwrap_err().to_string();
        assert!(below.contains("is a symlink"), "{below}");
        assert!(!elsewhere.join(".steamcmd").exists());
        // A plain path is made with its parents, and given its mode.
        ensure_dir(&root.join("a/b/c"), 0o750, me()).unwrap();
        assert_eq!(fs::metadata(root.join("a/b/c")).unwrap().mode() & 0o777, 0o750);
        ensure_dir(&root.join("a/b/c"), 0o755, me()).unwrap();
        assert_eq!(fs::metadata(root.join("a/b/c")).unwrap().mode() & 0o777, 0o755, "again, its mode is set");
        fs::write(root.join("file"), "x").unwrap();
        assert!(ensure_dir(&root.join("file/sub"), 0o755, me()).unwrap_err().to_string().contains("not a folder"));
    }

    #[test]
    fn a_symlink_planted_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let target = dir.path().join("answers.json");
        symlink(&victim, dir.path().join(format!(".answers.json.tmp-{}", std::process::id()))).unwrap();
        assert!(write_atomic(&target, b"{}", 0o644, me()).unwrap());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o777, 0o600);
        assert!(fs::symlink_metadata(&target).unwrap().is_file(), "the file itself, not a link");
        assert_eq!(fs::read(&target).unwrap(), b"{}");
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        let target = dir.path().join("answers.json");
        symlink(&victim, &target).unwrap();
        write_atomic(&target, b"keep me", 0o644, me()).unwrap();
        assert!(fs::symlink_metadata(&target).unwrap().is_file());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
    }

    #[test]
    fn a_lock_file_that_is_a_fifo_a_symlink_or_another_users_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let refused = try_lock(&fifo).expect_err("a FIFO is no lock").to_string();
        assert!(refused.contains("fifo.lock") && refused.contains("remove it"), "{refused}");
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me").unwrap();
        let link = dir.path().join("link.lock");
        symlink(&victim, &link).unwrap();
        assert!(try_lock(&link).expect_err("a symlink is no lock").to_string().contains("a symlink"));
        let linked = dir.path().join("hard.lock");
        fs::hard_link(&victim, &linked).unwrap();
        assert!(try_lock(&linked).is_err(), "a file of two links is no lock");
        let theirs = dir.path().join("theirs.lock");
        fs::write(&theirs, "").unwrap();
        nix::unistd::chown(&theirs, Some(Uid::from_raw(4000)), None).unwrap();
        assert!(try_lock(&theirs).is_err(), "another user's file is no lock");
        let made = dir.path().join("made.lock");
        let held = try_lock(&made).unwrap().expect("nobody holds it");
        assert_eq!(fs::metadata(&made).unwrap().mode() & 0o777, 0o600);
        assert!(try_lock(&made).unwrap().is_none(), "held");
        drop(held);
        assert!(try_lock(&made).unwrap().is_some(), "released");
    }

    #[test]
    fn a_bounded_read_takes_regular_files_within_the_bound_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "12345").unwrap();
        assert_eq!(read_bounded(&file, 5).as_deref(), Some(&b"12345"[..]));
        assert_eq!(read_bounded(&file, 4), None, "larger than the bound");
        let link = dir.path().join("link");
        symlink(&file, &link).unwrap();
        assert_eq!(read_bounded(&link, 5), None, "a symlink");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_bounded(&fifo, 5), None, "a FIFO, without blocking");
        assert_eq!(read_bounded(&dir.path().join("missing"), 5), None);
    }
}
