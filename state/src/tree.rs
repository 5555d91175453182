//! The files of one revision, read with hard bounds from a directory or from a git commit.
//!
//! Both readers produce the same [`Tree`] and report the same problems in the same words, so a
//! revision validates identically wherever it is read from.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::Diagnostic;

/// The top-level entries of a state repo that are read; everything else in it (a README, CI files)
/// is not desired state and is ignored.
/// In git's tree order, which the folder reader follows too, so both stop at the same place when a
/// limit is hit.
pub(crate) const READ_ROOTS: &[&str] =
    &["alerts", "blueprints", "hosts", "left4me.yaml", "left4me.yml", "overlays", "schedules", "servers"];

/// Longest symlink target a file system can hold (PATH_MAX less its NUL); only git can carry more.
const MAX_SYMLINK_TARGET: usize = 4095;

/// Bounds on what reading a revision may cost, whatever the repo holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file, in bytes.
    pub max_file_bytes: u64,
    /// Most files (and symlinks) read.
    pub max_files: usize,
    /// Most bytes read in all.
    pub max_total_bytes: u64,
    /// Deepest folder nesting.
    pub max_depth: usize,
}

impl Limits {
    pub const DEFAULT: Limits =
        Limits { max_file_bytes: 1024 * 1024, max_files: 5_000, max_total_bytes: 64 * 1024 * 1024, max_depth: 24 };
}

/// The files of one revision under [`READ_ROOTS`], by repository-relative path.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub(crate) entries: BTreeMap<String, Entry>,
    /// Problems met while reading: files over the limits, special files, unreadable names.
    pub(crate) problems: Vec<Diagnostic>,
    /// A whole-revision limit was hit and reading stopped: the entries are only part of the revision.
    pub(crate) truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    File { data: Vec<u8>, executable: bool },
    Symlink { target: String },
}

impl Tree {
    /// Puts a file into the tree, replacing what was at `path`: how an edit that is not committed
    /// yet (a web form, a test) is checked together with the rest of its revision. A file over
    /// the default limit is a problem of the tree, as it would be once committed and read again.
    pub fn insert_file(&mut self, path: impl Into<String>, data: Vec<u8>) {
        let path = path.into();
        if let Some(problem) = oversized(&path, data.len() as u64, &Limits::DEFAULT) {
            self.entries.remove(&path);
            self.problems.push(problem);
            return;
        }
        self.entries.insert(path, Entry::File { data, executable: false });
    }

    /// Takes a file out of the tree; true when it was there.
    pub fn remove(&mut self, path: &str) -> bool {
        self.entries.remove(path).is_some()
    }

    /// Number of files and symlinks read.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The revision could not be read at all: the host, not the revision, is at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // The cause is in the message, not exposed as a source, so that every way of printing the
    // error says it once.
    #[error("cannot read {}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
    #[error("{} is not a folder", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot run git: {0}; is git installed?")]
    GitMissing(io::Error),
    #[error("{} has no revision {rev:?}: {stderr}", repo.display())]
    UnknownRevision { repo: PathBuf, rev: String, stderr: String },
    #[error("git {command} failed in {}: {stderr}", repo.display())]
    Git { repo: PathBuf, command: String, stderr: String },
    /// git was ended by a signal (the service stopping, a kill): nothing is wrong with the repo,
    /// and reading again may well succeed.
    #[error("git {command} in {} was stopped by a signal ({signal})", repo.display())]
    Stopped { repo: PathBuf, command: String, signal: String },
    #[error("{object} is {}, more than the {} a file of the state repo may hold", human_bytes(*size), human_bytes(*limit))]
    TooLarge { object: String, size: u64, limit: u64 },
}

/// Collects entries while enforcing [`Limits`]; shared by both readers so their problems read alike.
pub(crate) struct TreeBuilder {
    limits: Limits,
    tree: Tree,
    /// Files and bytes admitted so far; the git reader admits everything before it reads.
    files: usize,
    bytes: u64,
    full: bool,
}

impl TreeBuilder {
    pub(crate) fn new(limits: Limits) -> Self {
        TreeBuilder { limits, tree: Tree::default(), files: 0, bytes: 0, full: false }
    }

    /// True once a whole-revision limit was hit; the reader stops there.
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    /// Decides whether a file or symlink of `size` bytes at `path` is read. Records why not.
    pub(crate) fn admit(&mut self, path: &str, size: u64) -> bool {
        if self.full || !self.check_path(path) {
            return false;
        }
        if self.files >= self.limits.max_files {
            self.full = true;
            self.problem(Diagnostic::file(
                ".",
                format!(
                    "more than {} files under left4me.yaml, blueprints/, servers/ and overlays/; \
                     reading stopped there (large trees belong in script or workshop overlays)",
                    self.limits.max_files
                ),
            ));
            return false;
        }
        if let Some(problem) = oversized(path, size, &self.limits) {
            self.problem(problem);
            return false;
        }
        if self.bytes + size > self.limits.max_total_bytes {
            self.full = true;
            self.problem(Diagnostic::file(
                ".",
                format!(
                    "the files under left4me.yaml, blueprints/, servers/ and overlays/ add up to more \
                     than {}; reading stopped there",
                    human_bytes(self.limits.max_total_bytes)
                ),
            ));
            return false;
        }
        self.files += 1;
        self.bytes += size;
        true
    }

    /// Checks a folder before it is entered.
    pub(crate) fn admit_folder(&mut self, path: &str) -> bool {
        !self.full && self.check_path(path)
    }

    fn check_path(&mut self, path: &str) -> bool {
        if path.split('/').count() > self.limits.max_depth {
            // Name the first path too deep, so both readers report the same place: the folder
            // reader never enters it, git lists every file below it.
            let deepest: Vec<&str> = path.split('/').take(self.limits.max_depth).collect();
            self.problem(Diagnostic::file(
                deepest.join("/"),
                format!("nested more than {} levels deep", self.limits.max_depth),
            ));
            return false;
        }
        if let Some(bad) = path.split('/').position(|part| part.chars().any(char::is_control)) {
            // The first component at fault names the place, as the folder reader meets it.
            let prefix: Vec<&str> = path.split('/').take(bad + 1).collect();
            let shown = prefix.join("/").escape_debug().to_string();
            self.problem(Diagnostic::file(shown, "file name holds a control character"));
            return false;
        }
        true
    }

    pub(crate) fn file(&mut self, path: String, data: Vec<u8>, executable: bool) {
        self.tree.entries.insert(path, Entry::File { data, executable });
    }

    pub(crate) fn symlink(&mut self, path: String, target: Vec<u8>) {
        if target.len() > MAX_SYMLINK_TARGET {
            let message =
                format!("symlink target is {} bytes long; at most {MAX_SYMLINK_TARGET} are allowed", target.len());
            self.problem(Diagnostic::file(path, message));
            return;
        }
        match String::from_utf8(target) {
            Ok(target) => {
                self.tree.entries.insert(path, Entry::Symlink { target });
            }
            Err(_) => self.problem(Diagnostic::file(path, "symlink target is not valid UTF-8")),
        }
    }

    /// Something the state repo cannot hold: a device, a FIFO, a socket, a submodule.
    pub(crate) fn refuse(&mut self, path: &str, what: &str) {
        self.problem(Diagnostic::file(
            path,
            format!("is {what}; the state repo may hold only files, folders and symlinks"),
        ));
    }

    /// A path that is not UTF-8; the first component at fault names the place.
    pub(crate) fn bad_name(&mut self, raw: &[u8]) {
        let mut end = raw.len();
        let mut start = 0;
        for part in raw.split(|b| *b == b'/') {
            if std::str::from_utf8(part).is_err() {
                end = start + part.len();
                break;
            }
            start += part.len() + 1;
        }
        let shown = String::from_utf8_lossy(&raw[..end]).into_owned();
        self.problem(Diagnostic::file(shown, "file name is not valid UTF-8"));
    }

    fn problem(&mut self, diagnostic: Diagnostic) {
        self.tree.problems.push(diagnostic);
    }

    pub(crate) fn finish(mut self) -> Tree {
        self.tree.truncated = self.full;
        self.tree
    }
}

/// Reads the desired-state files of a folder (a checkout, or any plain tree).
pub fn read_dir(root: &Path, limits: Limits) -> Result<Tree, LoadError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| LoadError::Io { path, cause }
    };
    let meta = fs::metadata(root).map_err(io_err(root))?;
    if !meta.is_dir() {
        return Err(LoadError::NotADirectory(root.to_path_buf()));
    }
    let mut builder = TreeBuilder::new(limits);
    for name in READ_ROOTS {
        walk(&mut builder, &root.join(name), name.to_string())?;
        if builder.is_full() {
            break;
        }
    }
    Ok(builder.finish())
}

fn walk(builder: &mut TreeBuilder, path: &Path, rel: String) -> Result<(), LoadError> {
    let io_err = |cause| LoadError::Io { path: path.to_path_buf(), cause };
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(e)),
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        if !builder.admit_folder(&rel) {
            return Ok(());
        }
        let mut children = Vec::new();
        for child in fs::read_dir(path).map_err(io_err)? {
            let child = child.map_err(io_err)?;
            let is_dir = child.file_type().map_err(io_err)?.is_dir();
            children.push((child.file_name(), is_dir));
        }
        if children.iter().any(|(name, _)| name == ".git") {
            // A checked-out submodule or a repository inside the repo: git holds it as a gitlink.
            builder.refuse(&rel, "a git submodule");
            return Ok(());
        }
        // Git's tree order: a folder sorts as if its name ended in '/'.
        let key = |(name, is_dir): &(std::ffi::OsString, bool)| {
            let mut key = name.as_encoded_bytes().to_vec();
            if *is_dir {
                key.push(b'/');
            }
            key
        };
        children.sort_by_key(key);
        for (child, _) in children {
            let joined = format!("{rel}/{}", child.to_string_lossy());
            if child.to_str().is_none() {
                let mut raw = format!("{rel}/").into_bytes();
                raw.extend_from_slice(child.as_encoded_bytes());
                builder.bad_name(&raw);
                continue;
            }
            walk(builder, &path.join(&child), joined)?;
            if builder.is_full() {
                break;
            }
        }
    } else if kind.is_file() {
        if builder.admit(&rel, meta.len()) {
            // Read no more than was admitted, even if the file grows meanwhile.
            let mut data = Vec::with_capacity(meta.len() as usize);
            fs::File::open(path).and_then(|f| f.take(meta.len()).read_to_end(&mut data)).map_err(io_err)?;
            builder.file(rel, data, meta.mode() & 0o111 != 0);
        }
    } else if kind.is_symlink() {
        if builder.admit(&rel, meta.len()) {
            let target = fs::read_link(path).map_err(io_err)?;
            builder.symlink(rel, target.into_os_string().into_encoded_bytes());
        }
    } else {
        let what = if kind.is_block_device() {
            "a block device"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        builder.refuse(&rel, what);
    }
    Ok(())
}

/// `1048576` → `1 MiB`; sizes in messages read better rounded.
/// The problem of a file of `size` bytes over the limit, in the readers' words.
fn oversized(path: &str, size: u64, limits: &Limits) -> Option<Diagnostic> {
    (size > limits.max_file_bytes).then(|| {
        Diagnostic::file(
            path,
            format!(
                "file is {}; a file in the state repo may be at most {}",
                human_bytes(size),
                human_bytes(limits.max_file_bytes)
            ),
        )
    })
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(1024 * 1024), "1 MiB");
        assert_eq!(human_bytes(1024 * 1024 + 1024 * 512), "1.5 MiB");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
    }
}
