//! The looks at the other hosts: each declared host but this one is asked for its
//! `HostStatus` over ssh (`remote.rs`) beside the look at this host, one thread per host, each
//! bounded by [`LOOK_TIMEOUT`]. A host that answers slowly or not at all holds up no other: the
//! snapshot waits for a host only while it answered its last look, and at most [`WAIT`].

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use left4me_state::Name;
use reconciler::remote::{Ask, HostStatus, Ssh};

use crate::remote::{self, HostAt, LOOK_TIMEOUT};

/// How long a look waits, from its start, for the hosts that answered last time.
pub const WAIT: Duration = Duration::from_millis(2500);

/// The latest look at another host.
#[derive(Debug, Clone)]
pub struct HostLook {
    /// The address it was asked at (the revision's).
    pub address: String,
    /// When the look ended (RFC 3339, this host's clock), and on this process's clock.
    pub taken_at: String,
    pub at: Instant,
    /// Its answer, or why there is none ("host c does not answer: …").
    pub status: Result<Arc<HostStatus>, String>,
    /// When it last answered, when this look got no answer.
    pub answered_at: Option<String>,
}

/// The other hosts' latest looks, and the looks under way.
#[derive(Default)]
pub struct Looks {
    shared: Arc<(Mutex<BTreeMap<Name, Slot>>, Condvar)>,
}

#[derive(Default)]
struct Slot {
    /// A look is under way (started in round `round`).
    busy: bool,
    round: u64,
    latest: Option<HostLook>,
}

impl Looks {
    /// Starts a look at each of `hosts` that is not being looked at and was not looked at in
    /// this `round`.
    pub fn start(&self, ssh: &Ssh, hosts: &[HostAt], round: u64) {
        let (slots, _) = &*self.shared;
        let mut slots = slots.lock().expect("no holder of the looks lock panics");
        for host in hosts {
            let slot = slots.entry(host.name.clone()).or_default();
            if slot.busy || slot.round == round {
                continue;
            }
            slot.busy = true;
            slot.round = round;
            let (shared, ssh, host) = (self.shared.clone(), ssh.clone(), host.clone());
            let spawned = std::thread::Builder::new().name(format!("look-{}", host.name)).spawn(move || {
                let status = remote::ask_json::<HostStatus>(&ssh, &host, &Ask::Status, LOOK_TIMEOUT)
                    .map(Arc::new)
                    .map_err(|e| e.of(&host.name));
                let (slots, done) = &*shared;
                let mut slots = slots.lock().expect("no holder of the looks lock panics");
                let slot = slots.entry(host.name.clone()).or_default();
                let answered_at = match (&status, &slot.latest) {
                    (Ok(_), _) => None,
                    (Err(_), Some(last)) if last.status.is_ok() => Some(last.taken_at.clone()),
                    (Err(_), Some(last)) => last.answered_at.clone(),
                    (Err(_), None) => None,
                };
                if let (Err(reason), Some(last)) = (&status, &slot.latest)
                    && last.status.is_ok()
                {
                    tracing::warn!("{reason}");
                }
                slot.latest = Some(HostLook {
                    address: host.address.clone(),
                    taken_at: reconciler::db::now(),
                    at: Instant::now(),
                    status,
                    answered_at,
                });
                slot.busy = false;
                done.notify_all();
            });
            if spawned.is_err() {
                slot.busy = false;
            }
        }
    }

    /// Waits until `deadline` for the looks under way at hosts that answered their last look
    /// (or have none yet), then gives the latest look of each of `hosts`.
    pub fn latest(&self, hosts: &[HostAt], deadline: Instant) -> BTreeMap<Name, Option<HostLook>> {
        let (slots, done) = &*self.shared;
        let mut slots = slots.lock().expect("no holder of the looks lock panics");
        loop {
            let waited_for = |slot: &Slot| slot.busy && slot.latest.as_ref().is_none_or(|l| l.status.is_ok());
            let waiting = hosts.iter().any(|h| slots.get(&h.name).is_some_and(waited_for));
            let now = Instant::now();
            if !waiting || now >= deadline {
                break;
            }
            slots = done.wait_timeout(slots, deadline - now).expect("no holder of the looks lock panics").0;
        }
        hosts.iter().map(|h| (h.name.clone(), slots.get(&h.name).and_then(|s| s.latest.clone()))).collect()
    }
}
