//! The reconciler: it compares a revision of the state repo with what the host runs and converges
//! the host by running `l4d2ctl` (docs/DESIGN.md §6).

pub mod alerts;
pub mod backups;
pub mod crashloop;
pub mod daemon;
pub mod db;
pub mod engine;
pub mod error;
pub mod game;
pub mod handover;
pub mod host;
pub mod live;
pub mod plan;
pub mod remote;
pub mod report;
pub mod requests;
pub mod retries;
pub mod schedule_run;
pub mod schedules;
pub mod upstream;
pub mod workshop;
