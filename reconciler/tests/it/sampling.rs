//! The sampler on a real host: servers running sim-srcds, sampled by `left4me sample` as the
//! game's user, and their players, CPU and memory read back from `$ROOT/live.db`.

use left4me_state::Name;
use reconciler::live::db::{LiveDb, WIDTHS};

use crate::support::{Host, code, text};

#[test]
fn the_sampler_keeps_each_running_servers_players_cpu_and_memory() {
    let host = Host::installed(false);
    host.commit_examples();
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    host.expect_within(30, "coop-1 and versus-1 run", |h| h.running("coop-1") && h.running("versus-1"));
    host.sandbox.run_ok("l4d2ctl", &["rcon", "coop-1", "--", "sim_players 3"]);
    host.expect_within(10, "coop-1 shows its players", |h| h.server("coop-1")["players"] == 3);

    // What l4d2ctl status says of a running unit: what it uses, as systemd counts it.
    let coop = host.instance("coop-1");
    let resources = &coop["resources"];
    assert!(resources["memory_bytes"].as_u64().is_some_and(|bytes| bytes > 0), "{coop}");
    assert!(resources["memory_peak_bytes"].as_u64() >= resources["memory_bytes"].as_u64(), "{coop}");
    assert!(resources["tasks"].as_u64() >= Some(1), "{coop}");
    // The sandbox's systemd runs on cgroup v1 without a CPU controller of its own: there CPU is
    // not counted (on v2 it always is), and its samples have no CPU.
    let cpu_counted = resources["cpu_nsec"].is_u64();
    assert!(host.instance("coop-2")["resources"]["memory_bytes"].is_null(), "a stopped unit uses nothing");

    let sampled =
        host.sandbox.run("runuser", &["-u", "left4me", "--", "left4me", "sample", "--every", "1", "--looks", "3"]);
    assert_eq!(code(&sampled), Some(0), "{}", text(&sampled));

    let db = LiveDb::open_read_only(&reconciler::live::db::path(&host.disk.path().join("root")))
        .expect("the sampler made live.db");
    let points = db.points(WIDTHS[0].0, 0).unwrap();
    let names: Vec<&str> = points.keys().map(Name::as_str).collect();
    assert_eq!(names, ["coop-1", "versus-1"], "running servers only: {points:?}");
    let coop = &points[&Name::new("coop-1").unwrap()];
    assert!(coop.iter().all(|p| p.players == 3.0 && p.players_max == 3), "{coop:?}");
    assert!(coop.iter().all(|p| p.memory_max.is_some_and(|bytes| bytes > 0)), "{coop:?}");
    assert_eq!(coop.iter().any(|p| p.cpu.is_some()), cpu_counted, "the looks after the first have a CPU: {coop:?}");
    let versus = &points[&Name::new("versus-1").unwrap()];
    assert!(versus.iter().all(|p| p.players == 0.0), "{versus:?}");
    for (width, _) in WIDTHS {
        assert!(db.points_of(&Name::new("coop-1").unwrap(), width, 0).unwrap().len() <= 2, "at {width}");
    }
}
