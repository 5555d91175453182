//! What `left4me live`'s log listener costs: 100 servers each logging 50 lines a second (5,000
//! signed packets a second of realistic lines) for 10 s, sent to the listener (secrets checked,
//! lines parsed, events written to a real live.db in batches) and, packet for packet, to a bare
//! UDP socket loop that only receives them. Each thread's own CPU time is measured
//! (CLOCK_THREAD_CPUTIME_ID); the ratio of the two is the figure.
//!
//!     cargo bench -p left4me-reconciler --bench gamelog

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};
use reconciler::live::db::LiveDb;
use reconciler::live::listen::{Listener, Secrets};

const SERVERS: u32 = 100;
const LINES_PER_SECOND: u32 = 50;
const SECONDS: u32 = 10;

fn main() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let instances = dir.path().join("instances");
    for server in 0..SERVERS {
        let folder = instances.join(format!("s{server:03}"));
        std::fs::create_dir_all(&folder).expect("an instance folder");
        std::fs::write(folder.join("log_secret"), format!("{}\n", secret(server))).expect("a secret");
    }
    let db_path = dir.path().join("live.db");
    drop(LiveDb::open(&db_path).expect("live.db"));

    let listener_socket = UdpSocket::bind("127.0.0.1:0").expect("the listener's socket");
    let bare_socket = UdpSocket::bind("127.0.0.1:0").expect("the bare loop's socket");
    let to = (listener_socket.local_addr().expect("an address"), bare_socket.local_addr().expect("an address"));
    let stop = Arc::new(AtomicBool::new(false));

    let listener_stop = stop.clone();
    let listener = std::thread::spawn(move || {
        let db = LiveDb::open(&db_path).expect("live.db");
        let mut listener = Listener::new(listener_socket, Secrets::new(&instances));
        let start = thread_cpu();
        listener.serve(&db, &listener_stop).expect("the listener serves");
        thread_cpu() - start
    });
    let received = Arc::new(AtomicU64::new(0));
    let (bare_stop, bare_received) = (stop.clone(), received.clone());
    let bare = std::thread::spawn(move || {
        bare_socket.set_read_timeout(Some(Duration::from_millis(250))).expect("a timeout");
        let mut buf = vec![0u8; 4097];
        let start = thread_cpu();
        while !bare_stop.load(Ordering::Relaxed) {
            if bare_socket.recv_from(&mut buf).is_ok() {
                bare_received.fetch_add(1, Ordering::Relaxed);
            }
        }
        thread_cpu() - start
    });

    let sent = send(to);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let listener_cpu = listener.join().expect("the listener thread");
    let bare_cpu = bare.join().expect("the bare loop's thread");
    let db = LiveDb::open(&dir.path().join("live.db")).expect("live.db");
    let kept: u64 = db.counters().expect("counters").values().sum();
    let per_second = |cpu: Duration| cpu.as_secs_f64() * 1000.0 / f64::from(SECONDS);
    println!(
        "gamelog: {SERVERS} servers x {LINES_PER_SECOND} lines/s for {SECONDS} s: {sent} packets sent to each; \
         the bare loop received {}, the listener kept {kept} events ({} dropped)",
        received.load(Ordering::Relaxed),
        db.dropped().expect("dropped")
    );
    println!("  listener:  {:.1} ms CPU per second of traffic", per_second(listener_cpu));
    println!("  bare loop: {:.1} ms CPU per second of traffic", per_second(bare_cpu));
    println!("  ratio:     {:.2}x", listener_cpu.as_secs_f64() / bare_cpu.as_secs_f64().max(1e-9));
}

/// Every server's lines, paced in 10 ms ticks, to both sockets; returns the packets sent to each.
fn send(to: (std::net::SocketAddr, std::net::SocketAddr)) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("the sender's socket");
    let per_tick = SERVERS * LINES_PER_SECOND / 100;
    let start = Instant::now();
    let mut sent = 0u64;
    for tick in 0..u64::from(SECONDS) * 100 {
        for i in 0..per_tick {
            let n = tick * u64::from(per_tick) + u64::from(i);
            let server = (n % u64::from(SERVERS)) as u32;
            let packet = packet(server, n);
            let _ = socket.send_to(&packet, to.0);
            let _ = socket.send_to(&packet, to.1);
            sent += 1;
        }
        let next = start + Duration::from_millis((tick + 1) * 10);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    sent
}

fn secret(server: u32) -> u32 {
    100_000_000 + server * 7_919
}

/// The `n`th line of `server`: mostly chat, players coming and going, and lines nothing keeps.
fn packet(server: u32, n: u64) -> Vec<u8> {
    let player = format!("\"Player {}<{}><STEAM_1:0:{}><Survivor>\"", n % 8, n % 8 + 2, 1000 + n % 8);
    let text = match n % 10 {
        0..=4 => format!("{player} say \"line {n} of the chat, as long as people type them\""),
        5 => format!("{player} say_team \"rush left\""),
        6 => format!("{player} connected, address \"192.0.2.{}:27005\"", n % 250),
        7 => format!("{player} entered the game"),
        8 => format!("{player} disconnected (reason \"Disconnect\")"),
        _ => "server_cvar: \"sv_cheats\" \"0\"".to_owned(),
    };
    let line = format!("S{}L 12/01/2026 - 19:00:00: {text}\n\0", secret(server));
    [&b"\xff\xff\xff\xff"[..], line.as_bytes()].concat()
}

fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map(Duration::from).unwrap_or_default()
}
