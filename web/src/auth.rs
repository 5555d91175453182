//! What signing in rests on: the sign-in limits, the password-hashing threads, trusted proxies,
//! the session cookie and the checks of what a browser sends (origins, local paths, secrets).
//! The session guard is `session.rs`, the sign-in pages `handlers/login.rs`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

pub const COOKIE: &str = "left4me_session";
/// Tries of one account from one client address that need no wait. From the last of them on,
/// each failure makes the pair wait before its next try: [`FIRST_DELAY`], then twice as long as
/// the wait before, at most [`MAX_DELAY`].
pub const FREE_FAILURES: u32 = 5;
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// A pair's failures are forgotten this long after its last one.
const FORGET: Duration = Duration::from_secs(60 * 60);
/// Pairs remembered at most: a flood of names or addresses cannot grow the memory past it.
pub const MAX_PAIRS: usize = 10_000;
/// Threads that compute password hashes. Each argon2 hash takes 19 MiB and a core; on threads
/// of their own a flood of sign-ins waits its turn, and the allocator keeps at most this many
/// hashes' memory (on the blocking pool each of its threads kept one: 660 MB under a flood).
const HASHING: usize = 2;

/// Failed password checks (a sign-in, or the current password of `/account`) per account and
/// client address. A flood from one place slows that place only: the account's owner elsewhere
/// signs in as ever, and so does everyone else behind the same address.
#[derive(Default)]
pub struct Limiter {
    failures: Mutex<Pairs>,
}

struct Failures {
    count: u32,
    last: Instant,
}

impl Limiter {
    /// How long `account` from `address` must still wait before its next try; None: it may try.
    pub fn wait(&self, account: &str, address: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().expect("no holder of the limiter lock panics");
        waiting(&failures, &key(account, address))
    }

    /// Takes a try of `account` from `address`, counted as a failure until [`Limiter::clear`]
    /// says it succeeded — checked and counted under one lock, so requests sent at once cannot
    /// all pass the check before the first of them fails. `Err`: the wait left.
    pub fn begin(&self, account: &str, address: IpAddr) -> Result<(), Duration> {
        let mut failures = self.failures.lock().expect("no holder of the limiter lock panics");
        let key = key(account, address);
        if let Some(wait) = waiting(&failures, &key) {
            return Err(wait);
        }
        record(&mut failures, key);
        Ok(())
    }

    pub fn fail(&self, account: &str, address: IpAddr) {
        record(&mut self.failures.lock().expect("no holder of the limiter lock panics"), key(account, address));
    }

    pub fn clear(&self, account: &str, address: IpAddr) {
        self.failures.lock().expect("no holder of the limiter lock panics").remove(&key(account, address));
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.failures.lock().expect("no holder of the limiter lock panics").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type Pairs = HashMap<(String, IpAddr), Failures>;

fn waiting(failures: &Pairs, key: &(String, IpAddr)) -> Option<Duration> {
    let entry = failures.get(key)?;
    delay(entry.count)?.checked_sub(entry.last.elapsed()).filter(|left| !left.is_zero())
}

/// Counts a failure of `key`, forgetting the oldest pair when [`MAX_PAIRS`] are remembered.
fn record(failures: &mut Pairs, key: (String, IpAddr)) {
    if !failures.contains_key(&key) && failures.len() >= MAX_PAIRS {
        failures.retain(|_, f| f.last.elapsed() < FORGET);
        if failures.len() >= MAX_PAIRS {
            let oldest = failures.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                failures.remove(&oldest);
            }
        }
    }
    let entry = failures.entry(key).or_insert(Failures { count: 0, last: Instant::now() });
    if entry.last.elapsed() >= FORGET {
        entry.count = 0;
    }
    entry.count = entry.count.saturating_add(1);
    entry.last = Instant::now();
}

/// The wait after `count` failures.
fn delay(count: u32) -> Option<Duration> {
    let doublings = count.checked_sub(FREE_FAILURES)?.min(20);
    Some(FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY))
}

/// An account name as typed (cut to a valid name's length) and an address; an IPv6 client is
/// its /64, which one host usually holds whole.
fn key(account: &str, address: IpAddr) -> (String, IpAddr) {
    let account: String = account.trim().chars().take(64).collect();
    let address = match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        },
        v4 => v4,
    };
    (account, address)
}

/// The threads that hash passwords, taking work in turn.
pub struct Hashers {
    work: Mutex<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

impl Hashers {
    /// Queues `job` for the next free hashing thread; false when the threads have ended.
    pub fn run(&self, job: Box<dyn FnOnce() + Send>) -> bool {
        self.work.lock().expect("no holder of the hash queue panics").send(job).is_ok()
    }

    pub fn start() -> std::io::Result<Hashers> {
        let (work, queue) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..HASHING {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("password-hash-{index}")).spawn(move || {
                loop {
                    let next = queue.lock().expect("no holder of the hash queue panics").recv();
                    let Ok(job) = next else { return };
                    // A job that panics ends its request, not the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        }
        Ok(Hashers { work: Mutex::new(work) })
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`LEFT4ME_TRUSTED_PROXIES`): addresses and
/// CIDR blocks, separated by commas or spaces.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl std::str::FromStr for TrustedProxies {
    type Err = String;

    fn from_str(text: &str) -> Result<TrustedProxies, String> {
        let mut blocks = Vec::new();
        for item in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|i| !i.is_empty()) {
            let bad = || {
                format!(
                    "trusted proxies: {item:?} is not an address or a CIDR block (such as 127.0.0.1, 10.0.0.0/8 or fd00::/8)"
                )
            };
            let (address, prefix) = match item.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
                None => (item, None),
            };
            let address: IpAddr = address.parse().map_err(|_| bad())?;
            let bits = if address.is_ipv4() { 32 } else { 128 };
            let prefix = prefix.unwrap_or(bits);
            if prefix > bits {
                return Err(bad());
            }
            blocks.push((address, prefix));
        }
        Ok(TrustedProxies(blocks))
    }
}

impl TrustedProxies {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
            v4 => v4,
        };
        self.0.iter().any(|&(block, prefix)| match (block, address) {
            (IpAddr::V4(block), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(block) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(block), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(block) & mask == u128::from(address) & mask
            }
            _ => false,
        })
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the right-most
    /// address of `X-Forwarded-For` that is not a trusted proxy (the ones left of it are
    /// whatever the client chose to send).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let parsed = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()));
            // A hop a trusted proxy wrote but no one can read: the last known one answers for it.
            let Some(address) = parsed else { return client };
            client = address;
            if !self.contains(address) {
                return address;
            }
        }
        client
    }
}

/// Whether a request's `Origin`, when it has one, is this site (the `Host` it came to).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host =
        origin.to_str().ok().and_then(|o| o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")));
    origin_host.is_some() && origin_host == host
}

pub fn session_cookie(token: &str, secure: bool, max_age: i64) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// Where to go after signing in: a path of this site only.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if is_local_path(next) => next.to_owned(),
        _ => "/".to_owned(),
    }
}

/// A path of this site, never one a browser would read as another site (`//host`, `/\\host`).
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') && !path.chars().any(char::is_control)
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// One field of an `application/x-www-form-urlencoded` body.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    pairs.into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

/// Compares secrets in a time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
