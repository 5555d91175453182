//! Following an upstream repository: the state repo's branch moves forward with it, never back
//! and never sideways (a rewritten upstream history is refused and reported).

use std::path::Path;
use std::process::Stdio;

use crate::error::Error;

/// What a fetch of the upstream did to the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    UpToDate,
    /// The branch moved forward to the upstream's commit.
    FastForwarded {
        to: String,
    },
    /// The branch has commits the upstream has not: nothing to take.
    Ahead,
    /// The upstream's history does not contain the branch: refused.
    Rewritten {
        local: String,
        upstream: String,
    },
}

const TRACKING: &str = "refs/remotes/upstream/main";

/// Fetches `url`'s `branch` and fast-forwards the state repo's branch to it when it can.
pub fn follow(state: &Path, url: &str, branch: &str) -> Result<Followed, Error> {
    git(state, &["fetch", "--quiet", "--no-tags", url, &format!("+refs/heads/{branch}:{TRACKING}")])?;
    let upstream = git(state, &["rev-parse", "--verify", "--quiet", &format!("{TRACKING}^{{commit}}")])?;
    let local = git(state, &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}^{{commit}}")]).ok();
    let Some(local) = local else {
        // A repo with no commit yet takes the upstream's history as it is.
        git(state, &["reset", "--quiet", "--hard", TRACKING])?;
        return Ok(Followed::FastForwarded { to: upstream });
    };
    if local == upstream {
        return Ok(Followed::UpToDate);
    }
    if is_ancestor(state, &local, &upstream)? {
        // In the work tree, as a push with updateInstead would: refused if local edits conflict.
        git(state, &["merge", "--quiet", "--ff-only", TRACKING])?;
        return Ok(Followed::FastForwarded { to: upstream });
    }
    if is_ancestor(state, &upstream, &local)? {
        return Ok(Followed::Ahead);
    }
    Ok(Followed::Rewritten { local, upstream })
}

fn is_ancestor(state: &Path, older: &str, newer: &str) -> Result<bool, Error> {
    let status = left4me_state::git(state)
        .args(["merge-base", "--is-ancestor", older, newer])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::Upstream(format!("cannot run git: {e}")))?;
    Ok(status.success())
}

/// How git reaches an upstream over SSH: with the agent's key and left4me's strict options
/// (`remote::Ssh`), when deploy/ gave this host that key and nothing else says how
/// (`GIT_SSH_COMMAND` in host.env wins).
fn git_ssh_command() -> Option<String> {
    if std::env::var_os("GIT_SSH_COMMAND").is_some() {
        return None;
    }
    let ssh = crate::remote::Ssh::from_env(crate::remote::AGENT_KEY, Some(crate::remote::AGENT_CONTROL_DIR.into()));
    ssh.key.is_file().then(|| ssh.git_ssh_command())
}

fn git(state: &Path, args: &[&str]) -> Result<String, Error> {
    let mut git = left4me_state::git(state);
    if let Some(command) = git_ssh_command() {
        git.env("GIT_SSH_COMMAND", command);
    }
    let output =
        git.args(args).stdin(Stdio::null()).output().map_err(|e| Error::Upstream(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        return Err(Error::Upstream(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
