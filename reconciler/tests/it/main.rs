//! The reconciler: the planner on plain values, and the `left4me` command line.

mod alerts;
mod backups;
mod builds;
mod cancel;
mod converge;
mod db;
mod faults;
mod fleet;
mod game;
mod killed;
mod limits;
mod live;
mod moves;
mod plan;
mod repairs;
mod requests;
mod retries;
mod sampling;
mod schedules;
mod service;
mod support;
mod validate;
mod workshop;
