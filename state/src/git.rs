//! Reading a committed revision through the `git` command line.
//!
//! Only committed objects are read (`ls-tree` and `cat-file` on a commit), never the work tree, so a
//! half-saved file is never desired state. The whole revision costs three `git` processes, whatever
//! its size.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::tree::{LoadError, READ_ROOTS, TreeBuilder};
use crate::{Limits, Tree};

/// A commit of the state repo, by its full object id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(String);

impl Revision {
    pub fn id(&self) -> &str {
        &self.0
    }

    /// The abbreviated id people read in messages.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `git` command in `repo`, isolated from variables that would point it at another repository.
fn git(repo: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(repo)
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .env_remove("GIT_NAMESPACE");
    command
}

fn run(repo: &Path, command: &mut Command, what: &str) -> Result<Vec<u8>, LoadError> {
    let output = command.stdin(Stdio::null()).output().map_err(LoadError::GitMissing)?;
    if !output.status.success() {
        return Err(LoadError::Git {
            repo: repo.to_path_buf(),
            command: what.to_owned(),
            stderr: stderr_text(&output.stderr),
        });
    }
    Ok(output.stdout)
}

fn stderr_text(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).trim().replace('\n', "; ")
}

/// Resolves `rev` (a branch, tag or commit id) in `repo` to the commit it names.
pub fn resolve(repo: &Path, rev: &str) -> Result<Revision, LoadError> {
    let output = git(repo)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{rev}^{{commit}}"))
        .stdin(Stdio::null())
        .output()
        .map_err(LoadError::GitMissing)?;
    if !output.status.success() {
        let mut stderr = stderr_text(&output.stderr);
        if stderr.is_empty() {
            stderr = "no such commit".into();
        }
        return Err(LoadError::UnknownRevision { repo: repo.to_path_buf(), rev: rev.to_owned(), stderr });
    }
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(Revision(id))
}

/// Reads the desired-state files of a commit.
pub fn read_revision(repo: &Path, revision: &Revision, limits: Limits) -> Result<Tree, LoadError> {
    let listing = run(
        repo,
        git(repo).args(["ls-tree", "-r", "-l", "-z", "--full-tree", revision.id(), "--"]).args(READ_ROOTS),
        "ls-tree",
    )?;

    let mut builder = TreeBuilder::new(limits);
    // (path, object id, executable) of the blobs to read, in listing order.
    let mut wanted: Vec<(String, String, Option<bool>)> = Vec::new();
    for record in listing.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let Some(entry) = ListEntry::parse(record) else {
            return Err(LoadError::Git {
                repo: repo.to_path_buf(),
                command: "ls-tree".into(),
                stderr: format!("unexpected output {:?}", String::from_utf8_lossy(record)),
            });
        };
        let Ok(path) = std::str::from_utf8(entry.path) else {
            builder.bad_name(entry.path);
            continue;
        };
        match entry.mode {
            "100644" | "100755" | "100664" => {
                if builder.admit(path, entry.size) {
                    wanted.push((path.to_owned(), entry.object.to_owned(), Some(entry.mode != "100644")));
                }
            }
            "120000" => {
                if builder.admit(path, entry.size) {
                    wanted.push((path.to_owned(), entry.object.to_owned(), None));
                }
            }
            "160000" => builder.refuse(path, "a git submodule"),
            other => builder.refuse(path, &format!("a git object of mode {other}")),
        }
        if builder.is_full() {
            break;
        }
    }

    if !wanted.is_empty() {
        let blobs = cat_blobs(repo, wanted.iter().map(|(_, object, _)| object.as_str()))?;
        for ((path, _, executable), data) in wanted.into_iter().zip(blobs) {
            match executable {
                Some(executable) => builder.file(path, data, executable),
                None => builder.symlink(path, data),
            }
        }
    }
    Ok(builder.finish())
}

/// One record of `git ls-tree -l -z`: `<mode> <type> <object> <size>\t<path>`.
struct ListEntry<'a> {
    mode: &'a str,
    object: &'a str,
    size: u64,
    path: &'a [u8],
}

impl<'a> ListEntry<'a> {
    fn parse(record: &'a [u8]) -> Option<Self> {
        let tab = record.iter().position(|b| *b == b'\t')?;
        let meta = std::str::from_utf8(&record[..tab]).ok()?;
        let mut fields = meta.split_ascii_whitespace();
        let mode = fields.next()?;
        let _kind = fields.next()?;
        let object = fields.next()?;
        // Submodules have no size ("-").
        let size = fields.next()?.parse().unwrap_or(0);
        Some(ListEntry { mode, object, size, path: &record[tab + 1..] })
    }
}

/// Reads blobs through one `git cat-file --batch`, in the order given.
fn cat_blobs<'a>(repo: &Path, objects: impl Iterator<Item = &'a str>) -> Result<Vec<Vec<u8>>, LoadError> {
    let mut request = String::new();
    let mut count = 0;
    for object in objects {
        request.push_str(object);
        request.push('\n');
        count += 1;
    }
    let mut child = git(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(LoadError::GitMissing)?;
    let failed = |stderr: String| LoadError::Git { repo: repo.to_path_buf(), command: "cat-file".into(), stderr };

    // Feed the request from another thread: git answers while it reads, and a full pipe in each
    // direction would otherwise deadlock.
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let writer = std::thread::spawn(move || stdin.write_all(request.as_bytes()));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout was piped"));

    let mut blobs = Vec::with_capacity(count);
    let mut header = Vec::new();
    for _ in 0..count {
        header.clear();
        stdout.read_until(b'\n', &mut header).map_err(|e| failed(e.to_string()))?;
        let text = String::from_utf8_lossy(&header);
        let mut fields = text.split_ascii_whitespace();
        let (Some(_), Some("blob"), Some(size)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(failed(format!("unexpected answer {:?}", text.trim())));
        };
        let size: usize = size.parse().map_err(|_| failed(format!("unexpected answer {:?}", text.trim())))?;
        let mut data = vec![0; size + 1];
        stdout.read_exact(&mut data).map_err(|e| failed(e.to_string()))?;
        data.pop(); // The newline after each blob.
        blobs.push(data);
    }
    drop(stdout);
    let wrote = writer.join().expect("the writer thread does not panic");
    let output = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(stderr_text(&output.stderr)));
    }
    wrote.map_err(|e| failed(e.to_string()))?;
    Ok(blobs)
}
