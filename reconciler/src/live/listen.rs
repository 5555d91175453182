//! The log listener: one UDP socket on 127.0.0.1 that every server's srcds sends its log to. A
//! packet is a server's when it carries that server's secret and comes from this host; anything
//! else is dropped and counted, never kept. What is kept is written in batches, one transaction
//! each, so a flood costs this thread and its bounded batch, never the database's readers.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use left4me_state::Name;

use super::db::{LiveDb, NewEvent};
use super::parse::{self, Line, MAX_PACKET};
use crate::db::{DbError, now};

/// A batch is written when it holds this many events…
pub const BATCH_EVENTS: usize = 200;
/// …or its first event is this old.
pub const BATCH_AGE: Duration = Duration::from_millis(250);
/// An unknown secret makes the listener read the instances' secrets again, at most this often
/// (the first time at once): a new server's first line finds its secret, and a stream of forged
/// secrets costs one folder read per interval.
pub const REREAD_EVERY: Duration = Duration::from_secs(1);
/// What one server may have kept: a burst of this many events…
pub const BURST: f64 = 500.0;
/// …and this many a second after it. A busy server says a few lines a second; one a plugin makes
/// say thousands keeps these and is counted for the rest, so its own log cannot fill the disk.
pub const PER_SECOND: f64 = 100.0;
/// Drops are logged at most this often, as one line with their counts.
const DROPS_LOGGED_EVERY: Duration = Duration::from_secs(60);

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Sent from an address that is not this host's.
    NotLocal,
    /// Over [`MAX_PACKET`], or no log line.
    NotALogLine,
    /// A log line without a secret (type `R`).
    Unsigned,
    /// A secret no instance has.
    UnknownSecret,
    /// Its server said more than [`PER_SECOND`] (after a [`BURST`]).
    TooMany,
}

/// Which server each secret is, read from `instances/*/log_secret`.
pub struct Secrets {
    instances: PathBuf,
    by_secret: HashMap<u32, Name>,
    local: HashSet<IpAddr>,
    read_at: Option<Instant>,
}

impl Secrets {
    /// The secrets of the instances in `instances` (`$ROOT/instances`), read now.
    pub fn new(instances: &Path) -> Secrets {
        let mut secrets = Secrets {
            instances: instances.to_owned(),
            by_secret: HashMap::new(),
            local: HashSet::new(),
            read_at: None,
        };
        secrets.read();
        // Not counted against the interval: a server started just after the listener finds its
        // secret with its first line.
        secrets.read_at = None;
        secrets
    }

    /// The server whose secret this is; an unknown one reads the secrets again, when they were
    /// not read in the last [`REREAD_EVERY`].
    pub fn server(&mut self, secret: u32) -> Option<&Name> {
        if !self.by_secret.contains_key(&secret) && self.read_at.is_none_or(|at| at.elapsed() >= REREAD_EVERY) {
            self.read();
        }
        self.by_secret.get(&secret)
    }

    /// Whether `ip` is this host's: loopback, or an address of one of its interfaces (srcds sends
    /// from the address it is bound to).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.local.contains(&ip)
    }

    fn read(&mut self) {
        self.read_at = Some(Instant::now());
        self.by_secret.clear();
        if let Ok(entries) = std::fs::read_dir(&self.instances) {
            for entry in entries.flatten() {
                let Ok(name) = Name::new(entry.file_name().to_string_lossy().into_owned()) else { continue };
                if let Some(secret) = read_secret(&entry.path().join("log_secret")) {
                    self.by_secret.insert(secret, name);
                }
            }
        }
        self.local = nix::ifaddrs::getifaddrs()
            .map(|addrs| {
                addrs
                    .filter_map(|a| a.address)
                    .filter_map(|a| {
                        a.as_sockaddr_in()
                            .map(|v4| IpAddr::V4(v4.ip()))
                            .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
}

/// A secret file as the listener takes it: a few bytes holding a number; anything else is no
/// secret.
fn read_secret(path: &Path) -> Option<u32> {
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(64).read_to_string(&mut text).ok()?;
    l4d2ctl::instance::parse_log_secret(&text)
}

/// The listener's state between packets: the batch being filled and the drops not yet counted.
pub struct Listener {
    socket: UdpSocket,
    secrets: Secrets,
    batch: Vec<NewEvent>,
    /// When the oldest event or drop not yet written came.
    pending_since: Option<Instant>,
    dropped: HashMap<Refusal, u64>,
    /// Each server's allowance, by the servers whose secrets are known (no more than those).
    allowance: HashMap<Name, (f64, Instant)>,
    /// Drops since they were last logged.
    dropped_logged: (Instant, HashMap<Refusal, u64>),
}

impl Listener {
    pub fn new(socket: UdpSocket, secrets: Secrets) -> Listener {
        Listener {
            socket,
            secrets,
            batch: Vec::with_capacity(BATCH_EVENTS),
            pending_since: None,
            dropped: HashMap::new(),
            allowance: HashMap::new(),
            dropped_logged: (Instant::now(), HashMap::new()),
        }
    }

    /// Takes packets until `stop` is set (checked at least every [`BATCH_AGE`]), writing what
    /// they tell into `db`. Returns when the socket or the database fails.
    pub fn serve(&mut self, db: &LiveDb, stop: &AtomicBool) -> Result<(), ServeError> {
        self.socket.set_read_timeout(Some(BATCH_AGE)).map_err(ServeError::Socket)?;
        // One more byte than a packet may have: a datagram that fills it was longer.
        let mut buf = vec![0u8; MAX_PACKET + 1];
        while !stop.load(Ordering::Relaxed) {
            match self.socket.recv_from(&mut buf) {
                Ok((len, from)) => self.take(db, &buf[..len], from)?,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ServeError::Socket(e)),
            }
            if self.pending_since.is_some_and(|since| since.elapsed() >= BATCH_AGE) {
                self.flush(db)?;
            }
        }
        self.flush(db)
    }

    /// One packet: dropped, or its line read and its event added to the batch.
    fn take(&mut self, db: &LiveDb, bytes: &[u8], from: SocketAddr) -> Result<(), ServeError> {
        let Some((server, text)) = self.check(bytes, from) else { return Ok(()) };
        match parse::line(text) {
            Line::LogStarted => {
                // What came before is written first: it was said before the server started again.
                self.flush(db)?;
                db.clear_players(&server)?;
            }
            Line::Event(_) if !self.allowed(&server) => {
                *self.dropped.entry(Refusal::TooMany).or_default() += 1;
                self.pending_since.get_or_insert_with(Instant::now);
            }
            Line::Event(event) => {
                self.batch.push(NewEvent {
                    server,
                    at: now(),
                    kind: event.kind,
                    player: event.player,
                    steam_id: event.steam_id,
                    text: event.text,
                });
                self.pending_since.get_or_insert_with(Instant::now);
                if self.batch.len() >= BATCH_EVENTS {
                    self.flush(db)?;
                }
            }
            Line::Other => {}
        }
        Ok(())
    }

    /// Whose packet this is and its line, or None when it is dropped (and counted).
    fn check<'a>(&mut self, bytes: &'a [u8], from: SocketAddr) -> Option<(Name, &'a [u8])> {
        let verdict = if !self.secrets.is_local(from.ip()) {
            Err(Refusal::NotLocal)
        } else {
            match parse::packet(bytes) {
                Err(_) => Err(Refusal::NotALogLine),
                Ok(parse::Packet { secret: None, .. }) => Err(Refusal::Unsigned),
                Ok(parse::Packet { secret: Some(secret), text }) => match self.secrets.server(secret) {
                    Some(server) => Ok((server.clone(), text)),
                    None => Err(Refusal::UnknownSecret),
                },
            }
        };
        verdict
            .map_err(|why| {
                *self.dropped.entry(why).or_default() += 1;
                self.pending_since.get_or_insert_with(Instant::now);
            })
            .ok()
    }

    /// Whether `server` may have one more event kept: a token bucket of [`BURST`], refilled at
    /// [`PER_SECOND`].
    fn allowed(&mut self, server: &Name) -> bool {
        let now = Instant::now();
        let (tokens, at) = self.allowance.entry(server.clone()).or_insert((BURST, now));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * PER_SECOND).min(BURST);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// Writes the batch in one transaction, and counts the drops.
    fn flush(&mut self, db: &LiveDb) -> Result<(), ServeError> {
        if !self.batch.is_empty() {
            db.add_events(&self.batch)?;
            self.batch.clear();
        }
        self.pending_since = None;
        if !self.dropped.is_empty() {
            db.count_dropped(self.dropped.values().sum())?;
            for (why, n) in self.dropped.drain() {
                *self.dropped_logged.1.entry(why).or_default() += n;
            }
        }
        if !self.dropped_logged.1.is_empty() && self.dropped_logged.0.elapsed() >= DROPS_LOGGED_EVERY {
            let mut counts: Vec<String> =
                self.dropped_logged.1.drain().map(|(why, n)| format!("{n} {}", why.describe())).collect();
            counts.sort();
            tracing::warn!("dropped log packets since the last report: {}", counts.join(", "));
            self.dropped_logged.0 = Instant::now();
        }
        Ok(())
    }
}

impl Refusal {
    fn describe(self) -> &'static str {
        match self {
            Refusal::NotLocal => "not from this host",
            Refusal::NotALogLine => "not a log line (or over 4 KiB)",
            Refusal::Unsigned => "without a secret",
            Refusal::UnknownSecret => "with a secret no server has",
            Refusal::TooMany => "over a server's allowance of lines a second",
        }
    }
}

/// Why the listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the log socket failed: {0}")]
    Socket(std::io::Error),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_servers_secret_is_found_with_its_first_line_and_forged_ones_cost_one_read_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let instances = dir.path().join("instances");
        let mut secrets = Secrets::new(&instances);
        // The server is made after the listener started, as on a host's first start.
        std::fs::create_dir_all(instances.join("coop-1")).unwrap();
        std::fs::write(instances.join("coop-1/log_secret"), "123456789\n").unwrap();
        assert_eq!(secrets.server(123_456_789).map(Name::as_str), Some("coop-1"));
        std::fs::create_dir_all(instances.join("coop-2")).unwrap();
        std::fs::write(instances.join("coop-2/log_secret"), "987654321\n").unwrap();
        // Read a moment ago: not again until the interval has passed.
        assert_eq!(secrets.server(987_654_321), None);
        secrets.read_at = Some(Instant::now() - REREAD_EVERY);
        assert_eq!(secrets.server(987_654_321).map(Name::as_str), Some("coop-2"));
        // What is no secret is never one.
        std::fs::write(instances.join("coop-2/log_secret"), "12\n").unwrap();
        secrets.read_at = None;
        assert_eq!(secrets.server(12), None);
        assert!(secrets.is_local("127.0.0.1".parse().unwrap()) && !secrets.is_local("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn a_server_keeps_a_burst_and_then_its_rate() {
        let dir = tempfile::tempdir().unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut listener = Listener::new(socket, Secrets::new(&dir.path().join("instances")));
        let (coop1, coop2) = (Name::new("coop-1").unwrap(), Name::new("coop-2").unwrap());
        let kept = (0..2 * BURST as usize).filter(|_| listener.allowed(&coop1)).count();
        // What the burst allows, and what the rate refilled meanwhile (a few at most).
        assert!((BURST as usize..BURST as usize + 20).contains(&kept), "{kept}");
        assert!(listener.allowed(&coop2), "another server has an allowance of its own");
        std::thread::sleep(Duration::from_millis(100));
        assert!(listener.allowed(&coop1), "the allowance refills");
    }
}
