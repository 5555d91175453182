//! The reconciler: the planner on plain values, and the `left4me` command line.

mod alerts;
mod builds;
mod converge;
mod db;
mod faults;
mod game;
mod killed;
mod plan;
mod repairs;
mod retries;
mod schedules;
mod service;
mod support;
mod validate;
mod workshop;
