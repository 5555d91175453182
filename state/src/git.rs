//! Reading a committed revision through the `git` command line.
//!
//! Only committed objects are read (`ls-tree` and `cat-file` on a commit), never the work tree, so a
//! half-saved file is never desired state. The whole revision costs three `git` processes, whatever
//! its size, and the listing is streamed: reading stops, and git is stopped, as soon as a limit is
//! hit.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

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

/// A `git` command in `repo` and nowhere else: variables that would point it at another
/// repository are removed, it does not search parent folders for a repository, and replace refs
/// cannot make it read other objects than the commit holds.
pub fn git(repo: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(repo)
        .env("LC_ALL", "C")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .env_remove("GIT_NAMESPACE");
    let absolute = std::path::absolute(repo).unwrap_or_else(|_| repo.to_path_buf());
    if let Some(parent) = absolute.parent() {
        command.env("GIT_CEILING_DIRECTORIES", parent);
    }
    // The host's state repo belongs to the web app's user; root (the reconciler) reads it too.
    // Naming this one repo safe is what git asks for such a repo, and trusts nothing else.
    command.arg("-c").arg(format!("safe.directory={}", absolute.display()));
    command
}

/// Resolves `rev` (a branch, tag or commit id) in `repo` to the commit it names.
pub fn resolve(repo: &Path, rev: &str) -> Result<Revision, LoadError> {
    let output = git(repo)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{rev}^{{commit}}"))
        .stdin(Stdio::null())
        .output()
        .map_err(LoadError::GitMissing)?;
    if let Some(signal) = stopped_by(&output.status) {
        return Err(LoadError::Stopped { repo: repo.to_path_buf(), command: "rev-parse".into(), signal });
    }
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
    let mut listing = GitChild::spawn(
        repo,
        "ls-tree",
        git(repo).args(["ls-tree", "-r", "-l", "-z", "--full-tree", revision.id(), "--"]).args(READ_ROOTS),
        None,
    )?;
    let mut builder = TreeBuilder::new(limits);
    // (path, object id, executable — None for a symlink) of the blobs to read, in listing order.
    let mut wanted: Vec<(String, String, Option<bool>)> = Vec::new();
    let mut reader = BufReader::new(listing.stdout());
    let mut record = Vec::new();
    loop {
        record.clear();
        reader.read_until(0, &mut record).map_err(|e| listing.failed(e.to_string()))?;
        if record.last() == Some(&0) {
            record.pop();
        }
        if record.is_empty() {
            break;
        }
        let Some(entry) = ListEntry::parse(&record) else {
            return Err(listing.failed(format!("unexpected output {:?}", String::from_utf8_lossy(&record))));
        };
        let Ok(path) = std::str::from_utf8(entry.path) else {
            builder.bad_name(entry.path);
            continue;
        };
        match entry.mode {
            "100644" | "100755" => {
                if builder.admit(path, entry.size) {
                    wanted.push((path.to_owned(), entry.object.to_owned(), Some(entry.mode == "100755")));
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
            // The rest of the listing is not wanted; a huge one is not even produced.
            listing.stop();
            break;
        }
    }
    drop(reader);
    if !builder.is_full() {
        listing.finish()?;
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
    let objects: Vec<&str> = objects.collect();
    // The listing admitted every blob within the limits.
    let blobs = cat_files(repo, &objects, u64::MAX)?;
    objects
        .iter()
        .zip(blobs)
        .map(|(object, blob)| {
            blob.ok_or_else(|| LoadError::Git {
                repo: repo.to_path_buf(),
                command: "cat-file".into(),
                stderr: format!("object {object} is missing"),
            })
        })
        .collect()
}

/// Reads files through one `git cat-file --batch`, in the order given, whatever their number:
/// each `spec` (an object id, or `<commit>:<path>`) gives a blob's bytes, or None when it names
/// no blob (nothing, or a folder). A blob over `max_bytes` is an error, and is not read.
pub fn cat_files(repo: &Path, specs: &[&str], max_bytes: u64) -> Result<Vec<Option<Vec<u8>>>, LoadError> {
    // A spec with a line break cannot be asked for (the request is one spec a line); it names
    // no file of a revision the state repo could hold.
    let asked: Vec<&str> = specs.iter().copied().filter(|s| !s.contains('\n')).collect();
    let mut answers = Vec::with_capacity(asked.len());
    if !asked.is_empty() {
        let mut request = String::new();
        for spec in &asked {
            request.push_str(spec);
            request.push('\n');
        }
        let mut child = GitChild::spawn(repo, "cat-file", git(repo).args(["cat-file", "--batch"]), Some(request))?;
        let mut stdout = BufReader::new(child.stdout());
        let mut header = Vec::new();
        for spec in &asked {
            header.clear();
            stdout.read_until(b'\n', &mut header).map_err(|e| child.failed(e.to_string()))?;
            let text = String::from_utf8_lossy(&header);
            let fields: Vec<&str> = text.split_ascii_whitespace().collect();
            let found = match fields.as_slice() {
                [_, kind @ ("blob" | "tree" | "commit" | "tag"), size] => size.parse::<u64>().ok().map(|s| (*kind, s)),
                _ => None,
            };
            let Some((kind, size)) = found else {
                if text.trim_end().ends_with(" missing") || text.trim_end().ends_with(" ambiguous") {
                    answers.push(None);
                    continue;
                }
                return Err(child.failed(format!("unexpected answer {:?}", text.trim())));
            };
            if kind == "blob" && size > max_bytes {
                return Err(LoadError::TooLarge { object: (*spec).to_owned(), size, limit: max_bytes });
            }
            // A folder's listing is bounded by git's own tree format; it is read and dropped.
            let mut data = Vec::new();
            (&mut stdout).take(size + 1).read_to_end(&mut data).map_err(|e| child.failed(e.to_string()))?;
            if data.len() as u64 != size + 1 {
                return Err(child.failed("the answer ended early".into()));
            }
            data.pop(); // The newline after each object.
            answers.push((kind == "blob").then_some(data));
        }
        drop(stdout);
        child.finish()?;
    }
    let mut answers = answers.into_iter();
    Ok(specs.iter().map(|spec| if spec.contains('\n') { None } else { answers.next().flatten() }).collect())
}

/// A running `git` whose stdout is read by the caller; its stdin is fed and its stderr drained by
/// threads, so no pipe can fill up and stall it. Dropped before `finish`, it is killed and reaped.
struct GitChild {
    repo: PathBuf,
    what: &'static str,
    child: Child,
    stdout: Option<ChildStdout>,
    stdin: Option<JoinHandle<std::io::Result<()>>>,
    stderr: Option<JoinHandle<String>>,
}

impl GitChild {
    fn spawn(repo: &Path, what: &'static str, command: &mut Command, input: Option<String>) -> Result<Self, LoadError> {
        let mut child = command
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(LoadError::GitMissing)?;
        let stdin = match (child.stdin.take(), input) {
            (Some(mut pipe), Some(input)) => Some(std::thread::spawn(move || pipe.write_all(input.as_bytes()))),
            _ => None,
        };
        let mut err_pipe = child.stderr.take().expect("stderr was piped");
        let stderr = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = err_pipe.read_to_end(&mut text);
            stderr_text(&text)
        });
        let stdout = child.stdout.take();
        Ok(GitChild { repo: repo.to_path_buf(), what, child, stdout, stdin, stderr: Some(stderr) })
    }

    fn stdout(&mut self) -> ChildStdout {
        self.stdout.take().expect("stdout is taken once")
    }

    /// What went wrong when git's answer broke off or made no sense. A git that was ended by a
    /// signal (its output then stops short) is said to be stopped, not to have failed.
    fn failed(&mut self, message: String) -> LoadError {
        // A git whose output ended early is ending: give it a moment to be reaped, so that its
        // status, not the read, says what happened.
        for _ in 0..50 {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if let Some(signal) = stopped_by(&status) {
                        return self.stopped(signal);
                    }
                    break;
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(2)),
                Err(_) => break,
            }
        }
        LoadError::Git { repo: self.repo.clone(), command: self.what.into(), stderr: message }
    }

    fn stopped(&self, signal: String) -> LoadError {
        LoadError::Stopped { repo: self.repo.clone(), command: self.what.into(), signal }
    }

    /// Waits for git to end and fails with its stderr unless it succeeded.
    fn finish(mut self) -> Result<(), LoadError> {
        let status = match self.child.wait() {
            Ok(status) => status,
            Err(e) => return Err(self.failed(e.to_string())),
        };
        let stderr = self.stderr.take().and_then(|t| t.join().ok()).unwrap_or_default();
        let wrote = self.stdin.take().map(|t| t.join().unwrap_or(Ok(())));
        if let Some(signal) = stopped_by(&status) {
            return Err(self.stopped(signal));
        }
        if !status.success() {
            return Err(self.failed(stderr));
        }
        if let Some(Err(e)) = wrote {
            return Err(self.failed(e.to_string()));
        }
        Ok(())
    }

    /// Ends git early; what it had left to say is not wanted.
    fn stop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Drop for GitChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(thread) = self.stderr.take() {
            let _ = thread.join();
        }
        if let Some(thread) = self.stdin.take() {
            let _ = thread.join();
        }
    }
}

/// The signal that ended a process, by name (`SIGTERM`), when one did.
pub fn stopped_by(status: &std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    status.signal().map(signal_name)
}

/// A signal's name as people know it (`SIGKILL`), for every crate that tells how a process
/// ended; `signal N` for one of no common name.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

fn stderr_text(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).trim().replace('\n', "; ")
}
