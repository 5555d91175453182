//! Backups of what a server wrote itself — its upper layer: SourceMod's data, bans, logs — as
//! `$ROOT/backups/<name>/<id>.tar.gz`, listed, pruned to a number, restored exactly; and, when
//! host.env names one, in a restic repository as well.
//!
//! A backup's file is written under a temporary name in its folder, synced and renamed: a
//! backup that was killed halfway is never listed. Beside it, `<id>.json` says when and why it
//! was taken. The folders are root's, the files root's with the game's group (0640): the web
//! app, which runs as the game's user, lists and downloads them; a server, whose unit hides
//! `$ROOT`, sees none.

mod restic;
mod tree;

use std::fs;
use std::io::{Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use left4me_state::Name;
use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags, openat, renameat, renameat2};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::{Deserialize, Serialize};

use crate::api::Backup;
use crate::error::Error;
use crate::fsutil::{Owner, open_existing_dir};
use crate::host::{Host, unit_name};
use crate::systemd;

pub use restic::Restic;
pub use tree::{GameUser, pack};

/// Why the backup a restore takes of the data it replaces was taken.
pub const BEFORE_RESTORE: &str = "before restore";

const EXTENSION: &str = ".tar.gz";

/// What root last heard from restic about a server's backups, for a reader that is not root
/// (the restic password is root's alone).
const RESTIC_CACHE: &str = "restic.json";

/// The folder a restore unpacks into, beside the upper layer, before the two are swapped.
const STAGING: &str = ".upper-restore";

/// What `backup` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUp {
    pub backup: Backup,
    /// The ids of older backups removed to keep the number asked for.
    pub removed: Vec<String>,
}

/// `$ROOT/incoming/`: the data of servers moving to this host from another, one
/// `<name>.tar` each (the other host's archive of it), root's alone, until `receive` puts it in
/// place.
pub const INCOMING: &str = "incoming";

/// Where the data of `name` moving in from another host waits to be received.
pub fn incoming(host: &Host, name: &Name) -> PathBuf {
    host.root.join(INCOMING).join(format!("{name}.tar"))
}

/// What `receive` put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub entries: u64,
    pub bytes: u64,
}

/// What `restore` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The backup of the data the restore replaced.
    pub kept: Backup,
    /// The server ran before and was started again.
    pub started: bool,
}

/// Checks that `text` is a backup's id as this host writes them: `2026-12-01T06-00-00Z`, or with
/// `-<n>` for a later one of the same second. Nothing else — no `/`, no `..` — names a backup.
pub fn parse_id(text: &str) -> Result<(), Error> {
    let bytes = text.as_bytes();
    if !text.is_ascii() {
        return Err(not_an_id(text));
    }
    let digits = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = bytes.len() >= 20
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19)
        && [(4, b'-'), (7, b'-'), (10, b'T'), (13, b'-'), (16, b'-'), (19, b'Z')].iter().all(|(i, c)| bytes[*i] == *c);
    let suffix = &text[text.len().min(20)..];
    let suffix_ok = suffix.is_empty()
        || suffix
            .strip_prefix('-')
            .is_some_and(|n| (1..=4).contains(&n.len()) && n.bytes().all(|d| d.is_ascii_digit()));
    if shape && suffix_ok { Ok(()) } else { Err(not_an_id(text)) }
}

fn not_an_id(text: &str) -> Error {
    Error::Invalid(format!(
        "{text:?} is not a backup's id (one looks like 2026-12-01T06-00-00Z; `l4d2ctl backups <name>` lists them)"
    ))
}

/// When the backup `id` was taken, as RFC 3339.
pub fn taken_at(id: &str) -> String {
    let (date, time) = id[..id.len().min(20)].split_at(id.len().min(11));
    format!("{date}{}", time.replace('-', ":"))
}

/// Oldest first: by time, then by the number of a later one of the same second.
fn order(id: &str) -> (String, u32) {
    let (time, n) = id.split_at(id.len().min(20));
    (time.to_owned(), n.trim_start_matches('-').parse().unwrap_or(0))
}

/// The host's game user; one that does not exist owns nothing (no number matches).
pub fn game_user(host: &Host) -> GameUser<'_> {
    match Owner::user(&host.user) {
        Ok(owner) => GameUser { name: &host.user, uid: owner.uid.as_raw(), gid: owner.gid.as_raw() },
        Err(_) => GameUser { name: &host.user, uid: u32::MAX, gid: u32::MAX },
    }
}

/// What `<id>.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct About {
    taken_at: String,
    reason: String,
}

/// A server's backups folder, open: what is made, renamed or removed in it is made there,
/// whatever the game's user renames in `$ROOT` meanwhile.
struct Folder {
    fd: OwnedFd,
    path: PathBuf,
}

impl Folder {
    /// Made when missing, with its owner and mode (root writes it). `$ROOT/backups` and the
    /// server's folder in it must be root's: one the game's user made before root did is refused,
    /// never taken over (what it planted inside would be root's to read and keep).
    fn open(host: &Host, name: &Name) -> Result<Folder, Error> {
        let game = Owner::user(&host.user)?.root_with_group_of();
        let root = open_existing_dir(&host.root)?
            .ok_or_else(|| Error::Invalid(format!("{} is missing; install left4me first", host.root.display())))?;
        let backups = root_folder(&root, &host.backups(), game)?;
        let path = host.backups().join(name.as_str());
        Ok(Folder { fd: root_folder(&backups, &path, game)?, path })
    }

    /// As it is, for reading; None when there is none. Refused when it is not root's.
    fn existing(host: &Host, name: &Name) -> Result<Option<Folder>, Error> {
        let path = host.backups().join(name.as_str());
        let Some(fd) = open_existing_dir(&path)? else { return Ok(None) };
        roots_own(&fd, &path)?;
        Ok(Some(Folder { fd, path }))
    }

    /// The folder's own path through this process's descriptor of it.
    fn proc_path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{file}", self.fd.as_raw_fd()))
    }

    fn names(&self) -> Result<Vec<String>, Error> {
        let dir = self.proc_path("");
        let entries = fs::read_dir(&dir).map_err(|e| Error::io(&self.path, e))?;
        Ok(entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
    }

    /// A new file, root's with the game's group, 0640; never a planted link's target. Open to
    /// read as well: a copy from restic is read back through it.
    fn create(&self, file: &str, group: Owner) -> Result<fs::File, Error> {
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, file, flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::io(self.path.join(file), e.into()))?;
        nix::unistd::fchown(&fd, Some(group.uid), Some(group.gid))
            .and_then(|()| nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o640)))
            .map_err(|e| Error::io(self.path.join(file), e.into()))?;
        Ok(fs::File::from(fd))
    }

    /// The regular file `file`, open to read; None when there is none. Opened as itself and
    /// without blocking: the game's user may have put a symlink or a FIFO at its name before root
    /// made the folder theirs to keep.
    fn read(&self, file: &str) -> Result<Option<fs::File>, Error> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(&self.fd, file, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(self.planted(file, "a symlink")),
            Err(e) => return Err(Error::io(self.path.join(file), e.into())),
        };
        let stat = nix::sys::stat::fstat(&fd).map_err(|e| Error::io(self.path.join(file), e.into()))?;
        if stat.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
            return Err(self.planted(file, "not a regular file"));
        }
        Ok(Some(fs::File::from(fd)))
    }

    fn planted(&self, file: &str, what: &str) -> Error {
        Error::Invalid(format!(
            "{} is {what}, which l4d2ctl never makes there; remove it (and look at who put it there)",
            self.path.join(file).display()
        ))
    }

    /// A file with no name, root's alone, to copy a backup into: what is checked and unpacked
    /// then is that copy, which nobody else can change meanwhile.
    fn anonymous(&self) -> Result<fs::File, Error> {
        let flags = OFlag::O_RDWR | OFlag::O_TMPFILE | OFlag::O_EXCL | OFlag::O_CLOEXEC;
        match openat(&self.fd, ".", flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => return Ok(fs::File::from(fd)),
            // A file system without O_TMPFILE: a file of root's, unlinked once open.
            Err(Errno::EOPNOTSUPP | Errno::EISDIR) => {}
            Err(e) => return Err(Error::io(&self.path, e.into())),
        }
        let temp = format!(".restore-{}.tmp", std::process::id());
        self.remove(&temp)?;
        let file = self.create(&temp, Owner::root())?;
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::io(self.path.join(&temp), e.into()))?;
        self.remove(&temp)?;
        Ok(file)
    }

    /// Writes `contents` as `file`, whole or not at all.
    fn write(&self, file: &str, contents: &[u8], group: Owner) -> Result<(), Error> {
        let temp = format!(".{file}.tmp");
        self.remove(&temp)?;
        let mut out = self.create(&temp, group)?;
        let written = out.write_all(contents).and_then(|()| out.sync_all());
        if let Err(e) = written {
            let _ = self.remove(&temp);
            return Err(Error::io(self.path.join(file), e));
        }
        self.rename(&temp, file)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        renameat(&self.fd, from, &self.fd, to).map_err(|e| Error::io(self.path.join(to), e.into()))?;
        nix::unistd::fsync(&self.fd).map_err(|e| Error::io(&self.path, e.into()))
    }

    /// Removes a file; a missing one is removed already.
    fn remove(&self, file: &str) -> Result<(), Error> {
        match unlinkat(&self.fd, file, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::io(self.path.join(file), e.into())),
        }
    }

    /// The backups in the folder, oldest first.
    fn local(&self) -> Result<Vec<Backup>, Error> {
        let mut found = Vec::new();
        for file in self.names()? {
            let Some(id) = file.strip_suffix(EXTENSION) else { continue };
            if parse_id(id).is_err() {
                continue;
            }
            // What is no regular file is no backup (a restore of it says why).
            let Ok(Some(opened)) = self.read(&file) else { continue };
            let bytes = opened.metadata().map_err(|e| Error::io(self.path.join(&file), e))?.len();
            let about = crate::fsutil::read_bounded(&self.proc_path(&format!("{id}.json")), 64 * 1024)
                .and_then(|text| serde_json::from_slice::<About>(&text).ok());
            found.push(Backup {
                id: id.to_owned(),
                taken_at: about.as_ref().map_or_else(|| taken_at(id), |a| a.taken_at.clone()),
                bytes,
                local: true,
                restic: false,
                reason: about.map(|a| a.reason).unwrap_or_default(),
            });
        }
        found.sort_by_key(|b| order(&b.id));
        Ok(found)
    }
}

/// The folder `path` (its last name made in `parent` when missing), root's with `group`'s group,
/// 0750; refused when it is a symlink or not root's.
fn root_folder(parent: &OwnedFd, path: &Path, group: Owner) -> Result<OwnedFd, Error> {
    let name =
        path.file_name().ok_or_else(|| Error::Invalid(format!("{}: cannot make this folder", path.display())))?;
    match nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(Error::io(path, e.into())),
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(parent, name, flags, Mode::empty()).map_err(|e| match e {
        // The kernel says either for a symlink, as it meets it.
        Errno::ELOOP | Errno::ENOTDIR => Error::Invalid(format!(
            "{}: it is a symlink or no folder; left4me keeps no backup through one (remove it, and look at who \
             put it there)",
            path.display()
        )),
        e => Error::io(path, e.into()),
    })?;
    roots_own(&fd, path)?;
    nix::unistd::fchown(&fd, Some(group.uid), Some(group.gid))
        .and_then(|()| nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o750)))
        .map_err(|e| Error::io(path, e.into()))?;
    Ok(fd)
}

/// Refuses a folder root keeps or unpacks backups in that is not root's: the game's user made it,
/// and whatever it holds is that user's doing.
fn roots_own(fd: &OwnedFd, path: &Path) -> Result<(), Error> {
    let stat = nix::sys::stat::fstat(fd).map_err(|e| Error::io(path, e.into()))?;
    if stat.st_uid != 0 {
        return Err(Error::Invalid(format!(
            "{} belongs to uid {}, not root: l4d2ctl did not make it; remove it (and look at who put it there), \
             l4d2ctl makes it anew",
            path.display(),
            stat.st_uid
        )));
    }
    Ok(())
}

/// Takes a backup of `name`'s upper layer, then removes the oldest beyond `keep`; sends it to
/// restic when host.env names a repository. A restic that fails leaves the backup on the host
/// and fails the command, saying both.
pub fn backup(
    host: &Host,
    name: &Name,
    reason: &str,
    keep: Option<u32>,
    say: &mut dyn FnMut(String),
) -> Result<BackedUp, Error> {
    let folder = Folder::open(host, name)?;
    let mut backup = take(host, name, &folder, reason, say)?;
    let mut removed = Vec::new();
    if let Some(keep) = keep {
        removed = prune(&folder, keep)?;
        if !removed.is_empty() {
            say(format!("{name}: removed {} older backups to keep {keep}: {}", removed.len(), removed.join(", ")));
        }
    }
    // Whatever restic does, the backup on the host stands; a failure says both.
    let not_to_restic = |backup: &Backup, e: Error| {
        let said = format!(
            "{name}: backed up as {} on this host ({}), but not to restic: {e}",
            backup.id,
            folder.path.join(format!("{}{EXTENSION}", backup.id)).display()
        );
        match e {
            Error::Invalid(_) => Error::Invalid(said),
            _ => Error::NotNow(said),
        }
    };
    let restic = match Restic::of(host) {
        Ok(Some(restic)) => restic,
        Ok(None) => return Ok(BackedUp { backup, removed }),
        Err(e) => return Err(not_to_restic(&backup, e)),
    };
    let sent = send(&restic, name, &folder, &backup, keep);
    // What restic holds now, for the web's list, whether or not the send worked.
    let _ = refresh_cache(&restic, host, name, &folder);
    match sent {
        Ok(()) => {
            backup.restic = true;
            say(format!("{name}: {} sent to the restic repository", backup.id));
            Ok(BackedUp { backup, removed })
        }
        Err(e) => Err(not_to_restic(&backup, e)),
    }
}

fn send(restic: &Restic, name: &Name, folder: &Folder, backup: &Backup, keep: Option<u32>) -> Result<(), Error> {
    let file = format!("{}{EXTENSION}", backup.id);
    let opened = folder.read(&file)?.ok_or_else(|| Error::Invalid(format!("{file} is gone")))?;
    restic.backup(name, &backup.id, &backup.reason, backup.bytes, opened)?;
    if let Some(keep) = keep {
        restic.forget(name, keep)?;
    }
    Ok(())
}

/// Writes the backup's file under a temporary name, syncs it, says when and why beside it, and
/// only then gives it its name.
fn take(host: &Host, name: &Name, folder: &Folder, reason: &str, say: &mut dyn FnMut(String)) -> Result<Backup, Error> {
    let game = Owner::user(&host.user)?;
    let group = game.root_with_group_of();
    let upper = host.instance(name).upper();
    // What a backup that was killed left.
    for file in folder.names()? {
        if file.starts_with('.') && file.ends_with(".tmp") {
            folder.remove(&file)?;
        }
    }
    let now = std::time::SystemTime::now();
    let id = new_id(folder, now)?;
    say(format!("{name}: backing up {} as {id}", upper.display()));
    let temp = format!(".{id}{EXTENSION}.tmp");
    let result = (|| {
        let file = folder.create(&temp, group)?;
        let gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::default());
        let what = format!("{name}'s data ({})", upper.display());
        let (gz, skipped) = tree::pack(&upper, gz, game_user(host), host.backup_max_bytes, &what)?;
        for skip in &skipped {
            say(format!("{name}: left out {skip}"));
        }
        let file = gz
            .finish()
            .and_then(|out| out.into_inner().map_err(std::io::IntoInnerError::into_error))
            .map_err(|e| Error::io(folder.path.join(&temp), e))?;
        file.sync_all().map_err(|e| Error::io(folder.path.join(&temp), e))?;
        let bytes = file.metadata().map_err(|e| Error::io(folder.path.join(&temp), e))?.len();
        let about = About { taken_at: left4me_state::clock::rfc3339(now), reason: reason.to_owned() };
        let mut json = serde_json::to_vec_pretty(&about).expect("a backup's note always serializes");
        json.push(b'\n');
        folder.write(&format!("{id}.json"), &json, group)?;
        folder.rename(&temp, &format!("{id}{EXTENSION}"))?;
        Ok(Backup { id: id.clone(), taken_at: about.taken_at, bytes, local: true, restic: false, reason: about.reason })
    })();
    if result.is_err() {
        let _ = folder.remove(&temp);
    }
    let backup = result?;
    say(format!("{name}: backed up as {id} ({} KiB)", backup.bytes.div_ceil(1024)));
    Ok(backup)
}

/// The time as an id; a later backup of the same second gets `-2`, `-3`, … after the highest
/// that second has had, so an id is never given twice, even once the first is pruned.
fn new_id(folder: &Folder, now: std::time::SystemTime) -> Result<String, Error> {
    let base = left4me_state::clock::rfc3339(now).replace(':', "-");
    let highest = folder
        .names()?
        .iter()
        .filter_map(|file| file.strip_suffix(EXTENSION).or_else(|| file.strip_suffix(".json")))
        .filter(|id| id.starts_with(&base) && parse_id(id).is_ok())
        .map(|id| order(id).1.max(1))
        .max();
    match highest {
        None => Ok(base),
        Some(n) => Ok(format!("{base}-{}", n + 1)),
    }
}

/// Removes the oldest backups beyond the newest `keep` (at least one: the newest is never
/// removed). Returns their ids, oldest first.
fn prune(folder: &Folder, keep: u32) -> Result<Vec<String>, Error> {
    let local = folder.local()?;
    let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
    let excess = local.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for backup in &local[..excess] {
        folder.remove(&format!("{}{EXTENSION}", backup.id))?;
        folder.remove(&format!("{}.json", backup.id))?;
        removed.push(backup.id.clone());
    }
    Ok(removed)
}

/// Writes what restic holds of `name`'s backups where a reader that is not root finds it.
fn refresh_cache(restic: &Restic, host: &Host, name: &Name, folder: &Folder) -> Result<Vec<Backup>, Error> {
    let snapshots = restic.snapshots(name)?;
    let listed: Vec<Backup> = snapshots
        .into_iter()
        .map(|s| Backup {
            id: s.id,
            taken_at: s.taken_at,
            bytes: s.bytes,
            local: false,
            restic: true,
            reason: s.reason,
        })
        .collect();
    let mut json = serde_json::to_vec_pretty(&listed).expect("backups always serialize");
    json.push(b'\n');
    folder.write(RESTIC_CACHE, &json, Owner::user(&host.user)?.root_with_group_of())?;
    Ok(listed)
}

/// `name`'s backups, newest first: those on the host, and those in restic — asked afresh when
/// this is root and host.env names a repository (restic out of reach: as root last heard, said
/// through `say`), else as root last heard.
pub fn list(host: &Host, name: &Name, say: &mut dyn FnMut(String)) -> Result<Vec<Backup>, Error> {
    let restic = Restic::of(host)?.filter(|_| nix::unistd::geteuid().is_root());
    let folder = match (Folder::existing(host, name)?, &restic) {
        (Some(folder), _) => folder,
        // A host that lost its backups folder still has what restic holds.
        (None, Some(_)) => Folder::open(host, name)?,
        (None, None) => return Ok(Vec::new()),
    };
    let mut all = folder.local()?;
    let heard = || {
        crate::fsutil::read_bounded(&folder.proc_path(RESTIC_CACHE), 16 << 20)
            .and_then(|text| serde_json::from_slice::<Vec<Backup>>(&text).ok())
            .unwrap_or_default()
    };
    let in_restic = match &restic {
        Some(restic) => refresh_cache(restic, host, name, &folder).unwrap_or_else(|e| {
            say(format!("{e}; its backups in restic as last heard"));
            heard()
        }),
        None => heard(),
    };
    for remote in in_restic {
        match all.iter_mut().find(|b| b.id == remote.id) {
            Some(local) => local.restic = true,
            None => all.push(remote),
        }
    }
    all.sort_by_key(|b| std::cmp::Reverse(order(&b.id)));
    Ok(all)
}

/// Restores `name`'s upper layer from the backup `id` (on the host, else from restic): the
/// server stopped if it runs, its data kept as one more backup, the backup's tree put in place
/// of its upper layer exactly, the server started again if it ran. The backup is read through
/// and checked whole before anything is changed; a failure halfway leaves the old data.
pub fn restore(host: &Host, name: &Name, id: &str, say: &mut dyn FnMut(String)) -> Result<Restored, Error> {
    parse_id(id)?;
    let folder = Folder::open(host, name)?;
    let mut opened = fetch(host, name, &folder, id, say)?;
    let what = format!("backup {id} of {name}");
    checked_whole(host, &mut opened, &what, &folder.path)?;

    let unit = unit_name(name);
    let state = systemd::systemctl(&["show", "--property", "ActiveState", "--value", "--", &unit])?;
    let running = matches!(state.trim(), "active" | "activating" | "reloading");
    if running {
        say(format!("{name}: stopping it to restore its data"));
        systemd::systemctl(&["stop", "--quiet", "--", &unit])?;
    }
    let restored = (|| {
        if crate::running::is_running(name)? {
            return Err(Error::NotNow(format!(
                "{name}: its game still has processes after its unit stopped; stop it again with `l4d2ctl stop {name}`"
            )));
        }
        let kept = take(host, name, &folder, BEFORE_RESTORE, say)?;
        swap_in(host, name, opened, &what)?;
        say(format!("{name}: restored {id}; its data before is kept as {}", kept.id));
        Ok(kept)
    })();
    // Started again whether or not the restore worked: a failed one left the old data.
    if running {
        let since = std::time::SystemTime::now();
        if let Err(e) = systemd::systemctl(&["start", "--quiet", "--", &unit]) {
            let why = systemd::why_failed(&unit, since).unwrap_or_else(|| e.to_string());
            let done = match &restored {
                Ok(_) => format!("restored {id}"),
                Err(failed) => format!("not restored ({failed})"),
            };
            return Err(Error::NotNow(format!("{name}: {done}, but it did not start again: {why}")));
        }
        say(format!("{name}: started again"));
    }
    Ok(Restored { kept: restored?, started: running })
}

/// Reads a tree's tar through and checks it whole — within the host's backup limit, and no
/// bigger than the free space where it unpacks — then rewinds it.
fn checked_whole(host: &Host, opened: &mut fs::File, what: &str, path: &Path) -> Result<tree::Contents, Error> {
    let contents = tree::check(&mut *opened, what, host.backup_max_bytes)?;
    let free = nix::sys::statvfs::statvfs(&host.root).map_err(|e| Error::io(&host.root, e.into()))?;
    let free = free.blocks_available().saturating_mul(free.fragment_size());
    if contents.bytes > free {
        return Err(Error::NotNow(format!(
            "{what} unpacks to {} bytes, more than the {free} free where {} is; free some space first",
            contents.bytes,
            host.root.display()
        )));
    }
    opened.rewind().map_err(|e| Error::io(path, e))?;
    Ok(contents)
}

/// Puts the data of `name` that moved in from another host (`$ROOT/incoming/<name>.tar`, the
/// archive that host made when it let the server go) in place of its upper layer, exactly as a
/// restore does; then the file goes. The server must be initialized and not running: its game
/// starts on the data it brought.
pub fn receive(host: &Host, name: &Name, say: &mut dyn FnMut(String)) -> Result<Received, Error> {
    let path = incoming(host, name);
    let mut opened = open_incoming(host, &path)?;
    if crate::running::is_running(name)? {
        return Err(Error::NotNow(format!(
            "{name} runs; its data from another host is put in place before its first start only (stop it first)"
        )));
    }
    let what = format!("the data of {name} from another host");
    let upper = host.instance(name).upper();
    if fs::read_dir(&upper).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::Invalid(format!(
            "{name} has data of its own here ({}): receiving would replace it; back it up (`l4d2ctl backup {name}`) \
             and remove it first, or remove {}",
            upper.display(),
            path.display()
        )));
    }
    let contents = checked_whole(host, &mut opened, &what, &path)?;
    say(format!("{name}: {what} holds {} entries, {} bytes", contents.entries, contents.bytes));
    swap_in(host, name, opened, &what)?;
    fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    say(format!("{name}: its data from another host is in place"));
    Ok(Received { entries: contents.entries, bytes: contents.bytes })
}

/// The incoming file, opened with no symlink followed: a regular file of root's with one link,
/// in a folder of root's alone.
fn open_incoming(host: &Host, path: &Path) -> Result<fs::File, Error> {
    let folder = host.root.join(INCOMING);
    let dir = open_existing_dir(&folder)?
        .ok_or_else(|| Error::Invalid(format!("nothing to receive: {} does not exist", path.display())))?;
    roots_own(&dir, &folder)?;
    let file = path.file_name().expect("an incoming file has a name");
    let fd =
        openat(&dir, file, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
            if e == Errno::ENOENT {
                Error::Invalid(format!("nothing to receive: {} does not exist", path.display()))
            } else {
                Error::io(path, e.into())
            }
        })?;
    let stat = nix::sys::stat::fstat(&fd).map_err(|e| Error::io(path, e.into()))?;
    let regular = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
    if !regular || stat.st_uid != 0 || stat.st_nlink != 1 {
        return Err(Error::Invalid(format!(
            "{} is not root's own regular file of one link: refused, nothing changed",
            path.display()
        )));
    }
    Ok(fs::File::from(fd))
}

/// A copy of the backup's file that only root can reach: the host's (a regular file of root's
/// with one link, no bigger than a backup within the host's limit can be), else the one restic
/// dumps.
fn fetch(host: &Host, name: &Name, folder: &Folder, id: &str, say: &mut dyn FnMut(String)) -> Result<fs::File, Error> {
    let file = format!("{id}{EXTENSION}");
    if let Some(local) = folder.read(&file)? {
        let stat = nix::sys::stat::fstat(&local).map_err(|e| Error::io(folder.path.join(&file), e.into()))?;
        if stat.st_uid != 0 || stat.st_nlink != 1 {
            return Err(folder.planted(&file, "not root's own file of one link"));
        }
        // A tar of files within the limit, headers and all, is far below this.
        let limit = host.backup_max_bytes.saturating_mul(2).saturating_add(1 << 30);
        let mut copy = folder.anonymous()?;
        let copied = std::io::copy(&mut std::io::Read::take(&local, limit + 1), &mut copy)
            .map_err(|e| Error::io(folder.path.join(&file), e))?;
        if copied > limit {
            return Err(Error::Invalid(format!(
                "{} is larger than any backup of at most {} bytes (LEFT4ME_BACKUP_MAX_BYTES) can be: refused",
                folder.path.join(&file).display(),
                host.backup_max_bytes
            )));
        }
        copy.rewind().map_err(|e| Error::io(folder.path.join(&file), e))?;
        return Ok(copy);
    }
    let unknown = |known: &[Backup]| {
        let ids: Vec<&str> = known.iter().map(|b| b.id.as_str()).collect();
        Error::Invalid(format!(
            "{name} has no backup {id} (its backups: {})",
            if ids.is_empty() { "none".to_owned() } else { ids.join(", ") }
        ))
    };
    let Some(restic) = Restic::of(host)? else { return Err(unknown(&folder.local()?)) };
    let snapshots = restic.snapshots(name)?;
    let Some(snapshot) = snapshots.iter().find(|s| s.id == id) else {
        return Err(unknown(&list(host, name, say)?));
    };
    say(format!("{name}: {id} is not on this host; reading it from restic (snapshot {})", snapshot.snapshot));
    let out = folder.anonymous()?;
    let mut copy = out.try_clone().map_err(|e| Error::io(&folder.path, e))?;
    restic.dump(snapshot, out)?;
    copy.rewind().map_err(|e| Error::io(&folder.path, e))?;
    Ok(copy)
}

/// Unpacks the backup into a folder beside the upper layer that only root can reach, gives it
/// the upper layer's owner and mode, and swaps the two in one rename.
fn swap_in(host: &Host, name: &Name, opened: fs::File, what: &str) -> Result<(), Error> {
    let runtime = host.instance(name).runtime;
    let dir = open_existing_dir(&runtime)?
        .ok_or_else(|| Error::Invalid(format!("{name} is not initialized ({} is missing)", runtime.display())))?;
    // The staging folder is made and swapped by name in it: only root may rename in it.
    roots_own(&dir, &runtime)?;
    let in_dir = |file: &str| PathBuf::from(format!("/proc/self/fd/{}/{file}", dir.as_raw_fd()));
    let upper = tree::open_beneath(&dir, Path::new("upper")).map_err(|e| Error::io(runtime.join("upper"), e.into()))?;
    let upper_stat = nix::sys::stat::fstat(&upper).map_err(|e| Error::io(runtime.join("upper"), e.into()))?;
    // What a restore that was killed left.
    crate::fsutil::remove_tree(&in_dir(STAGING))?;
    nix::sys::stat::mkdirat(&dir, STAGING, Mode::from_bits_truncate(0o700))
        .map_err(|e| Error::io(runtime.join(STAGING), e.into()))?;
    let unpacked = (|| {
        let staging =
            tree::open_beneath(&dir, Path::new(STAGING)).map_err(|e| Error::io(runtime.join(STAGING), e.into()))?;
        roots_own(&staging, &runtime.join(STAGING))?;
        tree::unpack(std::io::BufReader::new(opened), what, host.backup_max_bytes, &staging, game_user(host))?;
        nix::unistd::fchown(&staging, Some(upper_stat.st_uid.into()), Some(upper_stat.st_gid.into()))
            .and_then(|()| nix::sys::stat::fchmod(&staging, Mode::from_bits_truncate(upper_stat.st_mode & 0o7777)))
            .map_err(|e| Error::io(runtime.join(STAGING), e.into()))?;
        renameat2(&dir, STAGING, &dir, "upper", RenameFlags::RENAME_EXCHANGE)
            .map_err(|e| Error::io(runtime.join("upper"), e.into()))?;
        nix::unistd::fsync(&dir).map_err(|e| Error::io(&runtime, e.into()))
    })();
    // The staging folder holds the old data once swapped, the half-unpacked backup if not.
    let cleaned = crate::fsutil::remove_tree(&in_dir(STAGING));
    unpacked.and(cleaned)
}
