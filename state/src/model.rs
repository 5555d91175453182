//! The resource documents of the state repo, exactly as they are written in YAML.
//!
//! Every field is checked while it is read: a value that deserializes is valid on its own.
//! Rules that need more than one value (a server's blueprint exists, ports do not clash) are checked
//! by validation, which turns these documents into the desired state.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

use crate::Name;
use crate::resources::ResourceLimits;

/// The only `apiVersion` this release reads.
pub const API_VERSION: &str = "left4me/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "left4me/v1")]
    V1,
}

macro_rules! kind {
    ($name:ident, $variant:ident) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $variant,
        }
    };
}
kind!(SettingsKind, Settings);
kind!(BlueprintKind, Blueprint);
kind!(ServerKind, Server);
kind!(OverlayKind, Overlay);
kind!(ScheduleKind, Schedule);
kind!(AlertKind, Alert);
kind!(HostKind, Host);

/// `left4me.yaml`: settings of the host. Optional; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Settings")]
pub struct SettingsDocument {
    pub api_version: ApiVersion,
    pub kind: SettingsKind,
    #[serde(default)]
    pub spec: SettingsSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettingsSpec {
    /// The ports servers may use (default 27015 to 27115).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortRange>,
    /// The most servers the state repo may declare (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_servers: Option<u32>,
    /// A revision that would delete more than this share of the host's servers (in percent), or
    /// every server, is held until confirmed (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub prune_limit_percent: Option<u8>,
    /// Days a finished job (with its log) and a pass's event are kept (1 to 3650, default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub job_retention_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// Which Steam build of the game the servers run, and how often Steam is asked for a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game: Option<GameSettings>,
}

/// `spec.game` of `left4me.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GameSettings {
    /// The Steam branch followed (default public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
    /// `latest` follows the branch; a build id pins that build (default latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<GameBuild>,
    /// How often Steam is asked for the branch's build, as `30m`, `1h`, `1d` (5 minutes to 7
    /// days; default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_every: Option<Interval>,
}

/// `spec.game` of a blueprint: a build of its own, held while others follow the branch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlueprintGame {
    /// `latest` or a build id; default: the one of left4me.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<GameBuild>,
}

/// Which build of the game: the branch's newest, or one build pinned by its Steam build id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GameBuild {
    Latest,
    Pinned(u64),
}

impl fmt::Display for GameBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GameBuild::Latest => f.write_str("latest"),
            GameBuild::Pinned(build) => build.fmt(f),
        }
    }
}

impl Serialize for GameBuild {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GameBuild::Latest => serializer.serialize_str("latest"),
            GameBuild::Pinned(build) => serializer.serialize_u64(*build),
        }
    }
}

impl<'de> Deserialize<'de> for GameBuild {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = GameBuild;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("latest or a Steam build id")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<GameBuild, E> {
                match value {
                    "latest" => Ok(GameBuild::Latest),
                    other => match other.parse::<u64>() {
                        Ok(build) => self.visit_u64(build),
                        Err(_) => Err(E::custom(format!(
                            "build {other:?} is neither latest nor a Steam build id (a number such as 16754208)"
                        ))),
                    },
                }
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<GameBuild, E> {
                match value {
                    0 => Err(E::custom("build 0 is no Steam build id; pin a build by its number, or write latest")),
                    build => Ok(GameBuild::Pinned(build)),
                }
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<GameBuild, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::custom(format!("build {value} is no Steam build id"))),
                }
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

impl JsonSchema for GameBuild {
    fn schema_name() -> Cow<'static, str> {
        "GameBuild".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "oneOf": [{ "const": "latest" }, { "type": "integer", "minimum": 1 }] })
    }
}

/// An inclusive range of ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub first: Port,
    pub last: Port,
}

/// Values used where a resource leaves a field out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Defaults {
    /// A server's `spec.state` when it has none (default running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PowerState>,
    /// A blueprint's `spec.rollout` when it has none (default when-empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

/// `blueprints/<name>.yaml`: how a server is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Blueprint")]
pub struct BlueprintDocument {
    pub api_version: ApiVersion,
    pub kind: BlueprintKind,
    pub metadata: Metadata,
    pub spec: BlueprintSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlueprintSpec {
    /// Overlays stacked over the base install; the first is uppermost.
    #[serde(default)]
    pub overlays: Vec<Name>,
    /// Launch arguments for srcds, one argv word per item, passed verbatim.
    #[serde(default)]
    pub arguments: Vec<Argument>,
    /// Lines of server.cfg.
    #[serde(default)]
    pub config: Vec<ConfigLine>,
    /// When a change reaches a running server (default from left4me.yaml, else when-empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// The game build its servers run, when it differs from the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game: Option<BlueprintGame>,
    /// How many backups of each of its servers are kept (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsSpec>,
    /// What systemd holds each of its servers to: CPUs, CPU weight, memory, nice.
    #[serde(default, skip_serializing_if = "ResourceLimits::is_empty")]
    pub resources: ResourceLimits,
}

/// `spec.backups` of a blueprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupsSpec {
    /// The newest this many backups of each server are kept (1 to 1000).
    #[schemars(range(min = 1, max = 1000))]
    pub keep: u32,
}

/// `servers/<name>.yaml`: one game server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Server")]
pub struct ServerDocument {
    pub api_version: ApiVersion,
    pub kind: ServerKind,
    pub metadata: Metadata,
    pub spec: ServerSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerSpec {
    /// The owner's blueprint this server is built from.
    pub blueprint: Name,
    /// The game port (UDP), also the RCON port (TCP).
    pub port: Port,
    /// Desired power state (default from left4me.yaml, else running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PowerState>,
    /// The name players see in the server browser (default: the server's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Hostname>,
    /// The host it runs on, one of `hosts/`; required when the repo declares hosts, refused when
    /// it declares none (the repo then describes one host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Name>,
}

/// `hosts/<name>.yaml`: a machine that runs servers. Kept by admins. A repo without `hosts/`
/// describes one host; with it, every server names the host it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Host")]
pub struct HostDocument {
    pub api_version: ApiVersion,
    pub kind: HostKind,
    pub metadata: OverlayMetadata,
    pub spec: HostSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostSpec {
    /// The name or IP address players connect to; the control host reaches the host's agent at
    /// it over SSH too.
    pub address: HostAddress,
    /// The ports servers on this host may use (default left4me.yaml's spec.ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortRange>,
    /// The most servers placed on this host (default left4me.yaml's spec.maxServers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_servers: Option<u32>,
    /// For people: where it is, what it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
}

/// `overlays/<name>/overlay.yaml`: a tree stacked over the base install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Overlay")]
pub struct OverlayDocument {
    pub api_version: ApiVersion,
    pub kind: OverlayKind,
    pub metadata: OverlayMetadata,
    pub spec: OverlaySpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OverlaySpec {
    /// files: the tree under files/; script: built by build.sh; workshop: Steam Workshop items;
    /// archive: release archives pinned by their SHA-256, unpacked in order.
    #[serde(rename = "type")]
    pub source: OverlayType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Steam Workshop item ids (type workshop only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<WorkshopItem>,
    /// Steam Workshop collection ids (type workshop only): the overlay holds each collection's
    /// items as Steam last listed them, beside `items`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<WorkshopItem>,
    /// The archives unpacked into the tree, in order; a later one may replace an earlier one's
    /// files (type archive only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ArchiveSource>,
}

/// One archive of an archive overlay: where it is published, the SHA-256 of the file, and where
/// in the tree its entries go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSource {
    /// An http(s) URL of a .tar.gz or .zip (at most 2 KiB).
    pub url: ArchiveUrl,
    /// The SHA-256 of the published file, as 64 lowercase hex digits.
    pub sha256: Sha256Hex,
    /// Leading path components dropped from each entry (at most 16; default 0).
    #[serde(default, skip_serializing_if = "Strip::is_zero")]
    pub strip: Strip,
    /// A relative folder of the tree the entries go under (default: the tree itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<TreePath>,
}

/// `schedules/<name>.yaml`: an action on some of the owner's servers at the times of a calendar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Schedule")]
pub struct ScheduleDocument {
    pub api_version: ApiVersion,
    pub kind: ScheduleKind,
    pub metadata: Metadata,
    pub spec: ScheduleSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// The owner's servers it acts on, by name (or `blueprint`, not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<Name>>,
    /// Every server of this blueprint of the owner's (or `servers`, not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<Name>,
    /// When: systemd's calendar syntax (`OnCalendar=`), such as `*-*-* 06:00:00` or `Mon..Fri 04:30`.
    pub at: Calendar,
    pub action: ActionName,
    /// The console command sent over RCON (action command only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<RconCommand>,
    /// empty: wait up to `within` for no human players, else skip the run; always: act at once
    /// (default always).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    /// How long `when: empty` waits, as `30m` or `2h` (10s to 24h; default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Period>,
    /// Players told (RCON `say`) before the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<WarnSpec>,
}

/// What a schedule does, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    Restart,
    Start,
    Stop,
    Backup,
    Command,
}

impl ActionName {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionName::Restart => "restart",
            ActionName::Start => "start",
            ActionName::Stop => "stop",
            ActionName::Backup => "backup",
            ActionName::Command => "command",
        }
    }
}

/// `spec.warn` of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarnSpec {
    /// How long before the action each warning is said, as `10m`, `1m`, `30s` (at most 8, each
    /// at most 1h).
    pub before: Vec<Period>,
    /// The text said; `{minutes}` is replaced by the minutes left.
    pub message: WarnText,
}

/// `alerts/<name>.yaml`: where notices of some kinds are delivered. Kept by admins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Alert")]
pub struct AlertDocument {
    pub api_version: ApiVersion,
    pub kind: AlertKind,
    pub metadata: OverlayMetadata,
    pub spec: AlertSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertSpec {
    pub provider: AlertProvider,
    /// The variable of /etc/left4me/secrets.env that holds the URL; the URL is never in git.
    pub secret_ref: SecretRef,
    /// The kinds of notice delivered (at least one).
    pub events: Vec<AlertEvent>,
    /// Only notices about these servers (and those about the host); default every server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<Name>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: Name,
    /// The web user who owns this resource.
    pub owner: Name,
}

/// The owner a server or blueprint document declares, read exactly as validation reads
/// `metadata.owner`: through [`crate::parse_yaml`] (aliases and deep nesting refused first) and
/// as a [`Name`], so `owner: 1337` is the name "1337" here as it is there, and `owner: [a]` is the
/// same problem. Everything but `metadata.owner` is skipped, so a document with other mistakes
/// still tells its owner. `Ok(None)`: the document names no owner.
pub fn declared_owner(path: &str, data: &[u8]) -> Result<Option<Name>, crate::Diagnostic> {
    let owned: Owned = crate::yaml::parse(path, data)?;
    Ok(owned.metadata.and_then(|m| m.owner))
}

#[derive(Deserialize)]
struct Owned {
    #[serde(default)]
    metadata: Option<OwnedMetadata>,
}

#[derive(Deserialize)]
struct OwnedMetadata {
    // Not `Option<Name>` as such: that would read `owner: null` as no owner, where validation
    // reads the name "null".
    #[serde(default, deserialize_with = "some_name")]
    owner: Option<Name>,
}

fn some_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Name>, D::Error> {
    Name::deserialize(deserializer).map(Some)
}

/// Overlays are a shared catalogue kept by admins, so an owner is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverlayMetadata {
    pub name: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Name>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OverlayType {
    Files,
    Script,
    Workshop,
    Archive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    Running,
    Stopped,
}

/// When a changed blueprint reaches a server that is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Rollout {
    /// Restart at once.
    Immediate,
    /// Restart once the server reports no human players.
    WhenEmpty,
    /// Apply when the server next starts.
    NextStart,
}

impl fmt::Display for OverlayType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverlayType::Files => "files",
            OverlayType::Script => "script",
            OverlayType::Workshop => "workshop",
            OverlayType::Archive => "archive",
        })
    }
}

/// Whether a run waits for its server to have no human players.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// Wait up to `within` for no human players; the run is skipped for that server when the
    /// window passes.
    Empty,
    /// Act at once.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertProvider {
    /// A Discord webhook: `{"content": …}`.
    Discord,
    /// A Slack incoming webhook: `{"text": …}`.
    Slack,
    /// Any URL: the notice as generic JSON.
    Webhook,
    /// An ntfy topic URL: the text as the body, the title and tags as headers.
    Ntfy,
}

/// The kinds of notice an alert can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AlertEvent {
    /// A server's unit failed.
    ServerFailed,
    /// A server runs but is not healthy (no answer, a problem on the host).
    ServerDegraded,
    /// A server keeps crashing; its starts are held.
    CrashLoop,
    /// A committed revision does not validate; the last good one keeps running.
    RevisionInvalid,
    /// A job failed.
    JobFailed,
    /// Steam publishes a game build the host does not have.
    BuildAvailable,
    /// A backup could not be taken.
    BackupFailed,
    /// A schedule's run was skipped for a server (it did not empty in time, or it could not run).
    ScheduleSkipped,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 8] = [
        AlertEvent::ServerFailed,
        AlertEvent::ServerDegraded,
        AlertEvent::CrashLoop,
        AlertEvent::RevisionInvalid,
        AlertEvent::JobFailed,
        AlertEvent::BuildAvailable,
        AlertEvent::BackupFailed,
        AlertEvent::ScheduleSkipped,
    ];

    /// The kind as written in YAML, stored and delivered.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::ServerFailed => "server-failed",
            AlertEvent::ServerDegraded => "server-degraded",
            AlertEvent::CrashLoop => "crash-loop",
            AlertEvent::RevisionInvalid => "revision-invalid",
            AlertEvent::JobFailed => "job-failed",
            AlertEvent::BuildAvailable => "build-available",
            AlertEvent::BackupFailed => "backup-failed",
            AlertEvent::ScheduleSkipped => "schedule-skipped",
        }
    }

    pub fn parse(text: &str) -> Option<AlertEvent> {
        AlertEvent::ALL.into_iter().find(|event| event.as_str() == text)
    }
}

impl fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defines a newtype over a scalar whose `Deserialize` runs a check, so that a bad value is reported
/// by the YAML reader with its exact line and column.
macro_rules! checked_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty), $read:ident($convert:path), $expecting:literal, $check:path, $schema:tt) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name($inner);

        impl $name {
            pub fn new(value: $inner) -> Result<Self, String> {
                $check(&value)?;
                Ok($name(value))
            }

            pub fn get(&self) -> &$inner {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                crate::scalar::$read(deserializer, $expecting, |value| {
                    let inner: Result<$inner, String> = $convert(value);
                    $name::new(inner?)
                })
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

checked_newtype!(
    /// A TCP/UDP port a game server may bind without privileges: 1024 to 65535.
    Port(u16),
    integer(port_number),
    "a port number",
    check_port,
    { "type": "integer", "minimum": 1024, "maximum": 65535 }
);

checked_newtype!(
    /// One srcds argv word.
    Argument(String),
    string(Ok),
    "an argument",
    check_argument,
    { "type": "string", "pattern": "^[^\\n\\r\\u0000]*$" }
);

checked_newtype!(
    /// One line of server.cfg.
    ConfigLine(String),
    string(Ok),
    "a server.cfg line",
    check_config_line,
    { "type": "string", "pattern": "^[^\\n\\r\\u0000]*$" }
);

checked_newtype!(
    /// The name shown in the server browser.
    Hostname(String),
    string(Ok),
    "a hostname",
    check_hostname,
    { "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\"\\u0000-\\u001f\\u007f]+$" }
);

checked_newtype!(
    /// Where players (and the control host's `ssh`) reach a host: a DNS name or an IP address.
    /// Never begins with `-`, so it cannot be read as an option by a program it is passed to.
    HostAddress(String),
    string(Ok),
    "a host name or IP address",
    check_host_address,
    { "type": "string", "minLength": 1, "maxLength": 253, "pattern": "^[A-Za-z0-9:\\[][A-Za-z0-9.:\\]-]*$" }
);

checked_newtype!(
    /// A line for people: at most 200 bytes, no control characters.
    Description(String),
    string(Ok),
    "a description",
    check_description,
    { "type": "string", "maxLength": 200, "pattern": "^[^\\u0000-\\u001f\\u007f]*$" }
);

checked_newtype!(
    /// A Steam Workshop published file id: an item, or a collection (a collection is a published
    /// file too).
    WorkshopItem(u64),
    integer(Ok),
    "a workshop item id",
    check_workshop_item,
    { "type": "integer", "minimum": 1 }
);

checked_newtype!(
    /// A Steam branch of the game (`public`, or a beta's name).
    Branch(String),
    string(Ok),
    "a Steam branch",
    check_branch,
    { "type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$" }
);

checked_newtype!(
    /// A period written as a number and a unit: `90s`, `30m`, `1h`, `7d`; kept in seconds.
    Interval(u64),
    string(parse_interval),
    "a period such as 30m, 1h or 1d",
    check_interval,
    { "type": "string", "pattern": "^[0-9]+[smhd]$" }
);

checked_newtype!(
    /// A period written as a number and a unit (`90s`, `10m`, `2h`) of at most a day; kept in
    /// seconds. Each field that takes one has its own bounds within that.
    Period(u64),
    string(parse_interval),
    "a period such as 90s, 10m or 2h",
    check_period,
    { "type": "string", "pattern": "^[0-9]+[smhd]$" }
);

checked_newtype!(
    /// One console command sent over RCON: one line, at most 512 bytes, setting no cvar left4me
    /// owns.
    RconCommand(String),
    string(Ok),
    "a console command",
    check_rcon_command,
    { "type": "string", "minLength": 1, "maxLength": 512, "pattern": "^[^\\u0000-\\u001f\\u007f]+$" }
);

checked_newtype!(
    /// What players are told before a scheduled action, as `say "<text>"`: one line of at most 200
    /// bytes, without `"`.
    WarnText(String),
    string(Ok),
    "a message",
    check_warn_text,
    { "type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\"\\u0000-\\u001f\\u007f]+$" }
);

checked_newtype!(
    /// When a schedule fires: a systemd calendar expression (`OnCalendar=`), such as
    /// `*-*-* 06:00:00`, `Mon..Fri 04:30` or `daily`.
    Calendar(String),
    string(Ok),
    "a systemd calendar expression",
    check_calendar,
    { "type": "string", "minLength": 1, "maxLength": 256 }
);

checked_newtype!(
    /// The name of a variable of `/etc/left4me/secrets.env`: capital letters, digits and `_`.
    SecretRef(String),
    string(Ok),
    "a secret's name",
    check_secret_ref,
    { "type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$" }
);

checked_newtype!(
    /// Where an archive is downloaded from: an http or https URL of at most 2 KiB.
    ArchiveUrl(String),
    string(Ok),
    "an http(s) URL",
    check_archive_url,
    { "type": "string", "maxLength": 2048, "pattern": "^https?://[^\\s]+$" }
);

checked_newtype!(
    /// A SHA-256 written as 64 lowercase hex digits, as `sha256sum` prints it.
    Sha256Hex(String),
    string(Ok),
    "a SHA-256 in hex",
    check_sha256,
    { "type": "string", "pattern": "^[0-9a-f]{64}$" }
);

checked_newtype!(
    /// How many leading path components of each archive entry are dropped: 0 to 16 (default 0).
    #[derive(Default)]
    Strip(u8),
    integer(strip_count),
    "a number of path components",
    check_strip,
    { "type": "integer", "minimum": 0, "maximum": 16 }
);

checked_newtype!(
    /// A relative folder inside an overlay's tree: no `..`, `.` or empty component, not absolute.
    TreePath(String),
    string(Ok),
    "a relative path",
    check_tree_path,
    { "type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^[^/]" }
);

impl ArchiveUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Sha256Hex {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Strip {
    pub fn count(&self) -> usize {
        usize::from(self.0)
    }

    fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

impl TreePath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest archive URL taken: a pinned release link is far shorter.
pub const MAX_ARCHIVE_URL: usize = 2048;
/// The most leading components `strip` drops.
pub const MAX_STRIP: u8 = 16;

fn check_archive_url(value: &str) -> Result<(), String> {
    if value.len() > MAX_ARCHIVE_URL {
        return Err(format!("url has {} bytes; at most {MAX_ARCHIVE_URL} are taken", value.len()));
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(format!("url {value:?} is not a URL; write https://host/path"));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("url {value:?} is not http or https; archives are downloaded over http(s) only"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("url {value:?} names no host"));
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("url {value:?} holds {c:?}; percent-encode it"));
    }
    Ok(())
}

fn check_sha256(value: &str) -> Result<(), String> {
    if value.len() == 64 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!("sha256 {value:?} is not 64 lowercase hex digits (as sha256sum prints it)"))
    }
}

fn strip_count(value: u64) -> Result<u8, String> {
    u8::try_from(value).map_err(|_| format!("strip {value} is more than {MAX_STRIP} path components"))
}

fn check_strip(value: &u8) -> Result<(), String> {
    if *value > MAX_STRIP {
        return Err(format!("strip {value} is more than {MAX_STRIP} path components"));
    }
    Ok(())
}

fn check_tree_path(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("into is empty; leave it out to unpack into the overlay's tree itself".into());
    }
    if value.len() > 1024 {
        return Err(format!("into has {} bytes; at most 1024 are taken", value.len()));
    }
    if value.starts_with('/') {
        return Err(format!("into {value:?} is absolute; write a path relative to the overlay's tree"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!("into {value:?} holds {c:?}"));
    }
    for component in value.split('/') {
        match component {
            "" => return Err(format!("into {value:?} has an empty component")),
            "." | ".." => {
                return Err(format!(
                    "into {value:?} has a {component:?} component; it must name folders inside the tree"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

impl Period {
    /// The longest period any field takes.
    pub const MAX_SECONDS: u64 = 86_400;

    pub fn seconds(&self) -> u64 {
        self.0
    }
}

impl RconCommand {
    /// The longest command taken.
    pub const MAX_BYTES: usize = 512;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl WarnText {
    pub const MAX_BYTES: usize = 200;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_period(seconds: &u64) -> Result<(), String> {
    match *seconds {
        0 => Err("a period of 0 is no time at all; write 30s, 10m or 1h".into()),
        s if s > Period::MAX_SECONDS => Err(format!("{s} s is more than a day, the longest period taken here")),
        _ => Ok(()),
    }
}

/// One line of text for the game's console: not empty, no control character, at most `max` bytes.
fn check_console_text(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if value.len() > max {
        return Err(format!("the {what} has {} bytes; at most {max} are taken", value.len()));
    }
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("the {what} holds {c:?}; it must be one line of text")),
        None => Ok(()),
    }
}

fn check_rcon_command(value: &str) -> Result<(), String> {
    check_console_text("command", value, RconCommand::MAX_BYTES)?;
    // The same rules as server.cfg: a command setting rcon_password would lock left4me out.
    check_console_line(value, 0).map_err(|why| why.replacen("config line", "command", 1))
}

fn check_warn_text(value: &str) -> Result<(), String> {
    check_console_text("message", value, WarnText::MAX_BYTES)?;
    if value.contains('"') {
        return Err("the message holds \", which would end the text said; leave it out".into());
    }
    Ok(())
}

impl Calendar {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl SecretRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_calendar(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("the calendar expression is empty; write one such as \"*-*-* 06:00:00\" or daily".into());
    }
    if value.len() > crate::calendar::MAX_LEN {
        return Err(format!(
            "the calendar expression has {} bytes; at most {} are taken",
            value.len(),
            crate::calendar::MAX_LEN
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("the calendar expression holds {c:?}"));
    }
    crate::calendar::check(value).map_err(|why| format!("calendar expression {value:?}: {why}"))
}

impl HostAddress {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Description {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A DNS name (labels of letters, digits and `-`, none starting or ending with `-`), an IPv4
/// address, or an IPv6 address (bare or in brackets).
fn check_host_address(value: &str) -> Result<(), String> {
    let bare = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let name = value.strip_suffix('.').unwrap_or(value);
    if value.len() <= 253 && !name.is_empty() && name.split('.').all(label_ok) {
        return Ok(());
    }
    Err(format!(
        "{value:?} is not a host name or IP address: write a DNS name such as game1.example.org, \
         or an address such as 203.0.113.7"
    ))
}

fn check_description(value: &str) -> Result<(), String> {
    if value.len() > 200 {
        return Err(format!("the description has {} bytes; at most 200 are taken", value.len()));
    }
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("the description holds {c:?}; keep it to one line")),
        None => Ok(()),
    }
}

fn check_secret_ref(value: &str) -> Result<(), String> {
    let mut bytes = value.bytes();
    let fine = value.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if fine {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a secret's name: capital letters, digits and _, starting with a letter (as OPS_WEBHOOK)"
        ))
    }
}

impl Branch {
    /// The branch every Steam app has.
    pub fn public() -> Branch {
        Branch("public".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Interval {
    /// How often Steam is asked for a new build when `checkEvery` is not set.
    pub const HOURLY: Interval = Interval(3600);
    /// Asking Steam more often than this helps no one and risks being throttled.
    pub const MIN_SECONDS: u64 = 300;
    pub const MAX_SECONDS: u64 = 7 * 86_400;

    pub fn seconds(&self) -> u64 {
        self.0
    }
}

fn check_branch(value: &str) -> Result<(), String> {
    let fine = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if fine {
        Ok(())
    } else {
        Err(format!("{value:?} is not a Steam branch name (letters, digits, _ . -; at most 64)"))
    }
}

fn parse_interval(text: String) -> Result<u64, String> {
    let unit = text.chars().last().and_then(|unit| match unit {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        _ => None,
    });
    let number = text.get(..text.len().saturating_sub(1)).and_then(|n| n.parse::<u64>().ok());
    match (number, unit) {
        (Some(number), Some(unit)) => {
            number.checked_mul(unit).ok_or_else(|| format!("{text:?} is longer than any period left4me takes"))
        }
        _ => Err(format!("{text:?} is not a period; write a number and a unit: 90s, 30m, 1h, 1d")),
    }
}

fn check_interval(seconds: &u64) -> Result<(), String> {
    if (Interval::MIN_SECONDS..=Interval::MAX_SECONDS).contains(seconds) {
        Ok(())
    } else {
        Err(format!("every {seconds} s is outside 5m to 7d; Steam is asked at most every 5 minutes"))
    }
}

impl Port {
    pub fn number(&self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Hostname {
    /// A server without a hostname shows its name, which is always a valid hostname.
    pub fn from_name(name: &Name) -> Self {
        Hostname(name.as_str().to_owned())
    }
}

/// Arguments that left4me sets itself from the server's spec; a blueprint setting them would make
/// the rendered spec lie about what runs.
const RESERVED_ARGUMENTS: &[(&str, &str)] = &[
    ("+hostport", "left4me sets it from the server's spec.port"),
    ("-port", "left4me sets it from the server's spec.port"),
    ("+ip", "left4me binds the server itself"),
    ("-game", "left4me always runs left4dead2"),
    ("+hostname", "set spec.hostname on the server instead"),
    ("+rcon_password", "left4me generates one per server and keeps it out of git"),
    ("+sv_logsecret", "left4me generates one per server and keeps it out of git"),
    ("+log", "left4me sends the game's log to `left4me live`, which shows who is on and the chat"),
    ("+sv_logfile", "left4me keeps the game's log off its disk and sends it to `left4me live`"),
    ("+logaddress_add", "left4me sends the game's log to `left4me live` on this host, and nowhere else"),
    ("+logaddress_del", "left4me sends the game's log to `left4me live` on this host, and nowhere else"),
    ("+logaddress_delall", "left4me sends the game's log to `left4me live` on this host, and nowhere else"),
];

/// server.cfg settings left4me owns.
const RESERVED_CVARS: &[(&str, &str)] = &[
    ("rcon_password", "left4me generates one per server and keeps it out of git"),
    ("hostport", "left4me sets it from the server's spec.port"),
    ("hostname", "set spec.hostname on the server instead"),
    ("log", "left4me sends the game's log to `left4me live`, which shows who is on and the chat"),
    ("sv_logsecret", "left4me generates one per server: it tells the server's log packets from forged ones"),
    ("sv_logfile", "left4me keeps the game's log off its disk and sends it to `left4me live`"),
    ("logaddress_add", "left4me sends the game's log to `left4me live` on this host, and nowhere else"),
    ("logaddress_del", "left4me sends the game's log to `left4me live` on this host, and nowhere else"),
    ("logaddress_delall", "left4me sends the game's log to `left4me live` on this host, and nowhere else"),
];

fn port_number(value: u64) -> Result<u16, String> {
    u16::try_from(value).map_err(|_| format!("{value} is not a port number; use a port from 1024 to 65535"))
}

fn check_port(port: &u16) -> Result<(), String> {
    if *port < 1024 {
        return Err(format!("port {port} is privileged; use a port from 1024 to 65535"));
    }
    Ok(())
}

fn check_line(what: &str, value: &str) -> Result<(), String> {
    let bad = |c: char| match c {
        '\n' => Some("a line break"),
        '\r' => Some("a carriage return"),
        '\0' => Some("a NUL character"),
        _ => None,
    };
    match value.chars().find_map(bad) {
        Some(found) => Err(format!("{what} {value:?} holds {found}")),
        None => Ok(()),
    }
}

fn check_argument(value: &str) -> Result<(), String> {
    check_line("argument", value)?;
    let word = value.to_ascii_lowercase();
    match RESERVED_ARGUMENTS.iter().find(|(reserved, _)| *reserved == word) {
        Some((reserved, why)) => Err(format!("argument {reserved} is not allowed: {why}")),
        None => Ok(()),
    }
}

/// Commands that set the cvar their first argument names, as `hostname x` would.
const CVAR_SETTERS: &[&str] = &["toggle", "incrementvar", "multvar", "sm_cvar"];

/// Aliases inside aliases deeper than this are refused rather than followed.
const MAX_ALIAS_DEPTH: usize = 8;

fn check_config_line(value: &str) -> Result<(), String> {
    check_line("config line", value)?;
    check_console_line(value, 0)
}

/// Refuses a console line that would set a reserved cvar: as a command of its own, through a
/// command that sets the cvar it names, or in the body of an alias it defines. An alias body is
/// itself a console line (the engine runs it as typed), so it is read again the same way.
fn check_console_line(line: &str, depth: usize) -> Result<(), String> {
    for command in console_commands(line) {
        let Some(name) = command.first().map(|n| n.to_ascii_lowercase()) else { continue };
        let target = if CVAR_SETTERS.contains(&name.as_str()) {
            command.get(1).map(|t| t.to_ascii_lowercase())
        } else {
            Some(name.clone())
        };
        if let Some(target) = target
            && let Some((reserved, why)) = RESERVED_CVARS.iter().find(|(reserved, _)| *reserved == target)
        {
            return Err(if target == name {
                format!("config line setting {reserved} is not allowed: {why}")
            } else {
                format!("config line setting {reserved} (with {name}) is not allowed: {why}")
            });
        }
        if name == "alias" && command.len() > 2 {
            if depth >= MAX_ALIAS_DEPTH {
                return Err(format!(
                    "config line nests aliases more than {MAX_ALIAS_DEPTH} deep; write the commands out"
                ));
            }
            // The engine keeps the words after the alias's name, joined by spaces, and runs them
            // as a console line whenever the alias is used.
            let body = command[2..].join(" ");
            check_console_line(&body, depth + 1)
                .map_err(|why| format!("config line defines alias {} whose commands are refused: {why}", command[1]))?;
        }
    }
    Ok(())
}

/// The commands of a console line as the Source engine reads it, each as its words: commands
/// split at `;` outside quotes, `//` outside quotes starting a comment, then each command
/// tokenized as the engine's `CCommand` does (a quoted string is one word without its quotes;
/// each of `{}()':` is a word of its own and ends the word before it).
fn console_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            ';' if !in_quotes => commands.push(std::mem::take(&mut current)),
            '/' if !in_quotes && chars.peek() == Some(&'/') => break,
            _ => current.push(c),
        }
    }
    commands.push(current);
    commands.iter().map(|command| console_words(command)).filter(|words| !words.is_empty()).collect()
}

fn console_words(command: &str) -> Vec<String> {
    const BREAKS: &str = "{}()':";
    let mut words = Vec::new();
    let mut chars = command.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c.is_control() {
            chars.next();
        } else if c == '"' {
            chars.next();
            words.push(chars.by_ref().take_while(|c| *c != '"').collect());
        } else if BREAKS.contains(c) {
            chars.next();
            words.push(c.to_string());
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c.is_control() || c == '"' || BREAKS.contains(c) {
                    break;
                }
                word.push(c);
                chars.next();
            }
            words.push(word);
        }
    }
    words
}

fn check_hostname(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("hostname cannot be empty".into());
    }
    let count = value.chars().count();
    if count > 64 {
        return Err(format!("hostname has {count} characters; at most 64 are shown"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() || *c == '"') {
        return Err(format!("hostname {value:?} holds {c:?}, which server.cfg cannot carry"));
    }
    Ok(())
}

fn check_workshop_item(value: &u64) -> Result<(), String> {
    if *value == 0 {
        return Err("workshop id 0 does not exist (ids start at 1)".into());
    }
    Ok(())
}

/// Any document of the state repo; the JSON Schema's root, so an editor checks every file with one
/// schema.
#[derive(JsonSchema)]
#[serde(untagged)]
#[schemars(title = "left4me resource", description = "A document of a left4me state repo")]
#[allow(dead_code)] // Only its schema is used.
enum AnyDocument {
    Settings(SettingsDocument),
    Blueprint(BlueprintDocument),
    Server(ServerDocument),
    Overlay(OverlayDocument),
    Schedule(ScheduleDocument),
    Alert(AlertDocument),
}

/// The JSON Schema of every document, as `left4me schema` prints it.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(AnyDocument);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logs_arguments_are_left4mes() {
        for argument in ["+sv_logsecret", "+LOGADDRESS_ADD", "+logaddress_delall", "+log", "+sv_logfile"] {
            assert!(check_argument(argument).is_err(), "{argument} passed");
        }
        for argument in ["+map", "+sv_logbans", "203.0.113.9:27500", "on"] {
            assert_eq!(check_argument(argument), Ok(()), "{argument}");
        }
    }

    #[test]
    fn reserved_cvars_are_found_wherever_the_engine_would_run_them() {
        for line in [
            "rcon_password hunter2",
            "sv_consistency 0; rcon_password hunter2",
            "\"rcon_password\" \"hunter2\"",
            "\"hostname\" \"evil\"",
            "echo hi;hostport 27099",
            "  RCON_PASSWORD x",
            "rcon_password'x'",
            "hostname(evil)",
            "alias x \"rcon_password hunter2\"; x",
            "alias x rcon_password hunter2",
            "alias x \"echo hi;hostport 27099\"",
            "alias a \"alias b hostname\"",
            "alias a alias b alias c hostname evil",
            "ALIAS x \"HOSTNAME evil\"",
            "toggle hostname a b",
            "incrementvar hostport 27000 28000 1",
            "sm_cvar rcon_password x",
            "sm_cvar \"hostname\" evil",
            "log off",
            "sv_logsecret 1234",
            "logaddress_add 203.0.113.9:27500",
            "LOGADDRESS_DELALL",
            "alias quiet \"logaddress_del 127.0.0.1:27500\"",
            "sm_cvar sv_logfile 1",
        ] {
            assert!(check_config_line(line).is_err(), "{line:?} passed");
        }
        for line in [
            "sv_consistency 0",
            "say \"set rcon_password; hostname\"",
            "sm_cvar l4d_ready_cfg_name \"rcon_password\"",
            "exec server_tickrate.cfg // sets hostname too",
            "",
            "alias warmup \"sv_cheats 0; mp_restartgame 1\"",
            "alias say_rules say \"no hostname talk\"",
            "toggle sv_cheats",
            "echo \"alias x rcon_password\"",
            "sv_logbans 1",
            "say \"log on\"",
        ] {
            assert_eq!(check_config_line(line), Ok(()), "{line:?}");
        }
    }
}
