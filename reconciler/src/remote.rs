//! Hosts reaching each other over OpenSSH, with no listener of left4me's own. Every key another
//! host holds is authorised with a forced command (`authorized_keys`:
//! `command="left4me remote",restrict …`), so whatever the other side asks for arrives as one line
//! in `SSH_ORIGINAL_COMMAND`, read here as exactly one [`Ask`] of a fixed set — or refused.
//!
//! - The control host's web app may ask a host for its [`HostStatus`] (a brief look, no console
//!   asked), a server's console log (followed), its jobs and a job's log, its backups, an RCON
//!   command, and a fetch of the state repo now ([`Ask`]).
//! - A host's agent may ask the control host (`left4me remote --agent <host>`) for the state
//!   repo, as `git fetch` over SSH asks for it (`git-upload-pack '<repo>'`), and for the data of a
//!   server the revision places on it (`handover <from> <server>`) ([`AgentAsk`]).
//!
//! Nothing asked is handed to a shell: names are [`Name`]s, numbers numbers, and what runs is
//! `l4d2ctl` with the argv of an [`api::Command`], or git's own upload-pack on this host's repo.
//! The client side ([`Ssh`]) builds the same words, so both ends share one grammar.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use l4d2ctl::api::{self, InstanceStatus};
use left4me_state::{DesiredState, Name};
use serde::{Deserialize, Serialize};

use crate::db::{Event, Job, JobLine};
use crate::engine::{self, Config};
use crate::report::ServerReport;

/// The longest line taken from `SSH_ORIGINAL_COMMAND`: an RCON command is at most a few hundred
/// bytes; a longer line is refused before it is split.
pub const MAX_LINE: usize = 4096;

/// The most jobs one `jobs` answer lists, and log lines one `job` answer holds.
pub const MAX_JOBS: u32 = 500;
pub const MAX_LINES: usize = 2000;

/// What the control host may ask of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The host's [`HostStatus`], as JSON on one line.
    Status,
    /// `l4d2ctl logs`: the last `lines` of a server's console, then each new one with `follow`.
    Logs { server: Name, lines: u32, follow: bool },
    /// `l4d2ctl rcon --as <user> --from <address>`: one console command, audited as the user's.
    Rcon { server: Name, user: Name, from: IpAddr, command: String },
    /// `l4d2ctl backups --json`.
    Backups { server: Name },
    /// The newest jobs, as JSON.
    Jobs { limit: u32 },
    /// One job and its log lines after `after`, as JSON (`{"job": …, "lines": […]}`).
    Job { id: i64, after: i64 },
    /// Fetch the state repo's upstream now rather than at the next interval.
    Fetch,
    /// The archive of a server this host let go to host `to` (a tar on stdout; nothing when it
    /// had no data), for that host; exit 3 while the server is still here.
    Handover { server: Name, to: Name },
}

/// What the control host's key may ask, as a refusal lists them.
const ASKS: &str = "status, logs, rcon, backups, jobs, job, fetch, handover";

/// What a host's agent may ask of the control host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAsk {
    /// `git fetch` over SSH: the state repo's objects, read-only.
    UploadPack { repo: PathBuf },
    /// The archive of a server that moved from `host` to the asking host, relayed from `host`
    /// (or answered here, when `host` is this one).
    Handover { host: Name, server: Name },
}

/// Why a line was refused, told to the other side on stderr (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refused(pub String);

impl Ask {
    /// The words of this ask, as the client sends them.
    pub fn words(&self) -> Vec<String> {
        let words: Vec<String> = match self {
            Ask::Status => vec!["status".into()],
            Ask::Logs { server, lines, follow } => {
                let mut words = vec!["logs".into(), server.to_string(), "--lines".into(), lines.to_string()];
                if *follow {
                    words.push("--follow".into());
                }
                words
            }
            Ask::Rcon { server, user, from, command } => vec![
                "rcon".into(),
                server.to_string(),
                "--as".into(),
                user.to_string(),
                "--from".into(),
                from.to_string(),
                "--".into(),
                command.clone(),
            ],
            Ask::Backups { server } => vec!["backups".into(), server.to_string()],
            Ask::Jobs { limit } => vec!["jobs".into(), "--limit".into(), limit.to_string()],
            Ask::Job { id, after } => vec!["job".into(), id.to_string(), "--after".into(), after.to_string()],
            Ask::Fetch => vec!["fetch".into()],
            Ask::Handover { server, to } => vec!["handover".into(), server.to_string(), "--to".into(), to.to_string()],
        };
        words
    }

    /// Reads one line as the client's ask, exactly one of the shapes [`Ask::words`] makes.
    pub fn parse(line: &str) -> Result<Ask, Refused> {
        let words = split(line)?;
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["status"] => Ok(Ask::Status),
            ["logs", server, "--lines", lines] => {
                Ok(Ask::Logs { server: name(server)?, lines: number(lines)?, follow: false })
            }
            ["logs", server, "--lines", lines, "--follow"] => {
                Ok(Ask::Logs { server: name(server)?, lines: number(lines)?, follow: true })
            }
            ["rcon", server, "--as", user, "--from", from, "--", command] => Ok(Ask::Rcon {
                server: name(server)?,
                user: name(user)?,
                from: from.parse().map_err(|_| Refused(format!("{from:?} is not an IP address")))?,
                command: (*command).to_owned(),
            }),
            ["backups", server] => Ok(Ask::Backups { server: name(server)? }),
            ["jobs", "--limit", limit] => Ok(Ask::Jobs { limit: number::<u32>(limit)?.min(MAX_JOBS) }),
            ["job", id, "--after", after] => Ok(Ask::Job { id: number(id)?, after: number(after)? }),
            ["fetch"] => Ok(Ask::Fetch),
            ["handover", server, "--to", to] => Ok(Ask::Handover { server: name(server)?, to: name(to)? }),
            [first, ..] => Err(Refused(format!("{first:?} is not something this key may ask; it may ask: {ASKS}"))),
            [] => Err(Refused(format!("no command; this key may ask: {ASKS}"))),
        }
    }
}

impl AgentAsk {
    /// Reads one line as an agent's ask: git's `git-upload-pack '<path>'` for `repo`, this host's
    /// state repo (its work tree or its `.git`), and nothing else (no other repo, no push). The
    /// repo it names is the git folder itself, for `git upload-pack --strict`.
    pub fn parse(line: &str, repo: &Path) -> Result<AgentAsk, Refused> {
        let words = split(line)?;
        match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["git-upload-pack", path] => {
                let asked = Path::new(path.trim_end_matches('/'));
                let same =
                    |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
                let git_dir = repo.join(".git");
                let git_dir = if git_dir.is_dir() { git_dir } else { repo.to_path_buf() };
                if same(asked, repo) || same(asked, &git_dir) {
                    Ok(AgentAsk::UploadPack { repo: git_dir })
                } else {
                    Err(Refused(format!("{path:?} is not the state repo; an agent may fetch {} only", repo.display())))
                }
            }
            ["handover", host, server] => Ok(AgentAsk::Handover { host: name(host)?, server: name(server)? }),
            [first, ..] => Err(Refused(format!(
                "{first:?} is not something an agent's key may ask; it may fetch the state repo (git-upload-pack) \
                 and take a server's data that moved to it (handover)"
            ))),
            [] => Err(Refused(
                "no command; an agent's key may fetch the state repo (git-upload-pack) and take a server's data \
                 that moved to it (handover)"
                    .into(),
            )),
        }
    }
}

/// Splits a line as a POSIX shell would (quotes, backslashes), within [`MAX_LINE`]; nothing is
/// expanded and nothing runs.
fn split(line: &str) -> Result<Vec<String>, Refused> {
    if line.len() > MAX_LINE {
        return Err(Refused(format!("a line of {} bytes; at most {MAX_LINE} are taken", line.len())));
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Refused("the line holds a control character".into()));
    }
    shlex::split(line).ok_or_else(|| Refused("the line's quotes do not close".into()))
}

fn name(text: &str) -> Result<Name, Refused> {
    Name::new(text).map_err(|e| Refused(format!("{text:?} is not a server's or user's name: {e}")))
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, Refused> {
    text.parse().map_err(|_| Refused(format!("{text:?} is not a number in range")))
}

/// What the control host's web app shows of a host: its revisions, its last pass, its servers'
/// Sync and Health and what l4d2ctl observed of each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// `LEFT4ME_HOST`.
    pub host: Option<Name>,
    /// When it was taken (RFC 3339), by the host's clock.
    pub taken_at: String,
    /// The branch's commit, as the host has it.
    pub head: Option<String>,
    pub last_applied: Option<String>,
    pub last_attempted: Option<String>,
    /// Diagnostics of the branch's commit when it is invalid (or not for this host).
    pub revision_error: Option<String>,
    /// Why the upstream could not be followed: the host runs its last good revision.
    pub upstream_error: Option<String>,
    /// What kept the host from being looked at.
    pub problem: Option<String>,
    pub last_pass: Option<Event>,
    pub servers: Vec<ServerReport>,
    pub instances: BTreeMap<Name, InstanceStatus>,
    /// How long the look took, in ms.
    pub took_ms: u64,
}

/// A job and its log lines, as `job` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLog {
    pub job: Job,
    pub lines: Vec<JobLine>,
}

/// Looks at this host as the web app would, without asking any game's console.
pub fn host_status(config: &Config) -> HostStatus {
    let started = Instant::now();
    let mut status = HostStatus { host: config.host.clone(), taken_at: crate::db::now(), ..HostStatus::default() };
    let db = match crate::db::Db::open_read_only(&config.db_path()) {
        Ok(db) => db,
        Err(e) => {
            status.problem = Some(e.to_string());
            return status;
        }
    };
    let meta = |key: &str| db.meta(key).ok().flatten();
    status.last_applied = meta("last_applied");
    status.last_attempted = meta("last_attempted");
    status.upstream_error = meta("upstream_error");
    status.last_pass = db.events(1).ok().and_then(|events| events.into_iter().next());
    let mut cache = engine::RevisionCache::default();
    match engine::plan_pass(config, &db, &mut cache, None, engine::Detail::Full, engine::Humans::LeaveToA2s) {
        Ok(Ok(planned)) => {
            status.servers = crate::report::reports(&planned);
            status.head = Some(planned.revision.id().to_owned());
            status.instances = planned.host.instances;
        }
        Ok(Err((revision, diagnostics))) => {
            status.head = Some(revision.id().to_owned());
            status.revision_error = Some(diagnostics);
        }
        Err(e) => status.problem = Some(e.to_string()),
    }
    status.took_ms = started.elapsed().as_millis() as u64;
    status
}

/// Asks `host` to fetch the state repo now (`fetch`), with the control host's key
/// over a shared connection; says in the log when it could not.
pub fn nudge(host: &HostAt) {
    let (name, address) = (&host.name, host.address.as_str());
    let ssh = Ssh::from_env(WEB_KEY, Some(AGENT_CONTROL_DIR.into()));
    if !ssh.key.is_file() {
        return;
    }
    let mut command = ssh.command(address, &Ask::Fetch);
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return tracing::warn!(host = %name, "cannot run ssh to tell it to fetch: {e}"),
    };
    // A host that holds the connection open is let go of: it fetches at its next interval.
    match wait_until(&mut child, Instant::now() + NUDGE_WITHIN) {
        Some(status) if status.success() => tracing::info!(host = %name, "told to fetch the new revision"),
        Some(status) => {
            tracing::warn!(host = %name, "could not tell it to fetch ({status}); it fetches at its next interval")
        }
        None => {
            tracing::warn!(host = %name, "no answer to a fetch asked within {NUDGE_WITHIN:?}; it fetches at its next interval")
        }
    }
}

/// The exit of an `ssh` (or any child), or None when `deadline` came first: it is then killed and
/// reaped. The child is waited for, not its pipes: a shared connection's master
/// (`ControlPersist`) may keep a pipe open after ssh has exited.
pub fn wait_until(child: &mut std::process::Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// How long a host may take to take a fetch asked of it.
const NUDGE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A declared host other than this one, and the address the revision gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAt {
    pub name: Name,
    pub address: String,
}

/// The host `name` as the revision declares it, when it is another host than `local`.
pub fn other_host(desired: &DesiredState, local: Option<&Name>, name: &str) -> Option<HostAt> {
    let host = desired.hosts.get(name)?;
    (Some(&host.name) != local).then(|| HostAt { name: host.name.clone(), address: host.address.as_str().to_owned() })
}

/// Every declared host other than `local`.
pub fn other_hosts(desired: &DesiredState, local: Option<&Name>) -> Vec<HostAt> {
    desired.hosts.keys().filter_map(|name| other_host(desired, local, name.as_str())).collect()
}

/// What this host holds of a server it let go, for `handover`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LetGo {
    /// The server is still on this host: its move is not applied here yet.
    StillHere,
    /// The archive its move to the asking host recorded (`$ROOT/archive/<name>-<time>.tar`).
    Archive(PathBuf),
    /// Gone, and nothing recorded for the asking host: it had no data, or never moved from here
    /// to there.
    Nothing,
}

/// What this host holds of server `name` for host `to`: still its own, or what its newest move
/// to `to` recorded (`<name>-<time>.json` beside the archives, written by `l4d2ctl delete
/// --moving-to`). An archive of an earlier life of a server of that name, or of a move elsewhere,
/// is never handed over.
pub fn let_go(root: &Path, name: &Name, to: &Name) -> Result<LetGo, String> {
    if l4d2ctl::Host::at(root).instance(name).dir.exists() {
        return Ok(LetGo::StillHere);
    }
    let folder = root.join("archive");
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LetGo::Nothing),
        Err(e) => return Err(format!("{}: {e}", folder.display())),
    };
    // `<name>-<stamp>.json`, the stamp without `-`: the name is what lies before the last `-`.
    let mut records: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let (server, stamp) = file.strip_suffix(".json")?.rsplit_once('-')?;
            (server == name.as_str() && !stamp.is_empty()).then(|| (stamp.to_owned(), entry.path()))
        })
        .collect();
    records.sort();
    for (_, path) in records.iter().rev() {
        let Ok(text) = std::fs::read(path) else { continue };
        let Ok(moved) = serde_json::from_slice::<l4d2ctl::instance::Moved>(&text) else { continue };
        if &moved.moving_to != to {
            continue;
        }
        return Ok(match moved.archive {
            Some(file) if file.starts_with(&format!("{name}-")) && file.ends_with(".tar") && !file.contains('/') => {
                LetGo::Archive(folder.join(file))
            }
            Some(file) => return Err(format!("{}: names {file:?}, no archive of {name}", path.display())),
            None => LetGo::Nothing,
        });
    }
    Ok(LetGo::Nothing)
}

/// The l4d2ctl command an ask runs, for those l4d2ctl answers.
pub fn l4d2ctl_command(ask: &Ask) -> Option<api::Command> {
    match ask {
        Ask::Logs { server, lines, follow } => {
            Some(api::Command::Logs { name: server.clone(), lines: *lines, follow: *follow })
        }
        Ask::Rcon { server, user, from, command } => Some(api::Command::RconAs {
            name: server.clone(),
            command: command.clone(),
            user: user.clone(),
            from: from.to_string(),
        }),
        Ask::Backups { server } => Some(api::Command::Backups { name: server.clone() }),
        _ => None,
    }
}

/// How this host reaches others over SSH: as the web app (to a host's `left4me remote`) or as the
/// agent (`git fetch` of the control host's repo). Every option is given on the command line, so
/// a user's `~/.ssh/config` adds to it but the safety settings hold whatever it says first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    /// The private key (`LEFT4ME_SSH_KEY`).
    pub key: PathBuf,
    /// The hosts' keys, checked strictly (`LEFT4ME_SSH_KNOWN_HOSTS`).
    pub known_hosts: PathBuf,
    /// The user left4me logs in as on the other side (`LEFT4ME_SSH_USER`, default `left4me`).
    pub user: String,
    /// Where connections are kept open for reuse (`ControlMaster`); none: every ask connects.
    pub control_dir: Option<PathBuf>,
    /// The `ssh` to run (`LEFT4ME_SSH`, default `ssh` on the PATH).
    pub program: PathBuf,
    /// The other side's port, when not 22 (an upstream's `ssh://…:port/` URL).
    pub port: Option<u16>,
}

/// Where deploy/ puts the keys: the web app's (the control host's, owned by the web's user) and
/// the agent's (root's).
pub const WEB_KEY: &str = "/etc/left4me/ssh/web";
pub const AGENT_KEY: &str = "/etc/left4me/ssh/agent";
pub const KNOWN_HOSTS: &str = "/etc/left4me/ssh/known_hosts";
/// Settings of the operator's for every connection (a port, a jump host), root's; none: ssh's
/// defaults, never a user's own config.
pub const CONFIG: &str = "/etc/left4me/ssh/config";
/// Where the agent keeps its connection to the control host open (root's, on /run).
pub const AGENT_CONTROL_DIR: &str = "/run/left4me";

/// How long a connection may take to be made, and how long an answer may be silent, in seconds.
const CONNECT_TIMEOUT: u32 = 5;
const ALIVE_INTERVAL: u32 = 5;
/// How long an idle shared connection stays open.
const CONTROL_PERSIST: u32 = 600;

impl Ssh {
    /// From the environment (host.env is both services' environment file), with `key` by default:
    /// [`WEB_KEY`] (`LEFT4ME_SSH_KEY` says another) or [`AGENT_KEY`] (`LEFT4ME_AGENT_SSH_KEY`).
    pub fn from_env(key: &str, control_dir: Option<PathBuf>) -> Ssh {
        let get = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let setting = if key == AGENT_KEY { "LEFT4ME_AGENT_SSH_KEY" } else { "LEFT4ME_SSH_KEY" };
        Ssh {
            key: get(setting).map_or_else(|| PathBuf::from(key), PathBuf::from),
            known_hosts: get("LEFT4ME_SSH_KNOWN_HOSTS").map_or_else(|| PathBuf::from(KNOWN_HOSTS), PathBuf::from),
            user: get("LEFT4ME_SSH_USER").and_then(|u| u.into_string().ok()).unwrap_or_else(|| "left4me".into()),
            control_dir,
            program: get("LEFT4ME_SSH").map_or_else(|| PathBuf::from("ssh"), PathBuf::from),
            port: None,
        }
    }

    /// The options every connection takes: this key only, no password or question ever asked, a
    /// host key that must be known, bounded waits, nothing forwarded.
    pub fn options(&self) -> Vec<String> {
        // Only left4me's own settings (root's), never a user's `~/.ssh/config`: the web's home is
        // `$ROOT`, which the web's user writes.
        let config = Path::new(CONFIG);
        let mut options = vec![
            "-F".to_owned(),
            if config.is_file() { CONFIG.to_owned() } else { "/dev/null".to_owned() },
            "-i".to_owned(),
            self.key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            format!("ConnectTimeout={CONNECT_TIMEOUT}"),
            "-o".into(),
            format!("ServerAliveInterval={ALIVE_INTERVAL}"),
            "-o".into(),
            "ServerAliveCountMax=2".into(),
            "-o".into(),
            "ForwardAgent=no".into(),
            "-o".into(),
            "ClearAllForwardings=yes".into(),
            "-o".into(),
            "RequestTTY=no".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ];
        if let Some(port) = self.port {
            options.extend(["-p".into(), port.to_string()]);
        }
        if let Some(dir) = &self.control_dir {
            options.extend([
                "-o".into(),
                "ControlMaster=auto".into(),
                "-o".into(),
                format!("ControlPath={}/ssh-%C", dir.display()),
                "-o".into(),
                format!("ControlPersist={CONTROL_PERSIST}"),
            ]);
        }
        options
    }

    /// `ssh … <user>@<address> <ask>`: one ask of the host at `address` (a validated
    /// `HostAddress`, which never begins with `-`).
    pub fn command(&self, address: &str, ask: &Ask) -> Command {
        self.command_words(address, &ask.words())
    }

    /// `ssh … <user>@<address> <words>`, the words quoted into the one line the other side reads.
    pub fn command_words(&self, address: &str, words: &[String]) -> Command {
        let mut command = Command::new(&self.program);
        // ssh takes an IPv6 address bare; `-n`: no ask reads the caller's stdin. `--` ends the
        // options before the destination; after it, every word is the command's.
        let address = address.trim_start_matches('[').trim_end_matches(']');
        command.args(self.options()).arg("-n").arg("--").arg(format!("{}@{address}", self.user));
        command.arg(shlex::try_join(words.iter().map(String::as_str)).expect("the words hold no NUL"));
        command
    }

    /// `GIT_SSH_COMMAND` for git to reach the upstream with these options (git runs it with a
    /// shell, so each word is quoted).
    pub fn git_ssh_command(&self) -> String {
        let program = self.program.display().to_string();
        let words: Vec<String> = std::iter::once(program).chain(self.options()).collect();
        shlex::try_join(words.iter().map(String::as_str)).expect("the options hold no NUL")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ask_reads_back_as_itself_from_the_line_the_client_sends() {
        let server = Name::new("coop-1").unwrap();
        let asks = [
            Ask::Status,
            Ask::Logs { server: server.clone(), lines: 200, follow: true },
            Ask::Logs { server: server.clone(), lines: 5, follow: false },
            Ask::Rcon {
                server: server.clone(),
                user: Name::new("alice").unwrap(),
                from: "203.0.113.9".parse().unwrap(),
                command: "say \"it's $(rm -rf /)\"; `quit`".into(),
            },
            Ask::Backups { server },
            Ask::Jobs { limit: 50 },
            Ask::Job { id: 12, after: 40 },
            Ask::Fetch,
            Ask::Handover { server: Name::new("coop-2").unwrap(), to: Name::new("c").unwrap() },
        ];
        for ask in asks {
            let line = shlex::try_join(ask.words().iter().map(String::as_str)).unwrap();
            assert_eq!(Ask::parse(&line), Ok(ask), "{line}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_what_may_be_asked() {
        for line in [
            "sh -c id",
            "status; id",
            "logs ../x --lines 5",
            "logs coop-1 --lines 5 --follow extra",
            "logs coop-1 --lines -1",
            "rcon coop-1 --as alice --from nowhere -- status",
            "l4d2ctl delete coop-1",
            "git-upload-pack '/var/lib/left4me/state'",
            "job 1 --after",
            "status 'unclosed",
            "",
        ] {
            let refused = Ask::parse(line).unwrap_err();
            assert!(!refused.0.is_empty(), "{line:?}");
        }
        let long = format!("rcon coop-1 --as alice --from 127.0.0.1 -- say {}", "x".repeat(MAX_LINE));
        assert!(Ask::parse(&long).unwrap_err().0.contains("at most 4096"));
        assert!(Ask::parse("sh -c id").unwrap_err().0.contains("it may ask: status, logs"));
        assert!(Ask::parse("status\n; id").is_err(), "a control character is no part of any ask");
        assert_eq!(Ask::parse("jobs --limit 100000").unwrap(), Ask::Jobs { limit: MAX_JOBS });
    }

    #[test]
    fn an_agent_may_fetch_the_state_repo_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("state");
        std::fs::create_dir(&repo).unwrap();
        std::fs::create_dir(root.path().join("other")).unwrap();
        let line = format!("git-upload-pack '{}'", repo.display());
        assert_eq!(AgentAsk::parse(&line, &repo), Ok(AgentAsk::UploadPack { repo: repo.clone() }));
        let through = format!("git-upload-pack '{}/../state/'", repo.display());
        assert!(AgentAsk::parse(&through, &repo).is_ok(), "the same folder by another path");
        for line in [
            format!("git-upload-pack '{}/../other'", repo.display()),
            format!("git-receive-pack '{}'", repo.display()),
            "git-upload-pack '/etc'".to_owned(),
            "status".to_owned(),
            format!("git-upload-pack '{}' extra", repo.display()),
        ] {
            assert!(AgentAsk::parse(&line, &repo).is_err(), "{line}");
        }
    }

    #[test]
    fn a_host_hands_over_only_what_a_move_to_the_asker_recorded() {
        let root = tempfile::tempdir().unwrap();
        let (coop, c, d) = (Name::new("coop").unwrap(), Name::new("c").unwrap(), Name::new("d").unwrap());
        let archive = root.path().join("archive");
        std::fs::create_dir(&archive).unwrap();
        assert_eq!(let_go(root.path(), &coop, &c), Ok(LetGo::Nothing), "never here");
        // An earlier life of a server of the same name, deleted, and one of a longer name.
        std::fs::write(archive.join("coop-20260101T000000Z.tar"), "alice's").unwrap();
        std::fs::write(
            archive.join("coop-1-20261202T000000Z.json"),
            r#"{"moving_to":"c","archive":"coop-1-20261202T000000Z.tar","at":"x"}"#,
        )
        .unwrap();
        assert_eq!(let_go(root.path(), &coop, &c), Ok(LetGo::Nothing), "no move of coop recorded");
        // Its move to c, with no data of its own: nothing, never the old archive.
        std::fs::write(archive.join("coop-20261201T000000Z.json"), r#"{"moving_to":"c","archive":null,"at":"x"}"#)
            .unwrap();
        assert_eq!(let_go(root.path(), &coop, &c), Ok(LetGo::Nothing));
        std::fs::write(
            archive.join("coop-20261202T000000Z.json"),
            r#"{"moving_to":"c","archive":"coop-20261202T000000Z.tar","at":"x"}"#,
        )
        .unwrap();
        let moved = archive.join("coop-20261202T000000Z.tar");
        assert_eq!(let_go(root.path(), &coop, &c), Ok(LetGo::Archive(moved)), "the newest move to c");
        assert_eq!(let_go(root.path(), &coop, &d), Ok(LetGo::Nothing), "nothing moved to d");
        std::fs::write(
            archive.join("coop-20261203T000000Z.json"),
            r#"{"moving_to":"c","archive":"../../etc/shadow","at":"x"}"#,
        )
        .unwrap();
        assert!(let_go(root.path(), &coop, &c).is_err(), "a record naming no archive of coop is refused");
        std::fs::create_dir_all(root.path().join("instances/coop")).unwrap();
        assert_eq!(let_go(root.path(), &coop, &c), Ok(LetGo::StillHere));
    }

    #[test]
    fn the_options_keep_connections_strict_and_shared() {
        let ssh = Ssh {
            key: "/etc/left4me/ssh/web".into(),
            known_hosts: KNOWN_HOSTS.into(),
            user: "left4me".into(),
            control_dir: Some("/run/left4me-web".into()),
            program: "ssh".into(),
            port: None,
        };
        let command = ssh.command("b.example.org", &Ask::Status);
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        for option in ["BatchMode=yes", "StrictHostKeyChecking=yes", "ControlMaster=auto", "IdentitiesOnly=yes"] {
            assert!(args.iter().any(|a| a == option), "{option} in {args:?}");
        }
        assert_eq!(&args[args.len() - 3..], ["--", "left4me@b.example.org", "status"]);
        assert!(ssh.git_ssh_command().starts_with("ssh -F "), "{}", ssh.git_ssh_command());
        assert!(!ssh.git_ssh_command().contains(" -n"), "git talks to upload-pack on ssh's stdin");
        assert!(args.iter().any(|a| a == "-n"), "an ask reads no stdin");
        let v6 = ssh.command("[2001:db8::7]", &Ask::Status);
        assert!(v6.get_args().any(|a| a == "left4me@2001:db8::7"), "ssh takes an IPv6 address bare");
    }
}
