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
    /// that nothing before it (an `exec`'d overlay config included) can override it.
    pub fn server_cfg(&self, digest: &Digest, password: &str) -> String {
        let mut cfg = format!("// Rendered by left4me for {} ({digest}). l4d2ctl initialize rewrites it.\n", self.name);
        for line in &self.config {
            cfg.push_str(line.get());
            cfg.push('\n');
        }
        cfg.push_str(&format!("hostname \"{}\"\n", self.hostname.get()));
        cfg.push_str(&format!("rcon_password \"{password}\"\n"));
        cfg
    }
}
