//! `l4d2ctl`: the host side of left4me. It renders instances, installs units, mounts overlays,
//! starts and stops game servers through systemd, and reports what runs (docs/DESIGN.md §5).
//!
//! It is what the reconciler runs and what an operator runs by hand; every write is idempotent.
//! [`api`] is its boundary: the types other programs read from it and the commands they run.

pub mod a2s;
pub mod api;
pub mod archive;
pub mod audit;
pub mod backup;
pub mod builds;
pub mod confined;
pub mod error;
pub mod files;
pub mod fsutil;
pub mod host;
pub mod humans;
pub mod install;
pub mod instance;
pub mod interrupt;
pub mod limits;
pub mod mount;
pub mod mountinfo;
pub mod overlay;
pub mod overrides;
pub mod rcon;
pub mod record;
pub mod running;
pub mod schedules;
pub mod sqlite;
pub mod status;
pub mod steam;
pub mod steamapi;
pub mod systemd;
pub mod units;
pub mod vdf;
pub mod workshop;

pub use error::{Error, describe};
pub use host::Host;
pub use left4me_state::signal_name;
