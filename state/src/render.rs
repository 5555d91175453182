//! The instance spec a server renders to, which `l4d2ctl initialize` consumes, and the server.cfg
//! it writes from it.

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::model::{Argument, ConfigLine, Hostname, OverlayType, Port};
use crate::name::Name;

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

/// The cvars of server.cfg whose values are secrets.
const SECRET_CVARS: &[&str] = &["rcon_password", "sv_logsecret"];

/// A server.cfg as it may be shown: the value of every line setting a secret cvar
/// (`rcon_password`, `sv_logsecret`) replaced with [`HIDDEN_SECRET`]. Whatever shows a
/// server.cfg, the rendered one or a file on the host, shows it through this.
pub fn hide_secrets(cfg: &str) -> String {
    let mut shown = String::with_capacity(cfg.len());
    for line in cfg.split_inclusive('\n') {
        let text = line.trim_end_matches(['\n', '\r']);
        let first = text.trim_start().split([' ', '\t']).next().unwrap_or("").trim_matches('"');
        match SECRET_CVARS.iter().find(|cvar| cvar.eq_ignore_ascii_case(first)) {
            Some(cvar) => {
                shown.push_str(&format!("{cvar} \"{HIDDEN_SECRET}\""));
                shown.push_str(&line[text.len()..]);
            }
            None => shown.push_str(line),
        }
    }
    shown
}
