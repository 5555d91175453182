//! The reconciler on a real host (the sandbox), each figure next to its floor measured in the
//! same run:
//!
//! - commit → all affected units active, for 1 and 20 servers, against one plain `systemctl start`
//!   of such units: units rendered alike that systemd has not loaded yet (what a commit's new
//!   servers are), and the committed units themselves once loaded;
//! - a pass with nothing to do over 200 servers: its duration and processes, against one
//!   `systemctl list-units` of the same units, the least a look at them can cost.
//!
//! Needs root and release binaries of the whole workspace:
//! `cargo build --release --workspace --bins && cargo bench -p left4me-reconciler --bench host`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use left4me_sim::Sandbox;
use nix::time::{ClockId, clock_gettime};
use reconciler::db::Db;

const ROUNDS: usize = 5;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("host bench: needs root (it boots a sandbox host)");
        std::process::exit(2);
    }
    let disk = left4me_sim::disk(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), "bench-disk-").unwrap();
    let sandbox = Sandbox::boot(disk.path(), &[]).expect("the sandbox boots (build the workspace's binaries first)");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_left4me")).parent().unwrap().to_path_buf();
    sandbox.install_left4me(&bin_dir, true);
    // Passes come from commits only while measuring latency: no periodic resync in between.
    sandbox.run_ok("sh", &["-c", "echo LEFT4ME_RESYNC_SECONDS=3600 >> /etc/left4me/host.env"]);
    sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
    let bench = Bench { sandbox, repo: disk.path().join("root/state"), db: disk.path().join("root/left4me.db") };
    bench.commit_servers(&[], "base");

    println!("commit → all units active, median of {ROUNDS}, against one `systemctl start` of such units:");
    println!(
        "  new: rendered alike, not loaded by systemd yet (as a commit's new servers are); loaded: the same units again"
    );
    println!(
        "{:<8} {:>12} {:>12} {:>8} {:>12} {:>8}",
        "servers", "commit", "floor new", "ratio", "floor loaded", "ratio"
    );
    for count in [1usize, 20] {
        let names: Vec<String> = (0..count).map(|i| format!("s{i:03}")).collect();
        let mut commits = Vec::new();
        let mut floors = Vec::new();
        let mut fresh_floors = Vec::new();
        for round in 0..ROUNDS {
            let t0 = bench.commit_servers(&names, &format!("{count} servers, round {round}"));
            commits.push(bench.wait_active(&names) - t0);
            bench.sandbox.run_ok("systemctl", &["disable", "--now", "left4me-reconciler.service"]);
            // Floor 1: units like these that systemd has not loaded yet, as a commit's new servers
            // are — rendered alike (other names and ports), then started by one systemctl.
            let fresh: Vec<String> = (0..count).map(|i| format!("f{round}-{i:03}")).collect();
            for (i, name) in fresh.iter().enumerate() {
                let shown = bench.sandbox.run_ok("l4d2ctl", &["show", &names[i]]);
                let record: serde_json::Value = serde_json::from_str(&shown).unwrap();
                let mut spec = record["spec"].clone();
                spec["name"] = name.clone().into();
                spec["port"] = (21000 + round * 100 + i * 2).into();
                let file = bench.repo.parent().unwrap().join(format!("{name}.json"));
                std::fs::write(&file, spec.to_string()).unwrap();
                let inside = format!("/var/lib/left4me/{name}.json");
                bench.sandbox.run_ok("l4d2ctl", &["--reconciler", "initialize", name, "-f", &inside]);
            }
            let units: Vec<String> = fresh.iter().map(|n| format!("left4me-server@{n}.service")).collect();
            let mut start = vec!["start"];
            start.extend(units.iter().map(String::as_str));
            let t0 = monotonic_us();
            bench.sandbox.run_ok("systemctl", &start);
            fresh_floors.push(bench.wait_active(&fresh) - t0);
            for name in &fresh {
                bench.sandbox.run_ok("l4d2ctl", &["--reconciler", "delete", name]);
            }
            // Floor 2: the committed servers' own units, loaded already, stopped and started again.
            let units: Vec<String> = names.iter().map(|n| format!("left4me-server@{n}.service")).collect();
            let mut stop = vec!["stop"];
            stop.extend(units.iter().map(String::as_str));
            bench.sandbox.run_ok("systemctl", &stop);
            let mut start = vec!["start"];
            start.extend(units.iter().map(String::as_str));
            let t0 = monotonic_us();
            bench.sandbox.run_ok("systemctl", &start);
            floors.push(bench.wait_active(&names) - t0);
            bench.sandbox.run_ok("systemctl", &["enable", "--now", "left4me-reconciler.service"]);
            bench.commit_servers(&[], "back to base");
            bench.wait_gone(&names);
        }
        let (commit, floor, fresh) = (median(&mut commits), median(&mut floors), median(&mut fresh_floors));
        let ms = |us: u64| us as f64 / 1000.0;
        println!(
            "{count:<8} {:>9.1} ms {:>9.1} ms {:>7.2}x {:>9.1} ms {:>7.2}x",
            ms(commit),
            ms(fresh),
            commit as f64 / fresh as f64,
            ms(floor),
            commit as f64 / floor as f64
        );
    }

    // A pass with nothing to do over 200 servers (stopped: no game processes to keep alive).
    let names: Vec<String> = (0..200).map(|i| format!("n{i:03}")).collect();
    bench.commit_servers_stopped(&names, "200 servers");
    bench.wait_instances(200);
    bench
        .sandbox
        .run_ok("sh", &["-c", "sed -i 's/^LEFT4ME_RESYNC_SECONDS=.*/LEFT4ME_RESYNC_SECONDS=1/' /etc/left4me/host.env"]);
    bench.sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
    std::thread::sleep(Duration::from_secs(ROUNDS as u64 * 2 + 4));
    let db = Db::open(&bench.db).unwrap();
    let mut passes: Vec<(i64, String)> = db
        .events(200)
        .unwrap()
        .into_iter()
        .filter(|e| e.message.contains("nothing to do"))
        .filter_map(|e| Some((e.duration_ms?, e.message)))
        .take(ROUNDS * 2)
        .collect();
    assert!(passes.len() >= ROUNDS, "too few no-op passes: {passes:?}");
    let processes = passes[0].1.rsplit('(').next().unwrap_or("").trim_end_matches(')').to_owned();
    let mut durations: Vec<u64> = passes.iter_mut().map(|(ms, _)| *ms as u64).collect();
    let noop = median(&mut durations);
    let mut shows = Vec::new();
    for _ in 0..ROUNDS * 2 {
        let t0 = monotonic_us();
        bench.sandbox.run_ok("systemctl", &["list-units", "--all", "--no-legend", "left4me-server@*.service"]);
        shows.push(monotonic_us() - t0);
    }
    let show = median(&mut shows) as f64 / 1000.0;
    println!();
    println!("no-op pass over 200 servers (median of {} passes of the service)", durations.len());
    println!("{:<34} {:>9} ms   {processes}", "the pass", noop);
    println!("{:<34} {:>9.1} ms   (one systemctl list-units of them, through nsenter)", "floor", show);
    bench.sandbox.power_off();
}

struct Bench {
    sandbox: Sandbox,
    repo: PathBuf,
    db: PathBuf,
}

impl Bench {
    /// Commits the servers, running; returns when `git commit` began (µs, monotonic).
    fn commit_servers(&self, names: &[String], message: &str) -> u64 {
        self.write_state(names, "running");
        self.git(&["add", "--all"]);
        let t0 = monotonic_us();
        self.git(&["commit", "--quiet", "--allow-empty", "--message", message]);
        t0
    }

    fn commit_servers_stopped(&self, names: &[String], message: &str) {
        self.write_state(names, "stopped");
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--message", message]);
    }

    fn write_state(&self, names: &[String], state: &str) {
        let _ = std::fs::remove_dir_all(self.repo.join("servers"));
        std::fs::create_dir_all(self.repo.join("servers")).unwrap();
        std::fs::create_dir_all(self.repo.join("blueprints")).unwrap();
        std::fs::write(
            self.repo.join("left4me.yaml"),
            "apiVersion: left4me/v1\nkind: Settings\nspec:\n  ports: {first: 20000, last: 20999}\n  maxServers: 300\n  pruneLimitPercent: 100\n",
        )
        .unwrap();
        std::fs::write(
            self.repo.join("blueprints/bench.yaml"),
            "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: bench, owner: bench}\nspec:\n  arguments: [\"+map\", c1m1_hotel]\n  rollout: immediate\n",
        )
        .unwrap();
        // One server that stays, so that removing the others never removes every server.
        let mut all: Vec<(String, &str)> = vec![("anchor".into(), "stopped")];
        all.extend(names.iter().map(|n| (n.clone(), state)));
        for (index, (name, state)) in all.iter().enumerate() {
            std::fs::write(
                self.repo.join(format!("servers/{name}.yaml")),
                format!(
                    "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {name}, owner: bench}}\nspec: {{blueprint: bench, port: {}, state: {state}}}\n",
                    20000 + index * 2
                ),
            )
            .unwrap();
        }
    }

    fn git(&self, args: &[&str]) {
        let status = Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            // The host's state repo belongs to its web user; these tests run git as root.
            .args(["-c", "safe.directory=*"])
            .args(args)
            .env("GIT_AUTHOR_NAME", "Bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
            .env("GIT_COMMITTER_NAME", "Bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    /// Waits until every unit is active; returns the latest ActiveEnterTimestampMonotonic (µs).
    fn wait_active(&self, names: &[String]) -> u64 {
        let units: Vec<String> = names.iter().map(|n| format!("left4me-server@{n}.service")).collect();
        for _ in 0..1200 {
            let mut args = vec!["show", "--property=ActiveState,ActiveEnterTimestampMonotonic"];
            args.extend(units.iter().map(String::as_str));
            let out = self.sandbox.run_ok("systemctl", &args);
            let states: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("ActiveState=")).collect();
            if states.len() == units.len() && states.iter().all(|s| *s == "active") {
                return out
                    .lines()
                    .filter_map(|l| l.strip_prefix("ActiveEnterTimestampMonotonic="))
                    .filter_map(|v| v.parse().ok())
                    .max()
                    .unwrap();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the units never became active");
    }

    fn wait_gone(&self, names: &[String]) {
        for _ in 0..1200 {
            if names.iter().all(|n| !self.repo.parent().unwrap().join("instances").join(n).exists()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the servers were never removed");
    }

    fn wait_instances(&self, count: usize) {
        for _ in 0..2400 {
            let made = std::fs::read_dir(self.repo.parent().unwrap().join("instances")).map(|d| d.count()).unwrap_or(0);
            if made > count {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the instances were never made");
    }
}

/// CLOCK_MONOTONIC in µs: the clock systemd's *TimestampMonotonic values use.
fn monotonic_us() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap();
    now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}
