//! A server moving between hosts keeps what it wrote. A commit that changes a server's
//! `spec.host` from b to c makes b's pass move it away — `l4d2ctl delete --moving-to c`, which
//! archives its data as every delete does (`$ROOT/archive/<name>-<time>.tar`) and records that
//! this archive (or that it had no data) is c's to take (`<name>-<time>.json`) — and c's pass
//! create it. Before c creates it, c asks b for that archive over SSH: through the control host,
//! which relays the ask (`left4me remote --agent c` → `left4me remote` on b) once it has checked
//! in its own revision that the server moved from b to c, so a host trusts the control host's key
//! only. The archive waits in `$ROOT/incoming/<name>.tar` (root's, reached with no symlink
//! followed) until `l4d2ctl receive` puts it in place of the new instance's upper layer, before
//! its first start; while that file is there, `l4d2ctl start` refuses to start the server
//! without it.
//!
//! Where the server came from is read from the branch's history: the newest commit that placed it
//! on this host, and the host its parent placed it on. A server new to the revision, or one that
//! was on no host before (a repo of one host growing `hosts/`), brings nothing; so does one whose
//! old host the revision no longer declares (a host that died: its servers start here empty).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use left4me_state::{DesiredState, Name, Revision};
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::Deserialize;

use crate::plan::{Action, Plan, ServerSync, Step, Sync};
use crate::remote::{self, Ask, Ssh};

/// How many commits of a server's file are looked back through for the one that placed it here;
/// a history longer than that is not guessed at (the server waits, and says why).
const HISTORY: usize = 1000;

/// What `left4me remote`'s `handover` exits with when the server is still on that host: its move
/// is not applied there yet, so there is nothing to take — ask again.
pub const NOT_YET: i32 = 3;

/// The longest a handover may take, and the most it may bring beyond the host's backup limit (a
/// tar's headers and padding): a host that trickles bytes or sends without end is cut off.
const DEADLINE: Duration = Duration::from_secs(15 * 60);
const TAR_OVERHEAD: u64 = 1 << 30;

/// Where the servers move to: this host's `$ROOT`, state repo and name (`LEFT4ME_HOST`; a host
/// with none takes no server from another).
#[derive(Debug, Clone, Copy)]
pub struct Here<'a> {
    pub root: &'a Path,
    pub state: &'a Path,
    pub host: Option<&'a Name>,
}

/// What became of a server's data, for a server the plan creates here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// It is in `$ROOT/incoming/<name>.tar`, to be received before its first start.
    InHand,
    /// The host it came from had none, or it came from no host (or one no longer declared).
    Nothing,
    /// Not yet: the other host has not let it go, or cannot be reached. The reason, for its Sync.
    Waiting(String),
}

/// Fetches the data of every server this plan creates that moved here from another host, then
/// changes the plan to match: a server whose data is not in hand yet is not created this pass
/// (its Sync says why; the pass is retried soon), and one whose data is in hand is received
/// before it starts. Data left for a server the revision no longer creates here goes. Returns the
/// servers still waiting.
pub fn prepare(at: Here<'_>, revision: &Revision, desired: &DesiredState, plan: &mut Plan) -> Vec<Name> {
    let Some(here) = at.host else { return Vec::new() };
    let incoming = match Incoming::open(at.root) {
        Ok(incoming) => incoming,
        Err(why) => {
            tracing::error!("servers moving in cannot be prepared: {why}");
            return hold_creates(plan, &format!("its data from another host cannot be kept here: {why}"));
        }
    };
    incoming.forget_all_but(desired);
    let mut waiting = Vec::new();
    for name in creates(plan) {
        let data = if incoming.holds(&name) {
            Data::InHand
        } else {
            match moved_from(at.state, revision, &name, here) {
                Ok(Some(from)) if !desired.hosts.contains_key(&from) => {
                    tracing::warn!(
                        server = %name,
                        "it moved here from host {from}, which the revision no longer declares: it starts here without \
                         the data it had there"
                    );
                    Data::Nothing
                }
                Ok(Some(from)) => fetch(&incoming, desired, &from, &name, here),
                Ok(None) => Data::Nothing,
                Err(why) => Data::Waiting(format!("cannot tell where it was before: {why}")),
            }
        };
        if let Data::Waiting(why) = data {
            hold(plan, &name, why);
            waiting.push(name);
        }
    }
    receive_before_start(&incoming, plan);
    waiting
}

/// The servers the plan creates.
fn creates(plan: &Plan) -> Vec<Name> {
    plan.steps.iter().filter(|s| matches!(s.action, Action::Create { .. })).map(|s| s.server.clone()).collect()
}

/// Leaves a server out of this pass, saying why in its Sync.
fn hold(plan: &mut Plan, name: &Name, why: String) {
    plan.steps.retain(|step| step.server != *name);
    plan.servers.insert(name.clone(), ServerSync { sync: Sync::OutOfSync, message: why });
}

/// Holds every server the plan creates that might bring data (none can be told apart now).
fn hold_creates(plan: &mut Plan, why: &str) -> Vec<Name> {
    let names = creates(plan);
    for name in &names {
        hold(plan, name, why.to_owned());
    }
    names
}

/// Says in their Sync which servers of the plan move in from another host: the plan creates
/// them here, and they bring their data (a look; nothing is fetched).
pub fn describe(at: Here<'_>, revision: &Revision, origins: &mut Origins, plan: &mut Plan) {
    let Some(here) = at.host else { return };
    for name in creates(plan) {
        if let Ok(Some(from)) = origins.of(at.state, revision, &name, here) {
            let message = format!("moving in from host {from}, with the data it wrote there");
            plan.servers.insert(name, ServerSync { sync: Sync::OutOfSync, message });
        }
    }
}

/// A Receive step for each server whose data is in hand and that this plan creates or starts.
fn receive_before_start(incoming: &Incoming, plan: &mut Plan) {
    let names: BTreeSet<Name> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Create { .. } | Action::Start))
        .map(|s| s.server.clone())
        .collect();
    for name in names {
        if incoming.holds(&name) {
            let reason = "its data from the host it moved from, before its first start here".to_owned();
            plan.steps.push(Step { server: name, action: Action::Receive, reason });
        }
    }
    plan.steps.sort_by(|a, b| (a.action.phase(), &a.server).cmp(&(b.action.phase(), &b.server)));
}

/// `$ROOT/incoming/`, opened with no symlink followed and made root's alone: `$ROOT` is the web
/// user's, so every name in it is looked up, made, renamed and removed through this descriptor.
struct Incoming {
    dir: OwnedFd,
    path: PathBuf,
    /// The most one handover may bring (`LEFT4ME_BACKUP_MAX_BYTES` and a tar's overhead).
    limit: u64,
}

impl Incoming {
    fn open(root: &Path) -> Result<Incoming, String> {
        let path = root.join(l4d2ctl::backup::INCOMING);
        let dir = l4d2ctl::fsutil::open_dir(&path, 0o700, l4d2ctl::fsutil::Owner::root()).map_err(|e| e.to_string())?;
        let max = l4d2ctl::Host::from_env().map(|h| h.backup_max_bytes).unwrap_or(l4d2ctl::host::BACKUP_MAX_BYTES);
        Ok(Incoming { dir, path, limit: max.saturating_add(TAR_OVERHEAD) })
    }

    fn file(name: &Name) -> String {
        format!("{name}.tar")
    }

    /// Whether the data of `name` is here: a regular file (a symlink is no data).
    fn holds(&self, name: &Name) -> bool {
        fstatat(&self.dir, Self::file(name).as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
    }

    /// Removes what waits for a server the revision does not place here (a move taken back before
    /// it was done): a later server of that name must not receive it.
    fn forget_all_but(&self, desired: &DesiredState) {
        let Ok(entries) = fs::read_dir(format!("/proc/self/fd/{}", self.dir.as_raw_fd())) else { return };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let server = file.strip_suffix(".tar").and_then(|s| Name::new(s).ok());
            let wanted = server.is_some_and(|s| desired.servers.contains_key(&s));
            if !wanted && unlinkat(&self.dir, file.as_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                tracing::info!("{}/{file}: no server of the revision waits for it here; removed", self.path.display());
            }
        }
    }

    /// Runs the ask, its stdout into a file of root's beside the incoming one — at most
    /// [`Incoming::limit`] bytes, within [`DEADLINE`] — renamed in when the ask succeeded.
    /// Ok(Some(bytes)); Ok(None): the other host says not yet; Err: why it failed.
    fn stream(&self, name: &Name, command: &mut Command) -> Result<Option<u64>, String> {
        let part = format!(".{name}.tar.part");
        let _ = unlinkat(&self.dir, part.as_str(), UnlinkatFlags::NoRemoveDir);
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let file = openat(&self.dir, part.as_str(), flags, Mode::from_bits_truncate(0o600))
            .map(fs::File::from)
            .map_err(|e| format!("{}/{part}: {e}", self.path.display()))?;
        let result = self.stream_into(command, file).and_then(|bytes| {
            if bytes == Some(0) || bytes.is_none() {
                return Ok(bytes);
            }
            renameat(&self.dir, part.as_str(), &self.dir, Self::file(name).as_str())
                .map(|()| bytes)
                .map_err(|e| format!("{}: {e}", self.path.display()))
        });
        let _ = unlinkat(&self.dir, part.as_str(), UnlinkatFlags::NoRemoveDir);
        result
    }

    fn stream_into(&self, command: &mut Command, mut file: fs::File) -> Result<Option<u64>, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        let (stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let limit = self.limit;
        let copying = std::thread::spawn(move || {
            let copied = std::io::copy(&mut stdout.take(limit + 1), &mut file);
            copied.and_then(|bytes| file.sync_all().map(|()| bytes))
        });
        let said = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_string(&mut text);
            text
        });
        let status = remote::wait_until(&mut child, Instant::now() + DEADLINE)
            .ok_or_else(|| format!("no whole answer within {} minutes", DEADLINE.as_secs() / 60));
        let copied = copying.join().map_err(|_| "the copy panicked".to_owned())?;
        let said = said.join().unwrap_or_default().trim().to_owned();
        let status = status?;
        let bytes = copied.map_err(|e| format!("cannot keep its data: {e}"))?;
        if bytes > limit {
            return Err(format!("it sent more than {limit} bytes (LEFT4ME_BACKUP_MAX_BYTES and a tar's overhead)"));
        }
        match status.code() {
            Some(0) => Ok(Some(bytes)),
            Some(NOT_YET) => Ok(None),
            _ if said.is_empty() => Err(format!("ssh ended {status}")),
            _ => Err(said),
        }
    }
}

/// Where the servers moving in came from ([`moved_from`]), remembered for one revision: its
/// history does not change, and the web's looks (every 2 s while watched) would otherwise run a
/// `git log` and a `cat-file` for each such server every time.
#[derive(Default)]
pub struct Origins {
    revision: Option<String>,
    known: BTreeMap<Name, Option<Name>>,
}

impl Origins {
    /// [`moved_from`], asked of git once per revision and server; a failure is not remembered.
    pub fn of(&mut self, state: &Path, revision: &Revision, name: &Name, here: &Name) -> Result<Option<Name>, String> {
        if self.revision.as_deref() != Some(revision.id()) {
            self.revision = Some(revision.id().to_owned());
            self.known.clear();
        }
        if let Some(from) = self.known.get(name) {
            return Ok(from.clone());
        }
        let from = moved_from(state, revision, name, here)?;
        self.known.insert(name.clone(), from.clone());
        Ok(from)
    }
}

/// The host this server was on before the newest commit that placed it on `here`; None when it
/// was on no host before (new, or a repo without hosts). A history longer than [`HISTORY`]
/// commits of its file is an error, never a guess.
pub fn moved_from(state: &Path, revision: &Revision, name: &Name, here: &Name) -> Result<Option<Name>, String> {
    let paths = [format!("servers/{name}.yaml"), format!("servers/{name}.yml")];
    let output = left4me_state::git(state)
        .args(["log", "--format=%H", &format!("--max-count={}", HISTORY + 1), revision.id(), "--"])
        .args(&paths)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        return Err(format!("git log failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    let commits: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    // For each commit: the file as it made it, and as its parent had it, in either spelling.
    let mut specs = Vec::new();
    for commit in commits.iter().take(HISTORY) {
        for path in &paths {
            specs.push(format!("{commit}:{path}"));
            specs.push(format!("{commit}^:{path}"));
        }
    }
    let refs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let files = left4me_state::cat_files(state, &refs, 1 << 20).map_err(|e| e.to_string())?;
    for found in files.chunks(4) {
        let file = |index: usize| found[index].as_deref().or(found[index + 2].as_deref());
        // A version that cannot be read says nothing of where the server was: skipped.
        let (Some(now), Some(before)) = (file(0).map(placed_on), file(1).map(placed_on).unwrap_or(Ok(None)).ok())
        else {
            continue;
        };
        let Ok(now) = now else { continue };
        if now == before {
            continue;
        }
        return Ok(match (now, before) {
            (Some(now), Some(before)) if &now == here && &before != here => Some(before),
            _ => None,
        });
    }
    if commits.len() > HISTORY {
        return Err(format!("{name}'s file has more than {HISTORY} commits since it was last placed elsewhere"));
    }
    Ok(None)
}

/// The host a server document names, read leniently: an older revision's file may not be valid
/// now, and only its `spec.host` matters here. Err: it cannot be read at all.
fn placed_on(data: &[u8]) -> Result<Option<Name>, ()> {
    #[derive(Deserialize)]
    struct Document {
        spec: Option<Spec>,
    }
    #[derive(Deserialize)]
    struct Spec {
        host: Option<Name>,
    }
    let document: Document = left4me_state::parse_yaml("server", data).map_err(drop)?;
    Ok(document.spec.and_then(|spec| spec.host))
}

/// Asks the host `from` for the archive of `name` it recorded as this host's, and keeps it in
/// the incoming file. The control host asks `from` itself; any other host asks through the
/// control host, its upstream.
fn fetch(incoming: &Incoming, desired: &DesiredState, from: &Name, name: &Name, here: &Name) -> Data {
    let result = match upstream() {
        Some(upstream) => {
            let mut ssh = Ssh::from_env(remote::AGENT_KEY, Some(remote::AGENT_CONTROL_DIR.into()));
            ssh.user = upstream.user;
            ssh.port = upstream.port;
            let words = ["handover".to_owned(), from.to_string(), name.to_string()];
            incoming.stream(name, &mut ssh.command_words(&upstream.host, &words))
        }
        None => match desired.hosts.get(from) {
            Some(host) => {
                let ssh = Ssh::from_env(remote::WEB_KEY, None);
                let ask = Ask::Handover { server: name.clone(), to: here.clone() };
                incoming.stream(name, &mut ssh.command(host.address.as_str(), &ask))
            }
            None => return Data::Nothing,
        },
    };
    match result {
        Ok(Some(0)) => Data::Nothing,
        Ok(Some(_)) => Data::InHand,
        Ok(None) => Data::Waiting(format!(
            "moving in from host {from}: {from} has not let it go yet; it is created here once {from} has archived its data"
        )),
        Err(why) => Data::Waiting(format!("moving in from host {from}: its data cannot be fetched yet: {why}")),
    }
}

/// Where this host's upstream is, when it follows one over SSH (`LEFT4ME_UPSTREAM`): the control
/// host.
struct Upstream {
    user: String,
    host: String,
    port: Option<u16>,
}

fn upstream() -> Option<Upstream> {
    destination_of(&std::env::var("LEFT4ME_UPSTREAM").ok()?)
}

/// The user, host and port of a git URL over SSH: `user@host:path` or
/// `ssh://user@host[:port]/path`.
fn destination_of(url: &str) -> Option<Upstream> {
    let (user, host, port) = match url.strip_prefix("ssh://") {
        Some(rest) => {
            let (user, authority) = rest.split('/').next()?.split_once('@')?;
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                    (host, Some(port.parse().ok()?))
                }
                _ => (authority, None),
            };
            (user, host, port)
        }
        None => {
            let (user, host) = url.split_once(':')?.0.split_once('@')?;
            (user, host, None)
        }
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let plain = |word: &str| !word.is_empty() && !word.starts_with('-') && !word.contains(['/', ' ']);
    (plain(user) && plain(host)).then(|| Upstream { user: user.to_owned(), host: host.to_owned(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_names_the_control_host_to_ask_through() {
        let cases = [
            ("left4me@10.77.1.1:/var/lib/left4me/state", Some(("left4me", "10.77.1.1", None))),
            ("ssh://left4me@a.example.org/var/lib/left4me/state", Some(("left4me", "a.example.org", None))),
            ("ssh://left4me@a.example.org:2222/var/lib/left4me/state", Some(("left4me", "a.example.org", Some(2222)))),
            ("/srv/upstream", None),
            ("https://example.org/state.git", None),
            ("-oProxyCommand=x@y:z", None),
            ("ssh://left4me@a.example.org:port/x", None),
        ];
        for (url, expected) in cases {
            let got = destination_of(url);
            let got = got.as_ref().map(|u| (u.user.as_str(), u.host.as_str(), u.port));
            assert_eq!(got, expected, "{url}");
        }
    }

    #[test]
    fn a_host_is_read_from_any_server_document_that_names_one() {
        assert_eq!(placed_on(b"spec: {host: b, port: 1}\nother: [1]\n"), Ok(Some(Name::new("b").unwrap())));
        assert_eq!(placed_on(b"spec: {port: 27015}\n"), Ok(None));
        assert_eq!(placed_on(b"not: yaml: at: all: ["), Err(()));
    }
}
