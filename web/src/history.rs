//! What of the state repo's history a user may see. A user sees the commits that touch their
//! own objects (a server or blueprint file whose `metadata.owner` is them before or after the
//! commit) or the shared ones (overlays, `left4me.yaml`), and of each commit only those files'
//! diffs; admins see everything. A server's jobs are its owner's only from the commit that last
//! made the file theirs: a name used again is a new server.
//!
//! Each question is one walk of `git log --raw` (newest first, stopped as soon as it is
//! answered) beside one `git cat-file --batch` that reads the owners of the files' versions.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use left4me_state::Revision;

use crate::access;
use crate::accounts::User;
use crate::repo::{CommitInfo, RepoError, Result};

/// Largest file version whose owner is read: no state file is larger.
const MAX_BLOB: u64 = 1024 * 1024;

/// The branch's commits `user` may see, newest first: `skip` of them left out, at most `limit`.
pub fn log(repo: &Path, branch: &str, user: &User, limit: usize, skip: usize) -> Result<Vec<CommitInfo>> {
    let mut walk = Walk::start(repo, &branch_ref(branch))?;
    let mut owners = Owners::start(repo)?;
    let mut found = Vec::new();
    let mut skipped = 0;
    while found.len() < limit {
        let Some(entry) = walk.next_entry()? else { break };
        if visible_files(&entry, user, &mut owners)?.is_empty() {
            continue;
        }
        if skipped < skip {
            skipped += 1;
            continue;
        }
        found.push(entry.info);
    }
    Ok(found)
}

/// One commit of the branch as `user` sees it: its patch holds only the files they may see.
/// None when it is not on the branch, or touches nothing they may see.
pub fn show(repo: &Path, branch: &str, user: &User, revision: &Revision) -> Result<Option<(CommitInfo, String)>> {
    let Some((entry, paths)) = seen(repo, branch, user, revision)? else { return Ok(None) };
    let mut command = left4me_state::git(repo);
    // Paths are file names, never patterns.
    command.env("GIT_LITERAL_PATHSPECS", "1");
    command.args(["show", "--no-color", "--no-ext-diff", "--no-renames", "--format=", "--patch", revision.id(), "--"]);
    command.args(&paths);
    let output = run(repo, command, "show")?;
    Ok(Some((entry.info, String::from_utf8_lossy(&output).trim_start_matches('\n').to_owned())))
}

/// Whether `user` sees `revision` in the branch's history (and so may revert it).
pub fn visible(repo: &Path, branch: &str, user: &User, revision: &Revision) -> Result<bool> {
    Ok(seen(repo, branch, user, revision)?.is_some())
}

/// A commit of the branch with the files of it that `user` sees (every file, for an admin:
/// then the list is empty); None when it is not on the branch or they see none of it.
fn seen(repo: &Path, branch: &str, user: &User, revision: &Revision) -> Result<Option<(Entry, Vec<String>)>> {
    if !on_branch(repo, branch, revision)? {
        return Ok(None);
    }
    let mut walk = Walk::start_one(repo, revision)?;
    let Some(entry) = walk.next_entry()? else { return Ok(None) };
    if access::administers(user) {
        return Ok(Some((entry, Vec::new())));
    }
    let mut owners = Owners::start(repo)?;
    let paths = visible_files(&entry, user, &mut owners)?;
    Ok((!paths.is_empty()).then_some((entry, paths)))
}

/// Whether `revision` is the branch's commit or one of its ancestors.
pub fn on_branch(repo: &Path, branch: &str, revision: &Revision) -> Result<bool> {
    let mut command = left4me_state::git(repo);
    command.args(["merge-base", "--is-ancestor", revision.id(), &branch_ref(branch)]);
    let output = command.stdin(Stdio::null()).output()?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(git_error(repo, "merge-base", &output.stderr)),
    }
}

/// For each of `servers` (the user's now), the commits of the branch since the one that last
/// made its file theirs, that one included.
pub struct OwnedSince {
    /// Each commit's place in the walk, newest first.
    places: HashMap<String, usize>,
    /// The place of the commit that made each server theirs.
    since: HashMap<String, usize>,
}

impl OwnedSince {
    pub fn read(repo: &Path, branch: &str, user: &User, servers: &BTreeSet<String>) -> Result<OwnedSince> {
        let mut owned = OwnedSince { places: HashMap::new(), since: HashMap::new() };
        if servers.is_empty() {
            return Ok(owned);
        }
        let mut walk = Walk::start(repo, &branch_ref(branch))?;
        let mut owners = Owners::start(repo)?;
        while owned.since.len() < servers.len() {
            let Some(entry) = walk.next_entry()? else { break };
            let place = owned.places.len();
            for file in &entry.files {
                let Some(server) = object_name(&file.path, "servers") else { continue };
                if !servers.contains(server) || owned.since.contains_key(server) {
                    continue;
                }
                let mine = |owner: Option<String>| access::owns(user, owner.as_deref());
                if mine(owners.owner(file.new.as_deref())?) && !mine(owners.owner(file.old.as_deref())?) {
                    owned.since.insert(server.to_owned(), place);
                }
            }
            owned.places.insert(entry.info.id, place);
        }
        Ok(owned)
    }

    /// Whether a job of `server` run for `revision` belongs to the server's present owner.
    pub fn covers(&self, server: &str, revision: Option<&str>) -> bool {
        let place = revision.and_then(|r| self.places.get(r));
        match (place, self.since.get(server)) {
            (Some(place), Some(since)) => place <= since,
            _ => false,
        }
    }
}

/// The files of a commit `user` may see.
fn visible_files(entry: &Entry, user: &User, owners: &mut Owners) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    for file in &entry.files {
        let object =
            ["servers", "blueprints", "schedules"].iter().any(|folder| object_name(&file.path, folder).is_some());
        let versions = [file.old.as_deref(), file.new.as_deref()];
        let visible = access::sees_change(user, &file.path, object, versions, |blob| owners.owner(blob))?;
        if visible {
            paths.push(file.path.clone());
        }
    }
    Ok(paths)
}

/// The object a file of `folder` declares (`servers/coop-1.yaml` → `coop-1`).
fn object_name<'a>(path: &'a str, folder: &str) -> Option<&'a str> {
    let file = path.strip_prefix(folder)?.strip_prefix('/')?;
    let name = file.strip_suffix(".yaml").or_else(|| file.strip_suffix(".yml"))?;
    (!name.contains('/')).then_some(name)
}

fn branch_ref(branch: &str) -> String {
    format!("refs/heads/{branch}")
}

/// A commit and the files it changes, against its first parent (nothing for a merge).
struct Entry {
    info: CommitInfo,
    files: Vec<Touched>,
}

/// A changed file: its blob before and after (None: absent).
struct Touched {
    path: String,
    old: Option<String>,
    new: Option<String>,
}

/// `git log --raw` read one commit at a time; the process is ended when the walk is dropped.
struct Walk {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
    /// The header of the next commit, read while finishing the one before.
    next: Option<String>,
    repo: std::path::PathBuf,
}

const FORMAT: &str = "--format=%x01%H%x00%an%x00%ae%x00%at%x00%P%x00%s";

impl Walk {
    fn start(repo: &Path, reference: &str) -> Result<Walk> {
        Walk::spawn(repo, &["log", "--no-color", "--raw", "--no-renames", "--no-abbrev", FORMAT, reference, "--"])
    }

    fn start_one(repo: &Path, revision: &Revision) -> Result<Walk> {
        Walk::spawn(
            repo,
            &[
                "log",
                "--no-color",
                "--raw",
                "--no-renames",
                "--no-abbrev",
                "--max-count=1",
                FORMAT,
                revision.id(),
                "--",
            ],
        )
    }

    fn spawn(repo: &Path, args: &[&str]) -> Result<Walk> {
        let mut command = left4me_state::git(repo);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| git_error(repo, "log", b"no output"))?;
        Ok(Walk { child, lines: BufReader::new(stdout).lines(), next: None, repo: repo.to_path_buf() })
    }

    fn next_entry(&mut self) -> Result<Option<Entry>> {
        let header = match self.next.take() {
            Some(header) => header,
            None => loop {
                match self.lines.next().transpose()? {
                    Some(line) if line.starts_with('\x01') => break line,
                    Some(_) => continue,
                    None => return self.finish(),
                }
            },
        };
        let info = crate::repo::parse_commit(&header[1..])
            .ok_or_else(|| git_error(&self.repo, "log", format!("cannot read {header:?}").as_bytes()))?;
        let mut files = Vec::new();
        while let Some(line) = self.lines.next().transpose()? {
            if line.starts_with('\x01') {
                self.next = Some(line);
                break;
            }
            if let Some(file) = raw_line(&line) {
                files.push(file);
            }
        }
        Ok(Some(Entry { info, files }))
    }

    /// The end of the output: the walk is over, or git failed.
    fn finish(&mut self) -> Result<Option<Entry>> {
        let status = self.child.wait()?;
        if !status.success() {
            return Err(git_error(&self.repo, "log", format!("ended with {status}").as_bytes()));
        }
        Ok(None)
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        // A walk stopped early leaves git writing to a pipe no one reads.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `:100644 100644 <old> <new> M\t<path>`.
fn raw_line(line: &str) -> Option<Touched> {
    let (meta, path) = line.strip_prefix(':')?.split_once('\t')?;
    let mut fields = meta.split(' ');
    let (_, _, old, new) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let blob = |id: &str| (!id.bytes().all(|b| b == b'0')).then(|| id.to_owned());
    Some(Touched { path: path.to_owned(), old: blob(old), new: blob(new) })
}

/// The `metadata.owner` of file versions, read through one `git cat-file --batch`.
struct Owners {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    cache: HashMap<String, Option<String>>,
    repo: std::path::PathBuf,
}

impl Owners {
    fn start(repo: &Path) -> Result<Owners> {
        let mut command = left4me_state::git(repo);
        command.args(["cat-file", "--batch"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(git_error(repo, "cat-file", b"no pipes"));
        };
        Ok(Owners { child, stdin, stdout: BufReader::new(stdout), cache: HashMap::new(), repo: repo.to_path_buf() })
    }

    /// The owner a file version declares; None for no version, or one that declares none.
    fn owner(&mut self, blob: Option<&str>) -> Result<Option<String>> {
        let Some(blob) = blob else { return Ok(None) };
        if let Some(owner) = self.cache.get(blob) {
            return Ok(owner.clone());
        }
        writeln!(self.stdin, "{blob}")?;
        self.stdin.flush()?;
        let mut header = String::new();
        self.stdout.read_line(&mut header)?;
        let mut fields = header.split_whitespace();
        let size = match (fields.next(), fields.next(), fields.next()) {
            (Some(_), Some("blob"), Some(size)) => size.parse::<u64>().ok(),
            // `<id> missing`: nothing follows.
            (Some(_), Some("missing"), None) => {
                self.cache.insert(blob.to_owned(), None);
                return Ok(None);
            }
            _ => None,
        };
        let Some(size) = size else {
            return Err(git_error(&self.repo, "cat-file", format!("unexpected {header:?}").as_bytes()));
        };
        let mut content = Vec::new();
        // The content, then a newline.
        let mut rest = (&mut self.stdout).take(size + 1);
        if size <= MAX_BLOB {
            rest.read_to_end(&mut content)?;
        } else {
            std::io::copy(&mut rest, &mut std::io::sink())?;
        }
        content.truncate(size as usize);
        // Read as validation reads it, through the state crate's bounded reader; a version whose
        // owner cannot be read is nobody's.
        let owner = left4me_state::declared_owner("", &content).ok().flatten().map(|name| name.to_string());
        self.cache.insert(blob.to_owned(), owner.clone());
        Ok(owner)
    }
}

impl Drop for Owners {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(repo: &Path, mut command: Command, what: &str) -> Result<Vec<u8>> {
    let output = command.stdin(Stdio::null()).output()?;
    if !output.status.success() {
        return Err(git_error(repo, what, &output.stderr));
    }
    Ok(output.stdout)
}

fn git_error(repo: &Path, command: &str, stderr: &[u8]) -> RepoError {
    RepoError::Git {
        repo: repo.to_path_buf(),
        command: command.to_owned(),
        stderr: String::from_utf8_lossy(stderr).trim().to_owned(),
    }
}
