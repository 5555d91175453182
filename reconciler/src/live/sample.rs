//! The sampler: every 30 s one `l4d2ctl status --json` (one `systemctl show`, one A2S socket,
//! whatever the number of servers), and each running server's human players, CPU since its
//! previous look and memory kept in `$ROOT/live.db`. What it keeps is bounded by the widths'
//! windows ([`super::db::WIDTHS`]); what it holds in memory, by the servers of the last look.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use l4d2ctl::api::{InstanceStatus, QueryInfo};
use left4me_state::Name;

use super::db::{LiveDb, Sample};
use crate::error::Error;

/// How often the servers are looked at: the narrowest width samples are kept at.
pub const EVERY: Duration = Duration::from_secs(super::db::WIDTHS[0].0 as u64);

/// The CPU time each server had at its previous look, in memory only: a first look, and the first
/// after this process started, has no CPU percentage.
#[derive(Default)]
pub struct Sampler {
    previous: HashMap<Name, Previous>,
}

struct Previous {
    cpu_nsec: u64,
    main_pid: Option<u32>,
    at: Instant,
}

impl Sampler {
    /// The samples of one look at the host taken `at` (unix seconds; `now` on the monotonic
    /// clock): one for each running server.
    pub fn samples(&mut self, statuses: &[InstanceStatus], at: i64, now: Instant) -> Vec<(Name, Sample)> {
        let mut samples = Vec::new();
        let mut seen = HashMap::new();
        for status in statuses.iter().filter(|s| s.active_state.is_running()) {
            let cpu = status.resources.cpu_nsec.and_then(|cpu_nsec| {
                let current = Previous { cpu_nsec, main_pid: status.main_pid, at: now };
                let cpu = self.previous.get(&status.name).and_then(|previous| percent(previous, &current));
                seen.insert(status.name.clone(), current);
                cpu
            });
            let players = status.query.as_ref().map_or(0, QueryInfo::human_players);
            let sample = Sample { at, players: u32::from(players), cpu, memory: status.resources.memory_bytes };
            samples.push((status.name.clone(), sample));
        }
        // Servers stopped or gone are forgotten: their next look is a first one.
        self.previous = seen;
        samples
    }

    /// Looks at the host once and keeps what it saw; the number of servers sampled.
    pub fn look(&mut self, l4d2ctl: &Path, db: &LiveDb) -> Result<usize, Error> {
        let statuses = crate::host::status(l4d2ctl)?;
        let at = i64::try_from(left4me_state::clock::unix_seconds(SystemTime::now())).unwrap_or(i64::MAX);
        let samples = self.samples(&statuses, at, Instant::now());
        db.add_samples(&samples)?;
        Ok(samples.len())
    }
}

/// The CPU used between two looks of one run, in percent of one core; None across a restart
/// (another main process, or a CPU time that went down) or when no time passed.
fn percent(previous: &Previous, current: &Previous) -> Option<f64> {
    let elapsed = current.at.checked_duration_since(previous.at)?.as_nanos() as f64;
    let used = current.cpu_nsec.checked_sub(previous.cpu_nsec)?;
    (previous.main_pid == current.main_pid && elapsed > 0.0).then(|| used as f64 / elapsed * 100.0)
}

/// How many looks [`run`] takes and how far apart.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub every: Duration,
    /// None: forever.
    pub looks: Option<u64>,
}

/// Samples the host at `pace` into `$ROOT/live.db`. A look that fails (l4d2ctl missing, the
/// database busy) is said on stderr and the next one tried on time: the history has a gap, the
/// sampler goes on.
pub fn run(root: &Path, l4d2ctl: &Path, pace: Pace) -> Result<(), Error> {
    let db = LiveDb::open(&super::db::path(root))?;
    let mut sampler = Sampler::default();
    let mut taken = 0;
    loop {
        let started = Instant::now();
        if let Err(error) = sampler.look(l4d2ctl, &db) {
            eprintln!("left4me: the servers could not be sampled: {error}");
        }
        taken += 1;
        if pace.looks.is_some_and(|looks| taken >= looks) {
            return Ok(());
        }
        std::thread::sleep(pace.every.saturating_sub(started.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, active: &str, cpu_nsec: Option<u64>, pid: u32, players: u8) -> InstanceStatus {
        let json = serde_json::json!({
            "name": name, "unit": format!("left4me-server@{name}.service"), "active_state": active,
            "sub_state": "running", "enabled": true, "main_pid": pid, "restarts": 0, "result": "success",
            "mounted": true, "port": 27015, "problems": [], "digest": "", "override": null,
            "query": {"name": name, "map": "c1m1_hotel", "players": players, "max_players": 8, "bots": 0},
            "resources": {"cpu_nsec": cpu_nsec, "memory_bytes": 1000, "memory_peak_bytes": 2000, "tasks": 3},
        });
        serde_json::from_value(json).expect("a status as l4d2ctl prints it")
    }

    #[test]
    fn cpu_is_the_difference_of_two_looks_and_none_across_a_restart() {
        let mut sampler = Sampler::default();
        let t0 = Instant::now();
        let first = sampler.samples(&[status("a", "active", Some(1_000_000_000), 7, 2)], 100, t0);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].1.players, first[0].1.cpu, first[0].1.memory), (2, None, Some(1000)));

        // 30 s later, 15 s of CPU more: half a core.
        let t1 = t0 + Duration::from_secs(30);
        let second = sampler.samples(&[status("a", "active", Some(16_000_000_000), 7, 3)], 130, t1);
        assert_eq!(second[0].1.cpu, Some(50.0));

        // Started again: the CPU time begins anew, as does the main process.
        let t2 = t1 + Duration::from_secs(30);
        let restarted = sampler.samples(&[status("a", "active", Some(2_000_000_000), 7, 0)], 160, t2);
        assert_eq!(restarted[0].1.cpu, None);
        let t3 = t2 + Duration::from_secs(30);
        let other_pid = sampler.samples(&[status("a", "active", Some(9_000_000_000), 8, 0)], 190, t3);
        assert_eq!(other_pid[0].1.cpu, None);
    }

    #[test]
    fn stopped_servers_have_no_sample_and_are_forgotten() {
        let mut sampler = Sampler::default();
        let t0 = Instant::now();
        let looks = [status("a", "active", Some(1), 7, 1), status("b", "inactive", None, 0, 0)];
        let samples = sampler.samples(&looks, 100, t0);
        assert_eq!(samples.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(sampler.samples(&[], 130, t0 + EVERY).is_empty());
        assert!(sampler.previous.is_empty());
        let again = sampler.samples(&[status("a", "active", Some(5), 7, 1)], 160, t0 + EVERY * 2);
        assert_eq!(again[0].1.cpu, None);
    }
}
