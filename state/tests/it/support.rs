//! Helpers shared by the tests: real git repositories in temporary folders.

use std::path::{Path, PathBuf};
use std::process::Command;

use left4me_sim::Git;

/// The workspace's `examples/state`.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/state")
}

/// Runs git in `dir` with a fixed identity, panicking with its stderr when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    Git::new(dir, "Test").isolated().run(args).trim().to_owned()
}

/// Copies `tree` (symlinks as symlinks) into a new repository on branch main and commits it.
pub fn commit_tree(tree: &Path) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("temp dir");
    copy_tree(tree, repo.path());
    git(repo.path(), &["init", "--quiet", "--initial-branch=main"]);
    git(repo.path(), &["add", "--all"]);
    git(repo.path(), &["commit", "--quiet", "--allow-empty", "--message", "state"]);
    repo
}

pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).status().expect("cp runs");
    assert!(status.success());
}

/// Validation output as the CLI prints it, or "valid".
pub fn outcome(checked: &left4me_state::Checked) -> String {
    match checked {
        Ok(_) => "valid\n".to_owned(),
        Err(diagnostics) => diagnostics.to_string(),
    }
}
