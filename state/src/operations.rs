//! The day-2 resources of a revision, resolved: schedules (`schedules/<name>.yaml`), alerts
//! (`alerts/<name>.yaml`) and a blueprint's backup policy. Built only by validation.

pub use crate::model::{AlertEvent, AlertProvider, When};
use crate::model::{Calendar, SecretRef};
use crate::name::Name;

/// A backup policy: how many backups of each server of a blueprint are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backups {
    /// The newest this many are kept; older ones are removed after each new backup.
    pub keep: u32,
}

impl Backups {
    /// What a blueprint keeps when it says nothing: a week of nightly backups.
    pub const DEFAULT_KEEP: u32 = 7;
}

impl Default for Backups {
    fn default() -> Backups {
        Backups { keep: Backups::DEFAULT_KEEP }
    }
}

/// A schedule: at each time of its calendar, one action on each of its servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: Name,
    pub owner: Name,
    pub servers: ScheduleServers,
    /// systemd's calendar expression (`OnCalendar=`), as written.
    pub at: Calendar,
    pub action: ScheduleAction,
    pub when: When,
    /// How long `when: empty` waits for a server to empty before the run is skipped, in seconds.
    pub within: u64,
    pub warn: Option<Warning>,
    /// The file it was read from, relative to the repo.
    pub file: String,
}

/// Which servers a schedule acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleServers {
    /// These, by name (each one of the schedule's owner).
    Named(Vec<Name>),
    /// Every server of this blueprint (the schedule's owner's), as the revision declares them.
    Blueprint(Name),
}

/// What a schedule does to each server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleAction {
    Restart,
    Start,
    Stop,
    Backup,
    /// One console command, sent over RCON.
    Command(String),
}

impl ScheduleAction {
    pub fn name(&self) -> &'static str {
        match self {
            ScheduleAction::Restart => "restart",
            ScheduleAction::Start => "start",
            ScheduleAction::Stop => "stop",
            ScheduleAction::Backup => "backup",
            ScheduleAction::Command(_) => "command",
        }
    }
}

/// Players told over RCON (`say`) before the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Seconds before the action, longest first.
    pub before: Vec<u64>,
    /// The text said; `{minutes}` is replaced by the minutes left (rounded up).
    pub message: String,
}

impl Warning {
    /// The text said `seconds` before the action.
    pub fn text(&self, seconds: u64) -> String {
        self.message.replace("{minutes}", &seconds.div_ceil(60).to_string())
    }
}

/// An alert: where the host's notices of some kinds are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub name: Name,
    pub provider: AlertProvider,
    /// The variable of `/etc/left4me/secrets.env` holding the URL (never in git).
    pub secret_ref: SecretRef,
    pub events: Vec<AlertEvent>,
    /// Only notices about these servers (and those about no server); None: every server.
    pub servers: Option<Vec<Name>>,
    pub file: String,
}

impl Alert {
    /// Whether a notice of this kind, about this server (None: the host), goes to this alert.
    pub fn wants(&self, event: AlertEvent, server: Option<&Name>) -> bool {
        self.events.contains(&event)
            && match (&self.servers, server) {
                (Some(servers), Some(server)) => servers.contains(server),
                _ => true,
            }
    }
}
