//! The host boundary of left4me: every type another program reads from `l4d2ctl` or hands to it.
//!
//! What `l4d2ctl observe` and `status --json` print is serialized from [`Observation`] and
//! [`InstanceStatus`]; what a write prints under `--json` is a stream of [`Message`]s; what the
//! reconciler and the web run is a [`Command`]. Nothing here does I/O: these are the words both
//! sides of the boundary share, defined once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use left4me_state::{Digest, Name};
use serde::{Deserialize, Serialize};

mod command;

pub use command::Command;

/// Every instance's status, the overlays with their digests, and what else a pass may have to put
/// right: what the reconciler observes, in one call (`l4d2ctl observe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub instances: Vec<InstanceStatus>,
    pub overlays: Vec<MaterialisedOverlay>,
    /// Markers of servers with no instance: made or deleted by hand.
    pub overrides: Vec<OrphanOverride>,
    /// The game's unit files where they differ from what l4d2ctl renders, or are missing.
    #[serde(default)]
    pub units: Vec<Problem>,
    /// Units of servers with no instance that systemd still holds running, failed or enabled:
    /// a deletion cut short (a power cut), an instance removed by hand.
    #[serde(default)]
    pub leftover_units: Vec<LeftoverUnit>,
    /// Files of the host apart from any one server that cannot be used (an overlay's digest).
    #[serde(default)]
    pub problems: Vec<Problem>,
    /// The game builds on the host and what Steam last said of the branch.
    #[serde(default)]
    pub game: Game,
    /// What Steam last said of workshop items and collections (`l4d2ctl workshop check`).
    #[serde(default)]
    pub workshop: WorkshopDetails,
    /// The schedules' timers installed (`l4d2ctl schedules put`), read back from their files.
    #[serde(default)]
    pub schedules: Vec<InstalledTimer>,
}

/// A schedule's timer as `l4d2ctl schedules put` is asked for it: `left4me-schedule@<name>.timer`
/// firing at `calendar` (systemd's `OnCalendar=`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTimer {
    pub name: Name,
    pub calendar: String,
}

/// A schedule's timer as the host has it, read from its unit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledTimer {
    pub name: Name,
    /// Its `OnCalendar=`; None when the file is not what l4d2ctl writes (changed by hand, cut
    /// short), so that a pass writes it again.
    pub calendar: Option<String>,
    /// Linked into `timers.target` (`systemctl enable`), so it runs after a reboot.
    pub enabled: bool,
}

/// The most workshop items one check, one answer or one overlay may hold, collections expanded.
pub const MAX_WORKSHOP_ITEMS: usize = 1000;

/// What Steam said of workshop items and collections at the last `l4d2ctl workshop check`
/// (`$ROOT/workshop/details.json`). Ids are Steam's published file ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkshopDetails {
    /// Each item checked, and collections' items.
    #[serde(default)]
    pub items: BTreeMap<u64, WorkshopItemDetails>,
    /// Each collection checked and the items it holds, in its order (collections in it expanded).
    #[serde(default)]
    pub collections: BTreeMap<u64, Vec<u64>>,
    /// When the last check was made (RFC 3339, UTC); None before any.
    #[serde(default)]
    pub checked_at: Option<String>,
}

/// One workshop item as Steam described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkshopItemDetails {
    /// When its file last changed upstream (Unix seconds): the version an overlay is fetched at.
    pub time_updated: u64,
    #[serde(default)]
    pub title: String,
}

/// A workshop item an overlay is fetched with, and the version it must have (`--item <id>` or
/// `--item <id>@<time_updated>`); without one, whatever the cache holds will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FetchItem {
    pub id: u64,
    pub time_updated: Option<u64>,
}

impl fmt::Display for FetchItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.time_updated {
            Some(time) => write!(f, "{}@{time}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

impl std::str::FromStr for FetchItem {
    type Err = String;

    fn from_str(text: &str) -> Result<FetchItem, String> {
        let number = |part: &str, what: &str| {
            part.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("{text:?}: {what} {part:?} is not a number above 0 (write <id> or <id>@<time_updated>)")
            })
        };
        match text.split_once('@') {
            Some((id, time)) => {
                Ok(FetchItem { id: number(id, "the item id")?, time_updated: Some(number(time, "the version")?) })
            }
            None => Ok(FetchItem { id: number(text, "the item id")?, time_updated: None }),
        }
    }
}

/// The game builds of the host (`l4d2ctl game --json`, and in every observation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Game {
    /// The build ids installed under `$ROOT/builds/`, ascending; each is complete and never
    /// changed once installed.
    pub installed: Vec<u64>,
    /// The branch's build as Steam last said (`l4d2ctl game check`); None before any check.
    pub published: Option<u64>,
    /// The branch that check asked about.
    #[serde(default)]
    pub branch: Option<String>,
    /// When that check was made (RFC 3339, UTC).
    pub checked_at: Option<String>,
    /// A base install from before builds (`$ROOT/installation/`) whose complete manifest names
    /// this build, not yet adopted as one (`l4d2ctl game adopt`).
    #[serde(default)]
    pub adoptable: Option<u64>,
}

/// One backup of a server's own data (its upper layer), as `l4d2ctl backups <name> --json` lists
/// it, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// What names it to `restore`: the time it was taken, as `2026-12-01T06-00-00Z` (its file's
    /// name without the extension). The same id names the same backup in either place.
    pub id: String,
    /// When it was taken (RFC 3339, UTC).
    pub taken_at: String,
    /// Its size in bytes (compressed).
    pub bytes: u64,
    /// Where it is: on the host (`$ROOT/backups/<name>/<id>.tar.gz`), in the restic repository
    /// of host.env, or both.
    pub local: bool,
    pub restic: bool,
    /// Why it was taken: `manual`, `schedule <name>`, `before restore`, `delete`.
    #[serde(default)]
    pub reason: String,
}

/// The status of one instance: the contract the reconciler and the web read (`status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: Name,
    pub unit: String,
    pub active_state: ActiveState,
    /// systemd's SubState: running, start-pre, auto-restart, dead, …
    pub sub_state: String,
    /// When the unit entered its current state (RFC 3339), if it ever changed state.
    pub since: Option<String>,
    /// Enabled units start at boot.
    pub enabled: bool,
    pub main_pid: Option<u32>,
    /// Restarts systemd made since the unit was started.
    pub restarts: u32,
    /// systemd's Result of the last run: success, exit-code, signal, start-limit-hit, …
    pub result: String,
    /// Whether its game's tree is mounted (inside the game's own mount namespace, which only root
    /// may look into: to anyone else, whether its game has processes).
    pub mounted: bool,
    pub port: u16,
    /// The digest of the rendered spec; None when its record cannot be read (written `""`).
    #[serde(with = "unknown_digest")]
    pub digest: Option<Digest>,
    /// The digest the server was started with, while its unit runs: a server rendered anew
    /// since it started runs the old render until it restarts.
    pub started_digest: Option<Digest>,
    /// The port the server was started on, while its unit runs (a render may have moved it since).
    pub started_port: Option<u16>,
    /// Set when someone changed this server by hand; the reconciler leaves it alone.
    #[serde(rename = "override")]
    pub override_marker: Option<Override>,
    /// The game server's own A2S_INFO answer, when it gave one in time.
    pub query: Option<QueryInfo>,
    /// When the game last answered A2S (RFC 3339), as far as full looks have seen; a brief look
    /// leaves it out.
    #[serde(default)]
    pub last_answer: Option<String>,
    /// The game build it runs when running (`started.json`), else the one its next start stacks
    /// (its record's).
    #[serde(default)]
    pub build: Option<u64>,
    /// The build its record stacks; None for a record from before builds (it stacks the base
    /// install, `installation/`, reported as the build that install was adopted as, if known).
    #[serde(default)]
    pub rendered_build: Option<u64>,
    /// The build the running server was started on, as `build` resolves it.
    #[serde(default)]
    pub started_build: Option<u64>,
    /// What of this server's files cannot be used as they are, and what puts each right.
    #[serde(default)]
    pub problems: Vec<Problem>,
    /// What its unit uses, as systemd counts it: read by full looks, left empty by brief ones.
    #[serde(default)]
    pub resources: Resources,
}

/// What a server's unit uses, from the same `systemctl show` as its state (and its cgroup's
/// `memory.peak`): each is None when systemd does not count it (a stopped unit, a controller
/// not there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU time used since the unit started, in nanoseconds (`CPUUsageNSec`): a usage is the
    /// difference of two looks over the time between them.
    pub cpu_nsec: Option<u64>,
    /// Memory in use now (`MemoryCurrent`), in bytes.
    pub memory_bytes: Option<u64>,
    /// The most memory used since the unit started (the cgroup's `memory.peak`), in bytes.
    pub memory_peak_bytes: Option<u64>,
    /// Tasks (processes and threads) now (`TasksCurrent`).
    pub tasks: Option<u64>,
}

impl Resources {
    /// The CPU time as a person reads it: `42.1s`, `12m05s`, `3h20m`; `-` when unknown.
    pub fn cpu_text(&self) -> String {
        let Some(nsec) = self.cpu_nsec else { return "-".into() };
        let secs = nsec / 1_000_000_000;
        match secs {
            0..60 => format!("{:.1}s", nsec as f64 / 1e9),
            60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
            _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        }
    }
}

/// A number of bytes as a person reads it, in binary units: `812 KiB`, `1.4 GiB`.
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value < 10.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

/// What the game server says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryInfo {
    pub name: String,
    pub map: String,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    /// Human players as the server's own RCON `status` counts them ("N humans"), asked only when
    /// A2S reports none (A2S is cached, and hibernation or L4DToolZ can hide players): where the
    /// two disagree, this is the one to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub humans: Option<u8>,
}

impl QueryInfo {
    /// The human players on the server: RCON's count where it was asked, else A2S's players
    /// less its bots.
    pub fn human_players(&self) -> u8 {
        self.humans.unwrap_or(self.players.saturating_sub(self.bots))
    }
}

/// systemd's ActiveState of a unit, written as systemd writes it.
///
/// A state a later systemd adds is kept as [`ActiveState::Other`] with its own word: an
/// observation must still be read whole on a newer host (one unknown word must not hide every
/// server), and the word is shown and written back exactly as systemd said it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ActiveState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Maintenance,
    Refreshing,
    Other(String),
}

impl ActiveState {
    pub fn as_str(&self) -> &str {
        match self {
            ActiveState::Active => "active",
            ActiveState::Reloading => "reloading",
            ActiveState::Inactive => "inactive",
            ActiveState::Failed => "failed",
            ActiveState::Activating => "activating",
            ActiveState::Deactivating => "deactivating",
            ActiveState::Maintenance => "maintenance",
            ActiveState::Refreshing => "refreshing",
            ActiveState::Other(word) => word,
        }
    }

    /// The unit has a process, or is on its way to or from one: what a start recorded may
    /// still describe it.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            ActiveState::Active | ActiveState::Activating | ActiveState::Reloading | ActiveState::Deactivating
        )
    }
}

impl From<&str> for ActiveState {
    fn from(word: &str) -> ActiveState {
        match word {
            "active" => ActiveState::Active,
            "reloading" => ActiveState::Reloading,
            "inactive" => ActiveState::Inactive,
            "failed" => ActiveState::Failed,
            "activating" => ActiveState::Activating,
            "deactivating" => ActiveState::Deactivating,
            "maintenance" => ActiveState::Maintenance,
            "refreshing" => ActiveState::Refreshing,
            other => ActiveState::Other(other.to_owned()),
        }
    }
}

impl From<String> for ActiveState {
    fn from(word: String) -> ActiveState {
        ActiveState::from(word.as_str())
    }
}

impl From<ActiveState> for String {
    fn from(state: ActiveState) -> String {
        match state {
            ActiveState::Other(word) => word,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for ActiveState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An overlay on the host and the digest of its tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialisedOverlay {
    pub name: Name,
    pub digest: Digest,
}

/// An override marker of a server with no instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanOverride {
    pub name: Name,
    pub marker: Override,
}

/// A server unit with no instance behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftoverUnit {
    pub name: Name,
    pub unit: String,
    /// Failed, active, …; inactive for a unit only enabled.
    pub active_state: ActiveState,
    pub enabled: bool,
}

/// Who did what by hand, and when: a server with one is left alone by the reconciler until
/// `l4d2ctl release` (DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub who: String,
    /// UTC, RFC 3339.
    pub when: String,
    /// The command, e.g. `stop`.
    pub what: String,
}

/// A file or folder that cannot be used as it is, why, and what puts it right. A problem is
/// reported where it lies and healed there; it never stops a look at the rest of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    /// The reader's or the file system's own words.
    pub cause: String,
    pub remedy: Remedy,
}

/// What puts a problem right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Remedy {
    /// `l4d2ctl initialize` writes it again: the record, the RCON password, the runtime folders.
    Initialize,
    /// Written again when the server next starts; until then what it holds is taken as unknown.
    NextStart,
    /// A person's override marker: respected as one until `l4d2ctl release` removes it.
    Release,
    /// `l4d2ctl install --units-only` writes the unit files again and reloads systemd.
    InstallUnits,
    /// Rewritten when the overlay is written again.
    WriteOverlay,
    /// Written again by the next `l4d2ctl workshop check`.
    CheckWorkshop,
}

impl Problem {
    pub fn new(path: impl AsRef<Path>, cause: impl fmt::Display, remedy: Remedy) -> Problem {
        Problem { path: path.as_ref().display().to_string(), cause: cause.to_string(), remedy }
    }

    /// A file that exists and cannot be read or parsed, or `None` for one that is missing.
    pub fn unreadable(path: &Path, error: &std::io::Error, remedy: Remedy) -> Option<Problem> {
        (error.kind() != std::io::ErrorKind::NotFound).then(|| Problem::new(path, error, remedy))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let remedy = match self.remedy {
            Remedy::Initialize => "initialize writes it again",
            Remedy::NextStart => "the next start writes it again",
            Remedy::Release => "`l4d2ctl release` removes it",
            Remedy::InstallUnits => "`l4d2ctl install --units-only` writes it again",
            Remedy::WriteOverlay => "writing the overlay again replaces it",
            Remedy::CheckWorkshop => "the next `l4d2ctl workshop check` writes it again",
        };
        write!(f, "{}: {} ({remedy})", self.path, self.cause)
    }
}

/// How much an observation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Everything: systemd's restarts, main PID, result and timestamps of each unit, and each
    /// running game's own A2S answer.
    Full,
    /// What a plan needs, quickly: each unit's state from one `systemctl list-units` and whether
    /// it is enabled; no A2S query, no restarts, main PID, result or timestamps.
    Brief,
}

/// One line of a write's `--json` output (JSON Lines on stdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A line the write prints without `--json`, word for word, and the server it is about
    /// when it is about one.
    Progress { server: Option<Name>, text: String },
    /// The write ran to its end (a `start` of which some servers failed included); the last line.
    Done { outcome: Outcome },
    /// The write failed as a whole; the last line, instead of `Done`.
    Failed { failure: Failure },
}

/// What a write did, one variant per write command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// `install`: the base game, the Steam SDK links, and the unit files written (those that differed).
    /// `install`: the unit files it wrote, and the build it installed or found installed.
    Installed {
        files: Vec<PathBuf>,
        #[serde(default)]
        build: Option<u64>,
        /// False when that build was on the host already and nothing was downloaded.
        #[serde(default)]
        downloaded: bool,
    },
    /// `workshop check`: what Steam says now of the items and collections asked about (each
    /// collection expanded to its items), as written to `$ROOT/workshop/details.json`.
    WorkshopChecked { details: WorkshopDetails },
    /// `game check`: the branch's build as Steam says it now.
    GameChecked { branch: String, published: u64, checked_at: String },
    /// `game adopt`: the base install from before builds, adopted as this build (None: there was
    /// nothing to adopt).
    Adopted { build: Option<u64> },
    /// `game remove <build>`: whether it was on the host.
    BuildRemoved { build: u64, removed: bool },
    /// `install --units-only`: the unit files written (those that differed; none: all were current).
    UnitsWritten { files: Vec<PathBuf> },
    /// `schedules put`: the schedules whose timers were written (new or changed) and those
    /// whose timers were stopped and removed.
    SchedulesWritten { written: Vec<Name>, removed: Vec<Name> },
    /// `initialize`.
    Initialized {
        name: Name,
        digest: Digest,
        /// False when every file already held exactly what was rendered.
        changed: bool,
        /// What of an instance already on the host was put right on the way.
        repaired: Vec<String>,
    },
    /// `start`: each server's own answer, in the order asked.
    Started { servers: Vec<ServerStart> },
    /// `stop` of one server.
    Stopped { name: Name },
    /// `stop` of several: each server's answer.
    StoppedAll { servers: Vec<ServerStop> },
    /// `restart`.
    Restarted { name: Name },
    /// `delete`.
    Deleted {
        name: Name,
        /// False when there was no instance: it was deleted already.
        existed: bool,
        /// Where the server's own data was archived, when it had any.
        archive: Option<PathBuf>,
        /// Its unit had failed; that failed state was cleared.
        cleared_failed: bool,
    },
    /// `release`.
    Released { name: Name, was_overridden: bool },
    /// `backup`: the backup taken, and the ids of older ones removed to keep `--keep`.
    BackedUp { name: Name, backup: Backup, removed: Vec<String> },
    /// `restore`: the backup restored, the one of the data it replaced, and whether the server
    /// was started again.
    Restored { name: Name, backup: String, kept: Backup, started: bool },
    /// `receive`: the data from another host is in place.
    Received { name: Name, entries: u64, bytes: u64 },

    /// `overlay put`, `overlay build`, `overlay fetch`: the overlay now holds the tree of `digest`.
    OverlayWritten { name: Name, digest: Digest },
    /// `mount` (run by the server's unit): false when it was mounted already.
    Mounted { name: Name, mounted: bool },
    /// `umount` (run by the server's unit): false when it was not mounted.
    Unmounted { name: Name, unmounted: bool },
}

/// One server's answer to a `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStart {
    pub name: Name,
    pub started: bool,
    /// Why it did not start, in the words its `failed to start` line gives.
    pub error: Option<String>,
}

/// One server's answer to a `stop` of several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStop {
    pub name: Name,
    pub stopped: bool,
    /// Why it did not stop, in the words its `failed to stop` line gives.
    pub error: Option<String>,
}

/// Why a write failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// The words of the `l4d2ctl: …` line on stderr.
    pub message: String,
}

/// Whether the same command, unchanged, may succeed when run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The host was busy or cut it short: systemd failed or timed out (a D-Bus or job-queue
    /// error), Steam did not deliver, a child was killed, a call was interrupted. Trying again
    /// unchanged may well succeed.
    Transient,
    /// The command cannot succeed as it is: bad input, a broken spec or recipe, a missing
    /// instance, a refused path, a file system that refuses the write (no permission, read-only):
    /// a person puts the input or the host right first.
    Permanent,
}

impl FailureKind {
    /// Whether an OS error passes by itself, for l4d2ctl and the reconciler alike: space or quota
    /// freed (a full disk asks nothing of the state, and a retry recovers once space is freed), a
    /// resource given back, a call interrupted or timed out, a file busy for a moment (a program
    /// being replaced as it is run). An error with no errno (made up by a library) will not pass
    /// unless it says it was cut short.
    pub fn of_io(error: &std::io::Error) -> FailureKind {
        use nix::libc;
        const TRANSIENT: [i32; 11] = [
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EINTR,
            libc::EAGAIN,
            libc::EBUSY,
            libc::ENOLCK,
            libc::ENOMEM,
            libc::EMFILE,
            libc::ENFILE,
            libc::ETXTBSY,
            libc::ETIMEDOUT,
        ];
        let transient = match error.raw_os_error() {
            Some(errno) => TRANSIENT.contains(&errno),
            None => matches!(
                error.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        if transient { FailureKind::Transient } else { FailureKind::Permanent }
    }
}

/// A digest from its text (`sha256:<hex>`), as the state model writes it.
pub fn parse_digest(text: &str) -> Result<Digest, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|e| e.to_string())
}

/// The digest of an instance whose record cannot be read is written as `""`, as it always was.
mod unknown_digest {
    use left4me_state::Digest;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(digest: &Option<Digest>, serializer: S) -> Result<S::Ok, S::Error> {
        match digest {
            Some(digest) => digest.serialize(serializer),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Digest>, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.is_empty() {
            true => Ok(None),
            false => super::parse_digest(&text).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_states_read_and_write_systemds_words() {
        for word in
            ["active", "reloading", "inactive", "failed", "activating", "deactivating", "maintenance", "refreshing"]
        {
            let state = ActiveState::from(word);
            assert!(!matches!(state, ActiveState::Other(_)), "{word} is a known state");
            assert_eq!(state.to_string(), word);
            assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{word}\""));
        }
        let later: ActiveState = serde_json::from_str("\"hibernating\"").unwrap();
        assert_eq!(later, ActiveState::Other("hibernating".into()));
        assert_eq!(serde_json::to_string(&later).unwrap(), "\"hibernating\"");
    }

    #[test]
    fn an_unknown_render_is_written_as_an_empty_digest() {
        let json = r#"{"name":"coop-1","unit":"u","active_state":"inactive","sub_state":"dead","since":null,
            "enabled":false,"main_pid":null,"restarts":0,"result":"","mounted":false,"port":0,"digest":"",
            "started_digest":null,"started_port":null,"override":null,"query":null}"#;
        let status: InstanceStatus = serde_json::from_str(json).unwrap();
        assert_eq!(status.digest, None);
        let written = serde_json::to_value(&status).unwrap();
        assert_eq!(written["digest"], "");
    }

    #[test]
    fn messages_are_tagged_by_type() {
        let name = Name::new("coop-1").unwrap();
        let progress = Message::Progress { server: Some(name.clone()), text: "coop-1: started".into() };
        assert_eq!(
            serde_json::to_string(&progress).unwrap(),
            r#"{"type":"progress","server":"coop-1","text":"coop-1: started"}"#
        );
        let done = Message::Done { outcome: Outcome::Stopped { name } };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"type":"done","outcome":{"kind":"stopped","name":"coop-1"}}"#
        );
        let failed = Message::Failed { failure: Failure { kind: FailureKind::Transient, message: "busy".into() } };
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"type":"failed","failure":{"kind":"transient","message":"busy"}}"#
        );
    }

    #[test]
    fn an_os_error_is_transient_when_it_may_pass_by_itself() {
        use std::io::{Error, ErrorKind};
        let of = |error: Error| FailureKind::of_io(&error);
        for errno in [nix::libc::ENOSPC, nix::libc::EDQUOT, nix::libc::EINTR, nix::libc::EBUSY, nix::libc::ETIMEDOUT] {
            assert_eq!(of(Error::from_raw_os_error(errno)), FailureKind::Transient, "errno {errno}");
        }
        for errno in [nix::libc::EACCES, nix::libc::EROFS, nix::libc::ENOENT, nix::libc::EISDIR] {
            assert_eq!(of(Error::from_raw_os_error(errno)), FailureKind::Permanent, "errno {errno}");
        }
        assert_eq!(of(Error::new(ErrorKind::Interrupted, "cut short")), FailureKind::Transient);
        assert_eq!(of(Error::other("made up")), FailureKind::Permanent);
    }
}
