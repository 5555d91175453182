//! Release archives (`.tar.gz`, `.zip`) unpacked into an overlay's tree with the safety of
//! `overlay put`: only files, folders and symlinks, no path or symlink leaving the tree, no
//! symlink followed while writing, no set-ID bits, everything the game user's, within a bound
//! on bytes and entries. Their SHA-256, streamed.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::fsutil::{Owner, lchown};

/// What the archives of one overlay may unpack to, together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub bytes: u64,
    pub entries: u64,
}

impl Limits {
    /// Ten times what SourceMod, MetaMod:Source and a config pack unpack to together.
    pub const OVERLAY: Limits = Limits { bytes: 4 << 30, entries: 200_000 };
}

/// What is left of an overlay's [`Limits`] while its archives unpack.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    bytes: u64,
    entries: u64,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget { limits, bytes: 0, entries: 0 }
    }

    fn entry(&mut self, archive: &str) -> Result<(), Error> {
        self.entries += 1;
        if self.entries > self.limits.entries {
            return Err(Error::Invalid(format!(
                "{archive} holds more than {} entries (with the overlay's other archives): refused, as an \
                 archive bomb would be",
                self.limits.entries
            )));
        }
        Ok(())
    }

    fn bytes_left(&self) -> u64 {
        self.limits.bytes - self.bytes
    }

    fn spend(&mut self, archive: &str, bytes: u64) -> Result<(), Error> {
        self.bytes += bytes;
        if self.bytes > self.limits.bytes {
            return Err(Error::Invalid(format!(
                "{archive} unpacks to more than {} MiB (with the overlay's other archives): refused, as an \
                 archive bomb would be",
                self.limits.bytes >> 20
            )));
        }
        Ok(())
    }
}

/// The SHA-256 of what `input` reads, as lowercase hex, and how many bytes it read.
pub fn sha256(mut input: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// A SHA-256 computed while the bytes are written on.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter { inner, hasher: Sha256::new() }
    }

    /// The writer and the hex SHA-256 of everything written.
    pub fn finish(self) -> (W, String) {
        (self.inner, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where and how one archive unpacks: its entries, less `strip` leading components, under
/// `into` (relative) of `tree`; `name` names it in messages.
pub struct Unpacking<'a> {
    pub name: &'a str,
    pub tree: &'a Path,
    pub into: &'a Path,
    pub strip: usize,
    pub owner: Owner,
}

/// Unpacks the open archive `opened` (at `file`, for messages) — a gzipped tar or a zip, told
/// by its first bytes, not its name. The file is read as it was opened, never again by its path.
pub fn unpack(mut opened: fs::File, file: &Path, how: &Unpacking<'_>, budget: &mut Budget) -> Result<(), Error> {
    use std::io::Seek;
    let mut magic = [0u8; 4];
    let read = opened.read(&mut magic).map_err(|e| Error::io(file, e))?;
    opened.rewind().map_err(|e| Error::io(file, e))?;
    match &magic[..read] {
        [0x1f, 0x8b, ..] => unpack_tar_gz(opened, how, budget),
        [b'P', b'K', 3, 4] | [b'P', b'K', 5, 6] => unpack_zip(opened, how, budget),
        first => Err(Error::Invalid(format!(
            "{} is neither a .tar.gz nor a .zip (it begins with {})",
            how.name,
            first.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
        ))),
    }
}

/// What an entry of an archive is.
enum Kind {
    Folder,
    File { executable: bool },
    Symlink(PathBuf),
}

fn unpack_tar_gz(opened: fs::File, how: &Unpacking<'_>, budget: &mut Budget) -> Result<(), Error> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(opened)));
    let unreadable = |e: std::io::Error| Error::Invalid(format!("{} is unreadable: {}", how.name, crate::describe(&e)));
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        budget.entry(how.name)?;
        let raw = entry.path().map_err(unreadable)?.into_owned();
        let header = entry.header();
        let kind = header.entry_type();
        let kind = if kind.is_dir() {
            Kind::Folder
        } else if kind.is_file() {
            Kind::File { executable: header.mode().unwrap_or(0o644) & 0o111 != 0 }
        } else if kind.is_symlink() {
            let target = entry.link_name().map_err(unreadable)?.map(|t| t.into_owned()).unwrap_or_default();
            Kind::Symlink(target)
        } else {
            return Err(not_file_folder_or_symlink(how.name, &raw, &format!("{kind:?}")));
        };
        place(how, &raw, kind, &mut entry, budget)?;
    }
    Ok(())
}

fn unpack_zip(opened: fs::File, how: &Unpacking<'_>, budget: &mut Budget) -> Result<(), Error> {
    let unreadable = |e: zip::result::ZipError| Error::Invalid(format!("{} is unreadable: {e}", how.name));
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(opened)).map_err(unreadable)?;
    // A zip lists its entries up front: too many is refused before anything is written.
    if budget.entries + archive.len() as u64 > budget.limits.entries {
        return Err(Error::Invalid(format!(
            "{} holds {} entries, more than the {} an overlay may unpack: refused, as an archive bomb would be",
            how.name,
            archive.len(),
            budget.limits.entries - budget.entries
        )));
    }
    for index in 0..archive.len() {
        budget.entry(how.name)?;
        let mut entry = archive.by_index(index).map_err(unreadable)?;
        let raw = PathBuf::from(entry.name());
        // The Unix file type, where the zip was made on Unix (0: none recorded).
        let unix_type = entry.unix_mode().map_or(0, |mode| mode & 0o170_000);
        let kind = match unix_type {
            _ if entry.is_dir() => Kind::Folder,
            0o120_000 => {
                let mut target = Vec::new();
                entry.by_ref().take(4096).read_to_end(&mut target).map_err(|e| Error::io(&raw, e))?;
                use std::os::unix::ffi::OsStringExt;
                Kind::Symlink(PathBuf::from(OsString::from_vec(target)))
            }
            0 | 0o100_000 => Kind::File { executable: entry.unix_mode().unwrap_or(0o644) & 0o111 != 0 },
            0o040_000 => Kind::Folder,
            other => return Err(not_file_folder_or_symlink(how.name, &raw, &format!("Unix type {other:o}"))),
        };
        place(how, &raw, kind, &mut entry, budget)?;
    }
    Ok(())
}

fn not_file_folder_or_symlink(archive: &str, path: &Path, kind: &str) -> Error {
    Error::Invalid(format!(
        "{archive} holds {} ({kind}), which is not a file, folder or symlink (devices, FIFOs and hard \
         links are refused)",
        path.display()
    ))
}

/// Writes one entry into the tree, where its path (less `strip` components, under `into`) says.
fn place(how: &Unpacking<'_>, raw: &Path, kind: Kind, data: &mut dyn Read, budget: &mut Budget) -> Result<(), Error> {
    let Some(relative) = entry_path(how, raw)? else { return Ok(()) };
    let target = how.tree.join(&relative);
    let parent = relative.parent().unwrap_or(Path::new(""));
    make_folders(how, parent)?;
    if let Kind::Folder = kind {
        return make_folders(how, &relative);
    }
    clear(how, &relative, &target)?;
    match kind {
        Kind::Folder => unreachable!("folders are made above"),
        Kind::Symlink(link) => {
            if link.is_absolute() || link.as_os_str().is_empty() {
                return Err(Error::Invalid(format!(
                    "{} holds the symlink {} to {:?}, which leaves the overlay",
                    how.name,
                    raw.display(),
                    link.display()
                )));
            }
            std::os::unix::fs::symlink(&link, &target).map_err(|e| Error::io(&target, e))?;
        }
        Kind::File { executable } => {
            let mode = if executable { 0o755 } else { 0o644 };
            // A new file, never a planted link's target: O_EXCL with O_NOFOLLOW.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&target)
                .map_err(|e| Error::io(&target, e))?;
            let left = budget.bytes_left();
            let copied = std::io::copy(&mut data.take(left + 1), &mut file).map_err(|e| {
                Error::Invalid(format!("cannot unpack {} of {}: {}", raw.display(), how.name, crate::describe(&e)))
            })?;
            budget.spend(how.name, copied)?;
        }
    }
    lchown(&target, how.owner)
}

/// The path of an entry inside the tree, or None when `strip` drops all of it. `..`, an absolute
/// path or a Windows prefix anywhere is refused, stripped or not: no honest archive holds one.
fn entry_path(how: &Unpacking<'_>, raw: &Path) -> Result<Option<PathBuf>, Error> {
    let mut parts = Vec::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Error::Invalid(format!("{} holds {}, which leaves the overlay", how.name, raw.display())));
            }
        }
    }
    if parts.len() <= how.strip {
        return Ok(None);
    }
    Ok(Some(parts[how.strip..].iter().fold(how.into.to_path_buf(), |path, part| path.join(part))))
}

/// Makes each folder of `relative` inside the tree that is not there yet, the game user's; a
/// file in the way (an earlier entry's) is replaced, a symlink in the way is never followed.
fn make_folders(how: &Unpacking<'_>, relative: &Path) -> Result<(), Error> {
    let mut path = how.tree.to_path_buf();
    for part in relative.components() {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::Invalid(format!(
                    "{} writes under {}, a symlink of the overlay: symlinks are never followed while unpacking",
                    how.name,
                    path.strip_prefix(how.tree).unwrap_or(&path).display()
                )));
            }
            Ok(_) => fs::remove_file(&path).map_err(|e| Error::io(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        fs::DirBuilder::new().mode(0o755).create(&path).map_err(|e| Error::io(&path, e))?;
        lchown(&path, how.owner)?;
    }
    Ok(())
}

/// Makes room for a file or symlink: an earlier entry's file or symlink there goes (a later
/// archive replaces an earlier one's files); a folder there is refused.
fn clear(how: &Unpacking<'_>, relative: &Path, target: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Err(Error::Invalid(format!(
            "{} holds a file at {}, where an earlier entry made a folder",
            how.name,
            relative.display()
        ))),
        Ok(_) => fs::remove_file(target).map_err(|e| Error::io(target, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(target, e)),
    }
}

/// Refuses a tree any of whose symlinks, resolved the way the kernel would (through the tree's
/// own symlinks), leaves it. Checked once every archive is in, so that no chain of links that
/// each looked inside points out.
pub fn check_symlinks(tree: &Path, overlay: &str) -> Result<(), Error> {
    let mut folders = vec![PathBuf::new()];
    while let Some(folder) = folders.pop() {
        let dir = tree.join(&folder);
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let relative = folder.join(entry.file_name());
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if kind.is_dir() {
                folders.push(relative);
            } else if kind.is_symlink() {
                resolve_inside(tree, &relative).map_err(|why| {
                    Error::Invalid(format!("the symlink {} of overlay {overlay} {why}", relative.display()))
                })?;
            }
        }
    }
    Ok(())
}

/// Follows the symlink at `link` (relative to `tree`) as the kernel would, within the tree.
fn resolve_inside(tree: &Path, link: &Path) -> Result<(), String> {
    const MAX_HOPS: usize = 40;
    let mut resolved: Vec<OsString> =
        link.parent().into_iter().flat_map(|p| p.iter().map(|c| c.to_os_string())).collect();
    let target = fs::read_link(tree.join(link)).map_err(|e| format!("cannot be read: {e}"))?;
    let mut pending: Vec<OsString> = Vec::new();
    let push_target = |pending: &mut Vec<OsString>, target: &Path| -> Result<(), String> {
        if target.is_absolute() {
            return Err(format!("points at {}, outside the overlay", target.display()));
        }
        // Stacked in reverse: the next component to walk is the last.
        pending.extend(target.iter().rev().map(|c| c.to_os_string()));
        Ok(())
    };
    push_target(&mut pending, &target)?;
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.to_str() {
            Some(".") => continue,
            Some("..") => {
                if resolved.pop().is_none() {
                    return Err(format!("to {} leaves the overlay", target.display()));
                }
                continue;
            }
            _ => {}
        }
        let candidate: PathBuf = resolved.iter().chain(std::iter::once(&part)).collect();
        match fs::read_link(tree.join(&candidate)) {
            Ok(next) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(format!("to {} is a loop of more than {MAX_HOPS} links", target.display()));
                }
                push_target(&mut pending, &next)?;
            }
            // Not a symlink (or nothing there: a dangling link points nowhere, not outside).
            Err(_) => resolved.push(part),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_the_one_sha256sum_prints() {
        let (hash, size) = sha256(&b"abc"[..]).unwrap();
        assert_eq!(hash, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(size, 3);
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"abc").unwrap();
        assert_eq!(writer.finish(), (b"abc".to_vec(), hash));
    }

    #[test]
    fn symlinks_are_followed_within_the_tree_as_the_kernel_would() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        let link = |path: &str, target: &str| std::os::unix::fs::symlink(target, root.join(path)).unwrap();
        link("a/b/up", "..");
        link("a/b/top", "../..");
        link("a/fine", "b/up/b");
        link("a/dangling", "nothing/here");
        assert_eq!(check_symlinks(root, "t").map_err(|e| e.to_string()), Ok(()));
        // Each hop stays inside, the chain does not: top is the tree, and top/.. is above it.
        link("a/chain", "b/top/..");
        let refused = check_symlinks(root, "t").unwrap_err().to_string();
        assert!(refused.contains("a/chain") && refused.contains("leaves the overlay"), "{refused}");
        fs::remove_file(root.join("a/chain")).unwrap();
        link("loop", "loop");
        assert!(check_symlinks(root, "t").unwrap_err().to_string().contains("loop of more than"));
    }
}
