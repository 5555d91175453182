//! Attacks on sign-in, sessions, live views and the accounts database, over real HTTP.

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::support::{HealthWatch, MAX_RSS_KIB, PASSWORD, Setup, TestApp, peak_rss_kib, reset_peak_rss};

/// The app behind a proxy on 127.0.0.1, as behind nginx on the same host.
fn behind_a_proxy() -> TestApp {
    TestApp::start_with(Setup { trusted_proxies: "127.0.0.1", ..Setup::default() })
}

fn from(address: &str) -> [(&str, &str); 1] {
    [("X-Forwarded-For", address)]
}

#[test]
fn wrong_passwords_from_one_address_slow_that_address_only() {
    let app = behind_a_proxy();
    let attacker = "203.0.113.9";
    let mut client = app.client();
    let wrong = [("name", "alice"), ("password", "not alices password")];
    for _ in 0..web::auth::FREE_FAILURES {
        assert_eq!(client.post_with("/login", &from(attacker), &wrong).status, 401);
    }
    // Now this address waits, even with the right password, and is told how long.
    let right = [("name", "alice"), ("password", PASSWORD)];
    let waits = client.post_with("/login", &from(attacker), &right);
    assert_eq!(waits.status, 429, "{}", waits.body);
    assert!(waits.body.contains("Too many failed sign-ins"), "{}", waits.body);
    let first: u64 = waits.retry_after.unwrap().parse().unwrap();
    assert!(first >= 1, "{first}");
    // Addresses the client wrote itself, left of the proxy's, change nothing.
    let spoofed = client.post_with("/login", &from(&format!("198.51.100.7, {attacker}")), &right);
    assert_eq!(spoofed.status, 429, "{}", spoofed.body);
    // The owner signs in from elsewhere, and another account from the attacker's address too.
    let mut owner = app.client();
    assert_eq!(owner.post_with("/login", &from("198.51.100.7"), &right).status, 303);
    let mut bob = app.client();
    assert_eq!(bob.post_with("/login", &from(attacker), &[("name", "bob"), ("password", PASSWORD)]).status, 303);
    // Each further failure doubles the wait.
    std::thread::sleep(Duration::from_secs(first));
    assert_eq!(client.post_with("/login", &from(attacker), &wrong).status, 401);
    let longer = client.post_with("/login", &from(attacker), &right);
    assert_eq!(longer.status, 429);
    assert_eq!(longer.retry_after.unwrap().parse::<u64>().unwrap(), first * 2);
}

#[test]
fn guesses_sent_at_once_get_no_more_tries_than_guesses_sent_one_by_one() {
    let app = Arc::new(behind_a_proxy());
    // Twenty guesses at the same moment, each on a connection of its own.
    let start = Arc::new(std::sync::Barrier::new(20));
    let guesses: Vec<_> = (0..20)
        .map(|_| {
            let (app, start) = (app.clone(), start.clone());
            std::thread::spawn(move || {
                let mut client = app.client();
                start.wait();
                client.post_with("/login", &from("203.0.113.11"), &[("name", "alice"), ("password", "a guess")]).status
            })
        })
        .collect();
    let statuses: Vec<u16> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    // The free tries, and at most one more should the first wait have passed meanwhile.
    assert!(checked <= web::auth::FREE_FAILURES as usize + 1, "{checked} guesses were checked: {statuses:?}");
}

#[test]
fn many_failures_behind_the_proxy_do_not_lock_everyone_out() {
    let app = behind_a_proxy();
    let mut client = app.client();
    // More failures than any one address should need, of many names, from one place.
    for attempt in 0..25 {
        let name = format!("nobody-{attempt}");
        let reply = client.post_with("/login", &from("203.0.113.10"), &[("name", &name), ("password", "guess")]);
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    for (address, name) in [("192.0.2.1", "bob"), ("203.0.113.10", "alice")] {
        let reply = app.client().post_with("/login", &from(address), &[("name", name), ("password", PASSWORD)]);
        assert_eq!(reply.status, 303, "{name} from {address}: {}", reply.body);
    }
}

#[test]
fn forwarded_addresses_from_an_untrusted_peer_are_ignored() {
    let app = TestApp::start();
    let mut client = app.client();
    for attempt in 0..web::auth::FREE_FAILURES {
        // A new address each time, which the peer (not a trusted proxy) cannot choose.
        let address = format!("198.51.100.{attempt}");
        let reply = client.post_with("/login", &from(&address), &[("name", "alice"), ("password", "guess")]);
        assert_eq!(reply.status, 401);
    }
    let reply = client.post_with("/login", &from("192.0.2.99"), &[("name", "alice"), ("password", PASSWORD)]);
    assert_eq!(reply.status, 429, "{}", reply.body);
}

#[test]
fn the_current_password_of_the_account_page_is_limited_too() {
    let app = behind_a_proxy();
    let mut alice = app.signed_in("alice");
    let new = "a much better passphrase";
    for _ in 0..web::auth::FREE_FAILURES {
        let reply = alice.submit("/account", &[("current", "a guess at it"), ("new", new), ("repeat", new)]);
        assert_eq!(reply.status, 422, "{}", reply.body);
    }
    let reply = alice.submit("/account", &[("current", PASSWORD), ("new", new), ("repeat", new)]);
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert!(reply.retry_after.is_some());
    // Elsewhere, the password is what it was.
    let mut elsewhere = app.client();
    assert_eq!(elsewhere.post_with("/login", &from("192.0.2.3"), &[("name", "alice"), ("password", new)]).status, 401);
    assert_eq!(
        elsewhere.post_with("/login", &from("192.0.2.3"), &[("name", "alice"), ("password", PASSWORD)]).status,
        303
    );
}

#[test]
fn a_sign_in_from_another_origin_or_none_is_refused() {
    let app = TestApp::start();
    let own = format!("http://{}", app.addr);
    for origin in [
        "null",
        "http://evil.example",
        &format!("{own}.evil.example"),
        &format!("http://evil.example@{}", app.addr),
        &format!("ftp://{}", app.addr),
        "",
    ] {
        let mut client = app.client();
        let reply = client.post_with("/login", &[("Origin", origin)], &[("name", "alice"), ("password", PASSWORD)]);
        assert_eq!(reply.status, 403, "Origin {origin:?}: {}", reply.body);
        assert!(client.cookie.is_none(), "Origin {origin:?} got a session");
    }
    for headers in [vec![("Origin", own.as_str())], vec![]] {
        let mut client = app.client();
        let reply = client.post_with("/login", &headers, &[("name", "alice"), ("password", PASSWORD)]);
        assert_eq!(reply.status, 303, "{headers:?}: {}", reply.body);
    }
}

/// An `l4d2ctl` whose `logs` prints console lines until it is ended, as `journalctl -f` does;
/// for anything else there is no host.
fn console_l4d2ctl(dir: &Path) -> PathBuf {
    let path = dir.join("console-l4d2ctl");
    std::fs::write(
        &path,
        "#!/bin/sh\nif [ \"$1\" = logs ]; then\n  i=0\n  while :; do i=$((i + 1)); echo \"$2 console line $i\"; sleep 0.1; done\nfi\necho \"l4d2ctl: no host here\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn with_consoles() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(Setup { l4d2ctl: console_l4d2ctl(dir.path()), ..Setup::default() });
    (app, dir)
}

/// A live view held open; its lines arrive as they come, None once it ended.
struct Live {
    status: u16,
    lines: mpsc::Receiver<Option<String>>,
}

impl Live {
    fn open(app: &TestApp, cookie: &Option<String>, path: &str) -> Live {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = agent.get(app.url(path));
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        let response = request.call().unwrap();
        let status = response.status().as_u16();
        let (tx, lines) = mpsc::channel();
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if tx.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        });
        Live { status, lines }
    }

    /// The next console line's text; None when the view ended.
    fn next_console_line(&self) -> Option<String> {
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(10)).expect("a line or the end within 10 s")?;
            if let Some(data) = line.strip_prefix("data: ") {
                return Some(data.to_owned());
            }
        }
    }

    /// Waits for the view to end, skipping what it still sends.
    fn ends(&self) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                _ => {}
            }
        }
        false
    }

    fn body(&self) -> String {
        let mut body = String::new();
        while let Ok(Some(line)) = self.lines.recv_timeout(Duration::from_secs(10)) {
            body.push_str(&line);
        }
        body
    }
}

/// Children of this process (the app's followers) following a console, not yet ended.
fn followers() -> usize {
    let me = std::process::id().to_string();
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((_, after_name)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let (state, parent) = (fields[0], fields[1]);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let follows = String::from_utf8_lossy(&cmdline).contains("--follow");
        if parent == me && state != "Z" && follows {
            count += 1;
        }
    }
    count
}

#[test]
fn a_stream_flood_is_refused_past_the_cap_and_others_still_stream() {
    let (app, _dir) = with_consoles();
    let bob = app.signed_in("bob");
    let mut open = Vec::new();
    for _ in 0..web::live::STREAMS_PER_USER {
        let live = Live::open(&app, &bob.cookie, "/servers/versus-1/log");
        assert_eq!(live.status, 200);
        open.push(live);
    }
    for path in ["/servers/versus-1/log", "/servers/versus-1/events", "/events/servers"] {
        let refused = Live::open(&app, &bob.cookie, path);
        assert_eq!(refused.status, 429, "{path}");
        assert!(refused.body().contains("live views open"), "{path}");
    }
    assert!(open[0].next_console_line().unwrap().contains("versus-1 console line"));
    // The owner of another server, in a session of her own, still gets her console.
    let alice = app.signed_in("alice");
    let hers = Live::open(&app, &alice.cookie, "/servers/coop-1/log");
    assert_eq!(hers.status, 200);
    assert!(hers.next_console_line().unwrap().contains("coop-1 console line"));
    // A view closed gives its place back.
    drop(open.pop());
    let mut again = None;
    for _ in 0..50 {
        let live = Live::open(&app, &bob.cookie, "/servers/versus-1/log");
        if live.status == 200 {
            again = Some(live);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(again.is_some(), "a closed view's place was never given back");
}

#[test]
fn live_views_are_capped_in_all_too() {
    let app = TestApp::start();
    let users = web::live::STREAMS / web::live::STREAMS_PER_USER;
    let mut open = Vec::new();
    for index in 0..=users {
        let name = format!("viewer-{index}");
        app.app.accounts.create_user(&name, None, PASSWORD, false).unwrap();
        let client = app.signed_in(&name);
        let views = if index < users { web::live::STREAMS_PER_USER } else { 1 };
        for _ in 0..views {
            open.push((index, Live::open(&app, &client.cookie, "/events/servers")));
        }
    }
    let (last, refused) = open.pop().unwrap();
    assert_eq!(last, users);
    assert_eq!(refused.status, 429);
    assert!(refused.body().contains("as many as it serves at once"));
    assert!(open.iter().all(|(_, live)| live.status == 200), "every view below the cap is served");
}

#[test]
fn the_viewers_of_one_console_share_one_follower() {
    let (app, _dir) = with_consoles();
    let alice = app.signed_in("alice");
    let ada = app.signed_in("ada");
    let mut views = Vec::new();
    for cookie in [&alice.cookie, &alice.cookie, &alice.cookie, &ada.cookie, &ada.cookie] {
        let live = Live::open(&app, cookie, "/servers/coop-1/log");
        assert_eq!(live.status, 200);
        assert!(live.next_console_line().unwrap().contains("coop-1 console line"));
        views.push(live);
    }
    assert_eq!(followers(), 1, "five viewers, one follower");
    let metrics = app.client().get("/metrics").body;
    assert!(metrics.contains("left4me_web_live_views 5\n"), "{metrics}");
    assert!(metrics.contains("left4me_web_console_followers 1\n"), "{metrics}");
    let other = Live::open(&app, &alice.cookie, "/servers/coop-2/log");
    assert!(other.next_console_line().unwrap().contains("coop-2 console line"));
    assert_eq!(followers(), 2, "one follower per server");
    drop(views);
    drop(other);
    // The follower ends with its last viewer.
    let mut left = followers();
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = followers();
    }
    assert_eq!(left, 0, "followers outlived their viewers");
}

#[test]
fn a_stream_ends_with_its_session_or_its_user() {
    let (app, _dir) = with_consoles();
    let mut alice = app.signed_in("alice");
    let elsewhere = app.signed_in("alice");
    let console = Live::open(&app, &alice.cookie, "/servers/coop-1/log");
    let status = Live::open(&app, &elsewhere.cookie, "/servers/coop-1/events");
    let other_console = Live::open(&app, &elsewhere.cookie, "/servers/coop-1/log");
    assert!(console.next_console_line().is_some());
    assert!(other_console.next_console_line().is_some());
    // Signing out ends that session's views, not the other session's.
    assert_eq!(alice.submit("/logout", &[]).status, 303);
    assert!(console.ends(), "the signed-out session's console goes on");
    assert!(other_console.next_console_line().is_some(), "the other session's console ended");
    // A disabled user's views end, whatever they show.
    let mut ada = app.signed_in("ada");
    assert_eq!(ada.submit("/users/alice/disable", &[]).status, 303);
    assert!(other_console.ends(), "a disabled user's console goes on");
    assert!(status.ends(), "a disabled user's status view goes on");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `left4me-web create-user <name>` on `root`, under umask 022.
fn create_user(root: &Path, name: &str) -> std::process::Command {
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "umask 022; exec \"$0\" create-user \"$1\"", env!("CARGO_BIN_EXE_left4me-web"), name])
        .env("LEFT4ME_ROOT", root)
        .env("LEFT4ME_PASSWORD", PASSWORD)
        .stdin(std::process::Stdio::null());
    command
}

#[test]
fn the_accounts_database_is_private_whatever_the_umask() {
    let root = tempfile::tempdir().unwrap();
    let db = web::web_db(root.path());
    let made = create_user(root.path(), "carol").output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(mode(&db), 0o600);
    // Its write-ahead log and shared memory, while it is open, are as private.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let accounts = web::accounts::Accounts::open(&db).unwrap();
    assert!(accounts.user_by_name("carol").unwrap().is_some());
    for suffix in ["-wal", "-shm"] {
        assert_eq!(mode(&PathBuf::from(format!("{}{suffix}", db.display()))), 0o600, "{suffix}");
    }
    drop(accounts);
    // One made readable by all (by an older version, or by hand) is made private when opened.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let made = create_user(root.path(), "dave").output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn a_new_accounts_database_opened_by_many_at_once_never_fails() {
    for round in 0..12 {
        let root = tempfile::tempdir().unwrap();
        let db = web::web_db(root.path());
        let processes: Vec<_> =
            (0..4).map(|i| create_user(root.path(), &format!("user-{i}")).spawn().unwrap()).collect();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let db = db.clone();
                std::thread::spawn(move || web::accounts::Accounts::open(&db).map(drop).map_err(|e| e.to_string()))
            })
            .collect();
        for thread in threads {
            thread.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        for process in processes {
            let output = process.wait_with_output().unwrap();
            assert!(output.status.success(), "round {round}: {}", String::from_utf8_lossy(&output.stderr));
        }
        let accounts = web::accounts::Accounts::open(&db).unwrap();
        assert_eq!(accounts.users().unwrap().len(), 4, "round {round}");
    }
}

#[test]
fn the_app_stays_small_and_answers_through_an_attack_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(TestApp::start_with(Setup {
        l4d2ctl: console_l4d2ctl(dir.path()),
        trusted_proxies: "127.0.0.1",
        ..Setup::default()
    }));
    reset_peak_rss();
    let watch = HealthWatch::start(&app);

    // Sign-in floods: many names from many addresses, eight at once.
    let flooders: Vec<_> = (0..8)
        .map(|thread| {
            let app = app.clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for attempt in 0..12 {
                    let address = format!("10.{thread}.{attempt}.1");
                    let name = if attempt % 3 == 0 { "alice".to_owned() } else { format!("nobody-{thread}-{attempt}") };
                    let form = [("name", name.as_str()), ("password", "a wrong guess")];
                    statuses.push(app.client().post_with("/login", &from(&address), &form).status);
                }
                // One pair again and again: past its free tries it waits, without a hash each.
                for _ in 0..20 {
                    let form = [("name", "alice"), ("password", "a wrong guess")];
                    statuses.push(app.client().post_with("/login", &from(&format!("10.{thread}.0.1")), &form).status);
                }
                statuses
            })
        })
        .collect();
    for flooder in flooders {
        let statuses = flooder.join().unwrap();
        assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
        assert!(statuses.contains(&429), "the repeated pair waits: {statuses:?}");
    }
    let owner = app.client().post_with("/login", &from("192.0.2.7"), &[("name", "alice"), ("password", PASSWORD)]);
    assert_eq!(owner.status, 303, "the owner signs in after the flood");

    // Forged sign-ins and writes.
    for origin in ["null", "http://evil.example", "https://evil.example", "http://localhost.evil.example"] {
        let mut client = app.client();
        let reply = client.post_with("/login", &[("Origin", origin)], &[("name", "alice"), ("password", PASSWORD)]);
        assert_eq!(reply.status, 403, "{origin}");
    }
    let mut alice = app.signed_in("alice");
    let zeros = "0".repeat(64);
    for forged in [vec![], vec![("csrf", "")], vec![("csrf", zeros.as_str())]] {
        assert_eq!(alice.post("/logout", &forged).status, 403);
    }
    assert_eq!(alice.get("/").status, 200, "the session survived the forged sign-outs");

    // A stream flood: past the cap each is refused at once.
    let bob = app.signed_in("bob");
    let streams: Vec<Live> = (0..40).map(|_| Live::open(&app, &bob.cookie, "/servers/versus-1/log")).collect();
    let refused = streams.iter().filter(|s| s.status == 429).count();
    assert_eq!(refused, 40 - web::live::STREAMS_PER_USER);
    assert_eq!(followers(), 1);
    drop(streams);

    // A flood of distinct names and addresses leaves the limiter's memory bounded.
    let limiter = web::auth::Limiter::default();
    for i in 0..(web::auth::MAX_PAIRS as u32 + 5_000) {
        limiter.fail(&format!("name-{i}"), std::net::IpAddr::from(i.to_be_bytes()));
    }
    assert!(limiter.len() <= web::auth::MAX_PAIRS, "{}", limiter.len());

    watch.finish();
    let peak = peak_rss_kib();
    assert!(peak < MAX_RSS_KIB, "the app grew to {peak} KiB under attack, more than {MAX_RSS_KIB} KiB");
}
