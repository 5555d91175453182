//! A server's upper layer as a tar, and back: exactly what overlayfs keeps there — files with
//! their mode, owner and mtime, folders, symlinks (as links), whiteouts (character devices 0/0)
//! and extended attributes (an opaque folder's `trusted.overlay.opaque`) as PAX
//! `SCHILY.xattr.` records.
//!
//! The upper layer belongs to the game's user, who may change it while it is read and plant a
//! symlink anywhere in it: it is walked through folder descriptors, every name opened with
//! `O_NOFOLLOW` inside the folder it was listed in, so root reads nothing outside it. A tar is
//! unpacked the same way into a folder only root can reach, refusing anything overlayfs would
//! not have written.

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

use crate::error::Error;

/// The PAX record prefix GNU tar and bsdtar keep an extended attribute under.
const XATTR: &str = "SCHILY.xattr.";

/// Most entries an upper layer's tar may hold: far more than a server writes, few enough that a
/// crafted tar cannot keep a restore busy for ever.
const MAX_ENTRIES: u64 = 200_000;

/// What one walk of a tree left out, in words.
pub type Skipped = Vec<String>;

/// The game's user. A tar names its files' owner by name as well as by number, so a restore on a
/// host where that user has another number gives them to it.
#[derive(Debug, Clone, Copy)]
pub struct GameUser<'a> {
    pub name: &'a str,
    pub uid: u32,
    pub gid: u32,
}

/// Writes the tree of the folder `dir` (itself not included) as a tar to `out`. Sockets, FIFOs
/// and devices other than whiteouts are not data and are left out, as is a file of several
/// links that the game's user does not own: a hard link is how it could make root copy out a
/// file it cannot read. Files of more than `max` bytes in all (a sparse one counts whole) are
/// refused, with their total, said of `what`: the game's user must not fill the host's disk
/// through root.
pub fn pack<W: Write>(dir: &Path, out: W, game: GameUser<'_>, max: u64, what: &str) -> Result<(W, Skipped), Error> {
    // No symlink anywhere on the way: a `runtime` the game's user swapped for a link must not
    // make root pack a tree of its choosing into a file its group may read.
    let top = crate::fsutil::open_existing_dir(dir)?
        .ok_or_else(|| Error::Invalid(format!("{} is missing; initialize the server again", dir.display())))?;
    let mut builder = tar::Builder::new(out);
    let mut skipped = Vec::new();
    // Folders still to list, by their path inside the tree; each is opened again from the top
    // with no symlink resolved, so no descriptor is held for a folder waiting its turn.
    let mut folders = vec![PathBuf::new()];
    let mut bytes = Bytes { total: 0, max };
    while let Some(folder) = folders.pop() {
        let fd = match folder.as_os_str().is_empty() {
            true => top.try_clone().map_err(|e| Error::io(dir, e))?,
            false => open_beneath(&top, &folder).map_err(|e| refused(&dir.join(&folder), e))?,
        };
        let mut names = list(&fd).map_err(|e| Error::io(dir.join(&folder), e))?;
        names.sort();
        // Reversed onto the stack, so the tar lists each folder's children in name order.
        let mut below = Vec::new();
        for name in names {
            let inside = folder.join(&name);
            match append(&mut builder, &fd, &name, &inside, game, &mut bytes) {
                Ok(Appended::Folder) => below.push(inside),
                Ok(Appended::Entry) => {}
                Ok(Appended::Skipped(why)) => skipped.push(format!("{}: {why}", inside.display())),
                // Gone between the listing and the look: the game removed it meanwhile.
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(refused(&dir.join(&inside), e)),
            }
        }
        folders.extend(below.into_iter().rev());
    }
    if bytes.total > max {
        return Err(Error::Invalid(format!(
            "{what}: its files come to {} bytes, more than the {max} a backup may hold; remove what it need not \
             keep, or raise LEFT4ME_BACKUP_MAX_BYTES in host.env",
            bytes.total
        )));
    }
    let out = builder.into_inner().map_err(|e| Error::io(dir, e))?;
    Ok((out, skipped))
}

/// The sizes of the files packed so far, and the most they may come to. Beyond it no more data
/// is written; the walk goes on only to count the total.
struct Bytes {
    total: u64,
    max: u64,
}

enum Appended {
    Folder,
    Entry,
    Skipped(&'static str),
}

/// Appends the entry `name` of the folder `dir` as `inside`.
fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &OwnedFd,
    name: &OsStr,
    inside: &Path,
    game: GameUser<'_>,
    bytes: &mut Bytes,
) -> Result<Appended, Errno> {
    let stat = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO));
    match kind {
        SFlag::S_IFDIR => {
            let fd = open_dir_at(dir, name)?;
            let stat = fstat(&fd)?;
            pax(builder, &xattrs(&fd)).map_err(io)?;
            let mut header = header(&stat, game, tar::EntryType::Directory);
            builder.append_data(&mut header, inside, std::io::empty()).map_err(io)?;
            Ok(Appended::Folder)
        }
        SFlag::S_IFREG => {
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
            let fd = openat(dir, name, flags, Mode::empty())?;
            let stat = fstat(&fd)?;
            if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
                return Ok(Appended::Skipped("replaced while it was read"));
            }
            if stat.st_nlink > 1 && stat.st_uid != game.uid {
                return Ok(Appended::Skipped("a hard link to a file the game's user does not own"));
            }
            let size = stat.st_size.max(0) as u64;
            bytes.total = bytes.total.saturating_add(size);
            if bytes.total > bytes.max {
                return Ok(Appended::Entry);
            }
            pax(builder, &xattrs(&fd)).map_err(io)?;
            let mut header = header(&stat, game, tar::EntryType::Regular);
            header.set_size(size);
            // The file may change while it is read: exactly the size the header says is written,
            // cut or padded, so the tar stays whole.
            let data = fs::File::from(fd).take(size).chain(std::io::repeat(0)).take(size);
            builder.append_data(&mut header, inside, data).map_err(io)?;
            Ok(Appended::Entry)
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(dir, name)?;
            let mut header = header(&stat, game, tar::EntryType::Symlink);
            builder.append_link(&mut header, inside, PathBuf::from(target)).map_err(io)?;
            Ok(Appended::Entry)
        }
        SFlag::S_IFCHR if stat.st_rdev == 0 => {
            let mut header = header(&stat, game, tar::EntryType::Char);
            header.set_device_major(0).map_err(io)?;
            header.set_device_minor(0).map_err(io)?;
            builder.append_data(&mut header, inside, std::io::empty()).map_err(io)?;
            Ok(Appended::Entry)
        }
        _ => Ok(Appended::Skipped("not a file, folder, symlink or whiteout")),
    }
}

fn header(stat: &FileStat, game: GameUser<'_>, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(stat.st_mode & 0o7777);
    header.set_uid(u64::from(stat.st_uid));
    header.set_gid(u64::from(stat.st_gid));
    // A user name too long for the header is left out: the number stands.
    if stat.st_uid == game.uid {
        let _ = header.set_username(game.name);
    }
    if stat.st_gid == game.gid {
        let _ = header.set_groupname(game.name);
    }
    header.set_mtime(stat.st_mtime.max(0) as u64);
    header.set_size(0);
    header
}

/// A PAX extended header with the entry's extended attributes, before the entry; none when it
/// has none.
fn pax<W: Write>(builder: &mut tar::Builder<W>, xattrs: &[(OsString, Vec<u8>)]) -> std::io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let mut records = Vec::new();
    for (key, value) in xattrs {
        let body_len = 1 + XATTR.len() + key.len() + 1 + value.len() + 1;
        // The length counts its own digits.
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        records.extend_from_slice(format!("{len} {XATTR}").as_bytes());
        records.extend_from_slice(key.as_bytes());
        records.push(b'=');
        records.extend_from_slice(value);
        records.push(b'\n');
    }
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_path("PaxHeaders/entry")?;
    header.set_mode(0o644);
    header.set_size(records.len() as u64);
    header.set_cksum();
    builder.append(&header, records.as_slice())
}

/// The extended attributes of an open file or folder that it may read (an unreadable one is
/// not the game's data).
fn xattrs(fd: &OwnedFd) -> Vec<(OsString, Vec<u8>)> {
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: the buffer is as long as the length passed; the kernel writes within it.
    let n = unsafe { nix::libc::flistxattr(fd.as_raw_fd(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut found = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| kept_xattr(n)) {
        let Ok(key) = CString::new(name) else { continue };
        let mut value = vec![0u8; 64 * 1024];
        // SAFETY: as above; `key` is NUL-terminated.
        let n = unsafe { nix::libc::fgetxattr(fd.as_raw_fd(), key.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if n >= 0 {
            value.truncate(n as usize);
            found.push((OsString::from_vec(name.to_vec()), value));
        }
    }
    found.sort();
    found
}

/// The extended attributes an upper layer's data is: overlayfs's own (an opaque folder, a
/// redirect) and the game's `user.` ones. Never `security.` (a file capability restored from a
/// crafted backup would be a file that gives root to whoever runs it) nor any other.
const KEPT_XATTRS: [&str; 2] = ["trusted.overlay.", "user."];

fn kept_xattr(name: &[u8]) -> bool {
    KEPT_XATTRS.iter().any(|prefix| name.starts_with(prefix.as_bytes()) && name.len() > prefix.len())
}

fn set_xattr(fd: &OwnedFd, key: &OsStr, value: &[u8]) -> Result<(), Errno> {
    let key = CString::new(key.as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `key` is NUL-terminated, `value` is as long as the length passed.
    let done = unsafe { nix::libc::fsetxattr(fd.as_raw_fd(), key.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    Errno::result(done).map(drop)
}

/// The names in an open folder. Listed through the descriptor's own `/proc` entry, which is the
/// folder it was opened as, whatever has been renamed since.
fn list(dir: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        names.push(entry?.file_name());
    }
    Ok(names)
}

fn open_dir_at<Fd: AsFd, P: ?Sized + nix::NixPath>(dir: Fd, name: &P) -> Result<OwnedFd, Errno> {
    openat(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// The folder at `inside` below `top`, with no symlink and no `..` resolved on the way.
pub(super) fn open_beneath(top: &OwnedFd, inside: &Path) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(top, inside, how)
}

fn refused(path: &Path, e: Errno) -> Error {
    match e {
        Errno::ELOOP | Errno::EXDEV => Error::Invalid(format!(
            "{}: it or a folder above it is a symlink; left4me reads and writes no data through one",
            path.display()
        )),
        e => Error::io(path, e.into()),
    }
}

/// One entry of a tar, as overlayfs could have written it into an upper layer.
enum Kind {
    Folder,
    File,
    Symlink(PathBuf),
    Whiteout,
}

/// What a checked tar holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contents {
    pub entries: u64,
    /// The sizes of its files, added up: what unpacking it writes (a sparse file counts whole).
    pub bytes: u64,
}

/// What a tar holds, checked: every entry a plain path inside the tree, of a kind an upper layer
/// holds, its files `max` bytes at most in all. Read through once before anything is changed, so
/// a crafted tar is refused whole; [`unpack`] checks each entry again as it makes it.
pub fn check(input: impl Read, what: &str, max: u64) -> Result<Contents, Error> {
    walk(input, what, max, &mut |_, _, _, _| Ok(()))
}

/// Unpacks a tar (checked by [`check`]) into the empty folder `into`, which only root can reach,
/// exactly as it was packed: owners, modes, mtimes and extended attributes. Every rule of
/// `check` holds here too, entry by entry: what is unpacked is what was checked.
pub fn unpack(input: impl Read, what: &str, max: u64, into: &OwnedFd, game: GameUser<'_>) -> Result<Contents, Error> {
    // Folders' mtimes are set last: each entry made in one changes it.
    let mut folders = Vec::new();
    let contents = walk(input, what, max, &mut |path, kind, entry, xattrs| {
        let fail = |e: Errno| Error::Invalid(format!("{what}: cannot restore {}: {e}", path.display()));
        let (parent, name) = split(path);
        let parent = match parent.as_os_str().is_empty() {
            true => into.try_clone().map_err(|e| Error::io(path, e))?,
            false => open_beneath(into, parent).map_err(|e| match e {
                Errno::ENOENT => Error::Invalid(format!("{what} holds {} before its folder", path.display())),
                e => fail(e),
            })?,
        };
        let header = entry.header();
        let named = |name: Option<&str>| name == Some(game.name);
        let uid = if named(header.username().ok().flatten()) { game.uid } else { header.uid().unwrap_or(0) as u32 };
        let gid = if named(header.groupname().ok().flatten()) { game.gid } else { header.gid().unwrap_or(0) as u32 };
        // No set-ID bit: a server's unit may not make one (RestrictSUIDSGID), so none is its.
        let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o1777);
        let mtime = header.mtime().unwrap_or(0) as i64;
        let owner = |fd: &OwnedFd| {
            nix::unistd::fchown(fd, Some(uid.into()), Some(gid.into()))?;
            nix::sys::stat::fchmod(fd, mode)?;
            for (key, value) in xattrs {
                set_xattr(fd, key, value)?;
            }
            Ok::<(), Errno>(())
        };
        let twice = |e: Errno| match e {
            Errno::EEXIST => Error::Invalid(format!("{what} holds {} twice", path.display())),
            e => fail(e),
        };
        match kind {
            Kind::Folder => {
                nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o700)).map_err(twice)?;
                let fd = open_dir_at(&parent, name).map_err(fail)?;
                owner(&fd).map_err(fail)?;
                folders.push((path.to_path_buf(), mtime));
            }
            Kind::File => {
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = openat(&parent, name, flags, Mode::from_bits_truncate(0o600)).map_err(twice)?;
                let mut file = fs::File::from(fd);
                std::io::copy(entry, &mut file)
                    .map_err(|e| Error::Invalid(format!("{what}: cannot restore {}: {e}", path.display())))?;
                let fd = OwnedFd::from(file);
                owner(&fd).map_err(fail)?;
                set_mtime(&fd, None, mtime).map_err(fail)?;
            }
            Kind::Symlink(target) => {
                nix::unistd::symlinkat(target, &parent, name).map_err(twice)?;
                at_owner_mtime(&parent, name, uid, gid, mtime).map_err(fail)?;
            }
            Kind::Whiteout => {
                nix::sys::stat::mknodat(&parent, name, SFlag::S_IFCHR, mode, 0).map_err(twice)?;
                whiteout_mode(&parent, name, mode).map_err(fail)?;
                at_owner_mtime(&parent, name, uid, gid, mtime).map_err(fail)?;
            }
        }
        Ok(())
    })?;
    for (path, mtime) in folders.iter().rev() {
        let fd = open_beneath(into, path).map_err(|e| refused(path, e))?;
        set_mtime(&fd, None, mtime.to_owned()).map_err(|e| Error::io(path, e.into()))?;
    }
    Ok(contents)
}

/// Gives the whiteout just made as `name` its mode (mknod's went through the umask), through a
/// descriptor of the node itself: never through a symlink put at its name meanwhile.
fn whiteout_mode(dir: &OwnedFd, name: &OsStr, mode: Mode) -> Result<(), Errno> {
    let node = openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    let stat = fstat(&node)?;
    if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFCHR || stat.st_rdev != 0 {
        return Err(Errno::EEXIST);
    }
    // A descriptor opened with O_PATH takes no fchmod; its /proc entry is the node itself.
    let proc = format!("/proc/self/fd/{}", node.as_raw_fd());
    nix::sys::stat::fchmodat(nix::fcntl::AT_FDCWD, proc.as_str(), mode, nix::sys::stat::FchmodatFlags::FollowSymlink)
}

fn split(path: &Path) -> (&Path, &OsStr) {
    let parent = path.parent().unwrap_or(Path::new(""));
    (parent, path.file_name().unwrap_or_default())
}

/// Owner and mtime of a symlink or whiteout, by its name in its folder, never followed.
fn at_owner_mtime(dir: &OwnedFd, name: &OsStr, uid: u32, gid: u32, mtime: i64) -> Result<(), Errno> {
    nix::unistd::fchownat(dir, name, Some(uid.into()), Some(gid.into()), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    set_mtime(dir, Some(name), mtime)
}

fn set_mtime(fd: &OwnedFd, name: Option<&OsStr>, mtime: i64) -> Result<(), Errno> {
    use nix::sys::time::TimeSpec;
    let time = TimeSpec::new(mtime, 0);
    match name {
        Some(name) => {
            nix::sys::stat::utimensat(fd, name, &time, &time, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        }
        None => nix::sys::stat::futimens(fd, &time, &time),
    }
}

/// What the entries before an entry said of it: a GNU long name or link, a PAX header. Read by
/// this module, not the tar crate, which splits PAX records at newlines and so cannot read an
/// attribute whose binary value holds one (overlayfs's `trusted.overlay.origin` may).
#[derive(Default)]
struct Preamble {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// The most a long name or PAX header may hold: far more than a path or a file's attributes.
const MAX_PREAMBLE: u64 = 1 << 20;

type Read3 = (PathBuf, Option<PathBuf>, Vec<(OsString, Vec<u8>)>);

impl Preamble {
    /// Takes in `entry` when it is a part of a preamble (true), else leaves it (false).
    fn take_in(&mut self, entry: &mut tar::Entry<'_, &mut dyn Read>, what: &str) -> Result<bool, Error> {
        let slot = match entry.header().entry_type() {
            tar::EntryType::GNULongName => &mut self.long_name,
            tar::EntryType::GNULongLink => &mut self.long_link,
            tar::EntryType::XHeader => &mut self.pax,
            _ => return Ok(false),
        };
        if slot.is_some() || entry.size() > MAX_PREAMBLE {
            return Err(Error::Invalid(format!("{what} holds a malformed header: refused")));
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| Error::Invalid(format!("{what} is unreadable: {}", crate::describe(&e))))?;
        *slot = Some(data);
        Ok(true)
    }

    /// The entry's path, its link's target, and its extended attributes.
    fn read(self, entry: &tar::Entry<'_, &mut dyn Read>, what: &str) -> Result<Read3, Error> {
        let malformed = || Error::Invalid(format!("{what} holds a malformed PAX header: refused"));
        let header = entry.header();
        let mut path = self.long_name.map(strip_nul).unwrap_or_else(|| header.path_bytes().into_owned());
        let mut link = self.long_link.map(strip_nul).or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        let mut xattrs = Vec::new();
        let mut records = self.pax.as_deref().unwrap_or_default();
        // Each record is `<length> <key>=<value>\n`, its length counting all of it: a value may
        // hold any byte.
        while !records.is_empty() {
            let space = records.iter().position(|b| *b == b' ').ok_or_else(malformed)?;
            let len = std::str::from_utf8(&records[..space]).ok().and_then(|l| l.parse::<usize>().ok());
            let len = len.filter(|len| (space + 2..=records.len()).contains(len)).ok_or_else(malformed)?;
            if records[len - 1] != b'\n' {
                return Err(malformed());
            }
            let body = &records[space + 1..len - 1];
            records = &records[len..];
            let equals = body.iter().position(|b| *b == b'=').ok_or_else(malformed)?;
            let (key, value) = (&body[..equals], &body[equals + 1..]);
            match key {
                b"path" => path = value.to_vec(),
                b"linkpath" => link = Some(value.to_vec()),
                // A size other than the header's would make the rest of the tar read otherwise.
                b"size" | b"GNU.sparse.size" | b"GNU.sparse.map" => return Err(malformed()),
                _ => {
                    if let Some(name) = key.strip_prefix(XATTR.as_bytes()) {
                        xattrs.push((OsString::from_vec(name.to_vec()), value.to_vec()));
                    }
                }
            }
        }
        let link = link.filter(|l| !l.is_empty()).map(|l| PathBuf::from(OsString::from_vec(l)));
        Ok((PathBuf::from(OsString::from_vec(path)), link, xattrs))
    }
}

fn strip_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

type Xattrs = [(OsString, Vec<u8>)];
type Visit<'a> = dyn FnMut(&Path, &Kind, &mut tar::Entry<'_, &mut dyn Read>, &Xattrs) -> Result<(), Error> + 'a;

/// Reads every entry of a tar (gzipped or plain), refusing what an upper layer never holds, and hands each
/// to `visit` once it passed every rule: a plain path inside the tree, below a folder an earlier
/// entry made, none twice (unpacking never follows a symlink, nor makes a folder the tar did not
/// list), a kind an upper layer holds, only the extended attributes restored, and its files
/// `max` bytes at most in all.
fn walk(input: impl Read, what: &str, max: u64, visit: &mut Visit<'_>) -> Result<Contents, Error> {
    // A backup is gzipped; a deleted server's archive (what a server moving to another host
    // brings) is the same tar, plain: told by gzip's first two bytes.
    let mut input = std::io::BufReader::new(input);
    let gzipped = std::io::BufRead::fill_buf(&mut input).is_ok_and(|start| start.starts_with(&[0x1f, 0x8b]));
    let (mut gz, mut plain);
    let reader: &mut dyn Read = if gzipped {
        gz = flate2::read::GzDecoder::new(input);
        &mut gz
    } else {
        plain = input;
        &mut plain
    };
    let mut archive = tar::Archive::new(reader);
    let unreadable = |e: std::io::Error| Error::Invalid(format!("{what} is unreadable: {}", crate::describe(&e)));
    let mut contents = Contents { entries: 0, bytes: 0 };
    let mut seen = std::collections::HashSet::new();
    let mut folders = std::collections::HashSet::new();
    let mut preamble = Preamble::default();
    for entry in archive.entries().map_err(unreadable)?.raw(true) {
        let mut entry = entry.map_err(unreadable)?;
        if preamble.take_in(&mut entry, what)? {
            continue;
        }
        let (raw, link, xattrs) = std::mem::take(&mut preamble).read(&entry, what)?;
        contents.entries += 1;
        if contents.entries > MAX_ENTRIES {
            return Err(Error::Invalid(format!("{what} holds more than {MAX_ENTRIES} entries: refused")));
        }
        let path = plain_path(&raw)
            .ok_or_else(|| Error::Invalid(format!("{what} holds {:?}, which leaves the server's data", raw)))?;
        let kind = kind(&entry, &raw, link, what)?;
        contents.bytes = contents.bytes.saturating_add(entry.size());
        if contents.bytes > max {
            return Err(Error::Invalid(format!(
                "{what} unpacks to more than {max} bytes, the most a backup may hold (LEFT4ME_BACKUP_MAX_BYTES in \
                 host.env): refused"
            )));
        }
        kept_only(&path, &kind, &xattrs, what)?;
        let parent = path.parent().unwrap_or(Path::new(""));
        if !parent.as_os_str().is_empty() && !folders.contains(parent) {
            let why = if seen.contains(parent) { "which is no folder" } else { "which comes after it or not at all" };
            return Err(Error::Invalid(format!(
                "{what} holds {} below {}, {why}: refused",
                path.display(),
                parent.display()
            )));
        }
        if !seen.insert(path.clone()) {
            return Err(Error::Invalid(format!("{what} holds {} twice: refused", path.display())));
        }
        if matches!(kind, Kind::Folder) {
            folders.insert(path.clone());
        }
        visit(&path, &kind, &mut entry, &xattrs)?;
    }
    Ok(contents)
}

/// The kind of an entry; an error for one an upper layer never holds.
fn kind(entry: &tar::Entry<'_, &mut dyn Read>, raw: &Path, link: Option<PathBuf>, what: &str) -> Result<Kind, Error> {
    let header = entry.header();
    let kind = header.entry_type();
    if kind.is_dir() {
        Ok(Kind::Folder)
    } else if kind.is_file() {
        Ok(Kind::File)
    } else if kind.is_symlink() {
        // Restored as the link it was, never followed: its target is the game's own business.
        let Some(target) = link else {
            return Err(Error::Invalid(format!("{what} holds the symlink {} to nothing", raw.display())));
        };
        Ok(Kind::Symlink(target))
    } else if kind.is_character_special()
        && header.device_major().ok().flatten() == Some(0)
        && header.device_minor().ok().flatten() == Some(0)
    {
        Ok(Kind::Whiteout)
    } else {
        Err(Error::Invalid(format!(
            "{what} holds {} ({kind:?}), which an upper layer never holds (hard links and devices other than \
             whiteouts are refused)",
            raw.display()
        )))
    }
}

/// Refuses an extended attribute that is no server's data, and any on a symlink or whiteout.
fn kept_only(path: &Path, kind: &Kind, xattrs: &Xattrs, what: &str) -> Result<(), Error> {
    if let Some((key, _)) = xattrs.iter().find(|(key, _)| !kept_xattr(key.as_bytes())) {
        return Err(Error::Invalid(format!(
            "{what} gives {} the extended attribute {}, which is no server's data (only {} are restored): refused",
            path.display(),
            key.to_string_lossy(),
            KEPT_XATTRS.map(|p| format!("{p}*")).join(", ")
        )));
    }
    if !xattrs.is_empty() && matches!(kind, Kind::Symlink(_) | Kind::Whiteout) {
        return Err(Error::Invalid(format!(
            "{what} gives the {} {} extended attributes, which are never restored on one: refused",
            if matches!(kind, Kind::Symlink(_)) { "symlink" } else { "whiteout" },
            path.display()
        )));
    }
    Ok(())
}

/// The path of an entry as plain names below the tree; None for `..`, an absolute path or none.
fn plain_path(raw: &Path) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::*;

    fn packed(dir: &Path, game: GameUser<'_>) -> (Vec<u8>, Skipped) {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let (gz, skipped) = pack(dir, gz, game, u64::MAX, "the test's tree").unwrap();
        (gz.finish().unwrap(), skipped)
    }

    fn unpacked(bytes: &[u8], game: GameUser<'_>) -> tempfile::TempDir {
        check(bytes, "the test's tar", u64::MAX).unwrap();
        let into = tempfile::tempdir().unwrap();
        let fd = open_dir_at(nix::fcntl::AT_FDCWD, into.path()).unwrap();
        unpack(bytes, "the test's tar", u64::MAX, &fd, game).unwrap();
        into
    }

    /// Path, type, mode, owner, mtime (not a folder's), contents or target, extended attributes.
    fn listing(dir: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        let mut folders = vec![dir.to_path_buf()];
        while let Some(folder) = folders.pop() {
            for entry in fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
                let fd = (meta.is_dir() || meta.is_file())
                    .then(|| openat(nix::fcntl::AT_FDCWD, &path, flags, Mode::empty()).unwrap());
                let contents = match meta.is_file() {
                    true => String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned(),
                    false => fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default(),
                };
                let mtime = if meta.is_dir() { 0 } else { meta.mtime() };
                let attrs = fd.map(|fd| format!("{:?}", xattrs(&fd))).unwrap_or_default();
                let inside = path.strip_prefix(dir).unwrap().display().to_string();
                let (mode, uid, gid, rdev) = (meta.mode(), meta.uid(), meta.gid(), meta.rdev());
                lines.push(format!("{inside} {mode:o} {uid}:{gid} {rdev} {mtime} {contents:?} {attrs}"));
                if meta.is_dir() {
                    folders.push(path);
                }
            }
        }
        lines.sort();
        lines
    }

    /// A tree with everything an upper layer holds, as root makes it (the tests run as root).
    fn upper_like() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("left4dead2/addons/sourcemod/data")).unwrap();
        fs::write(root.join("left4dead2/addons/sourcemod/data/prefs.sq3"), "sqlite").unwrap();
        fs::set_permissions(root.join("left4dead2/addons/sourcemod/data/prefs.sq3"), fs::Permissions::from_mode(0o600))
            .unwrap();
        symlink("/etc/shadow", root.join("left4dead2/shadow")).unwrap();
        nix::sys::stat::mknod(&root.join("left4dead2/gone.txt"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        fs::create_dir(root.join("left4dead2/maps")).unwrap();
        let maps = open_dir_at(nix::fcntl::AT_FDCWD, &root.join("left4dead2/maps")).unwrap();
        set_xattr(&maps, OsStr::new("trusted.overlay.opaque"), b"y").unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), Mode::S_IRWXU).unwrap();
        nix::unistd::chown(&root.join("left4dead2/addons"), Some(4000.into()), Some(4001.into())).unwrap();
        dir
    }

    #[test]
    fn an_upper_layer_comes_back_exactly_and_what_is_no_data_is_left_out() {
        let dir = upper_like();
        let game = GameUser { name: "game", uid: 4000, gid: 4001 };
        let (bytes, skipped) = packed(dir.path(), game);
        assert_eq!(skipped, vec!["fifo: not a file, folder, symlink or whiteout".to_owned()]);
        fs::remove_file(dir.path().join("fifo")).unwrap();
        let into = unpacked(&bytes, game);
        let (before, after) = (listing(dir.path()), listing(into.path()));
        assert!(before.iter().any(|l| l.contains("trusted.overlay.opaque")), "{before:#?}");
        assert_eq!(after, before);
    }

    #[test]
    fn the_game_users_files_are_given_to_its_number_on_the_host_they_come_back_to() {
        let dir = upper_like();
        let (bytes, _) = packed(dir.path(), GameUser { name: "game", uid: 4000, gid: 4001 });
        let into = unpacked(&bytes, GameUser { name: "game", uid: 5000, gid: 5001 });
        let addons = fs::metadata(into.path().join("left4dead2/addons")).unwrap();
        assert_eq!((addons.uid(), addons.gid()), (5000, 5001), "the game's, by name");
        let data = fs::metadata(into.path().join("left4dead2/addons/sourcemod")).unwrap();
        assert_eq!((data.uid(), data.gid()), (0, 0), "root's stays root's");
    }

    #[test]
    fn a_symlink_in_place_of_a_folder_is_kept_as_a_link_and_never_read_through() {
        let dir = upper_like();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "root's").unwrap();
        fs::remove_dir_all(dir.path().join("left4dead2/maps")).unwrap();
        symlink(outside.path(), dir.path().join("left4dead2/maps")).unwrap();
        let (bytes, _) = packed(dir.path(), GameUser { name: "game", uid: 4000, gid: 4001 });
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        for entry in archive.entries().unwrap() {
            names.push(entry.unwrap().path().unwrap().display().to_string());
        }
        assert!(names.contains(&"left4dead2/maps".to_owned()), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("secret")), "{names:?}");
    }

    /// A gzipped tar of `entries` (path, type, link target) and a PAX record before the last.
    fn crafted(entries: &[(&str, tar::EntryType, &str)], pax_before_last: Option<(&str, &str)>) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (i, (path, kind, target)) in entries.iter().enumerate() {
            if let Some((key, value)) = pax_before_last.filter(|_| i + 1 == entries.len()) {
                let key = OsString::from(key);
                pax(&mut builder, &[(key, value.as_bytes().to_vec())]).unwrap();
            }
            let mut header = tar::Header::new_gnu();
            header.set_path(path).unwrap();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            if !target.is_empty() {
                header.set_link_name(target).unwrap();
            }
            let data: &[u8] = if *kind == tar::EntryType::Regular { b"crafted\n" } else { b"" };
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// What unpacking `bytes` says when it was never checked first.
    fn unpacked_unchecked(bytes: &[u8], max: u64) -> (Result<Contents, Error>, tempfile::TempDir) {
        let into = tempfile::tempdir().unwrap();
        let fd = open_dir_at(nix::fcntl::AT_FDCWD, into.path()).unwrap();
        let game = GameUser { name: "game", uid: 4000, gid: 4001 };
        (unpack(bytes, "the test's tar", max, &fd, game), into)
    }

    #[test]
    fn unpacking_holds_to_every_rule_of_the_check_itself() {
        use tar::EntryType::{Regular, Symlink};
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().display().to_string();
        let below_a_link = crafted(&[("out", Symlink, &target), ("out/crafted", Regular, "")], None);
        let (result, _into) = unpacked_unchecked(&below_a_link, u64::MAX);
        let refused = result.expect_err("nothing below a symlink").to_string();
        assert!(refused.contains("no folder"), "{refused}");
        assert!(!outside.path().join("crafted").exists(), "nothing written through the link");

        let capability = crafted(&[("su", Regular, "")], Some(("security.capability", "x")));
        let (result, into) = unpacked_unchecked(&capability, u64::MAX);
        let refused = result.expect_err("no security attribute").to_string();
        assert!(refused.contains("security.capability"), "{refused}");
        assert!(!into.path().join("su").exists(), "refused before it is made");

        let (result, into) = unpacked_unchecked(&crafted(&[("a", Regular, ""), ("b", Regular, "")], None), 10);
        let refused = result.expect_err("beyond the limit").to_string();
        assert!(refused.contains("more than 10 bytes") && refused.contains("LEFT4ME_BACKUP_MAX_BYTES"), "{refused}");
        assert!(!into.path().join("b").exists(), "refused before it is made");
        let checked = check(crafted(&[("a", Regular, ""), ("b", Regular, "")], None).as_slice(), "t", 10);
        assert!(checked.is_err(), "the check says so too");
    }

    #[test]
    fn a_tree_beyond_the_limit_is_refused_with_its_whole_size_counting_sparse_files_whole() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("small"), "12345").unwrap();
        let sparse = fs::File::create(dir.path().join("sparse.dem")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        let game = GameUser { name: "game", uid: 4000, gid: 4001 };
        let out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let refused = pack(dir.path(), out, game, 1 << 20, "coop-1's data").expect_err("beyond the limit").to_string();
        let total = (64u64 << 20) + 5;
        assert!(refused.contains("coop-1's data") && refused.contains(&format!("{total} bytes")), "{refused}");
        assert!(refused.contains("LEFT4ME_BACKUP_MAX_BYTES"), "{refused}");
        let out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        assert!(pack(dir.path(), out, game, total, "coop-1's data").is_ok(), "within the limit");
    }

    #[test]
    fn an_attribute_whose_value_holds_a_newline_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("file"), "data").unwrap();
        let file = openat(nix::fcntl::AT_FDCWD, &dir.path().join("file"), OFlag::O_RDONLY, Mode::empty()).unwrap();
        // Binary, as overlayfs's file handles are: a newline, a NUL, what looks like a record.
        let value = b"\x00\x0a9 path=x\n\xff";
        set_xattr(&file, OsStr::new("user.handle"), value).unwrap();
        let game = GameUser { name: "game", uid: 4000, gid: 4001 };
        let (bytes, _) = packed(dir.path(), game);
        let into = unpacked(&bytes, game);
        assert_eq!(listing(into.path()), listing(dir.path()));
        let back = open_dir_at(nix::fcntl::AT_FDCWD, into.path()).unwrap();
        let back = openat(&back, "file", OFlag::O_RDONLY, Mode::empty()).unwrap();
        assert_eq!(xattrs(&back), vec![(OsString::from("user.handle"), value.to_vec())]);
    }

    #[test]
    fn names_and_link_targets_longer_than_a_header_holds_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a".repeat(90)).join("b".repeat(90));
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("c".repeat(120)), "deep").unwrap();
        symlink("t".repeat(200), deep.join("link")).unwrap();
        let game = GameUser { name: "game", uid: 4000, gid: 4001 };
        let (bytes, _) = packed(dir.path(), game);
        let into = unpacked(&bytes, game);
        assert_eq!(listing(into.path()), listing(dir.path()));
    }
}
