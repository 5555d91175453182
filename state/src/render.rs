//! The instance spec a server renders to, which `l4d2ctl initialize` consumes, and the server.cfg
//! it writes from it.

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::model::{Argument, ConfigLine, Hostname, OverlayType, Port};
use crate::name::Name;
use crate::resources::ResourceLimits;

/// Everything the host needs to run one server, and nothing it does not: a change here is a change
/// to what runs. Owner, blueprint name, desired power state and rollout policy are deliberately not
/// part of it, so renaming a blueprint or changing its rollout never restarts a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    pub name: Name,
    pub port: Port,
    pub hostname: Hostname,
    /// First = uppermost.
    pub overlays: Vec<OverlayLayer>,
    pub arguments: Vec<Argument>,
    pub config: Vec<ConfigLine>,
    /// Its blueprint's limits, written into a drop-in of its unit; left out of the JSON when
    /// none is set, so a spec without limits keeps the digest it had before they existed.
    #[serde(default, skip_serializing_if = "ResourceLimits::is_empty")]
    pub resources: ResourceLimits,
}

/// One overlay of an instance, pinned to the content it had in the revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayLayer {
    pub name: Name,
    #[serde(rename = "type")]
    pub source: OverlayType,
    pub digest: Digest,
}

impl InstanceSpec {
    /// The spec as the file `l4d2ctl initialize -f` reads: pretty JSON ending in a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("an instance spec always serializes");
        text.push('\n');
        text
    }

    /// The digest of the rendered spec; equal digests mean identical instances.
    pub fn digest(&self) -> Digest {
        let mut hasher = Hasher::new("instance");
        hasher.field(self.to_json().as_bytes());
        hasher.finish()
    }

    /// server.cfg of the instance: the blueprint's lines, then what left4me sets itself, last, so
    /// that nothing before it (an `exec`'d overlay config included) can override it: the
    /// hostname, the RCON password, and the game's log sent to `left4me live` on this host,
    /// signed with the instance's log secret (and kept off the game's disk).
    pub fn server_cfg(&self, digest: &Digest, secrets: &Secrets<'_>) -> String {
        let mut cfg = format!("// Rendered by left4me for {} ({digest}). l4d2ctl initialize rewrites it.\n", self.name);
        for line in &self.config {
            cfg.push_str(line.get());
            cfg.push('\n');
        }
        cfg.push_str(&format!("hostname \"{}\"\n", self.hostname.get()));
        cfg.push_str(&format!("rcon_password \"{}\"\n", secrets.rcon_password));
        cfg.push_str("log on\nsv_logfile 0\n");
        cfg.push_str(&format!("sv_logsecret {}\n", secrets.log_secret));
        // Only to this host: whatever an earlier config (an overlay's, exec'd) added goes first.
        cfg.push_str(&format!("logaddress_delall\nlogaddress_add 127.0.0.1:{}\n", secrets.log_port));
        cfg
    }
}

/// What an instance's server.cfg holds that is not in the revision: the secrets left4me
/// generates per instance (never in git, logs or pages) and the port `left4me live` listens on.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'a> {
    pub rcon_password: &'a str,
    /// `sv_logsecret`: srcds signs each log packet with it, and only a packet with the secret of
    /// an instance is taken as that instance's. A number: the engine sends its digits.
    pub log_secret: u32,
    pub log_port: u16,
}

/// What stands for a secret wherever a server.cfg is shown.
pub const HIDDEN_SECRET: &str = "(kept on the host, never shown)";

/// The cvars whose values are secrets: RCON's password, and the key of the game's log stream.
pub const SECRET_CVARS: [&str; 2] = ["rcon_password", "sv_logsecret"];

/// A config file as it may be shown to a person: in every command (a line's parts between `;`
/// outside quotes, as the game splits them) that names a secret cvar — in any case, anywhere in
/// the command: `alias x "rcon_password …"` too — what follows the cvar's name becomes
/// [`HIDDEN_SECRET`], so no way of writing it lets the value through, and the line's other
/// commands stay as they are. The server page's rendered server.cfg and the file browser's
/// preview and download both show files through it.
pub fn hide_secrets(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let end = &line[body.len()..];
        for (i, command) in commands(body).into_iter().enumerate() {
            if i > 0 {
                shown.push(';');
            }
            let lower = command.to_ascii_lowercase();
            let first = SECRET_CVARS.iter().filter_map(|cvar| find_word(&lower, cvar).map(|at| (at, *cvar))).min();
            match first {
                Some((at, cvar)) => shown.push_str(&format!("{}{cvar} \"{HIDDEN_SECRET}\"", &command[..at])),
                None => shown.push_str(command),
            }
        }
        shown.push_str(end);
    }
    shown
}

/// Where `word` first stands in `text` as a word of its own (not part of a longer name:
/// `sv_logsecretx` is another cvar).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_name = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    text.match_indices(word)
        .map(|(at, _)| at)
        .find(|&at| !is_name(text[..at].chars().next_back()) && !is_name(text[at + word.len()..].chars().next()))
}

/// A line's commands: split at each `;` outside double quotes (a quote left open runs to the
/// line's end, so a value is never cut in two).
fn commands(line: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (at, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(&line[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&line[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::hide_secrets;

    #[test]
    fn every_way_of_writing_a_secret_shows_no_value() {
        let cfg = "hostname \"coop\"\nrcon_password \"s3cret\"\nRCON_PASSWORD s3cret\n  sv_logsecret 424242\n\
                   alias x \"rcon_password s3cret\"\nsv_cheats 0; sv_logsecret 424242\nrcon_password \"s3c;zq9\"\n\
                   rcon_password \"s3c;zq9";
        let shown = hide_secrets(cfg);
        assert!(!shown.contains("s3c") && !shown.contains("424242") && !shown.contains("zq9"), "{shown}");
        let hidden = "\"(kept on the host, never shown)\"";
        assert_eq!(
            shown,
            format!(
                "hostname \"coop\"\nrcon_password {hidden}\nrcon_password {hidden}\n  sv_logsecret {hidden}\n\
                 alias x \"rcon_password {hidden}\nsv_cheats 0; sv_logsecret {hidden}\nrcon_password {hidden}\n\
                 rcon_password {hidden}"
            )
        );
        assert_eq!(hide_secrets("sv_cheats 0\n"), "sv_cheats 0\n", "other lines stay as they are");
    }

    #[test]
    fn a_secret_hides_only_its_own_command_of_a_line() {
        assert_eq!(
            hide_secrets("sv_cheats 1; exec evil.cfg; sv_logsecret 1\n"),
            "sv_cheats 1; exec evil.cfg; sv_logsecret \"(kept on the host, never shown)\"\n"
        );
        assert_eq!(
            hide_secrets("say \"a;b\"; rcon_password x"),
            "say \"a;b\"; rcon_password \"(kept on the host, never shown)\""
        );
    }
}
