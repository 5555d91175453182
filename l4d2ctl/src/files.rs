//! A server's tree as its game sees it, read-only: the merge of its layers — the game's own writes
//! (`runtime/<name>/upper`), its config layer (`instances/<name>/layers/<digest>`), its overlays
//! and its game build, as its record stacks them — computed as overlayfs computes it, with the
//! layer each entry comes from. For `l4d2ctl files` and the web app's file browser (in process).
//!
//! Nothing here writes, and no path leaves the tree: a path is checked whole before anything is
//! opened (no `..`, `.`, empty or overlong part, no NUL, not absolute), it is walked one name at a
//! time through folder descriptors with `openat2` `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
//! RESOLVE_NO_MAGICLINKS`, and a symlink is shown as a link with its target's text, never
//! followed. Only regular files are opened (`O_NONBLOCK`, so a FIFO planted in the upper layer
//! cannot hang a reader), and a file of root's with more than one name is not read (a hard link
//! the game's user made to a file of root's must not be read through root's `l4d2ctl files`). A
//! config file (`*.cfg`) is shown with its secret cvars' lines hidden
//! (`left4me_state::hide_secrets`), and every file with the server's secret values hidden
//! wherever they appear (`hiding`).

mod hiding;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use left4me_state::Name;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2, readlinkat};
use nix::sys::stat::{FileStat, SFlag, fstat, fstatat};
use serde::{Serialize, Serializer};

use crate::host::Host;
use crate::{builds, fsutil, mount, record, running, status};
pub use hiding::Hiding;

/// The most of a file a preview shows.
pub const PREVIEW_BYTES: u64 = 64 * 1024;
/// The longest path asked for, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// The longest name of one part of a path, in bytes (the kernel's own limit).
pub const MAX_NAME_BYTES: usize = 255;
/// The most entries of one folder listed.
pub const MAX_ENTRIES: usize = 5000;
/// The largest config file downloaded with its secrets hidden: it is read whole to hide them.
pub const HIDDEN_FILE_BYTES: u64 = 1024 * 1024;

/// Why a path of a tree cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The path itself is refused: it could leave the tree or is not a path at all.
    #[error("{0}")]
    Refused(String),
    /// Nothing is there, or it is not what was asked for (a folder to list, a file to read).
    #[error("{0}")]
    Missing(String),
    /// A config file too large to be read whole to hide its secrets.
    #[error("{0}")]
    TooLarge(String),
    /// The host could not be read.
    #[error(transparent)]
    Host(#[from] crate::Error),
}

/// A path inside a tree, checked: relative, each part a plain name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct TreePath(Vec<String>);

impl TreePath {
    /// `""` is the tree's top; anything else is `part/part/…`, each part a name of at most
    /// [`MAX_NAME_BYTES`] that is not `.` or `..`, the whole at most [`MAX_PATH_BYTES`].
    pub fn parse(text: &str) -> Result<TreePath, FilesError> {
        let refused = |why: &str| FilesError::Refused(format!("the path {:?} is refused: {why}", shorten(text)));
        if text.is_empty() {
            return Ok(TreePath::default());
        }
        if text.len() > MAX_PATH_BYTES {
            return Err(refused(&format!("it is longer than {MAX_PATH_BYTES} bytes")));
        }
        if text.contains('\0') {
            return Err(refused("it holds a NUL byte"));
        }
        if text.starts_with('/') {
            return Err(refused("it is absolute; paths are relative to the server's tree"));
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" => return Err(refused("it has an empty part (`//` or a trailing `/`)")),
                "." | ".." => return Err(refused("it has a `.` or `..` part; paths stay inside the tree")),
                part if part.len() > MAX_NAME_BYTES => {
                    return Err(refused(&format!("a name is longer than {MAX_NAME_BYTES} bytes")));
                }
                part => parts.push(part.to_owned()),
            }
        }
        Ok(TreePath(parts))
    }

    pub fn parts(&self) -> &[String] {
        &self.0
    }

    pub fn is_top(&self) -> bool {
        self.0.is_empty()
    }

    /// The last part; None for the top.
    pub fn name(&self) -> Option<&str> {
        self.0.last().map(String::as_str)
    }

    /// The folder above; None for the top.
    pub fn parent(&self) -> Option<TreePath> {
        let (_, above) = self.0.split_last()?;
        Some(TreePath(above.to_vec()))
    }

    /// The path of `name` in this folder.
    pub fn child(&self, name: &str) -> TreePath {
        let mut parts = self.0.clone();
        parts.push(name.to_owned());
        TreePath(parts)
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// Where an entry of the merged tree comes from, uppermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The game's own writes (`runtime/<name>/upper`).
    Upper,
    /// The rendered config layer (`instances/<name>/layers/<digest>`).
    Config,
    Overlay(Name),
    Build(u64),
    /// The base install from before builds (`installation/`).
    Base,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Upper => f.write_str("upper"),
            Layer::Config => f.write_str("config"),
            Layer::Overlay(name) => write!(f, "overlay {name}"),
            Layer::Build(id) => write!(f, "build {id}"),
            Layer::Base => f.write_str("base install"),
        }
    }
}

impl Serialize for Layer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Folder,
    Link,
    /// A FIFO, socket or device: listed, never opened.
    Other,
}

/// One entry of the merged tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    /// Its modification time (RFC 3339, UTC).
    pub modified: Option<String>,
    /// The uppermost layer that has it (a folder may merge with the same folder below).
    pub layer: Layer,
    /// A symlink's target, as text; never followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A folder's entries, folders first, then by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// More than [`MAX_ENTRIES`] entries: the rest are left out.
    pub truncated: bool,
}

/// The start of a file, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub entry: Entry,
    /// The first [`PREVIEW_BYTES`], secrets hidden; None for a binary file.
    pub text: Option<String>,
    /// The file is longer than the preview.
    pub truncated: bool,
}

/// A file to download: a plain file streamed as it is, or a config file read whole with its
/// secrets hidden.
#[derive(Debug)]
pub enum Download {
    Stream(Entry, Hiding<File>),
    Shown(Entry, Vec<u8>),
}

/// The layers of one server's tree, opened.
#[derive(Debug)]
pub struct Tree {
    layers: Vec<(Layer, OwnedFd)>,
    /// The reader sees overlayfs's `trusted.overlay.opaque` marks (root does; the game's user does
    /// not: the kernel answers "no such attribute" to anyone without CAP_SYS_ADMIN, and a running
    /// game's own tree is in its user namespace, which no other process of its user may look
    /// into). Such a reader sees a folder the game made again merged with the one below it.
    sees_opaque: bool,
    /// The server's secret values (its RCON password, its log secret), hidden in every file.
    secrets: Vec<String>,
}

/// The tree of server `name`: what it runs while its game runs (the config layer and build its
/// start recorded in `started.json`), else what its record stacks; [`FilesError::Missing`] when
/// it is not initialized. Opaque folders are read from their marks when this process is root.
pub fn open(host: &Host, name: &Name) -> Result<Tree, FilesError> {
    open_as(host, name, nix::unistd::geteuid().is_root())
}

/// [`open`] for a reader who does (`sees_opaque`) or does not see overlayfs's opaque marks.
pub fn open_as(host: &Host, name: &Name, sees_opaque: bool) -> Result<Tree, FilesError> {
    let record = record::read(host, name)?.ok_or_else(|| FilesError::Missing(format!("{name} is not initialized")))?;
    let paths = host.instance(name);
    // A server rendered anew since it started runs its old config layer (kept until its next
    // start) and build; a start that left no readable record of them runs the record's.
    let running = if running::is_running(name)? { status::started(&paths, &mut Vec::new()) } else { None };
    let config = running.as_ref().and_then(|s| s.digest.as_ref()).map(|d| paths.layer(d)).filter(|dir| dir.is_dir());
    let build = running.as_ref().map_or(record.build, |s| s.build);
    let mut layers = Vec::new();
    if let Some(upper) = fsutil::open_existing_dir(&paths.upper())? {
        layers.push((Layer::Upper, upper));
    }
    let mut lower = vec![(Layer::Config, config.unwrap_or_else(|| paths.layer(&record.digest)))];
    lower.extend(record.spec.overlays.iter().map(|o| (Layer::Overlay(o.name.clone()), host.overlay(&o.name))));
    lower.push(match builds::layer(host, build) {
        (dir, Some(id)) => (Layer::Build(id), dir),
        (dir, None) => (Layer::Base, dir),
    });
    for (layer, dir) in lower {
        // A layer not on the host (a build removed, an overlay not written yet) holds nothing.
        if std::fs::symlink_metadata(&dir).is_err() {
            continue;
        }
        let real = mount::check_lowerdir(host, name, &dir)?;
        if let Some(fd) = fsutil::open_existing_dir(&real)? {
            layers.push((layer, fd));
        }
    }
    // Unreadable (the reader is neither root nor the game's user) or not made yet: none to hide.
    let secrets = [paths.rcon_password(), paths.log_secret()]
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .map(|text| text.trim().to_owned())
        .filter(|secret| !secret.is_empty())
        .collect();
    Ok(Tree { layers, sees_opaque, secrets })
}

/// What a path is in the merge.
enum Found {
    /// A folder, and the layers it merges (uppermost first).
    Folder(Vec<(usize, OwnedFd)>),
    /// Anything else: the layer it comes from, the folder holding it there, and what it is.
    Leaf { layer: usize, parent: OwnedFd, stat: FileStat },
}

/// What one name is in one layer's folder.
enum Look {
    Absent,
    /// overlayfs's whiteout: a 0:0 character device, which hides the name in the layers below.
    Whiteout,
    Folder(OwnedFd),
    Other(FileStat),
}

impl Tree {
    /// The entry at `path`.
    pub fn entry(&self, path: &TreePath) -> Result<Entry, FilesError> {
        match self.resolve(path)? {
            Found::Folder(stack) => {
                let (layer, fd) = &stack[0];
                let stat = fstat(fd).map_err(|e| failed(path, e))?;
                Ok(entry_of(path.name().unwrap_or(""), self.layers[*layer].0.clone(), &stat, None))
            }
            Found::Leaf { layer, parent, stat } => {
                let name = path.name().unwrap_or("");
                let target = is_link(&stat).then(|| link_target(&parent, name));
                Ok(entry_of(name, self.layers[layer].0.clone(), &stat, target))
            }
        }
    }

    /// The entries of the folder at `path`: each name from the uppermost layer that has it, a
    /// whiteout hiding it below, an opaque folder hiding the folders below it.
    pub fn list(&self, path: &TreePath) -> Result<Listing, FilesError> {
        let Found::Folder(stack) = self.resolve(path)? else {
            return Err(FilesError::Missing(format!("{path} is not a folder")));
        };
        let mut seen: BTreeMap<String, Option<Entry>> = BTreeMap::new();
        let mut truncated = false;
        for (layer, dir) in &stack {
            let reopened = open_beneath(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(|e| failed(path, e))?;
            let mut names = nix::dir::Dir::from_fd(reopened).map_err(|e| failed(path, e))?;
            for item in names.iter() {
                let item = item.map_err(|e| failed(path, e))?;
                let bytes = item.file_name().to_bytes();
                if bytes == b"." || bytes == b".." {
                    continue;
                }
                let name = String::from_utf8_lossy(bytes).into_owned();
                if seen.contains_key(&name) {
                    continue;
                }
                if seen.len() >= MAX_ENTRIES {
                    truncated = true;
                    break;
                }
                // Gone since the folder was read: not listed.
                let Ok(stat) = fstatat(dir, bytes, AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
                let entry = (!is_whiteout(&stat)).then(|| {
                    let target = is_link(&stat).then(|| link_target(dir, &name));
                    entry_of(&name, self.layers[*layer].0.clone(), &stat, target)
                });
                seen.insert(name, entry);
            }
        }
        let mut entries: Vec<Entry> = seen.into_values().flatten().collect();
        entries.sort_by(|a, b| (a.kind != Kind::Folder, &a.name).cmp(&(b.kind != Kind::Folder, &b.name)));
        Ok(Listing { entries, truncated })
    }

    /// The first [`PREVIEW_BYTES`] of the regular file at `path` as text, or that it is binary
    /// (a NUL byte, or bytes that are not UTF-8).
    pub fn preview(&self, path: &TreePath) -> Result<Preview, FilesError> {
        let (entry, file) = self.open_file(path)?;
        let mut bytes = Vec::new();
        // Read through the secrets' hiding, a secret cut by the preview's end hidden too.
        Hiding::new(file, &self.secrets)
            .take(PREVIEW_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| failed(path, e))?;
        let truncated = bytes.len() as u64 > PREVIEW_BYTES;
        bytes.truncate(PREVIEW_BYTES as usize);
        let text = match std::str::from_utf8(&bytes) {
            _ if bytes.contains(&0) => None,
            Ok(text) => Some(text.to_owned()),
            // A character cut by the preview's end is not a sign of binary.
            Err(e) if e.error_len().is_none() => Some(String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()),
            Err(_) => None,
        };
        let text = text.map(|text| if hides_secrets(path) { left4me_state::hide_secrets(&text) } else { text });
        Ok(Preview { entry, text, truncated })
    }

    /// The regular file at `path` to download.
    pub fn download(&self, path: &TreePath) -> Result<Download, FilesError> {
        let (entry, file) = self.open_file(path)?;
        let mut file = Hiding::new(file, &self.secrets);
        if !hides_secrets(path) {
            return Ok(Download::Stream(entry, file));
        }
        let mut bytes = Vec::new();
        (&mut file).take(HIDDEN_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| failed(path, e))?;
        if bytes.len() as u64 > HIDDEN_FILE_BYTES {
            return Err(FilesError::TooLarge(format!(
                "{path} is a config file larger than {} KiB: it is read whole to hide its secrets, so it is not \
                 downloaded; read it on the host",
                HIDDEN_FILE_BYTES / 1024
            )));
        }
        let shown = left4me_state::hide_secrets(&String::from_utf8_lossy(&bytes));
        Ok(Download::Shown(entry, shown.into_bytes()))
    }

    /// The regular file at `path`, opened for reading without following anything: the inode
    /// opened is the one looked at.
    fn open_file(&self, path: &TreePath) -> Result<(Entry, File), FilesError> {
        let not_a_file = || FilesError::Missing(format!("{path} is not a file"));
        let Found::Leaf { layer, parent, stat } = self.resolve(path)? else { return Err(not_a_file()) };
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(not_a_file());
        }
        // No file of the trees is root's with a second name: one is a hard link someone made.
        if stat.st_uid == 0 && stat.st_nlink > 1 {
            return Err(FilesError::Missing(format!("{path} is root's and has more than one name: it is not read")));
        }
        let name = path.name().unwrap_or("");
        // O_NONBLOCK: should a FIFO take the file's place meanwhile, opening it does not wait.
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let fd = open_beneath(&parent, name, flags).map_err(|_| not_a_file())?;
        let opened = fstat(&fd).map_err(|e| failed(path, e))?;
        if (opened.st_dev, opened.st_ino) != (stat.st_dev, stat.st_ino) {
            return Err(not_a_file());
        }
        Ok((entry_of(name, self.layers[layer].0.clone(), &stat, None), File::from(fd)))
    }

    /// Walks `path` one name at a time down every layer, as overlayfs looks a path up.
    fn resolve(&self, path: &TreePath) -> Result<Found, FilesError> {
        let missing = || FilesError::Missing(format!("{path} is not in the tree"));
        let mut stack = Vec::with_capacity(self.layers.len());
        for (i, (_, fd)) in self.layers.iter().enumerate() {
            stack.push((i, fd.try_clone().map_err(|e| failed(path, e))?));
        }
        if stack.is_empty() {
            return Err(missing());
        }
        let parts = path.parts();
        for (depth, part) in parts.iter().enumerate() {
            let mut folders = Vec::new();
            for (layer, dir) in &stack {
                match look(dir, part) {
                    Look::Absent => continue,
                    Look::Whiteout => break,
                    Look::Folder(fd) => {
                        let opaque = self.sees_opaque && is_opaque(&fd);
                        folders.push((*layer, fd));
                        if opaque {
                            break;
                        }
                    }
                    // A file under a folder of an upper layer is hidden by it; a file above is the
                    // entry, and only the last part may be one.
                    Look::Other(stat) if folders.is_empty() && depth + 1 == parts.len() => {
                        let parent = dir.try_clone().map_err(|e| failed(path, e))?;
                        return Ok(Found::Leaf { layer: *layer, parent, stat });
                    }
                    Look::Other(_) => break,
                }
            }
            if folders.is_empty() {
                return Err(missing());
            }
            stack = folders;
        }
        Ok(Found::Folder(stack))
    }
}

/// A failure of the host to read what is there.
fn failed(path: &TreePath, e: impl Into<std::io::Error>) -> FilesError {
    FilesError::Host(crate::Error::io(format!("{path} in the server's tree"), e.into()))
}

/// A file whose secrets are hidden wherever it is shown: a config file, which the game `exec`s.
fn hides_secrets(path: &TreePath) -> bool {
    path.name().is_some_and(|name| name.to_ascii_lowercase().ends_with(".cfg"))
}

/// Opens `path` beneath `dir`, following no symlink (nor a magic link of /proc) and crossing no
/// mount.
fn open_beneath(dir: &impl AsFd, path: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new().flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    );
    openat2(dir.as_fd(), Path::new(path), how)
}

fn look(dir: &OwnedFd, name: &str) -> Look {
    let Ok(stat) = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) else { return Look::Absent };
    if is_whiteout(&stat) {
        return Look::Whiteout;
    }
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return Look::Other(stat);
    }
    // Replaced by something else since it was looked at: not there.
    match open_beneath(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(fd) => Look::Folder(fd),
        Err(_) => Look::Absent,
    }
}

fn is_whiteout(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR && stat.st_rdev == 0
}

fn is_link(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
}

/// Whether overlayfs takes this folder of an upper layer alone, hiding the folders below it.
fn is_opaque(dir: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut value = [0u8; 8];
    let name = c"trusted.overlay.opaque";
    // SAFETY: the descriptor is open for the call's length, the name is NUL-terminated and the
    // buffer's length is passed with it.
    let n = unsafe { nix::libc::fgetxattr(dir.as_raw_fd(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    n > 0 && value[0] == b'y'
}

fn link_target(dir: &OwnedFd, name: &str) -> String {
    readlinkat(dir, name).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default()
}

fn entry_of(name: &str, layer: Layer, stat: &FileStat, target: Option<String>) -> Entry {
    let kind = match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Folder,
        SFlag::S_IFLNK => Kind::Link,
        _ => Kind::Other,
    };
    let modified = u64::try_from(stat.st_mtime)
        .ok()
        .map(|secs| left4me_state::clock::rfc3339(UNIX_EPOCH + Duration::from_secs(secs)));
    Entry { name: name.to_owned(), kind, size: u64::try_from(stat.st_size).unwrap_or(0), modified, layer, target }
}

/// At most 64 characters of what was asked, for a message.
fn shorten(text: &str) -> String {
    let mut shown: String = text.chars().take(64).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    use left4me_state::InstanceSpec;
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};

    use super::*;

    const PASSWORD: &str = "Hunter2Hunter2Hunter2xyz";
    const SECRETS: left4me_state::Secrets<'static> =
        left4me_state::Secrets { rcon_password: PASSWORD, log_secret: 987_654_321, log_port: 27500 };

    /// `$ROOT` with coop-1 rendered over overlay `maps` and build 100, and coop-2 beside it.
    struct Fixture {
        _dir: tempfile::TempDir,
        host: Host,
        name: Name,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let host = Host::at(dir.path());
            for server in ["coop-1", "coop-2"] {
                let spec: InstanceSpec = serde_json::from_str(&format!(
                    r#"{{"name":"{server}","port":27015,"hostname":"coop","overlays":[{{"name":"maps","type":"files","digest":"sha256:00"}}],
                        "arguments":[],"config":[]}}"#
                ))
                .unwrap();
                let name = Name::new(server).unwrap();
                let paths = host.instance(&name);
                let digest = spec.digest();
                let record = record::InstanceRecord { digest: digest.clone(), spec: spec.clone(), build: Some(100) };
                fs::create_dir_all(paths.layer(&digest).join("left4dead2/cfg")).unwrap();
                fs::write(paths.record(), serde_json::to_string(&record).unwrap()).unwrap();
                fs::write(paths.rcon_password(), format!("{PASSWORD}\n")).unwrap();
                fs::write(paths.log_secret(), "987654321\n").unwrap();
                fs::write(paths.layer(&digest).join("left4dead2/cfg/server.cfg"), spec.server_cfg(&digest, &SECRETS))
                    .unwrap();
                fs::create_dir_all(paths.upper()).unwrap();
                fs::create_dir_all(paths.merged()).unwrap();
            }
            let f = Fixture { _dir: dir, host, name: Name::new("coop-1").unwrap() };
            f.write(&f.host.overlay(&Name::new("maps").unwrap()).join("left4dead2/addons/map.vpk"), "map");
            f.write(&f.host.overlay(&Name::new("maps").unwrap()).join("left4dead2/cfg/server.cfg"), "sv_cheats 1\n");
            f.write(&f.host.build(100).join("srcds_run"), "#!/bin/sh\n");
            f.write(&f.host.build(100).join("left4dead2/gone.txt"), "deleted by the game");
            f.write(&f.host.build(100).join("left4dead2/maps/old.bsp"), "old");
            f.write(&f.upper().join("left4dead2/addons/mine.vpk"), "mine");
            f.write(&f.upper().join("left4dead2/maps/new.bsp"), "new");
            mknod(&f.upper().join("left4dead2/gone.txt"), SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).unwrap();
            f
        }

        fn upper(&self) -> PathBuf {
            self.host.instance(&self.name).upper()
        }

        fn write(&self, path: &Path, text: &str) {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        fn tree(&self) -> Tree {
            open(&self.host, &self.name).unwrap()
        }
    }

    fn path(text: &str) -> TreePath {
        TreePath::parse(text).unwrap()
    }

    fn names(listing: &Listing) -> Vec<(String, String)> {
        listing.entries.iter().map(|e| (e.name.clone(), e.layer.to_string())).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn the_merge_is_what_overlayfs_shows_with_the_layer_of_each_entry() {
        let f = Fixture::new();
        let tree = f.tree();
        assert_eq!(
            names(&tree.list(&path("")).unwrap()),
            pairs(&[("left4dead2", "upper"), ("srcds_run", "build 100")])
        );
        // gone.txt is whited out by the game; cfg comes from the config layer, above the overlay's.
        assert_eq!(
            names(&tree.list(&path("left4dead2")).unwrap()),
            pairs(&[("addons", "upper"), ("cfg", "config"), ("maps", "upper")])
        );
        assert_eq!(
            names(&tree.list(&path("left4dead2/addons")).unwrap()),
            pairs(&[("map.vpk", "overlay maps"), ("mine.vpk", "upper")])
        );
        assert!(matches!(tree.preview(&path("left4dead2/gone.txt")), Err(FilesError::Missing(_))));
        let cfg = tree.preview(&path("left4dead2/cfg/server.cfg")).unwrap();
        assert_eq!(cfg.entry.layer, Layer::Config);
        let text = cfg.text.unwrap();
        assert!(text.contains("hostname \"coop\"") && !text.contains(PASSWORD), "{text}");
        let Download::Shown(_, bytes) = tree.download(&path("left4dead2/cfg/server.cfg")).unwrap() else {
            panic!("a config file is shown with its secrets hidden")
        };
        assert!(!String::from_utf8_lossy(&bytes).contains(PASSWORD));
        let Download::Stream(entry, mut file) = tree.download(&path("left4dead2/addons/map.vpk")).unwrap() else {
            panic!("a plain file is streamed")
        };
        let mut read = String::new();
        file.read_to_string(&mut read).unwrap();
        assert_eq!((entry.size, read.as_str()), (3, "map"));
    }

    #[test]
    fn an_opaque_folder_hides_the_layers_below_it() {
        let f = Fixture::new();
        let maps = f.upper().join("left4dead2/maps");
        let (name, value) = (c"trusted.overlay.opaque", b"y");
        let c_path = std::ffi::CString::new(maps.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: NUL-terminated path and name, the value's length passed with it.
        let set = unsafe { nix::libc::setxattr(c_path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), 1, 0) };
        assert_eq!(set, 0, "tests run as root, who may set trusted attributes");
        let root = open_as(&f.host, &f.name, true).unwrap();
        assert_eq!(names(&root.list(&path("left4dead2/maps")).unwrap()), pairs(&[("new.bsp", "upper")]));
        assert!(matches!(root.entry(&path("left4dead2/maps/old.bsp")), Err(FilesError::Missing(_))));
        // A reader who cannot see the mark, with no mounted tree to ask, sees the folders below.
        let blind = open_as(&f.host, &f.name, false).unwrap();
        assert_eq!(
            names(&blind.list(&path("left4dead2/maps")).unwrap()),
            pairs(&[("new.bsp", "upper"), ("old.bsp", "build 100")])
        );
    }

    #[test]
    fn paths_that_could_leave_the_tree_are_refused_before_anything_is_opened() {
        let long_name = "x".repeat(MAX_NAME_BYTES + 1);
        let long_path = vec!["x"; MAX_PATH_BYTES / 2 + 1].join("/");
        for bad in
            ["..", "../instances", "left4dead2/../../x", "left4dead2/..", ".", "/etc/passwd", "a\0b", "a//b", "a/"]
                .into_iter()
                .chain([long_name.as_str(), long_path.as_str()])
        {
            assert!(matches!(TreePath::parse(bad), Err(FilesError::Refused(_))), "{bad:?}");
        }
        assert_eq!(path("left4dead2/cfg").parts(), ["left4dead2", "cfg"]);
        assert!(path("").is_top());
    }

    #[test]
    fn symlinks_are_shown_as_links_and_never_followed() {
        let f = Fixture::new();
        let upper = f.upper();
        symlink("/etc/shadow", upper.join("shadow")).unwrap();
        symlink("../../instances/coop-1/rcon_password", upper.join("password")).unwrap();
        let sibling = f.host.instance(&Name::new("coop-2").unwrap()).rcon_password();
        symlink(&sibling, upper.join("sibling")).unwrap();
        symlink("/etc", upper.join("left4dead2/etc")).unwrap();
        symlink(f.host.instance(&Name::new("coop-2").unwrap()).dir, upper.join("left4dead2/other")).unwrap();
        let tree = f.tree();
        let shadow = tree.entry(&path("shadow")).unwrap();
        assert_eq!((shadow.kind, shadow.target.as_deref()), (Kind::Link, Some("/etc/shadow")));
        for link in ["shadow", "password", "sibling", "left4dead2/etc", "left4dead2/other"] {
            assert!(matches!(tree.preview(&path(link)), Err(FilesError::Missing(_))), "{link}");
            assert!(matches!(tree.download(&path(link)), Err(FilesError::Missing(_))), "{link}");
            assert!(matches!(tree.list(&path(link)), Err(FilesError::Missing(_))), "{link}");
        }
        // A link in the middle of a path is not gone through.
        for through in ["left4dead2/etc/passwd", "left4dead2/other/rcon_password", "left4dead2/other/instance.json"] {
            assert!(matches!(tree.preview(&path(through)), Err(FilesError::Missing(_))), "{through}");
        }
    }

    #[test]
    fn fifos_and_devices_are_listed_but_never_opened() {
        let f = Fixture::new();
        let upper = f.upper();
        nix::unistd::mkfifo(&upper.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        mknod(&upper.join("null"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(1, 3)).unwrap();
        let tree = f.tree();
        for other in ["fifo", "null"] {
            assert_eq!(tree.entry(&path(other)).unwrap().kind, Kind::Other);
            assert!(matches!(tree.preview(&path(other)), Err(FilesError::Missing(_))), "{other}");
            assert!(matches!(tree.download(&path(other)), Err(FilesError::Missing(_))), "{other}");
        }
    }

    #[test]
    fn a_huge_file_is_previewed_in_part_and_streamed() {
        let f = Fixture::new();
        let huge = f.upper().join("huge.log");
        let mut text = "line of the log\n".repeat(8 * 1024);
        fs::write(&huge, &text).unwrap();
        fs::File::options().write(true).open(&huge).unwrap().set_len(1 << 40).unwrap();
        let tree = f.tree();
        let preview = tree.preview(&path("huge.log")).unwrap();
        text.truncate(PREVIEW_BYTES as usize);
        assert_eq!((preview.truncated, preview.text.as_deref()), (true, Some(text.as_str())));
        assert!(matches!(tree.download(&path("huge.log")), Ok(Download::Stream(e, _)) if e.size == 1 << 40));
        // A config file that large is not read whole to hide its secrets.
        fs::rename(&huge, f.upper().join("huge.cfg")).unwrap();
        assert!(matches!(tree.download(&path("huge.cfg")), Err(FilesError::TooLarge(_))));
        let binary = f.upper().join("addon.vpk");
        fs::write(&binary, b"VPK\0\x01\x02").unwrap();
        assert_eq!(tree.preview(&path("addon.vpk")).unwrap().text, None);
    }

    #[test]
    fn a_server_not_on_the_host_is_missing() {
        let f = Fixture::new();
        assert!(matches!(open(&f.host, &Name::new("coop-9").unwrap()), Err(FilesError::Missing(_))));
    }

    #[test]
    fn the_servers_secrets_are_hidden_in_every_file_and_a_second_name_of_roots_is_not_read() {
        let f = Fixture::new();
        let log = format!("L 12/01/2026 - 10:00:00: rcon from \"10.0.0.9\": password \"{PASSWORD}\" key 987654321\n");
        f.write(&f.upper().join("left4dead2/logs/L1201000.log"), &log.repeat(5000));
        f.write(&f.upper().join("left4dead2/cfg/server.cfg.bak"), &format!("rcon_password \"{PASSWORD}\"\n"));
        let tree = f.tree();
        for file in ["left4dead2/logs/L1201000.log", "left4dead2/cfg/server.cfg.bak"] {
            let preview = tree.preview(&path(file)).unwrap();
            let text = preview.text.unwrap();
            assert!(!text.contains(PASSWORD) && text.contains(left4me_state::HIDDEN_SECRET), "{file}: {text}");
            let Download::Stream(_, mut read) = tree.download(&path(file)).unwrap() else {
                panic!("{file} is streamed")
            };
            let mut bytes = Vec::new();
            read.read_to_end(&mut bytes).unwrap();
            let sent = String::from_utf8_lossy(&bytes);
            assert!(!sent.contains(PASSWORD) && !sent.contains("987654321"), "{file}");
        }
        // Every line of the log is there, its password hidden.
        let Download::Stream(_, mut read) = tree.download(&path("left4dead2/logs/L1201000.log")).unwrap() else {
            panic!("the log is streamed")
        };
        let mut text = String::new();
        read.read_to_string(&mut text).unwrap();
        let hidden =
            log.replace(PASSWORD, left4me_state::HIDDEN_SECRET).replace("987654321", left4me_state::HIDDEN_SECRET);
        assert_eq!(text, hidden.repeat(5000));

        // A hard link the game's user made to a file of root's (here: another server's password).
        let other = f.host.instance(&Name::new("coop-2").unwrap()).rcon_password();
        fs::hard_link(&other, f.upper().join("left4dead2/stolen.txt")).unwrap();
        for refused in
            [tree.preview(&path("left4dead2/stolen.txt")).err(), tree.download(&path("left4dead2/stolen.txt")).err()]
        {
            assert!(
                matches!(refused, Some(FilesError::Missing(ref why)) if why.contains("more than one name")),
                "{refused:?}"
            );
        }
    }
}
