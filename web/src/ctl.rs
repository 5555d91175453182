//! The only place the web app runs `l4d2ctl`: a server's console (`logs --follow`), one RCON
//! command (`rcon`) and a server's backups (`backups --json`), their arguments built by
//! `l4d2ctl::api::Command`. Everything else it knows
//! of the host comes from the background look (`snapshot.rs`, through the reconciler) and the
//! reconciler's database.

use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use l4d2ctl::api::{Backup, Command};
use left4me_state::Name;

/// How long an RCON command may take to answer.
pub const RCON_TIMEOUT: Duration = Duration::from_secs(10);

/// `l4d2ctl logs <server> --lines <backlog> --follow`: the last lines of the server's journal,
/// then each new one, on the child's stdout. The child is killed when it is dropped.
pub fn follow_logs(l4d2ctl: &Path, server: &Name, backlog: u32) -> std::io::Result<tokio::process::Child> {
    tokio::process::Command::new(l4d2ctl)
        .args(Command::Logs { name: server.clone(), lines: backlog, follow: true }.argv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// What one RCON command came to.
pub enum RconAnswer {
    /// The server's answer (stdout).
    Answered(String),
    /// l4d2ctl failed: its own words (stderr).
    Failed(String),
    /// l4d2ctl could not be run.
    NotRun(std::io::Error),
    /// No answer within [`RCON_TIMEOUT`]; the child was killed.
    TimedOut,
}

/// `l4d2ctl rcon --as <user> --from <address> <server> -- <command>`, waited for at most
/// [`RCON_TIMEOUT`]: l4d2ctl records it in the audit trail as the user's.
pub async fn rcon(l4d2ctl: &Path, server: &Name, command: &str, user: &Name, from: IpAddr) -> RconAnswer {
    let rcon = Command::RconAs {
        name: server.clone(),
        command: command.to_owned(),
        user: user.clone(),
        from: from.to_string(),
    };
    let output =
        tokio::process::Command::new(l4d2ctl).args(rcon.argv()).stdin(Stdio::null()).kill_on_drop(true).output();
    match tokio::time::timeout(RCON_TIMEOUT, output).await {
        Ok(Ok(output)) if output.status.success() => {
            RconAnswer::Answered(String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
        }
        Ok(Ok(output)) => RconAnswer::Failed(String::from_utf8_lossy(&output.stderr).trim_end().to_owned()),
        Ok(Err(e)) => RconAnswer::NotRun(e),
        Err(_) => RconAnswer::TimedOut,
    }
}

/// `l4d2ctl backups <server> --json`: its backups, newest first. Blocking: for the blocking pool.
/// Err: l4d2ctl's own words, or why it could not be run.
pub fn backups(l4d2ctl: &Path, server: &Name) -> Result<Vec<Backup>, String> {
    let output = std::process::Command::new(l4d2ctl)
        .args(Command::Backups { name: server.clone() }.argv())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run l4d2ctl: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim_end().to_owned());
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("l4d2ctl backups {server} answered something unexpected: {e}"))
}
