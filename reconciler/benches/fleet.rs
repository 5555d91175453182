//! Many hosts (three sandbox hosts on one network, joined with deploy/add-host.sh), each figure
//! next to its baseline measured in the same run:
//!
//! - a commit on the control host → the new server's unit active on a remote host (fetched when
//!   the control host's agent asks for it, then that host's pass), against the same commit for a
//!   server on the control host itself; alternated, medians of 5;
//! - the control host's look of the dashboard: 3 hosts × 20 servers (its own 20 looked at here,
//!   the others asked `status` over kept SSH connections, side by side) against one host × 60;
//!   wall time and the control host's CPU, medians of 10.
//!
//! Needs root and release binaries of the whole workspace:
//! `cargo build --release --workspace --bins && cargo bench -p left4me-reconciler --bench fleet`
//! (`-- commit` or `-- look` runs one part).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use left4me_sim::fleet::{Member, commit};
use nix::time::{ClockId, clock_gettime};

const ROUNDS: usize = 5;
const LOOKS: usize = 10;
const PATIENCE: Duration = Duration::from_secs(300);
/// The web's own options for a look at another host (`remote::Ssh`), over a kept connection.
const CONTROL_DIR: &str = "/run/left4me-web";

fn main() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_left4me")).parent().unwrap().to_path_buf();
    let base = std::env::temp_dir();
    let started = Instant::now();
    let (_network, members) = left4me_sim::fleet::set_up(&base, &bin_dir, &["a", "b", "c"]);
    let [a, b, c]: [Member; 3] = members.try_into().ok().expect("three hosts");
    println!("fleet of 3 set up in {:.0} s; load {}", started.elapsed().as_secs_f64(), load());
    let state = tempfile::tempdir().unwrap();
    let mut fleet = Fleet { state: state.path().to_path_buf(), hosts: [&a, &b, &c], servers: Vec::new() };
    fleet.commit("hosts");

    // `-- commit` or `-- look` runs one part.
    let asked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |part: &str| asked.is_empty() || asked.iter().any(|a| a == part);
    if wanted("commit") {
        commit_to_active(&mut fleet, &a, &b);
    }
    if wanted("look") {
        dashboard_looks(&mut fleet, &a, &b, &c);
    }
}

/// The state repo the bench commits: hosts a, b and c at their addresses, room for 64 servers
/// each, one blueprint, and `servers` (name, host, port).
struct Fleet<'m> {
    state: PathBuf,
    hosts: [&'m Member; 3],
    servers: Vec<(String, &'static str, u16)>,
}

impl Fleet<'_> {
    fn write(&self) {
        let _ = std::fs::remove_dir_all(&self.state);
        for folder in ["hosts", "blueprints", "servers"] {
            std::fs::create_dir_all(self.state.join(folder)).unwrap();
        }
        for host in self.hosts {
            let yaml = format!(
                "apiVersion: left4me/v1\nkind: Host\nmetadata: {{name: {}}}\nspec:\n  address: {}\n  ports: {{first: \
                 27015, last: 27115}}\n  maxServers: 64\n",
                host.name, host.address
            );
            std::fs::write(self.state.join(format!("hosts/{}.yaml", host.name)), yaml).unwrap();
        }
        let blueprint = "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: coop, owner: alice}\nspec:\n  \
                         arguments: [\"+map\", c1m1_hotel]\n  rollout: immediate\n";
        std::fs::write(self.state.join("blueprints/coop.yaml"), blueprint).unwrap();
        for (name, host, port) in &self.servers {
            let yaml = format!(
                "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: {name}, owner: alice}}\nspec: {{blueprint: \
                 coop, host: {host}, port: {port}, state: running}}\n"
            );
            std::fs::write(self.state.join(format!("servers/{name}.yaml")), yaml).unwrap();
        }
    }

    /// Commits the state on the control host; the commit's start on the monotonic clock every
    /// sandbox shares with this process, and the new head.
    fn commit(&mut self, message: &str) -> (u64, String) {
        self.write();
        // The commit copies files in: those of servers gone are removed from the repo first.
        let repo = self.hosts[0].host().disk().join("root/state/servers");
        for entry in std::fs::read_dir(&repo).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if !self.servers.iter().any(|(name, ..)| file == format!("{name}.yaml")) {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        let t0 = monotonic_us();
        let head = commit(self.hosts[0], &self.state, message);
        (t0, head)
    }

    fn next_port(&self, host: &str) -> u16 {
        27015 + self.servers.iter().filter(|(_, h, _)| *h == host).count() as u16
    }
}

/// One new server a round on a (the control host) and one on b, alternated: from the start of
/// `git commit` on a to systemd's record of the unit active on its host.
fn commit_to_active(fleet: &mut Fleet<'_>, a: &Member, b: &Member) {
    let (mut here, mut there) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for (host, times) in [(a, &mut here), (b, &mut there)] {
            let name = format!("{}-{round}", host.name);
            let port = fleet.next_port(host.name);
            fleet.servers.push((name.clone(), host.name, port));
            let (t0, _) = fleet.commit(&format!("{name} on {}", host.name));
            let active = wait_active(host, &[name]);
            times.push(active.saturating_sub(t0));
        }
    }
    let (here, there) = (median(&mut here), median(&mut there));
    println!("\n## commit on the control host → unit active (medians of {ROUNDS}; load {})", load());
    println!("| where the server runs | commit → active |");
    println!("|---|---|");
    println!("| the control host (a) | {:.0} ms |", here as f64 / 1000.0);
    println!("| a remote host (b), fetched when asked | {:.0} ms |", there as f64 / 1000.0);
    println!("ratio remote/local: {:.2}×", there as f64 / here.max(1) as f64);
}

/// The control host's look: 60 servers of its own, then 20 of its own and 20 on each of b and c
/// (moved there by one commit, each with its data).
fn dashboard_looks(fleet: &mut Fleet<'_>, a: &Member, b: &Member, c: &Member) {
    fleet.servers.clear();
    fleet.servers.extend((0..60).map(|i| (format!("s{i:02}"), "a", 27015 + i as u16)));
    fleet.commit("60 servers on a");
    let names: Vec<String> = fleet.servers.iter().map(|(n, ..)| n.clone()).collect();
    wait_active(a, &names);
    wait_answering(a, names.len());
    let one_host = looks(a, &[]);

    for (i, server) in fleet.servers.iter_mut().enumerate() {
        server.1 = ["a", "b", "c"][i / 20];
        server.2 = 27015 + (i % 20) as u16;
    }
    fleet.commit("20 servers each on a, b and c");
    for (host, part) in [(a, 0), (b, 1), (c, 2)] {
        let on: Vec<String> = names[part * 20..part * 20 + 20].to_vec();
        wait_active(host, &on);
        wait_answering(host, 20);
    }
    let own_twenty = looks(a, &[]);
    let fleet_look = looks(a, &[b, c]);
    let remote_side = looks(b, &[]);

    println!("\n## the control host's look (medians of {LOOKS}; load {})", load());
    println!("| look | wall | control host CPU |");
    println!("|---|---|---|");
    let row = |what: &str, (wall, cpu): (f64, f64)| println!("| {what} | {wall:.0} ms | {cpu:.0} ms |");
    row("1 host × 60 servers (baseline)", one_host);
    row("3 hosts × 20 servers", fleet_look);
    row("its own 20 alone", own_twenty);
    row("b's own look at its 20 (on b, for each look of a's)", remote_side);
    let per_host = ((fleet_look.1 - own_twenty.1) / 2.0).max(0.0);
    println!("ratio 3×20 / 1×60: wall {:.2}×, CPU {:.2}×", fleet_look.0 / one_host.0, fleet_look.1 / one_host.1);
    println!("one other host costs the control host {per_host:.1} ms of CPU a look (its ssh, over a kept connection)");
    let fifty = own_twenty.1 + 49.0 * per_host;
    println!(
        "50 hosts × 20: about {fifty:.0} ms of the control host's CPU a look; a look every 2 s while watched: {:.0} % of one core",
        fifty / 2000.0 * 100.0
    );
}

/// Median (wall, CPU) in ms of `LOOKS` looks on `on` as its web app takes them: its own
/// (`left4me remote`'s `status`, what the web's look runs in process), and `status` asked of
/// each of `others` over the web's kept connections, side by side. One look first opens them.
fn looks(on: &Member, others: &[&Member]) -> (f64, f64) {
    let mut script = String::from("( SSH_ORIGINAL_COMMAND=status left4me remote >/dev/null ) &\n");
    for other in others {
        let _ = writeln!(
            script,
            "ssh -F /dev/null -i /etc/left4me/ssh/web -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
             -o UserKnownHostsFile=/etc/left4me/ssh/known_hosts -o ControlMaster=auto -o ControlPath={CONTROL_DIR}/ssh-%C \
             -o ControlPersist=600 -n -- left4me@{} status >/dev/null &",
            other.address
        );
    }
    script.push_str("wait\n");
    let timed = format!("TIMEFORMAT='%R %U %S'; time ( {script} )");
    let run = || {
        let out = on.host().run("runuser", &["-u", "left4me", "--", "bash", "-c", &timed]);
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        let times: Vec<f64> =
            said.lines().last().unwrap_or_default().split_whitespace().filter_map(|t| t.parse().ok()).collect();
        assert_eq!(times.len(), 3, "a look's times: {said}");
        (times[0] * 1000.0, (times[1] + times[2]) * 1000.0)
    };
    run();
    let (mut walls, mut cpus): (Vec<u64>, Vec<u64>) =
        (0..LOOKS).map(|_| run()).map(|(w, c)| ((w * 1000.0) as u64, (c * 1000.0) as u64)).unzip();
    (median(&mut walls) as f64 / 1000.0, median(&mut cpus) as f64 / 1000.0)
}

/// Waits until every unit of `names` is active on `host`; when the last became so (monotonic µs).
fn wait_active(host: &Member, names: &[String]) -> u64 {
    let units: Vec<String> = names.iter().map(|n| format!("left4me-server@{n}.service")).collect();
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let mut args = vec!["show", "--property=ActiveState,ActiveEnterTimestampMonotonic"];
        args.extend(units.iter().map(String::as_str));
        let out = host.host().run_ok("systemctl", &args);
        let states: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("ActiveState=")).collect();
        if states.len() == units.len() && states.iter().all(|s| *s == "active") {
            let stamps = out.lines().filter_map(|l| l.strip_prefix("ActiveEnterTimestampMonotonic="));
            return stamps.filter_map(|v| v.parse().ok()).max().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{}: {names:?} never became active", host.name);
}

/// Waits until `count` of `host`'s servers answer A2S (Health Running), as a look then sees them.
fn wait_answering(host: &Member, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let status = host.status();
        let running = status["servers"].as_array().map_or(0, |s| s.iter().filter(|s| s["health"] == "Running").count());
        if running >= count {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("{}: not {count} servers answering", host.name);
}

fn monotonic_us() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap();
    now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
