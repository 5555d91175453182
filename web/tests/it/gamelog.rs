//! The game's log stream end to end, in the sandbox host as installed: sim-srcds sends its log to
//! `left4me live` (left4me-live.service), and the web app shows it on the server's page, live
//! over server-sent events, to its owner only; forged packets are dropped and counted.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::support::{Client, PASSWORD, installed_host, wait_coop_1_runs};

#[test]
fn a_player_joining_and_chatting_shows_live_on_the_page_and_forged_packets_are_dropped() {
    let (_disk, sandbox, port) = installed_host("gamelog-disk-");
    for user in ["alice", "bob"] {
        let made =
            sandbox.run_ok("sh", &["-c", &format!("LEFT4ME_PASSWORD='{PASSWORD}' left4me-web create-user {user}")]);
        assert!(made.contains(&format!("created {user}")), "{made}");
    }
    wait_coop_1_runs(&sandbox, Duration::from_secs(120));
    // The secret is the instance's own, kept out of what the page shows.
    let secret = sandbox.run_ok("cat", &["/var/lib/left4me/instances/coop-1/log_secret"]).trim().to_owned();
    assert!(secret.len() >= 9 && secret.bytes().all(|b| b.is_ascii_digit()), "{secret:?}");
    let mode = sandbox.run_ok("stat", &["-c", "%U:%G %a", "/var/lib/left4me/instances/coop-1/log_secret"]);
    assert_eq!(mode.trim(), "root:left4me 640");

    let rcon = |command: &[&str]| sandbox.run_ok("l4d2ctl", &[&["rcon", "coop-1"][..], command].concat());
    rcon(&["sim_players", "1"]);
    rcon(&["sim_say", "1", "hello from the game"]);

    let init = sandbox.init_pid();
    let base = format!("http://127.0.0.1:{port}");
    let fail = |e: String| -> ! {
        let journal = sandbox.run(
            "journalctl",
            &["-u", "left4me-live", "-u", "left4me-web", "-u", "left4me-server@coop-1", "-n", "120", "--no-pager"],
        );
        let cfg =
            sandbox.run("sh", &["-c", "cat /var/lib/left4me/instances/coop-1/layers/*/left4dead2/cfg/server.cfg"]);
        panic!(
            "{e}\n\nthe services' journal:\n{}\nserver.cfg:\n{}",
            String::from_utf8_lossy(&journal.stdout),
            String::from_utf8_lossy(&cfg.stdout)
        );
    };
    let (page_base, page_secret) = (base.clone(), secret.clone());
    let (after, cookie) = in_network(init, move || on_the_page(&page_base, &page_secret)).unwrap_or_else(|e| fail(e));

    // Live: a stream opened after the page's latest event gets what is said next.
    let addr = base.trim_start_matches("http://").to_owned();
    let watching = std::thread::spawn(move || {
        in_network(init, move || {
            read_stream(&addr, &format!("/servers/coop-1/game?after={after}"), &cookie, "said live")
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    rcon(&["sim_say", "1", "said live"]);
    let streamed = watching.join().unwrap_or_else(|_| Err("the stream's reader panicked".into()));
    let streamed = streamed.unwrap_or_else(|e| fail(e));
    assert!(streamed.contains("event: game") && streamed.contains("<b>Player 1</b>: said live"), "{streamed}");
    assert!(!streamed.contains("hello from the game"), "the stream starts after the page's events: {streamed}");

    let others = base.clone();
    in_network(init, move || nobody_else_sees_it(&others, &secret)).unwrap_or_else(|e| fail(e));
    rcon(&["sim_players", "0"]);

    // systemd holds the log's port: no other process of the game's user takes it, not while
    // left4me live runs and not while it is stopped (as when it restarts).
    let taken = || {
        let second = sandbox.run("timeout", &["10", "runuser", "-u", "left4me", "--", "left4me", "live"]);
        let said = String::from_utf8_lossy(&second.stderr).into_owned();
        (second.status.code(), said)
    };
    for stopped in [false, true] {
        if stopped {
            sandbox.run_ok("systemctl", &["stop", "left4me-live.service"]);
        }
        let (code, said) = taken();
        assert_eq!(code, Some(2), "a second left4me live (live stopped: {stopped}) ran: {said}");
        assert!(said.contains("cannot listen on 127.0.0.1:27500"), "{said}");
    }
    assert_eq!(sandbox.run_ok("systemctl", &["is-active", "left4me-live.socket"]).trim(), "active");
    sandbox.power_off();
}

/// Runs `f` on a thread in the sandbox's network (a namespace is per thread).
fn in_network<T: Send + 'static>(
    init: i32,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        let netns =
            std::fs::File::open(format!("/proc/{init}/ns/net")).map_err(|e| format!("the sandbox's network: {e}"))?;
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering the sandbox's network: {e}"))?;
        f()
    })
    .join()
    .unwrap_or_else(|_| Err("the thread in the sandbox's network panicked".into()))
}

/// alice's page of coop-1 once the chat is on it; returns its latest event's id and her cookie.
fn on_the_page(base: &str, secret: &str) -> Result<(String, String), String> {
    let mut alice = signed_in(base, "alice")?;
    let mut page = String::new();
    wait_until(Duration::from_secs(30), || {
        page = alice.get("/servers/coop-1").body;
        page.contains("hello from the game")
    })
    .map_err(|()| format!("the chat never showed on coop-1's page:\n{page}"))?;
    check(page.contains("<td>Player 1</td><td><code>STEAM_1:0:1001</code></td>"), "Player 1 is on", &page)?;
    check(page.contains("entered the game"), "the page lists who came", &page)?;
    check(!page.contains(secret), "the page never shows the log secret", &page)?;
    check(page.contains("sv_logsecret &quot;(kept on the host, never shown)&quot;"), "the secret is hidden", &page)?;
    let after = page.rsplit("data-id=\"").next().and_then(|rest| rest.split('"').next()).unwrap_or("0").to_owned();
    Ok((after, alice.cookie.clone().ok_or("alice has no session cookie")?))
}

/// bob owns versus-1, not coop-1: he sees neither its page nor its game; forged packets are
/// dropped.
fn nobody_else_sees_it(base: &str, secret: &str) -> Result<(), String> {
    let bob = signed_in(base, "bob")?;
    let (addr, cookie) = (base.trim_start_matches("http://"), bob.cookie.clone().ok_or("bob has no session cookie")?);
    for path in ["/servers/coop-1", "/servers/coop-1/game?after=0"] {
        // Read raw and bounded: a stream that wrongly answered would never end.
        let reply = read_raw(addr, path, &cookie, |seen| seen.contains("\r\n\r\n"))?;
        check(
            reply.starts_with("HTTP/1.1 404") && !reply.contains("said live"),
            &format!("bob gets no {path}"),
            &reply,
        )?;
    }
    forged_packets_are_dropped(&mut signed_in(base, "alice")?, secret)
}

/// Packets without coop-1's secret, sent to the listener as a local attacker would: nothing they
/// say is kept, and each is counted.
fn forged_packets_are_dropped(alice: &mut Client, secret: &str) -> Result<(), String> {
    let dropped = |alice: &mut Client| -> Result<u64, String> {
        let metrics = alice.get("/metrics").body;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("left4me_game_log_dropped_packets_total "))
            .and_then(|n| n.trim().parse().ok())
            .ok_or(format!("no dropped-packet count in /metrics:\n{metrics}"))
    };
    let before = dropped(alice)?;
    let wrong = if secret == "123456789" { "987654321" } else { "123456789" };
    let line = "L 12/01/2026 - 19:00:00: \"Mallory<9><STEAM_1:0:666><Survivor>\" say \"forged chat\"\n\0";
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    for kind in ["R".to_owned(), format!("S{wrong}")] {
        let packet = [&b"\xff\xff\xff\xff"[..], kind.as_bytes(), line.as_bytes()].concat();
        socket.send_to(&packet, ("127.0.0.1", 27500)).map_err(|e| e.to_string())?;
    }
    let mut counted = before;
    wait_until(Duration::from_secs(10), || {
        counted = dropped(alice).unwrap_or(before);
        counted >= before + 2
    })
    .map_err(|()| format!("the forged packets were not counted: {before} dropped before, {counted} after"))?;
    let page = alice.get("/servers/coop-1").body;
    check(!page.contains("forged chat") && !page.contains("Mallory"), "nothing forged is kept", &page)?;
    let metrics = alice.get("/metrics").body;
    check(metrics.contains("left4me_game_joins_total{server=\"coop-1\"} 1"), "one join counted", &metrics)?;
    check(metrics.contains("left4me_game_chat_messages_total{server=\"coop-1\"} 2"), "two lines said", &metrics)
}

fn signed_in(base: &str, name: &str) -> Result<Client, String> {
    let mut client = Client::at(base);
    let reply = client.post("/login", &[("name", name), ("password", PASSWORD)]);
    check(reply.status == 303, &format!("{name} signs in"), &reply.body)?;
    Ok(client)
}

/// What `path` answers `cookie`'s session, raw, read until `done` holds of it, the connection
/// ends or 30 s pass: a stream never ends by itself.
fn read_raw(addr: &str, path: &str, cookie: &str, done: impl Fn(&str) -> bool) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let (deadline, mut seen, mut buf) = (Instant::now() + Duration::from_secs(30), Vec::new(), [0u8; 4096]);
    while Instant::now() < deadline && !done(&String::from_utf8_lossy(&seen)) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("reading {path}: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&seen).into_owned())
}

/// The server-sent events of `path` until `until` is in them.
fn read_stream(addr: &str, path: &str, cookie: &str, until: &str) -> Result<String, String> {
    let seen = read_raw(addr, path, cookie, |seen| seen.contains(until))?;
    check(seen.contains(until), &format!("{path} to send {until:?}"), &seen)?;
    Ok(seen)
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(())
}

fn check(ok: bool, what: &str, shown: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(format!("expected {what}, in:\n{shown}")) }
}
