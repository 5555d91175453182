//! `$ROOT/live.db` on plain values: who is on follows the events, counters outlive retention,
//! samples add up at each width and each width keeps only its days.

use left4me_state::Name;
use reconciler::live::db::{GameEventKind, LiveDb, NewEvent, Sample, WIDTHS};

fn event(server: &str, at: &str, kind: GameEventKind, player: Option<(&str, &str)>, text: Option<&str>) -> NewEvent {
    NewEvent {
        server: Name::new(server).unwrap(),
        at: at.to_owned(),
        kind,
        player: player.map(|(name, _)| name.to_owned()),
        steam_id: player.map(|(_, id)| id.to_owned()),
        text: text.map(str::to_owned),
    }
}

#[test]
fn who_is_on_follows_the_events_and_counters_outlive_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = LiveDb::open(&dir.path().join("live.db")).unwrap();
    let (ellis, nick) = (("Ellis", "STEAM_1:0:11"), ("Nick", "STEAM_1:1:22"));
    db.add_events(&[
        event("coop-1", "2026-12-01T10:00:00.000Z", GameEventKind::Connected, Some(ellis), None),
        event("coop-1", "2026-12-01T10:00:01.000Z", GameEventKind::Entered, Some(ellis), None),
        event("coop-1", "2026-12-01T10:00:02.000Z", GameEventKind::Entered, Some(nick), None),
        event("coop-1", "2026-12-01T10:00:03.000Z", GameEventKind::Say, Some(ellis), Some("hi")),
        event("coop-2", "2026-12-01T10:00:04.000Z", GameEventKind::Say, Some(nick), Some("elsewhere")),
        event("coop-1", "2026-12-01T11:00:00.000Z", GameEventKind::Disconnected, Some(nick), Some("Disconnect")),
    ])
    .unwrap();
    let coop1 = Name::new("coop-1").unwrap();
    let on: Vec<String> = db.players(&coop1).unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(on, ["Ellis"]);
    let events = db.events_after(&coop1, 0, 100).unwrap();
    assert_eq!(events.len(), 5, "{events:#?}");
    assert_eq!(db.events_after(&coop1, events[2].id, 100).unwrap().len(), 2);
    assert_eq!(
        db.latest_events(&coop1, 2).unwrap().iter().map(|e| e.kind).collect::<Vec<_>>(),
        [GameEventKind::Say, GameEventKind::Disconnected]
    );
    assert_eq!(db.forget_events_before("2026-12-01T10:30:00.000Z").unwrap(), 5);
    assert_eq!(db.events_after(&coop1, 0, 100).unwrap().len(), 1);
    let counters = db.counters().unwrap();
    assert_eq!(counters.get(&(coop1.clone(), GameEventKind::Entered)), Some(&2));
    assert_eq!(counters.get(&(Name::new("coop-2").unwrap(), GameEventKind::Say)), Some(&1));
    db.clear_players(&coop1).unwrap();
    assert!(db.players(&coop1).unwrap().is_empty());
}

#[test]
fn samples_add_up_at_each_width_and_each_width_keeps_its_days() {
    let dir = tempfile::tempdir().unwrap();
    let db = LiveDb::open(&dir.path().join("live.db")).unwrap();
    let server = Name::new("coop-1").unwrap();
    // The start of an hour.
    let start: i64 = 1_800_003_600;
    for (i, players) in [2u32, 4, 6, 8].into_iter().enumerate() {
        let at = start + 30 * i as i64;
        let sample = Sample { at, players, cpu: (i > 0).then_some(10.0 * i as f64), memory: Some(100 + i as u64) };
        db.add_samples(&[(server.clone(), sample)]).unwrap();
    }
    let raw = db.points_of(&server, 30, 0).unwrap();
    assert_eq!(raw.len(), 4);
    let hour = db.points_of(&server, 3_600, 0).unwrap();
    assert_eq!(hour.len(), 1);
    assert_eq!(
        (hour[0].players, hour[0].players_max, hour[0].cpu, hour[0].memory_max),
        (5.0, 8, Some(20.0), Some(103))
    );
    assert_eq!(db.points(900, 0).unwrap()[&server].len(), 1);
    // Eight days later the 30-s samples of then are gone; the hourly point stays.
    let later = start + 8 * 86_400;
    db.add_samples(&[(server.clone(), Sample { at: later, players: 0, cpu: None, memory: None })]).unwrap();
    assert_eq!(db.points_of(&server, 30, 0).unwrap().len(), 1);
    assert_eq!(db.points_of(&server, 3_600, 0).unwrap().len(), 2);
    assert!(WIDTHS.iter().all(|(width, kept)| kept > width));
    assert_eq!(db.newest_sample().unwrap(), Some(later - later % 30));
    let reader = LiveDb::open_read_only(&dir.path().join("live.db")).unwrap();
    assert_eq!(reader.points_of(&server, 3_600, start + 1).unwrap().len(), 1);
    assert!(LiveDb::open_read_only(&dir.path().join("missing.db")).is_err());
}

/// A listener on a real socket over a real live.db, its thread stopped when dropped.
struct Listening {
    dir: tempfile::TempDir,
    to: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listening {
    fn start() -> Listening {
        use reconciler::live::listen::{Listener, Secrets};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("instances/coop-1")).unwrap();
        std::fs::write(dir.path().join("instances/coop-1/log_secret"), "123456789\n").unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = socket.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (db, instances, stopped) = (dir.path().join("live.db"), dir.path().join("instances"), stop.clone());
        drop(LiveDb::open(&db).unwrap());
        let thread = std::thread::spawn(move || {
            let db = LiveDb::open(&db).unwrap();
            Listener::new(socket, Secrets::new(&instances)).serve(&db, &stopped).unwrap();
        });
        Listening { dir, to, stop, thread: Some(thread) }
    }

    fn db(&self) -> LiveDb {
        LiveDb::open_read_only(&self.dir.path().join("live.db")).unwrap()
    }

    /// Waits (at most 10 s) until `done` holds of the database.
    fn wait(&self, what: &str, done: impl Fn(&LiveDb) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done(&self.db()) {
            assert!(std::time::Instant::now() < deadline, "waited for {what}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn log_packet(kind: &str, text: &str) -> Vec<u8> {
    [&b"\xff\xff\xff\xff"[..], kind.as_bytes(), format!("L 12/01/2026 - 19:00:00: {text}\n\0").as_bytes()].concat()
}

#[test]
fn the_listener_keeps_what_a_servers_secret_signs_and_drops_and_counts_the_rest() {
    let listening = Listening::start();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |packet: &[u8]| {
        socket.send_to(packet, listening.to).unwrap();
    };
    let ellis = "\"Ellis<2><STEAM_1:0:12345><>\"";
    send(&log_packet("S123456789", &format!("{ellis} connected, address \"10.0.0.2:27005\"")));
    send(&log_packet("S123456789", &format!("{ellis} entered the game")));
    // Forged: no secret, a wrong one, a secret's prefix, too long, no log line, bytes of nothing.
    let forged = "\"Mallory<9><STEAM_1:0:666><Survivor>\" say \"forged\"".to_owned();
    send(&log_packet("R", &forged));
    send(&log_packet("S987654321", &forged));
    send(&log_packet("S12345678", &forged));
    send(&log_packet("S123456789", &format!("{forged}{}", " ".repeat(5000))));
    send(b"\xff\xff\xff\xffS123456789hello");
    send(&[0xff; 3]);
    // A flood of forged packets costs the listener, and is counted as one number (paced, so
    // that the kernel's socket buffer drops none of them before the listener sees it).
    for i in 0..200 {
        send(&log_packet("S111111111", &forged));
        if i % 20 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    send(&log_packet("S123456789", "\"Ellis<2><STEAM_1:0:12345><Survivor>\" say \"hi\""));
    let coop1 = Name::new("coop-1").unwrap();
    listening.wait("Ellis's chat", |db| db.events_after(&coop1, 0, 100).unwrap().len() == 3);
    listening.wait("the drops to be counted", |db| db.dropped().unwrap() == 206);
    let db = listening.db();
    let events = db.events_after(&coop1, 0, 100).unwrap();
    assert_eq!(
        events.iter().map(|e| (e.kind, e.player.as_deref(), e.text.as_deref())).collect::<Vec<_>>(),
        [
            (GameEventKind::Connected, Some("Ellis"), None),
            (GameEventKind::Entered, Some("Ellis"), None),
            (GameEventKind::Say, Some("Ellis"), Some("hi")),
        ]
    );
    assert_eq!(
        db.players(&coop1).unwrap().iter().map(|p| p.steam_id.as_str()).collect::<Vec<_>>(),
        ["STEAM_1:0:12345"]
    );
    // The server started again: nobody is on.
    send(&log_packet("S123456789", "Log file started (file \"logs/L1201000.log\") (game \"/x\") (version \"8741\")"));
    listening.wait("the players to be cleared", |db| db.players(&coop1).unwrap().is_empty());
    assert_eq!(db.counters().unwrap().len(), 3, "only coop-1's kinds are a server's counters");
}

#[test]
fn players_kept_as_on_a_server_are_bounded_and_root_trims_no_database_behind_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    let db = LiveDb::open(&path).unwrap();
    let made_up: Vec<NewEvent> = (0..100)
        .map(|i| {
            let (name, id) = (format!("p{i}"), format!("STEAM_1:0:{i}"));
            event("coop-1", "2026-12-01T10:00:00.000Z", GameEventKind::Entered, Some((&name, &id)), None)
        })
        .collect();
    db.add_events(&made_up).unwrap();
    let coop1 = Name::new("coop-1").unwrap();
    assert_eq!(db.players(&coop1).unwrap().len(), reconciler::live::db::PLAYERS_KEPT as usize);
    // One already on is still seen again (a new name) at the bound.
    db.add_events(&[event(
        "coop-1",
        "2026-12-01T10:01:00.000Z",
        GameEventKind::Entered,
        Some(("Renamed", "STEAM_1:0:0")),
        None,
    )])
    .unwrap();
    assert!(db.players(&coop1).unwrap().iter().any(|p| p.name == "Renamed"));
    assert!(LiveDb::open_to_trim(&path).is_ok());
    let link = dir.path().join("linked.db");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(LiveDb::open_to_trim(&link).is_err(), "a symlink at the name is not followed");
    assert!(LiveDb::open_to_trim(&dir.path().join("missing.db")).is_err(), "nothing is made");
    assert!(!dir.path().join("missing.db").exists());
}
