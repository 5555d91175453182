//! Writing the state repo: every save is a commit on the branch, made without a work tree (a
//! temporary index, `commit-tree`) and put in place with a compare-and-swap of the branch, so two
//! saves at once can never lose one of them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use left4me_state::Revision;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("git {command} in {repo}: {stderr}")]
    Git { repo: PathBuf, command: String, stderr: String },
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
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
            Err(left4me_state::LoadError::GitMissing(e)) => Err(RepoError::Spawn(e)),
            Err(other) => Err(self.error("rev-parse", other.to_string())),
        }
    }

    /// Resolves a commit id that came from a form or a link; None when it names no commit.
    pub fn commit_id(&self, rev: &str) -> Option<Revision> {
        let plain = rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
        plain.then(|| left4me_state::resolve(&self.path, rev).ok()).flatten()
    }

    /// A file as a revision has it; None when it has no such file.
    pub fn read(&self, revision: Option<&Revision>, path: &str) -> Result<Option<Vec<u8>>> {
        let Some(revision) = revision else { return Ok(None) };
        let output = self.run(&["cat-file", "blob", &format!("{revision}:{path}")], None)?;
        Ok(output.status.success().then_some(output.stdout))
    }

    /// Commits `change` on top of the branch. A file the change touches that changed on the
    /// branch since `change.base` is a conflict, and nothing is committed; files it does not
    /// touch may have changed freely.
    pub fn commit(&self, change: &Change) -> Result<Outcome> {
        // The branch may move between the check and the swap: the swap then fails, and the
        // check is made again against the new head.
        for _ in 0..5 {
            let head = self.head()?;
            for (path, mine) in &change.files {
                let base_text = self.read(change.base.as_ref(), path)?;
                let head_text = self.read(head.as_ref(), path)?;
                if head != change.base && base_text != head_text {
                    return Ok(Outcome::Conflict(Conflict {
                        path: path.clone(),
                        head,
                        base_text,
                        head_text,
                        mine: mine.clone(),
                    }));
                }
            }
            let mut unchanged = true;
            for (path, mine) in &change.files {
                unchanged &= self.read(head.as_ref(), path)? == *mine;
            }
            if unchanged {
                return Ok(Outcome::Unchanged);
            }
            let commit = self.make_commit(head.as_ref(), &change.files, &change.author, &change.message)?;
            if self.swap_branch(head.as_ref(), &commit)? {
                self.update_work_tree(head.as_ref(), &commit);
                let revision =
                    left4me_state::resolve(&self.path, &commit).map_err(|e| self.error("rev-parse", e.to_string()))?;
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
    /// base, the files and the commit message.
    #[allow(clippy::type_complexity)]
    pub fn revert_change(&self, revision: &Revision) -> Result<(String, Vec<(String, Option<Vec<u8>>)>, String)> {
        let (info, _) = self.show(revision)?;
        let parent = info.parent.as_deref().and_then(|p| self.commit_id(p));
        let mut args = vec!["diff-tree", "-r", "-z", "--no-renames", "--name-only", "--no-commit-id"];
        if parent.is_none() {
            args.push("--root");
        }
        args.push(revision.id());
        let output = self.checked(&args, None)?;
        let mut files = Vec::new();
        for path in String::from_utf8_lossy(&output.stdout).split('\0').filter(|p| !p.is_empty()) {
            files.push((path.to_owned(), self.read(parent.as_ref(), path)?));
        }
        let message = format!("Revert \"{}\"\n\nThis reverts commit {}.", info.subject, revision.id());
        Ok((revision.id().to_owned(), files, message))
    }

    fn make_commit(
        &self,
        head: Option<&Revision>,
        files: &[(String, Option<Vec<u8>>)],
        author: &Author,
        message: &str,
    ) -> Result<String> {
        let index = tempfile_path(&self.path)?;
        let result = (|| {
            let env = [("GIT_INDEX_FILE", index.as_os_str())];
            if let Some(head) = head {
                self.checked_env(&["read-tree", head.id()], None, &env)?;
            }
            for (path, content) in files {
                match content {
                    Some(content) => {
                        let blob = self.checked(&["hash-object", "-w", "--stdin"], Some(content))?;
                        let blob = String::from_utf8_lossy(&blob.stdout).trim().to_owned();
                        // A file keeps its mode (an executable build.sh stays executable).
                        let mode = match head {
                            Some(head) => self.mode(head, path)?.unwrap_or_else(|| "100644".into()),
                            None => "100644".into(),
                        };
                        let info = format!("{mode},{blob},{path}");
                        self.checked_env(&["update-index", "--add", "--cacheinfo", &info], None, &env)?;
                    }
                    None => {
                        self.checked_env(&["update-index", "--force-remove", "--", path], None, &env)?;
                    }
                }
            }
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

    /// The mode of a file in a revision (`100644`, `100755`), None when it has no such file.
    fn mode(&self, revision: &Revision, path: &str) -> Result<Option<String>> {
        let output = self.checked(&["ls-tree", "-z", "--end-of-options", revision.id(), "--", path], None)?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mode = text.split_whitespace().next().filter(|m| matches!(*m, "100644" | "100755")).map(str::to_owned);
        Ok(mode)
    }

    /// Moves the branch from `head` to `commit`; false when the branch is no longer at `head`.
    fn swap_branch(&self, head: Option<&Revision>, commit: &str) -> Result<bool> {
        let old = head.map(Revision::id).unwrap_or("0000000000000000000000000000000000000000");
        let reference = format!("refs/heads/{}", self.branch);
        let output = self.run(&["update-ref", "-m", "left4me-web", &reference, commit, old], None)?;
        Ok(output.status.success())
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
        command.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = command.spawn()?;
        if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
            stdin.write_all(input)?;
        }
        Ok(child.wait_with_output()?)
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

/// A path for a temporary index inside the repository's git folder (same file system, owned by
/// whoever owns the repo).
fn tempfile_path(repo: &Path) -> Result<PathBuf> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| RepoError::Spawn(std::io::Error::other(e.to_string())))?;
    let git_dir = if repo.join(".git").is_dir() { repo.join(".git") } else { repo.to_path_buf() };
    Ok(git_dir.join(format!("left4me-web-index-{}", crate::hex(&bytes))))
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
