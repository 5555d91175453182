//! The only place the web app runs `ssh`: one [`Ask`] of another host's `left4me remote`, its
//! words built by `reconciler::remote`. The address asked is always a declared host's, from the
//! revision's `hosts/<name>.yaml` ([`HostAt`]); nothing a request says ever reaches ssh but the
//! checked names and numbers of an ask.

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use left4me_state::Name;
use reconciler::remote::{Ask, Ssh};

/// How long a look at another host (`status`) may take, and any other short ask (backups, jobs,
/// a job's log, RCON, a fetch): a host that does not answer in time is said to, and never holds
/// up a page longer than this.
pub const LOOK_TIMEOUT: Duration = Duration::from_secs(4);
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);

pub use reconciler::remote::{HostAt, other_host, other_hosts};

/// Why an ask got no answer, worded for the page: "host c does not answer: <ssh's words>".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskError {
    /// ssh could not reach the host (exit 255), or could not be run.
    Unreachable(String),
    /// `left4me remote` refused or failed (its stderr).
    Refused(String),
    /// No answer within the time allowed; ssh was killed.
    TimedOut(Duration),
    /// An answer that is not what the ask answers with.
    Unexpected(String),
}

impl AskError {
    /// The error as a page says it of `host`.
    pub fn of(&self, host: &Name) -> String {
        match self {
            AskError::Unreachable(words) => format!("host {host} does not answer: {words}"),
            AskError::Refused(words) => format!("host {host} refused: {words}"),
            AskError::TimedOut(limit) => format!("host {host} does not answer: no answer within {} s", limit.as_secs()),
            AskError::Unexpected(words) => format!("host {host} answered something unexpected: {words}"),
        }
    }
}

/// Asks `host` once and waits at most `limit` for the whole answer (stdout). Blocking: for a
/// thread of its own or the blocking pool.
///
/// ssh's output is read by threads of their own and the child is waited for, not its pipes: a
/// shared connection's master (`ControlPersist`) may keep a pipe open after ssh has exited.
pub fn ask(ssh: &Ssh, host: &HostAt, ask: &Ask, limit: Duration) -> Result<Vec<u8>, AskError> {
    let started = Instant::now();
    let mut child = ssh
        .command(&host.address, ask)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| AskError::Unreachable(format!("cannot run {}: {e}", ssh.program.display())))?;
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let status = match reconciler::remote::wait_until(&mut child, started + limit) {
        Some(status) => status,
        None => return Err(AskError::TimedOut(limit)),
    };
    let grace = Duration::from_millis(200);
    let stdout = stdout.recv_timeout(limit.saturating_sub(started.elapsed()).max(grace)).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.recv_timeout(grace).unwrap_or_default()).trim().to_owned();
    if stdout.len() as u64 > MAX_ANSWER {
        return Err(AskError::Unexpected(format!("an answer of more than {} MiB", MAX_ANSWER >> 20)));
    }
    match status.code() {
        Some(0) => Ok(stdout),
        Some(255) | None => {
            Err(AskError::Unreachable(if stderr.is_empty() { format!("ssh {status}") } else { stderr }))
        }
        Some(_) => Err(AskError::Refused(if stderr.is_empty() { format!("left4me remote {status}") } else { stderr })),
    }
}

/// [`ask`] for an answer in JSON.
pub fn ask_json<T: serde::de::DeserializeOwned>(
    ssh: &Ssh,
    host: &HostAt,
    asked: &Ask,
    limit: Duration,
) -> Result<T, AskError> {
    let answer = ask(ssh, host, asked, limit)?;
    serde_json::from_slice(&answer).map_err(|e| AskError::Unexpected(e.to_string()))
}

/// The most an answer may be: a host's status with its servers is tens of KiB, a job's log at
/// most [`reconciler::remote::MAX_LINES`] lines. A host that sends more is cut off.
pub const MAX_ANSWER: u64 = 16 << 20;

/// A pipe read to its end, or to [`MAX_ANSWER`] and one byte (then closed, which ends the
/// writer), by a thread of its own.
fn read_all(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (send, receive) = mpsc::channel();
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.take(MAX_ANSWER + 1).read_to_end(&mut bytes);
            let _ = send.send(bytes);
        });
    }
    receive
}

/// `logs <server> --lines <backlog> --follow` on `host`: the console's last lines, then each
/// new one, on the child's stdout. The child is killed when it is dropped.
pub fn follow_logs(ssh: &Ssh, host: &HostAt, server: &Name, backlog: u32) -> std::io::Result<tokio::process::Child> {
    let asked = Ask::Logs { server: server.clone(), lines: backlog, follow: true };
    tokio::process::Command::from(ssh.command(&host.address, &asked))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(script: &str) -> (tempfile::TempDir, Ssh) {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("ssh");
        std::fs::write(&program, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let ssh = Ssh {
            key: "/nonexistent".into(),
            known_hosts: "/nonexistent".into(),
            user: "left4me".into(),
            control_dir: None,
            program,
            port: None,
        };
        (dir, ssh)
    }

    fn host() -> HostAt {
        HostAt { name: Name::new("c").unwrap(), address: "10.77.1.3".into() }
    }

    #[test]
    fn each_way_an_ask_can_fail_is_said_of_the_host() {
        let (_dir, ssh) = fake("echo 'ssh: connect to host 10.77.1.3 port 22: No route to host' >&2; exit 255");
        let e = ask(&ssh, &host(), &Ask::Status, LOOK_TIMEOUT).unwrap_err();
        assert_eq!(
            e.of(&host().name),
            "host c does not answer: ssh: connect to host 10.77.1.3 port 22: No route to host"
        );
        let (_dir, ssh) = fake("echo 'left4me remote: refused: \"x\" is not something' >&2; exit 2");
        assert!(
            ask(&ssh, &host(), &Ask::Status, LOOK_TIMEOUT)
                .unwrap_err()
                .of(&host().name)
                .starts_with("host c refused: left4me remote: refused")
        );
        let (_dir, ssh) = fake("sleep 5");
        let started = Instant::now();
        let e = ask(&ssh, &host(), &Ask::Status, Duration::from_millis(300)).unwrap_err();
        assert_eq!(e, AskError::TimedOut(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(2));
        let (_dir, ssh) = fake("echo not json");
        let e = ask_json::<reconciler::remote::HostStatus>(&ssh, &host(), &Ask::Status, LOOK_TIMEOUT).unwrap_err();
        assert!(matches!(e, AskError::Unexpected(_)), "{e:?}");
    }

    #[test]
    fn a_host_that_answers_without_end_is_cut_off_within_its_bound() {
        let (_dir, ssh) = fake("yes '{\"servers\": []}'");
        let started = Instant::now();
        let e = ask(&ssh, &host(), &Ask::Status, LOOK_TIMEOUT).unwrap_err();
        assert_eq!(e, AskError::Unexpected("an answer of more than 16 MiB".into()), "{e:?}");
        assert!(started.elapsed() < LOOK_TIMEOUT, "cut off, not waited out: {:?}", started.elapsed());
    }

    #[test]
    fn an_answer_is_read_even_when_a_pipe_stays_open_after_ssh_exits() {
        // A shared connection's master may keep stderr open: the answer does not wait for it.
        let (_dir, ssh) = fake("sleep 3 >/dev/null & echo '{}'");
        let started = Instant::now();
        assert_eq!(ask(&ssh, &host(), &Ask::Status, LOOK_TIMEOUT).unwrap(), b"{}\n");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
