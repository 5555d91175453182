//! A server moving between hosts keeps what it wrote. A commit that changes a server's
//! `spec.host` from b to c makes b's pass delete it — archiving its data, as every delete does
//! (`$ROOT/archive/<name>-<time>.tar`) — and c's pass create it. Before c creates it, c asks b for
//! that archive over SSH: through the control host, which relays the ask (`left4me remote --agent c`
//! → `left4me remote` on b), so a host trusts the control host's key only. The archive waits in
//! `$ROOT/incoming/<name>.tar` (root's) until `l4d2ctl receive` puts it in place of the new
//! instance's upper layer, before its first start; while that file is there, the server is not
//! started without it.
//!
//! Where the server came from is read from the branch's history: the newest commit that placed it
//! on this host, and the host its parent placed it on. A server new to the revision, or one that
//! was on no host before (a repo of one host growing `hosts/`), brings nothing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use left4me_state::{DesiredState, Name, Revision};
use serde::Deserialize;

use crate::engine::Config;
use crate::plan::{Action, Plan, ServerSync, Step, Sync};
use crate::remote::{self, Ask, Ssh};

/// How many commits of a server's file are looked back through for the one that placed it here.
const HISTORY: usize = 20;

/// What `left4me remote`'s `handover` exits with when the server is still on that host: its move
/// is not applied there yet, so there is nothing to take — ask again.
pub const NOT_YET: i32 = 3;

/// What became of a server's data, for a server the plan creates here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// It is in `$ROOT/incoming/<name>.tar`, to be received before its first start.
    InHand,
    /// The host it came from had none (its archive was empty), or it came from no host.
    Nothing,
    /// Not yet: the other host has not let it go, or cannot be reached. The reason, for its Sync.
    Waiting(String),
}

/// Fetches the data of every server this plan creates that moved here from another host, then
/// changes the plan to match: a server whose data is not in hand yet is not created this pass
/// (its Sync says why; the pass is retried soon), and one whose data is in hand is received
/// before it starts. Returns the servers still waiting.
pub fn prepare(config: &Config, revision: &Revision, desired: &DesiredState, plan: &mut Plan) -> Vec<Name> {
    let Some(here) = &config.host else { return Vec::new() };
    let mut waiting = Vec::new();
    let creates: Vec<Name> =
        plan.steps.iter().filter(|s| matches!(s.action, Action::Create { .. })).map(|s| s.server.clone()).collect();
    for name in creates {
        let data = if incoming(config, &name).exists() {
            Data::InHand
        } else {
            match moved_from(&config.state, revision, &name, here) {
                Ok(Some(from)) => fetch(config, desired, &from, &name),
                Ok(None) => Data::Nothing,
                Err(why) => Data::Waiting(format!("cannot tell where it was before: {why}")),
            }
        };
        if let Data::Waiting(why) = data {
            plan.steps.retain(|step| step.server != name);
            plan.servers.insert(name.clone(), ServerSync { sync: Sync::OutOfSync, message: why });
            waiting.push(name);
        }
    }
    receive_before_start(config, plan);
    waiting
}

/// Says in their Sync which servers of the plan move in from another host: the plan creates
/// them here, and they bring their data (a look; nothing is fetched).
pub fn describe(config: &Config, revision: &Revision, plan: &mut Plan) {
    let Some(here) = &config.host else { return };
    let creates: Vec<Name> =
        plan.steps.iter().filter(|s| matches!(s.action, Action::Create { .. })).map(|s| s.server.clone()).collect();
    for name in creates {
        if let Ok(Some(from)) = moved_from(&config.state, revision, &name, here) {
            let message = format!("moving in from host {from}, with the data it wrote there");
            plan.servers.insert(name, ServerSync { sync: Sync::OutOfSync, message });
        }
    }
}

/// A Receive step for each server whose data is in hand and that this plan creates or starts.
fn receive_before_start(config: &Config, plan: &mut Plan) {
    let mut names: Vec<Name> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Create { .. } | Action::Start))
        .map(|s| s.server.clone())
        .collect();
    names.dedup();
    for name in names {
        if incoming(config, &name).exists() {
            let reason = "its data from the host it moved from, before its first start here".to_owned();
            plan.steps.push(Step { server: name, action: Action::Receive, reason });
        }
    }
    plan.steps.sort_by(|a, b| (a.action.phase(), &a.server).cmp(&(b.action.phase(), &b.server)));
}

/// Where a server's data waits to be received: l4d2ctl's `incoming` file.
fn incoming(config: &Config, name: &Name) -> PathBuf {
    config.root.join(l4d2ctl::backup::INCOMING).join(format!("{name}.tar"))
}

/// The host this server was on before the newest commit that placed it on `here`; None when it
/// was on no host before (new, or a repo without hosts).
pub fn moved_from(state: &Path, revision: &Revision, name: &Name, here: &Name) -> Result<Option<Name>, String> {
    let paths = [format!("servers/{name}.yaml"), format!("servers/{name}.yml")];
    let output = left4me_state::git(state)
        .args(["log", "--format=%H", &format!("--max-count={HISTORY}"), revision.id(), "--"])
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
    for commit in &commits {
        for path in &paths {
            specs.push(format!("{commit}:{path}"));
            specs.push(format!("{commit}^:{path}"));
        }
    }
    let refs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let files = left4me_state::cat_files(state, &refs, 1 << 20).map_err(|e| e.to_string())?;
    for found in files.chunks(4) {
        let host = |index: usize| found[index].as_deref().or(found[index + 2].as_deref()).map(placed_on);
        let (now, before) = (host(0), host(1));
        if now == before {
            continue;
        }
        return Ok(match (now, before) {
            (Some(Some(now)), Some(Some(before))) if &now == here && &before != here => Some(before),
            _ => None,
        });
    }
    Ok(None)
}

/// The host a server document names, read leniently: an older revision's file may not be valid
/// now, and only its `spec.host` matters here.
fn placed_on(data: &[u8]) -> Option<Name> {
    #[derive(Deserialize)]
    struct Document {
        spec: Option<Spec>,
    }
    #[derive(Deserialize)]
    struct Spec {
        host: Option<Name>,
    }
    let document: Document = left4me_state::parse_yaml("server", data).ok()?;
    document.spec?.host
}

/// Asks the host `from` for the archive of `name` and keeps it in the incoming file. The control
/// host asks `from` itself; any other host asks through the control host, its upstream.
fn fetch(config: &Config, desired: &DesiredState, from: &Name, name: &Name) -> Data {
    let ask = |command: &mut Command| -> Result<Option<u64>, String> { stream_into(config, name, command) };
    let result = match upstream_destination() {
        Some((user, address)) => {
            let mut ssh = Ssh::from_env(remote::AGENT_KEY, Some(remote::AGENT_CONTROL_DIR.into()));
            ssh.user = user;
            ask(&mut ssh.command_words(&address, &["handover".into(), from.to_string(), name.to_string()]))
        }
        None => match desired.hosts.get(from) {
            Some(host) => {
                let ssh = Ssh::from_env(remote::WEB_KEY, None);
                ask(&mut ssh.command(host.address.as_str(), &Ask::Handover { server: name.clone() }))
            }
            None => Err(format!("host {from} is not declared any more")),
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

/// Runs the ask, its stdout into a root-only file beside the incoming one, renamed in when the
/// ask succeeded. Ok(Some(bytes)); Ok(None): the other host says not yet; Err: why it failed.
fn stream_into(config: &Config, name: &Name, command: &mut Command) -> Result<Option<u64>, String> {
    let folder = config.root.join(l4d2ctl::backup::INCOMING);
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&folder)
        .map_err(|e| format!("{}: {e}", folder.display()))?;
    let temp = folder.join(format!(".{name}.tar.part"));
    let _ = fs::remove_file(&temp);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(|e| format!("{}: {e}", temp.display()))?;
    let output = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run ssh: {e}"));
    let result = output.and_then(|output| {
        let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        match output.status.code() {
            Some(0) => {
                let mut file = file;
                file.flush().and_then(|()| file.sync_all()).map_err(|e| e.to_string())?;
                let bytes = file.metadata().map_err(|e| e.to_string())?.len();
                if bytes > 0 {
                    fs::rename(&temp, incoming(config, name)).map_err(|e| e.to_string())?;
                }
                Ok(Some(bytes))
            }
            Some(NOT_YET) => Ok(None),
            _ if said.is_empty() => Err(format!("ssh ended {}", output.status)),
            _ => Err(said),
        }
    });
    let _ = fs::remove_file(&temp);
    result
}

/// The `user@host` of this host's upstream, when it follows one over SSH (`LEFT4ME_UPSTREAM`):
/// the control host.
fn upstream_destination() -> Option<(String, String)> {
    destination_of(&std::env::var("LEFT4ME_UPSTREAM").ok()?)
}

/// The user and host of a git URL over SSH: `user@host:path` or `ssh://user@host[:port]/path`.
fn destination_of(url: &str) -> Option<(String, String)> {
    let (user, host) = match url.strip_prefix("ssh://") {
        Some(rest) => {
            let (user, host) = rest.split('/').next()?.split_once('@')?;
            (user, host.split(':').next()?)
        }
        None => url.split_once(':')?.0.split_once('@')?,
    };
    let plain = |word: &str| !word.is_empty() && !word.starts_with('-') && !word.contains(['/', ' ']);
    (plain(user) && plain(host)).then(|| (user.to_owned(), host.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_names_the_control_host_to_ask_through() {
        let cases = [
            ("left4me@10.77.1.1:/var/lib/left4me/state", Some(("left4me", "10.77.1.1"))),
            ("ssh://left4me@a.example.org/var/lib/left4me/state", Some(("left4me", "a.example.org"))),
            ("ssh://left4me@a.example.org:2222/var/lib/left4me/state", Some(("left4me", "a.example.org"))),
            ("/srv/upstream", None),
            ("https://example.org/state.git", None),
            ("-oProxyCommand=x@y:z", None),
        ];
        for (url, expected) in cases {
            let got = destination_of(url);
            assert_eq!(got.as_ref().map(|(u, h)| (u.as_str(), h.as_str())), expected, "{url}");
        }
    }

    #[test]
    fn a_host_is_read_from_any_server_document_that_names_one() {
        assert_eq!(placed_on(b"spec: {host: b, port: 1}\nother: [1]\n"), Some(Name::new("b").unwrap()));
        assert_eq!(placed_on(b"spec: {port: 27015}\n"), None);
        assert_eq!(placed_on(b"not: yaml: at: all: ["), None);
    }
}
