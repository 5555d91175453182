//! git for tests and benches: a fixed identity, and nothing of the caller's git environment.

use std::path::PathBuf;
use std::process::Command;

/// Where git would otherwise look for the repository, its objects or its index. A test run from a
/// git hook inherits them; left in place, they would point git at another repository.
const LOCATION_VARIABLES: [&str; 7] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
];

/// git run in one repository, committing as one person.
#[derive(Clone, Debug)]
pub struct Git {
    dir: PathBuf,
    name: String,
    isolated: bool,
    any_owner: bool,
}

impl Git {
    /// git in `dir`, author and committer `name` <`name` in lower case `@example.invalid`>.
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Git {
        Git { dir: dir.into(), name: name.to_owned(), isolated: false, any_owner: false }
    }

    /// Without the machine's git configuration, and with the repository as `HOME`, so neither the
    /// system's nor the user's settings (a signing key, hooks, another default branch) reach it.
    pub fn isolated(mut self) -> Git {
        self.isolated = true;
        self
    }

    /// With `safe.directory=*`: the repository belongs to another user (a host's state repo is the
    /// game user's) and the caller runs as root.
    pub fn any_owner(mut self) -> Git {
        self.any_owner = true;
        self
    }

    /// Runs `git args…` and returns its stdout; panics with its stderr unless it succeeds.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().unwrap_or_else(|e| panic!("git {args:?} cannot run: {e}"));
        assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn command(&self, args: &[&str]) -> Command {
        let email = format!("{}@example.invalid", self.name.to_lowercase());
        let mut command = Command::new("git");
        command.arg("-C").arg(&self.dir);
        if self.any_owner {
            command.args(["-c", "safe.directory=*"]);
        }
        command
            .args(args)
            .env("GIT_AUTHOR_NAME", &self.name)
            .env("GIT_AUTHOR_EMAIL", &email)
            .env("GIT_COMMITTER_NAME", &self.name)
            .env("GIT_COMMITTER_EMAIL", &email);
        for variable in LOCATION_VARIABLES {
            command.env_remove(variable);
        }
        if self.isolated {
            command.env("GIT_CONFIG_NOSYSTEM", "1").env("HOME", &self.dir);
        }
        command
    }
}
