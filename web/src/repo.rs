//! Writing the state repo: every save is a commit on the branch, made without a work tree (a
//! temporary index, `commit-tree`) and put in place with a compare-and-swap of the branch, so two
//! saves at once can never lose one of them. A save costs the same dozen git processes whatever
//! the number of files it changes: files are read with one `cat-file --batch`, written with one
//! `hash-object --stdin-paths`, and put in the index with one `update-index --index-info`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use left4me_state::{Limits, LoadError, Revision};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("git {command} in {repo}: {stderr}")]
    Git { repo: PathBuf, command: String, stderr: String },
    /// git was ended by a signal (the app stopping, a kill); nothing is wrong with the repo.
    #[error("git {command} in {repo} was stopped by a signal ({signal})")]
    Stopped { repo: PathBuf, command: String, signal: String },
    /// A file of the repo is larger than any file of the state repo may be.
    #[error("{0}")]
    TooLarge(String),
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
}

impl RepoError {
    /// The signal that stopped git, when one did.
    pub fn stopped_by(&self) -> Option<&str> {
        match self {
            RepoError::Stopped { signal, .. } => Some(signal),
            _ => None,
        }
    }

    /// What a page may say of it: what failed, never a path of the host nor git's own words
    /// (which name them). The whole error goes to the log.
    pub fn public(&self) -> String {
        match self {
            RepoError::Git { command, .. } => format!("git {command} failed on the state repo"),
            RepoError::Stopped { signal, .. } => format!("git was stopped by a signal ({signal})"),
            RepoError::TooLarge(why) => why.clone(),
            RepoError::Spawn(_) => "git could not be run".to_owned(),
        }
    }
}

impl From<LoadError> for RepoError {
    fn from(error: LoadError) -> RepoError {
        match error {
            LoadError::Stopped { repo, command, signal } => RepoError::Stopped { repo, command, signal },
            LoadError::Git { repo, command, stderr } => RepoError::Git { repo, command, stderr },
            LoadError::GitMissing(e) => RepoError::Spawn(e),
            too_large @ LoadError::TooLarge { .. } => RepoError::TooLarge(too_large.to_string()),
            other => RepoError::Git { repo: PathBuf::new(), command: "read".into(), stderr: other.to_string() },
        }
    }
}

pub type Result<T> = std::result::Result<T, RepoError>;

/// Who a commit is by.
#[derive(Debug, Clone)]
pub struct Author {
    pub name: String,
    pub email: String,
}

/// A change to some files of the state repo, made from what the editor saw at `base`.
#[derive(Debug, Clone)]
pub struct Change {
    /// The revision the editor started from; None for a repo with no commit yet.
    pub base: Option<Revision>,
    /// Repo-relative paths and their new contents; None removes the file.
    pub files: Vec<(String, Option<Vec<u8>>)>,
    pub author: Author,
    pub message: String,
}

/// A file that changed on the branch after the editor's base revision.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub path: String,
    pub head: Option<Revision>,
    /// The file as the editor saw it, as the branch has it now, and as the editor wants it.
    pub base_text: Option<Vec<u8>>,
    pub head_text: Option<Vec<u8>>,
    pub mine: Option<Vec<u8>>,
}

#[derive(Debug)]
pub enum Outcome {
    Committed(Revision),
    Conflict(Conflict),
    /// The change leaves every file as it is.
    Unchanged,
}

/// One commit of the branch, as the history shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitInfo {
    pub id: String,
    pub short: String,
    pub author: String,
    pub email: String,
    /// Unix seconds.
    pub time: i64,
    pub subject: String,
    pub parent: Option<String>,
}

pub struct StateRepo {
    path: PathBuf,
    branch: String,
}

impl StateRepo {
    pub fn new(path: &Path, branch: &str) -> StateRepo {
        StateRepo { path: path.to_path_buf(), branch: branch.to_owned() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The branch's commit; None while it has none.
    pub fn head(&self) -> Result<Option<Revision>> {
        match left4me_state::resolve(&self.path, &format!("refs/heads/{}", self.branch)) {
            Ok(revision) => Ok(Some(revision)),
            Err(left4me_state::LoadError::UnknownRevision { .. }) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// Resolves a commit id that came from a form or a link; None when it names no commit.
    pub fn commit_id(&self, rev: &str) -> Option<Revision> {
        let plain = rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
        plain.then(|| left4me_state::resolve(&self.path, rev).ok()).flatten()
    }

    /// A file as a revision has it; None when it has no such file.
    pub fn read(&self, revision: Option<&Revision>, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read_many(&[(revision, path)])?.pop().flatten())
    }

    /// Files as revisions have them, all through one `git cat-file --batch`: for each (revision,
    /// path) its bytes, None when there is no such file (or no revision). A file over the state
    /// repo's limit of 1 MiB is an error: no save could keep it.
    pub fn read_many(&self, wanted: &[(Option<&Revision>, &str)]) -> Result<Vec<Option<Vec<u8>>>> {
        let specs: Vec<String> =
            wanted.iter().filter_map(|(revision, path)| revision.map(|r| format!("{r}:{path}"))).collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let mut read = left4me_state::cat_files(&self.path, &specs, Limits::DEFAULT.max_file_bytes)?.into_iter();
        Ok(wanted.iter().map(|(revision, _)| if revision.is_some() { read.next().flatten() } else { None }).collect())
    }

    /// Commits `change` on top of the branch. A file the change touches that changed on the
    /// branch since `change.base` is a conflict, and nothing is committed; files it does not
    /// touch may have changed freely.
    pub fn commit(&self, change: &Change) -> Result<Outcome> {
        let paths: Vec<&str> = change.files.iter().map(|(path, _)| path.as_str()).collect();
        let blobs = self.write_blobs(change.files.iter().filter_map(|(_, content)| content.as_deref()))?;
        let mut blobs = blobs.into_iter();
        let mine: Vec<Option<String>> =
            change.files.iter().map(|(_, c)| c.as_ref().and_then(|_| blobs.next())).collect();
        let base_entries = self.entries(change.base.as_ref(), &paths)?;
        // The branch may move between the check and the swap: the swap then fails, and the
        // check is made again against the new head.
        for _ in 0..5 {
            let head = self.head()?;
            let head_entries =
                if head == change.base { base_entries.clone() } else { self.entries(head.as_ref(), &paths)? };
            if head != change.base
                && let Some((path, mine)) =
                    change.files.iter().find(|(path, _)| base_entries.get(path) != head_entries.get(path))
            {
                let texts = self.read_many(&[(change.base.as_ref(), path), (head.as_ref(), path)])?;
                let [base_text, head_text] = <[Option<Vec<u8>>; 2]>::try_from(texts)
                    .map_err(|_| self.error("cat-file", "a read of two files did not answer twice".into()))?;
                return Ok(Outcome::Conflict(Conflict {
                    path: path.clone(),
                    head,
                    base_text,
                    head_text,
                    mine: mine.clone(),
                }));
            }
            let unchanged =
                paths.iter().zip(&mine).all(|(path, blob)| head_entries.get(*path).map(|e| &e.object) == blob.as_ref());
            if unchanged {
                return Ok(Outcome::Unchanged);
            }
            let commit =
                self.make_commit(head.as_ref(), &head_entries, &paths, &mine, &change.author, &change.message)?;
            // Read before the swap: once the branch has moved, nothing may fail the save.
            let revision = left4me_state::resolve(&self.path, &commit)?;
            if self.swap_branch(head.as_ref(), &commit)? {
                self.update_work_tree(head.as_ref(), &commit);
                return Ok(Outcome::Committed(revision));
            }
        }
        Err(self.error("update-ref", "the branch kept moving while saving; try again".into()))
    }

    /// The newest commits of the branch, `skip` of them left out.
    pub fn log(&self, limit: usize, skip: usize) -> Result<Vec<CommitInfo>> {
        if self.head()?.is_none() {
            return Ok(Vec::new());
        }
        let output = self.checked(
            &[
                "log",
                "--no-color",
                &format!("--max-count={limit}"),
                &format!("--skip={skip}"),
                "--format=%H%x00%an%x00%ae%x00%at%x00%P%x00%s%x1e",
                &format!("refs/heads/{}", self.branch),
                "--",
            ],
            None,
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).split('\x1e').filter_map(parse_commit).collect())
    }

    /// One commit and its patch against its first parent.
    pub fn show(&self, revision: &Revision) -> Result<(CommitInfo, String)> {
        let output = self.checked(
            &[
                "show",
                "--no-color",
                "--no-ext-diff",
                "--no-renames",
                "--format=%H%x00%an%x00%ae%x00%at%x00%P%x00%s%x1e",
                "--patch",
                revision.id(),
                "--",
            ],
            None,
        )?;
        let text = String::from_utf8_lossy(&output.stdout);
        let (head, patch) = text.split_once('\x1e').unwrap_or((&text, ""));
        let info = parse_commit(head).ok_or_else(|| self.error("show", format!("cannot read commit {revision}")))?;
        Ok((info, patch.trim_start_matches('\n').to_owned()))
    }

    /// What undoes `revision`: each file it touched back to what its parent had, as a change
    /// based on `revision` itself (so a file changed again since is a conflict). Returns the
    /// base, the files and the commit message; a commit that touched more than `max_files` is
    /// `Ok(Err(count))`, and nothing of it is read.
    #[allow(clippy::type_complexity)]
    pub fn revert_change(
        &self,
        revision: &Revision,
        max_files: usize,
    ) -> Result<std::result::Result<(String, Vec<(String, Option<Vec<u8>>)>, String), usize>> {
        let (info, _) = self.show(revision)?;
        let parent = info.parent.as_deref().and_then(|p| self.commit_id(p));
        let mut args = vec!["diff-tree", "-r", "-z", "--no-renames", "--name-only", "--no-commit-id"];
        if parent.is_none() {
            args.push("--root");
        }
        args.push(revision.id());
        let output = self.checked(&args, None)?;
        let listed = String::from_utf8_lossy(&output.stdout);
        let paths: Vec<&str> = listed.split('\0').filter(|p| !p.is_empty()).collect();
        if paths.len() > max_files {
            return Ok(Err(paths.len()));
        }
        let wanted: Vec<(Option<&Revision>, &str)> = paths.iter().map(|path| (parent.as_ref(), *path)).collect();
        let contents = self.read_many(&wanted)?;
        let files = paths.iter().map(|path| (*path).to_owned()).zip(contents).collect();
        let message = format!("Revert \"{}\"\n\nThis reverts commit {}.", info.subject, revision.id());
        Ok(Ok((revision.id().to_owned(), files, message)))
    }

    /// Writes blobs of `contents` into the repo with one `git hash-object --stdin-paths` (over
    /// files in a temporary folder of the git folder); their ids, in order.
    fn write_blobs<'a>(&self, contents: impl Iterator<Item = &'a [u8]>) -> Result<Vec<String>> {
        let folder = temporary_path(&self.path, "blobs")?;
        let result = (|| {
            std::fs::create_dir(&folder)?;
            let mut list = String::new();
            for (index, content) in contents.enumerate() {
                let file = folder.join(index.to_string());
                std::fs::write(&file, content)?;
                list.push_str(&file.to_string_lossy());
                list.push('\n');
            }
            if list.is_empty() {
                return Ok(Vec::new());
            }
            // As the bytes are: no end-of-line or attribute filters.
            let output =
                self.checked(&["hash-object", "-w", "--no-filters", "--stdin-paths"], Some(list.as_bytes()))?;
            Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect())
        })();
        let _ = std::fs::remove_dir_all(&folder);
        result
    }

    /// The entries (mode, object id) of `paths` in a revision, with one `git ls-tree`; a path
    /// with no entry is absent. A folder at a path is an entry like a file (a change there
    /// differs from it).
    fn entries(&self, revision: Option<&Revision>, paths: &[&str]) -> Result<HashMap<String, TreeEntry>> {
        let Some(revision) = revision else { return Ok(HashMap::new()) };
        let mut args = vec!["ls-tree", "-z", "--full-tree", "--end-of-options", revision.id(), "--"];
        args.extend(paths.iter().copied());
        let output = self.checked(&args, None)?;
        let mut entries = HashMap::new();
        for record in output.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let record = String::from_utf8_lossy(record);
            let Some((meta, path)) = record.split_once('\t') else { continue };
            let mut fields = meta.split_ascii_whitespace();
            if let (Some(mode), Some(_kind), Some(object)) = (fields.next(), fields.next(), fields.next()) {
                entries.insert(path.to_owned(), TreeEntry { mode: mode.to_owned(), object: object.to_owned() });
            }
        }
        Ok(entries)
    }

    /// Makes the commit of `paths` set to the blobs `mine` (None removes) on top of `head`.
    fn make_commit(
        &self,
        head: Option<&Revision>,
        head_entries: &HashMap<String, TreeEntry>,
        paths: &[&str],
        mine: &[Option<String>],
        author: &Author,
        message: &str,
    ) -> Result<String> {
        let index = temporary_path(&self.path, "index")?;
        let result = (|| {
            let env = [("GIT_INDEX_FILE", index.as_os_str())];
            if let Some(head) = head {
                self.checked_env(&["read-tree", head.id()], None, &env)?;
            }
            let mut info = Vec::new();
            for (path, blob) in paths.iter().zip(mine) {
                match blob {
                    Some(blob) => {
                        // A file keeps its mode (an executable build.sh stays executable).
                        let mode = match head_entries.get(*path) {
                            Some(entry) if entry.mode == "100755" => "100755",
                            _ => "100644",
                        };
                        write!(info, "{mode} {blob}\t{path}\0")?;
                    }
                    // Mode 0 takes the path out of the index.
                    None => write!(info, "0 {}\t{path}\0", "0".repeat(head.map_or(40, |h| h.id().len())))?,
                }
            }
            self.checked_env(&["update-index", "-z", "--index-info"], Some(&info), &env)?;
            let tree = self.checked_env(&["write-tree"], None, &env)?;
            let tree = String::from_utf8_lossy(&tree.stdout).trim().to_owned();
            let mut args = vec!["commit-tree", tree.as_str()];
            if let Some(head) = head {
                args.extend(["-p", head.id()]);
            }
            let who = [
                ("GIT_AUTHOR_NAME", std::ffi::OsStr::new(&author.name)),
                ("GIT_AUTHOR_EMAIL", std::ffi::OsStr::new(&author.email)),
                ("GIT_COMMITTER_NAME", std::ffi::OsStr::new("left4me-web")),
                ("GIT_COMMITTER_EMAIL", std::ffi::OsStr::new("left4me-web@localhost")),
            ];
            let commit = self.checked_env(&args, Some(message.as_bytes()), &who)?;
            Ok(String::from_utf8_lossy(&commit.stdout).trim().to_owned())
        })();
        let _ = std::fs::remove_file(&index);
        result
    }

    /// Moves the branch from `head` to `commit`; false when the branch is no longer at `head`.
    fn swap_branch(&self, head: Option<&Revision>, commit: &str) -> Result<bool> {
        let old = head.map(Revision::id).unwrap_or("0000000000000000000000000000000000000000");
        let reference = format!("refs/heads/{}", self.branch);
        // Another writer (a save, a push) holds the branch's lock for the moment it moves it:
        // asked again for up to a second before the lock counts as left behind.
        let mut output = self.run(&["update-ref", "-m", "left4me-web", &reference, commit, old], None);
        for _ in 0..20 {
            match &output {
                Ok(o) if !o.status.success() && String::from_utf8_lossy(&o.stderr).contains(".lock") => {
                    if self.head()?.as_ref().map(Revision::id) != head.map(Revision::id) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    output = self.run(&["update-ref", "-m", "left4me-web", &reference, commit, old], None);
                }
                _ => break,
            }
        }
        match output {
            Ok(output) if output.status.success() => Ok(true),
            // Refused while the branch is still where it was: not a race lost but a repo that
            // cannot be written (a lock left by a killed git, a full disk); saying "try again"
            // five times over would hide it.
            Ok(output) if self.head()?.as_ref().map(Revision::id) == head.map(Revision::id) => {
                Err(self.error("update-ref", String::from_utf8_lossy(&output.stderr).trim().to_owned()))
            }
            Ok(_) => Ok(false),
            // A git stopped after it moved the branch (a hook of the repo may still run then)
            // did commit: the branch says which.
            Err(stopped @ RepoError::Stopped { .. }) => match self.head() {
                Ok(Some(now)) if now.id() == commit => Ok(true),
                _ => Err(stopped),
            },
            Err(other) => Err(other),
        }
    }

    /// A state repo with a checked-out work tree (what pushes update in place) follows the
    /// branch, so that the next push is not refused for a work tree that looks edited. Best
    /// effort: the branch is what counts.
    fn update_work_tree(&self, head: Option<&Revision>, commit: &str) {
        let bare = self.run(&["rev-parse", "--is-bare-repository"], None);
        if bare.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() != "false") {
            return;
        }
        let checked_out = self.run(&["symbolic-ref", "--quiet", "HEAD"], None);
        let ours = format!("refs/heads/{}", self.branch);
        if !checked_out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == ours) {
            return;
        }
        let result = match head {
            Some(head) => self.run(&["read-tree", "-m", "-u", head.id(), commit], None),
            None => self.run(&["read-tree", "-m", "-u", commit], None),
        };
        if let Ok(output) = result
            && !output.status.success()
        {
            tracing::warn!(
                repo = %self.path.display(),
                "the state repo's work tree could not follow the branch: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }

    fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<Output> {
        self.run_env(args, input, &[])
    }

    fn run_env(&self, args: &[&str], input: Option<&[u8]>, env: &[(&str, &std::ffi::OsStr)]) -> Result<Output> {
        let mut command: Command = left4me_state::git(&self.path);
        command.args(args).envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Paths are paths, never pathspec magic (`:(glob)…`).
        command.env("GIT_LITERAL_PATHSPECS", "1");
        // A group of its own: a signal to the app's process group (Ctrl-C, a supervisor's
        // SIGTERM to the group) does not end a git half-way through a save.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = command.spawn()?;
        // Fed from a thread, so a git that answers while it reads cannot stall on a full pipe.
        let feeder = match (child.stdin.take(), input) {
            (Some(mut stdin), Some(input)) => {
                let input = input.to_vec();
                Some(std::thread::spawn(move || stdin.write_all(&input)))
            }
            _ => None,
        };
        let output = child.wait_with_output()?;
        if let Some(signal) = left4me_state::stopped_by(&output.status) {
            return Err(RepoError::Stopped { repo: self.path.clone(), command: args[0].to_owned(), signal });
        }
        if let Some(Err(e)) = feeder.map(|f| f.join().unwrap_or(Ok(()))) {
            // git ended without reading all it was given: its status says why.
            if output.status.success() {
                return Err(RepoError::Spawn(e));
            }
        }
        Ok(output)
    }

    fn checked(&self, args: &[&str], input: Option<&[u8]>) -> Result<Output> {
        self.checked_env(args, input, &[])
    }

    fn checked_env(&self, args: &[&str], input: Option<&[u8]>, env: &[(&str, &std::ffi::OsStr)]) -> Result<Output> {
        let output = self.run_env(args, input, env)?;
        if !output.status.success() {
            return Err(self.error(args[0], String::from_utf8_lossy(&output.stderr).trim().to_owned()));
        }
        Ok(output)
    }

    fn error(&self, command: &str, stderr: String) -> RepoError {
        RepoError::Git { repo: self.path.clone(), command: command.to_owned(), stderr }
    }
}

/// A file's entry in a git tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TreeEntry {
    mode: String,
    object: String,
}

/// A path for a temporary index or folder inside the repository's git folder (same file
/// system, owned by whoever owns the repo).
fn temporary_path(repo: &Path, what: &str) -> Result<PathBuf> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| RepoError::Spawn(std::io::Error::other(e.to_string())))?;
    let git_dir = if repo.join(".git").is_dir() { repo.join(".git") } else { repo.to_path_buf() };
    Ok(git_dir.join(format!("left4me-web-{what}-{}", crate::text::hex(&bytes))))
}

pub(crate) fn parse_commit(record: &str) -> Option<CommitInfo> {
    let mut fields = record.trim_start_matches('\n').splitn(6, '\0');
    let id = fields.next()?.to_owned();
    if id.len() != 40 {
        return None;
    }
    let author = fields.next()?.to_owned();
    let email = fields.next()?.to_owned();
    let time = fields.next()?.parse().ok()?;
    let parent = fields.next()?.split_whitespace().next().map(str::to_owned);
    let subject = fields.next()?.trim_end().to_owned();
    Some(CommitInfo { short: id[..12].to_owned(), id, author, email, time, subject, parent })
}
