//! The desired state of a host: a whole revision that passed validation.

use std::collections::BTreeMap;

use crate::Name;
use crate::model::{Argument, ConfigLine, Hostname, OverlayType, Port, PortRange, PowerState, Rollout, WorkshopItem};
use crate::render::{Digest, InstanceSpec};

/// Everything one valid revision asks of the host. Built only by [`crate::validate`], so every rule
/// of the state repo holds for it: references resolve, ports are unique and in range.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredState {
    pub settings: Settings,
    pub blueprints: BTreeMap<Name, Blueprint>,
    pub servers: BTreeMap<Name, Server>,
    pub overlays: BTreeMap<Name, Overlay>,
}

/// Host settings with their defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub ports: PortRange,
    pub max_servers: u32,
    /// Deleting more than this percentage of the servers (or all of them) waits for confirmation.
    pub prune_limit_percent: u8,
    /// Finished jobs and events older than this many days are removed.
    pub job_retention_days: u32,
    pub default_state: PowerState,
    pub default_rollout: Rollout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blueprint {
    pub name: Name,
    pub owner: Name,
    /// First = uppermost.
    pub overlays: Vec<Name>,
    pub arguments: Vec<Argument>,
    pub config: Vec<ConfigLine>,
    pub rollout: Rollout,
    /// The file it was read from, relative to the repo.
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: Name,
    pub owner: Name,
    pub blueprint: Name,
    pub port: Port,
    pub state: PowerState,
    pub hostname: Hostname,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub name: Name,
    pub owner: Option<Name>,
    pub description: Option<String>,
    pub content: OverlayContent,
    /// Covers everything that shapes the tree the overlay produces, so a server is re-rendered
    /// when one of its overlays changes.
    pub digest: Digest,
    /// Its overlay.yaml, relative to the repo.
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayContent {
    /// The tree under `files/`, sorted by path.
    Files(Vec<OverlayFile>),
    /// The bytes of `build.sh`.
    Script {
        build: Vec<u8>,
    },
    Workshop(Vec<WorkshopItem>),
}

/// A file of a `files` overlay, by its path under `files/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayFile {
    pub path: String,
    pub kind: FileKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    Regular { data: Vec<u8>, executable: bool },
    Symlink { target: String },
}

impl OverlayContent {
    pub fn overlay_type(&self) -> OverlayType {
        match self {
            OverlayContent::Files(_) => OverlayType::Files,
            OverlayContent::Script { .. } => OverlayType::Script,
            OverlayContent::Workshop(_) => OverlayType::Workshop,
        }
    }
}

impl DesiredState {
    /// The rendered instance of a declared server.
    pub fn instance_spec(&self, server: &Name) -> Option<InstanceSpec> {
        let server = self.servers.get(server)?;
        let blueprint = self.blueprints.get(&server.blueprint).expect("validation resolved every blueprint");
        Some(InstanceSpec::render(server, blueprint, &self.overlays))
    }
}
