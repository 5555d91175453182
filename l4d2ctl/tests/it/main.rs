//! l4d2ctl on a real host: a sandbox with a real systemd, real overlayfs and the simulated game.

mod audit;
mod backups;
mod bad_input;
mod faults;
mod files;
mod game_builds;
mod host_tuning;
mod json_lines;
mod lifecycle;
mod limits;
mod overlays_archive;
mod overlays_hostile;
mod protocols;
mod steam_output;
mod support;
mod workshop;
