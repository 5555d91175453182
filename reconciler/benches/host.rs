//! The reconciler on a real host (the sandbox), each figure next to its floor measured in the
//! same run:
//!
//! - commit → all affected units active, for 1 and 20 servers, against one plain `systemctl start`
//!   of such units: units rendered alike that systemd has not loaded yet (what a commit's new
//!   servers are), and the committed units themselves once loaded;
//! - a pass with nothing to do over 10, 100 and 500 stopped servers and 10 and 100 running ones: its
//!   duration and processes, against one `systemctl list-units` of the same units, the least a look
//!   at them can cost;
//! - the reconciler and the web app at rest for 60 s with 100 servers running: CPU and memory,
//!   next to systemd's own over the same minute;
//! - a new game build that changes 1 % of a ~2 GiB base: its disk and time, against a full copy of
//!   the base; and the time from "build published" to every empty server running it, against a
//!   plain steamcmd update in place and a `systemctl restart` of the same servers;
//! - bursts: one commit flipping 100 stopped servers to running (until every game answers A2S)
//!   and one flipping them back (until every unit is inactive), against one `systemctl start` and
//!   `stop` of as many floor units — the installed game unit, its hardening kept, running
//!   `sleep infinity`; one server's start beside 0, 50 and 100 running, against one floor unit's
//!   start; and 500 servers started and stopped by one commit each.
//!
//! Needs root and release binaries of the whole workspace:
//! `cargo build --release --workspace --bins && cargo bench -p left4me-reconciler --bench host`
//! (`-- commit`, `-- noop`, `-- idle`, `-- game` or `-- burst` runs one part; `--servers N` makes
//! the bursts N and 2N servers instead of 100 and 500, for a quick run).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use left4me_sim::{Git, Sandbox};
use nix::time::{ClockId, clock_gettime};
use reconciler::db::Db;

const ROUNDS: usize = 5;
const ROOT: &str = "/var/lib/left4me";
/// fake-steamcmd's state folder: what Steam publishes, its knobs.
const FAKE: &str = "/var/lib/fake-steamcmd";
/// How long a wait for systemd or the games gives up after, unless told otherwise.
const PATIENCE: Duration = Duration::from_secs(300);
/// How often the burst part looks whether the games are up: seldom, so that its looks do not
/// compete for the two CPUs with the starts being measured (its figures come from timestamps
/// systemd and the journal take, not from when it looked).
const SPARSE: Duration = Duration::from_millis(500);
/// The floor units of the burst part: the installed game unit, running `sleep infinity`.
const FLOOR_UNIT: &str = "left4me-floor@.service";

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("host bench: needs root (it boots a sandbox host)");
        std::process::exit(2);
    }
    let (asked, sizes) = match arguments(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("host bench: {message}");
            std::process::exit(2);
        }
    };
    let disk = left4me_sim::disk(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), "bench-disk-").unwrap();
    let sandbox = Sandbox::boot(disk.path(), &[]).expect("the sandbox boots (build the workspace's binaries first)");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_left4me")).parent().unwrap().to_path_buf();
    sandbox.install_left4me(&bin_dir, true);
    // Passes come from commits only while measuring latency: no periodic resync in between.
    sandbox.run_ok("sh", &["-c", "echo LEFT4ME_RESYNC_SECONDS=3600 >> /etc/left4me/host.env"]);
    sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
    let bench = Bench { sandbox, repo: disk.path().join("root/state"), db: disk.path().join("root/left4me.db") };
    bench.commit_servers(&[], "base");
    let wanted = |part: &str| asked.is_empty() || asked.iter().any(|a| a == part);

    if wanted("commit") {
        bench.commit_latency();
    }
    if wanted("noop") {
        bench.noop_passes();
    }
    if wanted("idle") {
        bench.at_rest();
    }
    if wanted("game") {
        bench.game_builds();
    }
    if wanted("burst") {
        bench.bursts(sizes);
    }
    bench.sandbox.power_off();
}

/// The bursts' sizes: the burst and start-beside counts, and the large burst.
#[derive(Clone, Copy)]
struct Sizes {
    burst: usize,
    large: usize,
}

/// The parts asked for (`cargo bench --bench host -- commit idle` runs only those; none, all) and
/// the bursts' sizes (`--servers N`: N and 2N, instead of 100 and 500). Other `--` flags are
/// cargo's (`--bench`).
fn arguments(mut args: impl Iterator<Item = String>) -> Result<(Vec<String>, Sizes), String> {
    const PARTS: &[&str] = &["commit", "noop", "idle", "game", "burst"];
    let mut parts = Vec::new();
    let mut sizes = Sizes { burst: 100, large: 500 };
    while let Some(arg) = args.next() {
        if arg == "--servers" {
            let value = args.next().unwrap_or_default();
            let burst: usize = value.parse().ok().filter(|n| *n >= 2).ok_or_else(|| {
                format!("--servers '{value}' is not a number of servers, 2 or more: say e.g. --servers 10")
            })?;
            sizes = Sizes { burst, large: burst * 2 };
        } else if !arg.starts_with("--") {
            if !PARTS.contains(&arg.as_str()) {
                return Err(format!("no part '{arg}': the parts are {}", PARTS.join(", ")));
            }
            parts.push(arg);
        }
    }
    Ok((parts, sizes))
}

struct Bench {
    sandbox: Sandbox,
    repo: PathBuf,
    db: PathBuf,
}

impl Bench {
    /// Commit → all units active, for 1 and 20 servers, against the two floors.
    fn commit_latency(&self) {
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
            let mut timelines = Vec::new();
            for round in 0..ROUNDS {
                let (t0, wall) = self.commit_servers(&names, &format!("{count} servers, round {round}"));
                self.wait_started(&names, wall);
                let active = self.wait_active(&names);
                commits.push(active - t0);
                timelines.push(self.timeline(ms_of_day(wall), (active - t0) as f64 / 1000.0));
                self.sandbox.run_ok("systemctl", &["disable", "--now", "left4me-reconciler.service"]);
                // Floor 1: units like these that systemd has not loaded yet, as a commit's new servers
                // are — rendered alike (other names and ports), then started by one systemctl.
                let fresh: Vec<String> = (0..count).map(|i| format!("f{round}-{i:03}")).collect();
                for (i, name) in fresh.iter().enumerate() {
                    let shown = self.sandbox.run_ok("l4d2ctl", &["show", &names[i]]);
                    let record: serde_json::Value = serde_json::from_str(&shown).unwrap();
                    let mut spec = record["spec"].clone();
                    spec["name"] = name.clone().into();
                    spec["port"] = (21000 + round * 100 + i * 2).into();
                    let file = self.repo.parent().unwrap().join(format!("{name}.json"));
                    std::fs::write(&file, spec.to_string()).unwrap();
                    let inside = format!("/var/lib/left4me/{name}.json");
                    self.sandbox.run_ok("l4d2ctl", &["--reconciler", "initialize", name, "-f", &inside]);
                }
                let units = server_units(&fresh);
                let mut start = vec!["start"];
                start.extend(units.iter().map(String::as_str));
                let t0 = monotonic_us();
                self.sandbox.run_ok("systemctl", &start);
                fresh_floors.push(self.wait_active(&fresh) - t0);
                for name in &fresh {
                    self.sandbox.run_ok("l4d2ctl", &["--reconciler", "delete", name]);
                }
                // Floor 2: the committed servers' own units, loaded already, stopped and started again.
                let units = server_units(&names);
                let mut stop = vec!["stop"];
                stop.extend(units.iter().map(String::as_str));
                self.sandbox.run_ok("systemctl", &stop);
                let mut start = vec!["start"];
                start.extend(units.iter().map(String::as_str));
                let t0 = monotonic_us();
                self.sandbox.run_ok("systemctl", &start);
                floors.push(self.wait_active(&names) - t0);
                self.sandbox.run_ok("systemctl", &["enable", "--now", "left4me-reconciler.service"]);
                self.commit_servers(&[], "back to base");
                self.wait_gone(&names);
            }
            let (commit, floor, fresh) = (median(&mut commits), median(&mut floors), median(&mut fresh_floors));
            if count == 1 {
                let at = |i: usize| {
                    let mut column: Vec<u64> = timelines.iter().map(|t: &[f64; 6]| (t[i] * 1000.0) as u64).collect();
                    median(&mut column) as f64 / 1000.0
                };
                println!(
                    "  where 1 server's time goes (ms from `git commit`, medians): pass began {:.1}, initialize \
                     {:.1}–{:.1}, start {:.1}–{:.1}, unit active {:.1}",
                    at(0),
                    at(1),
                    at(2),
                    at(3),
                    at(4),
                    at(5)
                );
            }
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
    }

    /// Passes with nothing to do over more and more servers, against one `systemctl list-units`.
    fn noop_passes(&self) {
        // A pass with nothing to do, over more and more running servers: the service's own passes
        // (resync every second), against one `systemctl list-units` of the same units, what an observation
        // costs at least.
        self.sandbox.run_ok(
            "sh",
            &["-c", "sed -i 's/^LEFT4ME_RESYNC_SECONDS=.*/LEFT4ME_RESYNC_SECONDS=1/' /etc/left4me/host.env"],
        );
        self.sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service"]);
        println!();
        println!(
            "a pass with nothing to do (median of the service's passes), against one `systemctl list-units` of the units:"
        );
        println!("{:<22} {:>10} {:>12} {:>10}   processes", "servers", "pass", "floor", "ratio");
        for (count, state) in
            [(10usize, "stopped"), (100, "stopped"), (500, "stopped"), (10, "running"), (100, "running")]
        {
            let names: Vec<String> = (0..count).map(|i| format!("n{i:03}")).collect();
            let t0 = monotonic_us();
            self.commit_state(&names, state, &format!("{count} servers {state}"));
            let made = if state == "running" {
                format!(", all active {:.1} s after the commit", (self.wait_active(&names) - t0) as f64 / 1e6)
            } else {
                self.wait_instances(&names);
                String::new()
            };
            // Let the passes that made them end, then keep only passes with nothing to do.
            std::thread::sleep(Duration::from_secs(3));
            let since = self.last_event_id();
            std::thread::sleep(Duration::from_secs(ROUNDS as u64 * 2 + 2));
            let passes = self.noop_passes_after(since);
            assert!(passes.len() >= ROUNDS, "too few passes with nothing to do at {count}: {passes:?}");
            let processes = passes[0].1.rsplit('(').next().unwrap_or("").trim_end_matches(')').to_owned();
            let mut durations: Vec<u64> = passes.iter().map(|(ms, _)| *ms as u64).collect();
            let mut shows = Vec::new();
            for _ in 0..ROUNDS * 2 {
                let t0 = monotonic_us();
                self.sandbox.run_ok("systemctl", &["list-units", "--all", "--plain", "left4me-server@*.service"]);
                shows.push(monotonic_us() - t0);
            }
            let (pass, show) = (median(&mut durations) as f64, median(&mut shows) as f64 / 1000.0);
            let load = self.load();
            let label = format!("{count} {state}");
            println!(
                "{label:<22} {pass:>7.0} ms {show:>9.1} ms {:>9.2}x   {processes}, load {load}{made}",
                pass / show
            );
        }
    }

    /// The daemons at rest for 60 s with 100 servers running.
    fn at_rest(&self) {
        // The daemons at rest for 60 s, with 100 servers running: the reconciler resyncing every
        // 60 s (its default) and the web app looking at the host every 2 s. systemd itself (PID 1 of
        // the host) over the same minute is the reference.
        let names: Vec<String> = (0..100).map(|i| format!("n{i:03}")).collect();
        self.commit_state(&names, "running", "100 servers running");
        self.wait_active(&names);
        self.sandbox.run_ok("sh", &["-c", "sed -i '/^LEFT4ME_RESYNC_SECONDS=/d' /etc/left4me/host.env"]);
        self.sandbox.run_ok("systemctl", &["restart", "left4me-reconciler.service", "left4me-web.service"]);
        // Past the web app's first look and any visit's faster pace.
        std::thread::sleep(Duration::from_secs(35));
        let pids: Vec<(&str, String)> =
            [("left4me run (reconciler)", "left4me-reconciler.service"), ("left4me-web serve", "left4me-web.service")]
                .iter()
                .map(|(name, unit)| {
                    let pid = self.sandbox.run_ok("systemctl", &["show", "--property=MainPID", "--value", unit]);
                    (*name, pid.trim().to_owned())
                })
                .chain(std::iter::once(("systemd (PID 1, reference)", "1".to_owned())))
                .collect();
        let before: Vec<(u64, u64)> = pids.iter().map(|(_, pid)| self.cpu_ticks(pid)).collect();
        std::thread::sleep(Duration::from_secs(60));
        let after: Vec<(u64, u64)> = pids.iter().map(|(_, pid)| self.cpu_ticks(pid)).collect();
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
        println!();
        println!("at rest for 60 s with 100 servers running:");
        println!("{:<30} {:>10} {:>22} {:>10}", "", "CPU", "CPU with its children", "RSS");
        for (((name, pid), (own0, all0)), (own1, all1)) in pids.iter().zip(&before).zip(&after) {
            let own = (own1 - own0) as f64 / ticks / 60.0 * 100.0;
            let all = (all1 - all0) as f64 / ticks / 60.0 * 100.0;
            let rss = self.rss_kib(pid) as f64 / 1024.0;
            println!("{name:<30} {own:>9.2}% {all:>21.2}% {rss:>6.1} MiB");
        }
    }

    /// A new build over a ~2 GiB base, and a build's way to every empty server, each against its
    /// plain counterpart.
    fn game_builds(&self) {
        const BASE_FILES: &str = "2048 1048576";
        self.sandbox.run_ok("sh", &["-c", &format!("mkdir -p {FAKE} && echo {BASE_FILES} > {FAKE}/base-files")]);
        let mut build = self.builds().last().copied().expect("the install made a build") + 1;
        // The base: the knob's ~2 GiB tree, installed whole (its build before had none of it).
        self.publish(build);
        self.sandbox.run_ok("l4d2ctl", &["install"]);
        let base_kib = self.du_kib(&[&format!("{ROOT}/builds/{build}")])[0];
        println!();
        println!("a new game build over a base of {BASE_FILES} (files × bytes), 1 in 100 files changed:");
        build += 1;
        self.publish(build);
        let t0 = monotonic_us();
        self.sandbox.run_ok("l4d2ctl", &["install"]);
        let install_us = monotonic_us() - t0;
        let own = self.du_kib(&[&format!("{ROOT}/builds/{}", build - 1), &format!("{ROOT}/builds/{build}")])[1];
        let t0 = monotonic_us();
        self.sandbox.run_ok("cp", &["-a", &format!("{ROOT}/builds/{build}"), &format!("{ROOT}/plain")]);
        let copy_us = monotonic_us() - t0;
        let copy_kib = self.du_kib(&[&format!("{ROOT}/plain")])[0];
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "  new build: {:.1} MiB of its own ({:.2} % of the base's {:.0} MiB), installed in {:.1} s",
            mib(own),
            own as f64 * 100.0 / base_kib as f64,
            mib(base_kib),
            install_us as f64 / 1e6
        );
        println!(
            "  full copy: {:.0} MiB in {:.1} s; the new build takes {:.2}x its disk",
            mib(copy_kib),
            copy_us as f64 / 1e6,
            own as f64 / copy_kib as f64
        );
        self.build_to_empty_servers(build);
        self.sandbox.run_ok("rm", &["-rf", &format!("{ROOT}/plain"), &format!("{FAKE}/base-files")]);
    }

    /// "Build published" → every empty server running it: `left4me game check` (Steam asked, the
    /// build installed beside, every server restarted onto it by its `when-empty` rollout), against
    /// steamcmd updating a copy in place and one `systemctl restart` of the same servers.
    fn build_to_empty_servers(&self, mut build: u64) {
        let names: Vec<String> = (0..10).map(|i| format!("g{i:03}")).collect();
        self.commit_servers(&names, "10 empty servers");
        let blueprint = self.repo.join("blueprints/bench.yaml");
        let text = std::fs::read_to_string(&blueprint).unwrap().replace("rollout: immediate", "rollout: when-empty");
        std::fs::write(&blueprint, text).unwrap();
        self.git(&["commit", "--quiet", "--all", "--message", "when-empty"]);
        self.wait_active(&names);
        println!("build published → 10 empty servers running it, median of {ROUNDS}:");
        let (mut left4me, mut plain) = (Vec::new(), Vec::new());
        let units = server_units(&names);
        // Rounds come faster than systemd's start limit allows (5 starts in 60 s): its counters
        // are reset before each timing, outside it.
        let mut reset = vec!["reset-failed"];
        reset.extend(units.iter().map(String::as_str));
        for _ in 0..ROUNDS {
            build += 1;
            self.publish(build);
            self.sandbox.run_ok("systemctl", &reset);
            let t0 = monotonic_us();
            let checked = self.sandbox.run("left4me", &["game", "check"]);
            if !checked.status.success() {
                let jobs = self.sandbox.run_ok("left4me", &["jobs"]);
                let failed =
                    jobs.lines().find(|line| line.contains("failed")).and_then(|line| line.split_whitespace().next());
                let log = failed.map(|id| self.sandbox.run_ok("left4me", &["jobs", id])).unwrap_or_default();
                panic!("`left4me game check` failed: {}\n{jobs}\n{log}", String::from_utf8_lossy(&checked.stdout));
            }
            self.wait_on_build(&names, build);
            left4me.push(monotonic_us() - t0);
            // The same work done by hand: steamcmd over a copy in place, then a restart.
            build += 1;
            self.publish(build);
            self.sandbox.run_ok("systemctl", &reset);
            let update = format!(
                ". /etc/left4me/host.env; for p in windows linux; do runuser -u left4me -- \"${{LEFT4ME_STEAMCMD:-steamcmd}}\"                  +@sSteamCmdForcePlatformType $p +force_install_dir {ROOT}/plain +login anonymous +app_update 222860 validate +quit >/dev/null; done"
            );
            let t0 = monotonic_us();
            self.sandbox.run_ok("sh", &["-c", &update]);
            let mut restart = vec!["restart"];
            restart.extend(units.iter().map(String::as_str));
            self.sandbox.run_ok("systemctl", &restart);
            self.wait_active(&names);
            plain.push(monotonic_us() - t0);
        }
        let (left4me, plain) = (median(&mut left4me), median(&mut plain));
        println!(
            "  left4me game check: {:.1} s; steamcmd in place + systemctl restart: {:.1} s; {:.2}x",
            left4me as f64 / 1e6,
            plain as f64 / 1e6,
            left4me as f64 / plain as f64
        );
        self.commit_servers(&[], "back to base");
        self.wait_gone(&names);
    }

    /// Bursts of starts and stops by one commit, and one start beside more and more running
    /// servers, each against floor units: the installed game unit's hardening around `sleep`.
    fn bursts(&self, sizes: Sizes) {
        self.install_floor_unit();
        println!();
        println!(
            "bursts: one commit flips stopped servers to running (until every game answers A2S) or back (until every \
             unit is inactive),"
        );
        println!(
            "  against one `systemctl start`/`stop` of as many floor units: the installed game unit, its hardening \
             kept, `Type=exec` running `sleep infinity`"
        );
        println!("{:<44} {:>12} {:>12} {:>9}", "", "commit", "floor", "ratio");
        self.burst(sizes.burst, PATIENCE);
        self.start_beside(sizes.burst);
        // No target, but it must end: a generous wait, and how far it got if it does not.
        self.burst(sizes.large, Duration::from_secs(900));
    }

    /// Writes the floor units' template: the game unit as `l4d2ctl install` put it, wherever that
    /// is, with its `Exec*` and `Type=` lines replaced, so that the floor follows the game unit.
    fn install_floor_unit(&self) {
        let show = ["show", "--property=FragmentPath", "--value", "left4me-server@anchor.service"];
        let installed = self.sandbox.run_ok("systemctl", &show);
        let game = self.sandbox.run_ok("cat", &[installed.trim()]);
        let mut floor = String::new();
        for line in game.lines().filter(|line| !line.starts_with("Exec") && !line.starts_with("Type=")) {
            floor.push_str(line);
            floor.push('\n');
            if line.trim() == "[Service]" {
                floor.push_str("Type=exec\nExecStart=/bin/sleep infinity\n");
            }
        }
        // The floor units take the stopped servers' own names (see `floor_units`): the paths the
        // game unit binds for its instance (`runtime/%i`, `instances/%i/instance.json`) exist for
        // them as they do for the game, so none is made optional and none is made for the floor.
        let staged = self.repo.parent().unwrap().join(FLOOR_UNIT);
        std::fs::write(&staged, floor).unwrap();
        let inside = format!("{ROOT}/{FLOOR_UNIT}");
        self.sandbox.run_ok("install", &["-m", "0644", &inside, &format!("/run/systemd/system/{FLOOR_UNIT}")]);
        std::fs::remove_file(&staged).unwrap();
        self.sandbox.run_ok("systemctl", &["daemon-reload"]);
    }

    /// `count` stopped servers started by one commit and stopped by the next, against one
    /// `systemctl start` and one `stop` of as many floor units; waits at most `patience` for each.
    fn burst(&self, count: usize, patience: Duration) {
        let names: Vec<String> = (0..count).map(|i| format!("b{i:03}")).collect();
        let units = server_units(&names);
        self.commit_state(&names, "stopped", &format!("{count} servers stopped"));
        self.wait_instances(&names);
        // The floors first, while no game runs.
        let (floor_start, floor_stop) = self.floor_burst(&names);
        let (t0, wall) = self.commit_state(&names, "running", &format!("{count} servers running"));
        let started = self.wait_journal(&units, &ANSWERING, t0, wall, patience).map(|at| at - t0);
        let load = self.load();
        let answering = self.answering(&names);
        let (t0, wall) = self.commit_state(&names, "stopped", &format!("{count} servers stopped again"));
        let stopped = self.wait_journal(&units, &STOPPED, t0, wall, patience).map(|at| at - t0);
        let load_stopped = self.load();
        let waited = patience.as_secs();
        let row = |what: String, took: Result<u64, usize>, floor: u64, done: &str, load: &str, more: &str| match took {
            Ok(took) => println!(
                "{what:<44} {:>10.3} s {:>10.3} s {:>8.2}x   load {load}{more}",
                secs(took),
                secs(floor),
                took as f64 / floor as f64
            ),
            Err(got) => println!(
                "{what:<44} not over in {waited} s: {got} of {count} {done}; floor {:.3} s, load {load}{more}",
                secs(floor)
            ),
        };
        let more = format!(", then {answering} of {count} answer `l4d2ctl status`");
        row(format!("{count} starts → every game answers A2S"), started, floor_start, "answered", &load, &more);
        row(format!("{count} stops → every unit inactive"), stopped, floor_stop, "stopped", &load_stopped, "");
        self.commit_servers(&[], "back to base");
        self.wait_gone(&names);
    }

    /// One server started beside 0, half of `count` and `count` running, median of [`ROUNDS`],
    /// until it answers A2S; against one floor unit's start with nothing running.
    fn start_beside(&self, count: usize) {
        let mut floors = Vec::new();
        let mut rows = Vec::new();
        let mut running = Vec::new();
        for beside in [0, count / 2, count] {
            let before = running.len();
            running = (0..beside).map(|i| format!("r{i:03}")).collect();
            let probe = format!("p{beside:03}");
            let unit = server_units(std::slice::from_ref(&probe));
            let servers = |state: &'static str| -> Vec<(String, &str)> {
                running.iter().map(|name| (name.clone(), "running")).chain([(probe.clone(), state)]).collect()
            };
            let (t0, wall) = self.commit(&servers("stopped"), &format!("{beside} running, {probe} stopped"));
            self.wait_instances(std::slice::from_ref(&probe));
            // Those running already answered before.
            let added = server_units(&running[before..]);
            self.wait_journal(&added, &ANSWERING, t0, wall, PATIENCE)
                .unwrap_or_else(|got| panic!("{got} of the {} servers added answered A2S", added.len()));
            if beside == 0 {
                floors = (0..ROUNDS).map(|_| self.floor_burst(std::slice::from_ref(&probe)).0).collect();
            }
            let mut starts = Vec::new();
            for round in 0..ROUNDS {
                // systemd's start limit (5 starts in 60 s) would refuse a later round: it is
                // reset before each, outside the timing. (A unit systemd has unloaded has no
                // count to reset, and the command fails: nothing to do then.)
                self.sandbox.run("systemctl", &["reset-failed", &unit[0]]);
                let (t0, wall) = self.commit(&servers("running"), &format!("{probe} running, round {round}"));
                let answered = self.wait_journal(&unit, &ANSWERING, t0, wall, PATIENCE);
                starts.push(answered.unwrap_or_else(|_| panic!("{probe} never answered A2S")) - t0);
                let (t0, wall) = self.commit(&servers("stopped"), &format!("{probe} stopped, round {round}"));
                let stopped = self.wait_journal(&unit, &STOPPED, t0, wall, PATIENCE);
                stopped.unwrap_or_else(|_| panic!("{probe} never stopped"));
            }
            rows.push((beside, median(&mut starts), self.load()));
            self.commit_state(&running, "running", &format!("{beside} running, {probe} gone"));
            self.wait_gone(std::slice::from_ref(&probe));
        }
        let floor = median(&mut floors);
        for (beside, start, load) in rows {
            println!(
                "{:<44} {:>10.3} s {:>10.3} s {:>8.2}x   load {load}",
                format!("one start beside {beside} running → answers A2S"),
                secs(start),
                secs(floor),
                start as f64 / floor as f64
            );
        }
        self.commit_servers(&[], "back to base");
        self.wait_gone(&running);
    }

    /// One `systemctl start` of the servers' floor units, until all are active, then one `stop`,
    /// until all are inactive: (start, stop) in µs.
    fn floor_burst(&self, names: &[String]) -> (u64, u64) {
        let units = floor_units(names);
        let systemctl = |verb: &str| {
            let mut args = vec![verb];
            args.extend(units.iter().map(String::as_str));
            let t0 = (monotonic_us(), SystemTime::now());
            self.sandbox.run_ok("systemctl", &args);
            t0
        };
        let (t0, _) = systemctl("start");
        let started = self.wait_units_active(&units, SPARSE) - t0;
        let (t0, wall) = systemctl("stop");
        let stopped = self.wait_journal(&units, &STOPPED, t0, wall, PATIENCE);
        (started, stopped.unwrap_or_else(|got| panic!("{got} of {} floor units stopped", units.len())) - t0)
    }

    /// Waits, looking every [`SPARSE`], until the journal has `mark` of each unit at `t0` (µs,
    /// monotonic; `wall` the same moment) or later. Returns the latest moment one had it, or how
    /// many had when `patience` ran out.
    fn wait_journal(
        &self,
        units: &[String],
        mark: &Mark,
        t0: u64,
        wall: SystemTime,
        patience: Duration,
    ) -> Result<u64, usize> {
        let units: HashSet<&str> = units.iter().map(String::as_str).collect();
        // The journal's whole seconds, one back: the lines before t0 are left out by their stamp.
        let since = wall.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().saturating_sub(1);
        let since = format!("--since=@{since}");
        let deadline = Instant::now() + patience;
        loop {
            let marked = self.marked(mark, &since, t0, &units);
            if marked.len() == units.len() {
                return Ok(marked.into_values().max().unwrap_or(t0));
            }
            if Instant::now() >= deadline {
                return Err(marked.len());
            }
            std::thread::sleep(SPARSE);
        }
    }

    /// When the journal first has `mark` of each of the units at `t0` or later: its own stamp of
    /// the line (`__MONOTONIC_TIMESTAMP`, when journald got it, on the clock systemd's
    /// `*TimestampMonotonic` use: the sandbox shares the kernel's clocks), so the figure does not
    /// depend on when the journal is looked at.
    fn marked<'u>(&self, mark: &Mark, since: &str, t0: u64, units: &HashSet<&'u str>) -> HashMap<&'u str, u64> {
        let fields = format!("--output-fields={}", mark.unit);
        let mut args = vec!["--output=json", fields.as_str(), "--no-pager", "--quiet", since];
        args.extend(mark.matches);
        let out = self.sandbox.run("journalctl", &args);
        // journalctl fails when nothing matches yet; anything it says on stderr is a real failure.
        assert!(out.stderr.is_empty(), "journalctl failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut first: HashMap<&str, u64> = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let Some(&unit) = entry[mark.unit].as_str().and_then(|unit| units.get(unit)) else { continue };
            let at = entry["__MONOTONIC_TIMESTAMP"].as_str().and_then(|at| at.parse::<u64>().ok());
            if let Some(at) = at.filter(|at| *at >= t0) {
                first.entry(unit).and_modify(|seen| *seen = (*seen).min(at)).or_insert(at);
            }
        }
        first
    }

    /// How many of the servers answer A2S, in one `l4d2ctl status`: the journal's word checked.
    fn answering(&self, names: &[String]) -> usize {
        let status: serde_json::Value =
            serde_json::from_str(&self.sandbox.run_ok("l4d2ctl", &["status", "--json"])).unwrap();
        let answered: HashSet<&str> = status
            .as_array()
            .unwrap()
            .iter()
            .filter(|server| !server["query"].is_null())
            .filter_map(|server| server["name"].as_str())
            .collect();
        names.iter().filter(|name| answered.contains(name.as_str())).count()
    }

    fn builds(&self) -> Vec<u64> {
        let game: serde_json::Value =
            serde_json::from_str(&self.sandbox.run_ok("l4d2ctl", &["game", "--json"])).unwrap();
        game["installed"].as_array().unwrap().iter().filter_map(serde_json::Value::as_u64).collect()
    }

    fn publish(&self, build: u64) {
        self.sandbox.run_ok("sh", &["-c", &format!("mkdir -p {FAKE} && echo {build} > {FAKE}/public-buildid")]);
    }

    /// Each folder's own disk use in KiB, in the order given: a block shared by hard links is
    /// counted for the first folder that has it.
    fn du_kib(&self, dirs: &[&str]) -> Vec<u64> {
        let mut args = vec!["-sk"];
        args.extend(dirs);
        let out = self.sandbox.run_ok("du", &args);
        out.lines().filter_map(|line| line.split_whitespace().next()?.parse().ok()).collect()
    }

    /// Waits until every one of `names` runs, started on `build`.
    fn wait_on_build(&self, names: &[String], build: u64) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            let observed = self.sandbox.run_ok("l4d2ctl", &["observe", "--brief"]);
            let observed: serde_json::Value = serde_json::from_str(&observed).unwrap();
            let on =
                |name: &String| {
                    observed["instances"].as_array().unwrap().iter().any(|s| {
                        s["name"] == name.as_str() && s["active_state"] == "active" && s["started_build"] == build
                    })
                };
            if names.iter().all(on) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the servers never ran build {build}");
    }

    /// Commits the servers, all in `state`; returns when `git commit` began (see [`Bench::commit`]).
    fn commit_state(&self, names: &[String], state: &str, message: &str) -> (u64, SystemTime) {
        let servers: Vec<(String, &str)> = names.iter().map(|name| (name.clone(), state)).collect();
        self.commit(&servers, message)
    }

    /// The last pass of a commit made at `wall` (ms of the day): when it began, when its
    /// initialize and start jobs began and ended, and when the unit was active, in ms from `wall`.
    fn timeline(&self, wall: f64, active: f64) -> [f64; 6] {
        // The unit is active before the pass has recorded its start job and its event: wait for
        // the pass to finish recording (a loaded machine makes that gap long).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let db = Db::open(&self.db).unwrap();
            let jobs = db.jobs(50).unwrap();
            let job = |kind: &str| {
                jobs.iter()
                    .find(|j| j.kind == kind)
                    .and_then(|j| Some((j.started_at.as_deref()?, j.finished_at.as_deref()?)))
            };
            let event = db.events(1).unwrap().into_iter().next().filter(|e| e.kind == "reconcile");
            if let (Some(initialize), Some(start), Some(event)) = (job("create"), job("start"), event)
                && stamp_ms(&event.at) >= stamp_ms(start.1)
            {
                let began = stamp_ms(&event.at) - event.duration_ms.unwrap_or(0) as f64 - wall;
                let at = |t: &str| stamp_ms(t) - wall;
                return [began, at(initialize.0), at(initialize.1), at(start.0), at(start.1), active];
            }
            assert!(Instant::now() < deadline, "the pass of the commit never recorded its jobs");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until each server's instance is made (its `instance.json` written), looking at the
    /// disk only.
    fn wait_instances(&self, names: &[String]) {
        let instances = self.repo.parent().unwrap().join("instances");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if names.iter().all(|name| instances.join(name).join("instance.json").exists()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the instances were never made");
    }

    /// Commits the servers, running; returns when `git commit` began (see [`Bench::commit`]).
    fn commit_servers(&self, names: &[String], message: &str) -> (u64, SystemTime) {
        self.commit_state(names, "running", message)
    }

    /// Commits the servers, each in its state (beside the anchor); returns when `git commit`
    /// began: µs of the monotonic clock, and the time of day.
    fn commit(&self, servers: &[(String, &str)], message: &str) -> (u64, SystemTime) {
        self.write_state(servers);
        self.git(&["add", "--all"]);
        let t0 = (monotonic_us(), SystemTime::now());
        self.git(&["commit", "--quiet", "--allow-empty", "--message", message]);
        t0
    }

    fn write_state(&self, servers: &[(String, &str)]) {
        let _ = std::fs::remove_dir_all(self.repo.join("servers"));
        std::fs::create_dir_all(self.repo.join("servers")).unwrap();
        std::fs::create_dir_all(self.repo.join("blueprints")).unwrap();
        std::fs::write(
            self.repo.join("left4me.yaml"),
            "apiVersion: left4me/v1\nkind: Settings\nspec:\n  ports: {first: 20000, last: 21999}\n  maxServers: 600\n  pruneLimitPercent: 100\n",
        )
        .unwrap();
        std::fs::write(
            self.repo.join("blueprints/bench.yaml"),
            "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: bench, owner: bench}\nspec:\n  arguments: [\"+map\", c1m1_hotel]\n  rollout: immediate\n",
        )
        .unwrap();
        // One server that stays, so that removing the others never removes every server.
        let mut all: Vec<(String, &str)> = vec![("anchor".into(), "stopped")];
        all.extend(servers.iter().cloned());
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
        // The host's state repo belongs to its web user; the bench runs git as root.
        Git::new(&self.repo, "Bench").any_owner().run(args);
    }

    /// Waits, looking at the disk only, until each server's start (its unit's `ExecStartPost`)
    /// wrote its `started.json` after `since`: a `systemctl` every few milliseconds would compete
    /// for the two CPUs with the pass being measured.
    fn wait_started(&self, names: &[String], since: SystemTime) {
        // File times come from a coarse clock, a few ms behind.
        let since = since - Duration::from_millis(20);
        let runtime = self.repo.parent().unwrap().join("runtime");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let written = |name: &String| {
                let modified = std::fs::metadata(runtime.join(name).join("started.json")).and_then(|m| m.modified());
                modified.is_ok_and(|at| at >= since)
            };
            if names.iter().all(written) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the servers never started");
    }

    /// Waits until every server's unit is active; returns the latest ActiveEnterTimestampMonotonic (µs).
    fn wait_active(&self, names: &[String]) -> u64 {
        self.wait_units_active(&server_units(names), Duration::from_millis(25))
    }

    /// Waits, looking every `every`, until every unit is active; returns the latest
    /// ActiveEnterTimestampMonotonic (µs).
    fn wait_units_active(&self, units: &[String], every: Duration) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
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
            std::thread::sleep(every);
        }
        panic!("the units never became active");
    }

    fn last_event_id(&self) -> usize {
        Db::open(&self.db).unwrap().events(100_000).unwrap().len()
    }

    /// The service's passes with nothing to do recorded after the first `since` events:
    /// (duration in ms, message).
    fn noop_passes_after(&self, since: usize) -> Vec<(i64, String)> {
        let mut events = Db::open(&self.db).unwrap().events(100_000).unwrap();
        events.reverse();
        events
            .into_iter()
            .skip(since)
            .filter(|e| e.message.contains("nothing to do"))
            .filter_map(|e| Some((e.duration_ms?, e.message)))
            .collect()
    }

    /// (own, own + waited-for children) CPU ticks of a process in the sandbox.
    fn cpu_ticks(&self, pid: &str) -> (u64, u64) {
        let stat = self.sandbox.run_ok("cat", &[&format!("/proc/{pid}/stat")]);
        let fields: Vec<u64> =
            stat.rsplit(')').next().unwrap().split_whitespace().skip(11).take(4).map(|f| f.parse().unwrap()).collect();
        (fields[0] + fields[1], fields.iter().sum())
    }

    fn rss_kib(&self, pid: &str) -> u64 {
        let status = self.sandbox.run_ok("cat", &[&format!("/proc/{pid}/status")]);
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }

    fn wait_gone(&self, names: &[String]) {
        // Hundreds of servers take minutes to go, more when their games are still starting.
        let deadline = Instant::now() + Duration::from_secs(900);
        while Instant::now() < deadline {
            if names.iter().all(|n| !self.repo.parent().unwrap().join("instances").join(n).exists()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the servers were never removed");
    }

    /// The host's load average over the last minute (the machine is shared).
    fn load(&self) -> String {
        let load = self.sandbox.run_ok("cat", &["/proc/loadavg"]);
        load.split_whitespace().next().unwrap_or("?").to_owned()
    }
}

/// A line of the journal that tells when a unit got somewhere: journalctl's matches for it, and
/// the field of the line that names the unit.
struct Mark {
    matches: &'static [&'static str],
    unit: &'static str,
}

/// The game answers A2S: sim-srcds, srcds's stand-in, says so once its query thread runs (its
/// console goes to the journal, as srcds's does).
const ANSWERING: Mark = Mark { matches: &["--grep=^sim-srcds: answering A2S"], unit: "_SYSTEMD_UNIT" };

/// systemd's line of a stop job done: the unit is inactive, `ExecStopPost=` over. (A unit
/// stopped, and disabled or never enabled, is unloaded at once: its `InactiveEnterTimestamp`
/// goes with it.)
const STOPPED: Mark = Mark { matches: &["_PID=1", "JOB_TYPE=stop", "JOB_RESULT=done"], unit: "UNIT" };

fn server_units(names: &[String]) -> Vec<String> {
    names.iter().map(|name| format!("left4me-server@{name}.service")).collect()
}

/// The floor units of the servers: the same instance names, so that every path the game unit
/// binds for its instance exists for them too.
fn floor_units(names: &[String]) -> Vec<String> {
    let template = FLOOR_UNIT.trim_end_matches(".service");
    names.iter().map(|name| format!("{template}{name}.service")).collect()
}

/// Milliseconds since midnight (UTC) of a time.
fn ms_of_day(time: SystemTime) -> f64 {
    let since = time.duration_since(std::time::UNIX_EPOCH).unwrap();
    (since.as_secs() % 86_400) as f64 * 1000.0 + f64::from(since.subsec_micros()) / 1000.0
}

/// Milliseconds since midnight of a database stamp (`…THH:MM:SS.mmmZ`).
fn stamp_ms(stamp: &str) -> f64 {
    let time = stamp.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = time.split(':');
    let (h, m): (f64, f64) = (parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap());
    let s: f64 = parts.next().unwrap().parse().unwrap();
    (h * 3600.0 + m * 60.0 + s) * 1000.0
}

/// CLOCK_MONOTONIC in µs: the clock systemd's *TimestampMonotonic values use.
fn monotonic_us() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap();
    now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}
