//! The desired state of a host: a whole revision that passed validation.

use std::collections::BTreeMap;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::digest::{Digest, Hasher};
use crate::model::{
    ArchiveSource, Argument, Branch, ConfigLine, GameBuild, HostAddress, Hostname, Interval, OverlayType, Port,
    PortRange, PowerState, Rollout, WorkshopItem,
};
use crate::name::Name;
use crate::operations::{Alert, Backups, Schedule, ScheduleServers};
use crate::render::{InstanceSpec, OverlayLayer};
use crate::resources::ResourceLimits;

/// Everything one valid revision asks of the host. Built only by validation, so every rule of the
/// state repo holds for it: references resolve, ports are unique and in range.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredState {
    pub settings: Settings,
    /// The hosts servers are placed on (`hosts/`); empty when the repo describes one host.
    pub hosts: BTreeMap<Name, Host>,
    /// After [`DesiredState::placed_on`]: the revision's servers placed on other hosts, with
    /// their host — a server here that is one of them is moving away, not deleted.
    pub elsewhere: BTreeMap<Name, Name>,
    pub blueprints: BTreeMap<Name, Blueprint>,
    pub servers: BTreeMap<Name, Server>,
    pub overlays: BTreeMap<Name, Overlay>,
    pub schedules: BTreeMap<Name, Schedule>,
    pub alerts: BTreeMap<Name, Alert>,
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
    pub game: Game,
}

/// The game build the host follows (`spec.game` of left4me.yaml, defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Game {
    pub branch: Branch,
    pub build: GameBuild,
    pub check_every: Interval,
}

impl Default for Game {
    fn default() -> Game {
        Game { branch: Branch::public(), build: GameBuild::Latest, check_every: Interval::HOURLY }
    }
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
    /// The build its servers run: its own `spec.game.build`, else the host's.
    pub build: GameBuild,
    /// How many backups of each of its servers are kept (`spec.backups`).
    pub backups: Backups,
    /// What systemd holds each of its servers to (`spec.resources`), part of their render.
    pub resources: ResourceLimits,
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
    /// The declared host it runs on; `None` in a repo that describes one host.
    pub host: Option<Name>,
    pub file: String,
    /// Rendered by validation, the one place that knows its blueprint and overlays resolve; private,
    /// so that a server exists only with the spec it renders to.
    pub(crate) spec: InstanceSpec,
}

/// A declared host (`hosts/<name>.yaml`), its defaults filled in from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: Name,
    pub address: HostAddress,
    pub ports: PortRange,
    pub max_servers: u32,
    pub description: Option<String>,
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
    Script { build: Vec<u8> },
    /// Steam Workshop items, and collections whose items the host learns from Steam.
    Workshop { items: Vec<WorkshopItem>, collections: Vec<WorkshopItem> },
    /// Archives pinned by their SHA-256, unpacked in this order.
    Archive(Vec<ArchiveSource>),
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

impl Server {
    /// The instance this server renders to.
    pub fn spec(&self) -> &InstanceSpec {
        &self.spec
    }
}

impl Overlay {
    /// The overlay as a layer of an instance, pinned to its content.
    pub fn layer(&self) -> OverlayLayer {
        OverlayLayer { name: self.name.clone(), source: self.content.overlay_type(), digest: self.digest.clone() }
    }
}

impl OverlayContent {
    pub fn overlay_type(&self) -> OverlayType {
        match self {
            OverlayContent::Files(_) => OverlayType::Files,
            OverlayContent::Script { .. } => OverlayType::Script,
            OverlayContent::Workshop { .. } => OverlayType::Workshop,
            OverlayContent::Archive(_) => OverlayType::Archive,
        }
    }

    /// The digest of what the overlay puts in a server's tree.
    pub(crate) fn digest(&self) -> Digest {
        let mut hasher = Hasher::new("overlay");
        hasher.field(self.overlay_type().to_string().as_bytes());
        match self {
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
            OverlayContent::Workshop { items, collections } => {
                for item in items {
                    hasher.field(&item.get().to_le_bytes());
                }
                // Its own field of another length than an id's: an overlay without collections
                // keeps the digest it always had, and no list of items reads as one with them.
                if !collections.is_empty() {
                    hasher.field(b"collections");
                }
                for collection in collections {
                    hasher.field(&collection.get().to_le_bytes());
                }
            }
            OverlayContent::Archive(sources) => {
                for source in sources {
                    hasher.field(source.url.as_str().as_bytes());
                    hasher.field(source.sha256.as_str().as_bytes());
                    hasher.field(&[*source.strip.get()]);
                    hasher.field(source.into.as_ref().map_or("", |into| into.as_str()).as_bytes());
                }
            }
        }
        hasher.finish()
    }
}

/// Why a valid revision says nothing this host may act on: which host this is and which hosts
/// the revision declares disagree. Acting anyway could start another host's servers here, or
/// stop every server of this one, so a pass does nothing and says this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "this revision places servers on hosts ({known}) and this host has no name; set LEFT4ME_HOST in \
         /etc/left4me/host.env to the one it is"
    )]
    Unnamed { known: String },
    #[error(
        "this host is {host} (LEFT4ME_HOST), which the revision's hosts/ does not declare (it declares {known}); \
         its servers are left as they are until hosts/{host}.yaml is declared again"
    )]
    Undeclared { host: Name, known: String },
    #[error(
        "this host is {host} (LEFT4ME_HOST), but the revision declares no hosts/, so it describes one host \
         without saying it is this one; declare hosts/{host}.yaml and place servers on it, or leave \
         LEFT4ME_HOST out of /etc/left4me/host.env"
    )]
    NoHosts { host: Name },
}

/// A checked revision as it concerns one host ([`DesiredState::placed_on`]). A revision whose
/// hosts do not include this one reads as a problem of `hosts/`: like an invalid revision, it
/// changes nothing on the host and says why.
pub fn placed(checked: Result<DesiredState, Diagnostics>, host: Option<&Name>) -> Result<DesiredState, Diagnostics> {
    checked.and_then(|desired| {
        desired.placed_on(host).map_err(|mismatch| {
            let mut problems = Diagnostics::default();
            problems.push(Diagnostic::file("hosts/", mismatch.to_string()));
            problems
        })
    })
}

impl DesiredState {
    /// What the revision asks of one host: `host` is its name (`LEFT4ME_HOST`), `None` for a
    /// host without one. A repo without `hosts/` is all for an unnamed host; a repo with them
    /// gives a named host the servers placed on it, its own ports and limit, and the schedules
    /// acting on any of those. Blueprints, overlays and alerts are shared (an overlay is built
    /// only where a server stacks it, as always).
    pub fn placed_on(mut self, host: Option<&Name>) -> Result<DesiredState, PlacementError> {
        let known = || self.hosts.keys().map(Name::as_str).collect::<Vec<_>>().join(", ");
        let declared = match (host, self.hosts.is_empty()) {
            (None, true) => return Ok(self),
            (Some(host), true) => return Err(PlacementError::NoHosts { host: host.clone() }),
            (None, false) => return Err(PlacementError::Unnamed { known: known() }),
            (Some(host), false) => match self.hosts.get(host) {
                Some(declared) => declared.clone(),
                None => return Err(PlacementError::Undeclared { host: host.clone(), known: known() }),
            },
        };
        let (here, elsewhere) = std::mem::take(&mut self.servers)
            .into_iter()
            .partition(|(_, server)| server.host.as_ref() == Some(&declared.name));
        self.servers = here;
        self.elsewhere =
            elsewhere.into_iter().filter_map(|(name, server): (Name, Server)| Some((name, server.host?))).collect();
        self.settings.ports = declared.ports;
        self.settings.max_servers = declared.max_servers;
        let schedules = std::mem::take(&mut self.schedules);
        self.schedules =
            schedules.into_iter().filter(|(_, schedule)| !self.schedule_servers(schedule).is_empty()).collect();
        Ok(self)
    }

    /// The rendered instance of the server of that name, if the revision declares one. A caller
    /// that holds the [`Server`] reads [`Server::spec`] instead.
    pub fn instance_spec(&self, server: &Name) -> Option<InstanceSpec> {
        self.servers.get(server).map(|server| server.spec.clone())
    }

    /// The game build a declared server is to run: its blueprint's, which is the host's unless
    /// the blueprint pins one of its own.
    pub fn game_build(&self, server: &Server) -> GameBuild {
        self.blueprints.get(&server.blueprint).map_or(self.settings.game.build, |blueprint| blueprint.build)
    }

    /// The revision with some overlays pinned to other digests, each server's spec with them: for
    /// an overlay whose tree the host learns more of than the revision says (a workshop item's
    /// version), so every server stacking it renders anew when that changes. Names that are no
    /// overlay of the revision are ignored.
    pub fn with_overlay_digests(mut self, digests: &BTreeMap<Name, Digest>) -> DesiredState {
        for (name, digest) in digests {
            if let Some(overlay) = self.overlays.get_mut(name) {
                overlay.digest = digest.clone();
            }
        }
        for server in self.servers.values_mut() {
            for layer in &mut server.spec.overlays {
                if let Some(digest) = digests.get(&layer.name) {
                    layer.digest = digest.clone();
                }
            }
        }
        self
    }

    /// The servers a schedule acts on, as this revision declares them, in name order.
    pub fn schedule_servers(&self, schedule: &Schedule) -> Vec<&Server> {
        match &schedule.servers {
            ScheduleServers::Named(names) => {
                let mut servers: Vec<&Server> = names.iter().filter_map(|name| self.servers.get(name)).collect();
                servers.sort_by(|a, b| a.name.cmp(&b.name));
                servers.dedup_by(|a, b| a.name == b.name);
                servers
            }
            ScheduleServers::Blueprint(blueprint) => {
                self.servers.values().filter(|server| &server.blueprint == blueprint).collect()
            }
        }
    }

    /// How many backups of a declared server are kept: its blueprint's `spec.backups.keep`.
    pub fn backups_keep(&self, server: &Server) -> u32 {
        self.blueprints.get(&server.blueprint).map_or(Backups::DEFAULT_KEEP, |blueprint| blueprint.backups.keep)
    }

    /// Every build a blueprint or the host pins.
    pub fn pinned_builds(&self) -> std::collections::BTreeSet<u64> {
        let pinned = |build: &GameBuild| match build {
            GameBuild::Pinned(build) => Some(*build),
            GameBuild::Latest => None,
        };
        let host = pinned(&self.settings.game.build);
        self.blueprints.values().filter_map(|b| pinned(&b.build)).chain(host).collect()
    }
}
