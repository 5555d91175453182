//! The sampled history on the pages: the dashboard's sparklines and a server's charts, drawn from
//! the samples in `$ROOT/live.db` and shown only to whom may see the server.

use std::time::{Duration, SystemTime};

use left4me_state::Name;
use reconciler::live::db::{LiveDb, Sample};

use crate::support::TestApp;

/// Three samples of coop-1 (alice's) a quarter of an hour apart two hours ago, and one of
/// versus-1 (bob's); the app's next look reads them.
fn with_samples() -> (TestApp, i64) {
    let app = TestApp::start();
    let now = left4me_state::clock::unix_seconds(SystemTime::now()) as i64;
    let hour = now - 7200 - (now - 7200).rem_euclid(3600);
    // Made beside its place and renamed in, so the app never reads it half made: a read of an
    // empty live.db would be kept for 30 s.
    let path = reconciler::live::db::path(app.root.path());
    let making = path.with_extension("making");
    let db = LiveDb::open(&making).unwrap();
    let sample = |at, players, memory_mib: u64| Sample { at, players, cpu: Some(20.0), memory: Some(memory_mib << 20) };
    let coop = Name::new("coop-1").unwrap();
    db.add_samples(&[
        (coop.clone(), sample(hour, 2, 200)),
        (coop.clone(), sample(hour + 900, 4, 300)),
        (coop, sample(hour + 1800, 3, 250)),
        (Name::new("versus-1").unwrap(), sample(hour, 7, 100)),
    ])
    .unwrap();
    drop(db);
    std::fs::rename(&making, &path).unwrap();
    app.app.poke();
    for _ in 0..300 {
        if app.app.current().history.is_some() {
            return (app, hour);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the app never read live.db");
}

fn utc(at: i64) -> String {
    let text = left4me_state::clock::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(at as u64));
    text[..16].replace('T', " ")
}

#[test]
fn the_dashboard_draws_each_visible_servers_last_day_from_one_read() {
    let (app, hour) = with_samples();
    let body = app.signed_in("alice").get("/").body;
    let title = format!("coop-1, players over the last 24 hours: players: highest 4 at {} UTC", utc(hour + 900));
    assert!(body.contains(&format!("<title>{title}</title>")), "{body}");
    let svg = body.split(&title).nth(1).expect("the sparkline after its title");
    let path = svg.split(r#"d=""#).nth(1).unwrap().split('"').next().unwrap();
    // Three points a quarter of an hour apart: one line through them.
    assert_eq!((path.matches('M').count(), path.matches('l').count()), (1, 2), "{path}");
    // A server with no samples says so; bob's server, and its history, are not alice's to see.
    assert!(body.contains("no samples yet"), "coop-2 has none: {body}");
    assert!(!body.contains("versus-1"), "{body}");
    let bobs = app.signed_in("bob").get("/").body;
    assert!(bobs.contains("versus-1, players over the last 24 hours: players: highest 7"), "{bobs}");
    assert!(!bobs.contains("coop-1, players"), "{bobs}");
}

#[test]
fn a_servers_page_charts_its_week_to_whom_may_see_it() {
    let (app, hour) = with_samples();
    let mut alice = app.signed_in("alice");
    let page = alice.get("/servers/coop-1");
    assert_eq!(page.status, 200);
    let at = utc(hour);
    // One hour's point: the average of the three samples, the most of them, the highest memory.
    for title in [
        format!(
            "coop-1, players over the last 7 days: players: highest 3 at {at} UTC; most players: highest 4 at {at} UTC"
        ),
        format!("coop-1, CPU (percent of one core) over the last 7 days: CPU: highest 20% at {at} UTC"),
        format!("coop-1, memory over the last 7 days: memory: highest 300 MiB at {at} UTC"),
    ] {
        assert!(page.body.contains(&format!("<title>{title}</title>")), "{title} in {}", page.body);
    }
    assert!(page.body.contains("h0.1"), "a point alone is a dot: {}", page.body);
    let empty = alice.get("/servers/coop-2").body;
    assert!(empty.contains("No samples yet") && empty.contains(">no samples yet<"), "{empty}");
    let bobs = alice.get("/servers/versus-1");
    assert_eq!(bobs.status, 404);
    assert!(!bobs.body.contains("<svg"), "{}", bobs.body);
}

#[test]
fn without_live_db_there_are_no_charts_and_no_error() {
    let app = TestApp::start();
    let mut alice = app.signed_in("alice");
    let dashboard = alice.get("/");
    assert_eq!(dashboard.status, 200);
    assert!(!dashboard.body.contains("<svg") && !dashboard.body.contains("no samples yet"), "{}", dashboard.body);
    let page = alice.get("/servers/coop-1");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(r#"id="charts""#), "{}", page.body);
    assert!(!reconciler::live::db::path(app.root.path()).exists(), "the web never makes it");
}
