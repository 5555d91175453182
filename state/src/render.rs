//! Rendering a server into the instance spec that `l4d2ctl initialize` consumes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Name;
use crate::desired::{Blueprint, FileKind, Overlay, OverlayContent, Server};
use crate::model::{Argument, ConfigLine, Hostname, OverlayType, Port};

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
    /// A pure function of its inputs: the same server, blueprint and overlays always render the
    /// same spec, byte for byte.
    pub fn render(server: &Server, blueprint: &Blueprint, overlays: &BTreeMap<Name, Overlay>) -> Self {
        let layers = blueprint
            .overlays
            .iter()
            .map(|name| {
                let overlay = overlays.get(name).expect("validation resolved every overlay");
                OverlayLayer {
                    name: name.clone(),
                    source: overlay.content.overlay_type(),
                    digest: overlay.digest.clone(),
                }
            })
            .collect();
        InstanceSpec {
            name: server.name.clone(),
            port: server.port.clone(),
            hostname: server.hostname.clone(),
            overlays: layers,
            arguments: blueprint.arguments.clone(),
            config: blueprint.config.clone(),
        }
    }

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
}

/// A content digest, written `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hashes a sequence of length-prefixed fields, so that no two different sequences hash alike.
pub(crate) struct Hasher(Sha256);

impl Hasher {
    pub(crate) fn new(domain: &str) -> Self {
        let mut hasher = Hasher(Sha256::new());
        hasher.field(domain.as_bytes());
        hasher
    }

    pub(crate) fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> Digest {
        let bytes = self.0.finalize();
        let mut text = String::with_capacity(7 + 64);
        text.push_str("sha256:");
        for byte in bytes {
            text.push_str(&format!("{byte:02x}"));
        }
        Digest(text)
    }
}

/// The digest of what an overlay puts in a server's tree.
pub(crate) fn overlay_digest(content: &OverlayContent) -> Digest {
    let mut hasher = Hasher::new("overlay");
    hasher.field(content.overlay_type().to_string().as_bytes());
    match content {
        OverlayContent::Files(files) => {
            for file in files {
                hasher.field(file.path.as_bytes());
                match &file.kind {
                    FileKind::Regular { data, executable } => {
                        hasher.field(if *executable { b"executable" } else { b"file" });
                        hasher.field(data);
                    }
                    FileKind::Symlink { target } => {
                        hasher.field(b"symlink");
                        hasher.field(target.as_bytes());
                    }
                }
            }
        }
        OverlayContent::Script { build } => hasher.field(build),
        OverlayContent::Workshop(items) => {
            for item in items {
                hasher.field(&item.get().to_le_bytes());
            }
        }
    }
    hasher.finish()
}
