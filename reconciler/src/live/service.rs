//! `left4me live`, the process of `left4me-live.service`: as the game's user, it opens
//! `$ROOT/live.db` and runs its threads — the log listener, and the sampler — each with its
//! own connection. The first thread to end ends the process, and systemd starts it again.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use anyhow::Context;

use super::db::LiveDb;
use super::listen::{Listener, Secrets};
use super::sample::{self, Pace};

/// Runs until a thread fails; returns its error.
pub fn run(host: &l4d2ctl::Host, l4d2ctl: &std::path::Path) -> anyhow::Result<()> {
    let path = super::db::path(&host.root);
    // Opened (made, migrated) once here, so that a database that cannot be opened stops the
    // process at once with its cause.
    drop(LiveDb::open(&path)?);
    let (ended, first_end) = mpsc::channel::<anyhow::Result<()>>();

    // Only this host sends to it: bound to loopback, and each packet's sender is checked too.
    let socket = match handed_socket() {
        Some(socket) => socket,
        None => UdpSocket::bind((Ipv4Addr::LOCALHOST, host.live_port))
            .with_context(|| format!("cannot listen on 127.0.0.1:{} (LEFT4ME_LIVE_PORT)", host.live_port))?,
    };
    let secrets = Secrets::new(&host.instances());
    let (listener_ended, listener_path) = (ended.clone(), path.clone());
    std::thread::Builder::new().name("gamelog".into()).spawn(move || {
        let serve = || -> anyhow::Result<()> {
            let db = LiveDb::open(&listener_path)?;
            Listener::new(socket, secrets).serve(&db, &AtomicBool::new(false))?;
            Ok(())
        };
        let _ = listener_ended.send(serve().context("the log listener stopped"));
    })?;
    tracing::info!("listening for the game's log on 127.0.0.1:{}", host.live_port);

    let (sampler_ended, root, l4d2ctl) = (ended.clone(), host.root.clone(), l4d2ctl.to_owned());
    std::thread::Builder::new().name("sampler".into()).spawn(move || {
        let pace = Pace { every: sample::EVERY, looks: None };
        let _ = sampler_ended.send(sample::run(&root, &l4d2ctl, pace).context("the sampler stopped"));
    })?;

    drop(ended);
    first_end.recv().unwrap_or_else(|_| Err(anyhow::anyhow!("every thread of left4me live ended")))
}

/// The socket systemd hands over (`left4me-live.socket`, by socket activation's protocol: fd 3,
/// `LISTEN_FDS` of them for `LISTEN_PID`), or None when it was started without one (by hand, a
/// test): then it binds the port itself.
fn handed_socket() -> Option<UdpSocket> {
    use std::os::fd::FromRawFd;
    let ours = std::env::var("LISTEN_PID").ok()?.parse::<u32>().ok()? == std::process::id();
    let count = std::env::var("LISTEN_FDS").ok()?.parse::<u32>().ok()?;
    // Not passed on to the processes it starts (the sampler's l4d2ctl).
    // SAFETY: called before any thread is started, and nothing else reads these variables.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if !ours || count < 1 {
        return None;
    }
    // SAFETY: systemd passed this descriptor (the first of LISTEN_FDS, at 3) to this process,
    // and nothing else in it owns or closes it.
    Some(unsafe { UdpSocket::from_raw_fd(3) })
}
