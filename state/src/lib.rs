//! The desired state of a left4me host.
//!
//! A state repo holds YAML resources (see docs/DESIGN.md §3). This crate reads one revision of it —
//! from a folder or from a git commit, always within [`Limits`] — checks it as a whole, and turns
//! it into a [`DesiredState`] whose servers render to [`InstanceSpec`]s.
//!
//! ```no_run
//! # use std::path::Path;
//! let (revision, checked) = left4me_state::load_revision(Path::new("/var/lib/left4me/state"), "main")?;
//! match checked {
//!     Ok(state) => println!("{revision}: {} servers", state.servers.len()),
//!     Err(diagnostics) => print!("{diagnostics}"),
//! }
//! # Ok::<(), left4me_state::LoadError>(())
//! ```

mod calendar;
pub mod clock;
mod desired;
mod diagnostic;
mod digest;
mod git;
pub mod model;
mod name;
mod operations;
mod render;
mod resources;
mod scalar;
mod tree;
mod validate;
mod yaml;

use std::path::Path;

pub use desired::{
    Blueprint, DesiredState, FileKind, Game, Host, Overlay, OverlayContent, OverlayFile, PlacementError, Server,
    Settings, placed,
};
pub use diagnostic::{Diagnostic, Diagnostics, Position};
pub use digest::{Digest, Hasher};
pub use git::{Revision, cat_files, git, read_revision, resolve, signal_name, stopped_by};
pub use model::{
    ArchiveSource, ArchiveUrl, Argument, Branch, Calendar, ConfigLine, Description, GameBuild, HostAddress, Hostname,
    Interval, OverlayType, Port, PortRange, PowerState, Rollout, SecretRef, Sha256Hex, Strip, TreePath, WorkshopItem,
    declared_owner, json_schema,
};
pub use name::{NAME_PATTERN, Name, NameError};
pub use operations::{
    Alert, AlertEvent, AlertProvider, Backups, Schedule, ScheduleAction, ScheduleServers, Warning, When,
};
pub use render::{HIDDEN_SECRET, InstanceSpec, OverlayLayer, SECRET_CVARS, Secrets, hide_secrets};
pub use resources::{CpuList, CpuWeight, MemorySize, Nice, ResourceLimits};
pub use tree::{Limits, LoadError, Tree, read_dir};
pub use validate::{
    DEFAULT_JOB_RETENTION_DAYS, DEFAULT_MAX_SERVERS, DEFAULT_PORTS, DEFAULT_PRUNE_LIMIT_PERCENT,
    MAX_JOB_RETENTION_DAYS, validate,
};
pub use yaml::parse as parse_yaml;

/// A revision that was read: valid, or every problem it has.
pub type Checked = Result<DesiredState, Diagnostics>;

/// Reads and validates the state tree in a folder.
pub fn load_dir(root: &Path) -> Result<Checked, LoadError> {
    let tree = read_dir(root, Limits::DEFAULT)?;
    Ok(validate(&tree))
}

/// Reads and validates a committed revision (`rev` is a branch, tag or commit) of the repo at `repo`.
pub fn load_revision(repo: &Path, rev: &str) -> Result<(Revision, Checked), LoadError> {
    let revision = resolve(repo, rev)?;
    let tree = read_revision(repo, &revision, Limits::DEFAULT)?;
    Ok((revision, validate(&tree)))
}
