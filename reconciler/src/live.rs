//! The game live: what srcds's own log stream tells of each server (who connects and leaves, the
//! chat, maps and rounds) and what is sampled of it every 30 s (players, CPU, memory), kept in
//! `$ROOT/live.db` by `left4me live` (the unit `left4me-live.service`, as the game user) and read
//! by the web app.

pub mod db;
pub mod listen;
pub mod parse;
pub mod sample;
pub mod service;

/// The database's file in its folder, `$ROOT/live/` (`l4d2ctl::host::LIVE_DIR`): the one folder
/// `left4me-live.service` may write.
pub const DB_FILE: &str = "live.db";
