//! Load + validate time for a generated state repo of 1,000 servers, from a folder and from a git
//! commit, next to a baseline measured in the same run: merely reading the same files.
//!
//! Run: `cargo bench -p left4me-state --bench load` (add `-- --servers N` for another size).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use left4me_sim::Git;
use left4me_state::{Limits, load_dir, load_revision, read_dir, validate};

const ROUNDS: usize = 30;
const TARGET: Duration = Duration::from_millis(100);

fn main() {
    let servers = std::env::args()
        .skip_while(|a| a != "--servers")
        .nth(1)
        .map(|n| n.parse().expect("--servers takes a number"))
        .unwrap_or(1000);
    let repo = tempfile::tempdir().expect("temp dir");
    let files = generate(repo.path(), servers);
    commit(repo.path());

    let state = load_dir(repo.path()).unwrap().expect("the generated repo is valid");
    assert_eq!(state.servers.len(), servers);

    println!(
        "state repo: {servers} servers, {} blueprints, {} overlays, {files} files",
        state.blueprints.len(),
        state.overlays.len()
    );
    let baseline = measure(|| read_all(repo.path()));
    let tree = read_dir(repo.path(), Limits::DEFAULT).unwrap();
    let in_memory = measure(|| validate(&tree).is_ok());
    let from_dir = measure(|| load_dir(repo.path()).unwrap().is_ok());
    // A fresh commit leaves loose objects; pushes and `git gc` leave packs, which read faster.
    let loose = measure(|| load_revision(repo.path(), "main").unwrap().1.is_ok());
    git(repo.path(), &["gc", "--quiet"]);
    let packed = measure(|| load_revision(repo.path(), "main").unwrap().1.is_ok());
    let rows = [
        ("read every file (baseline)", baseline),
        ("validate a tree in memory", in_memory),
        ("load_dir + validate", from_dir),
        ("load_revision + validate, loose", loose),
        ("load_revision + validate, packed", packed),
    ];
    println!("{:<34} {:>10} {:>10} {:>12}", "", "median", "min", "vs baseline");
    for (name, (median, min)) in rows {
        println!(
            "{name:<34} {:>10} {:>10} {:>11.1}x",
            ms(median),
            ms(min),
            median.as_secs_f64() / baseline.0.as_secs_f64()
        );
    }
    for (what, (time, _)) in
        [("load_dir", from_dir), ("load_revision (loose)", loose), ("load_revision (packed)", packed)]
    {
        let verdict = if time < TARGET { "meets" } else { "MISSES" };
        println!("{what} + validate: {} {verdict} the target of {}", ms(time), ms(TARGET));
    }
}

/// (median, min) of ROUNDS runs after one warm-up.
fn measure<T>(mut run: impl FnMut() -> T) -> (Duration, Duration) {
    std::hint::black_box(run());
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(run());
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[ROUNDS / 2], times[0])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn read_all(dir: &Path) -> usize {
    let mut bytes = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if entry.file_name() == ".git" {
            continue;
        }
        if kind.is_dir() {
            bytes += read_all(&entry.path());
        } else if kind.is_file() {
            bytes += fs::read(entry.path()).unwrap().len();
        }
    }
    bytes
}

/// Writes a state repo shaped like a large host's: owners with a few blueprints each, a shared
/// overlay catalogue, and `servers` servers. Returns the number of files.
fn generate(root: &Path, servers: usize) -> usize {
    let mut files = 0;
    let mut write = |path: &str, text: String| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        files += 1;
    };
    let owners = 20;
    let blueprints_per_owner = 3;
    write(
        "left4me.yaml",
        format!(
            "apiVersion: left4me/v1\nkind: Settings\nspec:\n  ports: {{first: 20000, last: 40000}}\n  maxServers: {servers}\n"
        ),
    );
    let overlays = ["tickrate", "sourcemod", "maps", "competitive", "admins", "motd", "plugins", "sounds"];
    for (index, overlay) in overlays.iter().enumerate() {
        let head = format!("apiVersion: left4me/v1\nkind: Overlay\nmetadata:\n  name: {overlay}\nspec:\n");
        match index % 3 {
            0 => {
                write(&format!("overlays/{overlay}/overlay.yaml"), format!("{head}  type: files\n"));
                for cfg in 0..5 {
                    write(
                        &format!("overlays/{overlay}/files/left4dead2/cfg/{overlay}_{cfg}.cfg"),
                        "sv_minrate 100000\nsv_maxrate 100000\n".repeat(10),
                    );
                }
            }
            1 => {
                write(&format!("overlays/{overlay}/overlay.yaml"), format!("{head}  type: script\n"));
                write(
                    &format!("overlays/{overlay}/build.sh"),
                    "#!/bin/bash\ncurl -fsSL https://example.invalid/x.tgz | tar xz\n".into(),
                );
            }
            _ => write(
                &format!("overlays/{overlay}/overlay.yaml"),
                format!("{head}  type: workshop\n  items: [121275675, 2268506826, 1575673903]\n"),
            ),
        }
    }
    for owner in 0..owners {
        for b in 0..blueprints_per_owner {
            let stack = [overlays[(owner + b) % overlays.len()], overlays[(owner + b + 3) % overlays.len()]];
            write(
                &format!("blueprints/bp-{owner}-{b}.yaml"),
                format!(
                    "# yaml-language-server: $schema=left4me.schema.json\napiVersion: left4me/v1\nkind: Blueprint\n\
                     metadata:\n  name: bp-{owner}-{b}\n  owner: user{owner}\nspec:\n  overlays: [{}, {}]\n  \
                     arguments: [\"-tickrate\", \"100\", \"+map\", \"c1m1_hotel\"]\n  config:\n    - sv_consistency 0\n    \
                     - exec server_{}.cfg\n  rollout: when-empty\n",
                    stack[0], stack[1], stack[0]
                ),
            );
        }
    }
    for s in 0..servers {
        let owner = s % owners;
        write(
            &format!("servers/server-{s:04}.yaml"),
            format!(
                "# yaml-language-server: $schema=left4me.schema.json\napiVersion: left4me/v1\nkind: Server\nmetadata:\n  \
                 name: server-{s:04}\n  owner: user{owner}\nspec:\n  blueprint: bp-{owner}-{}\n  port: {}\n  \
                 state: {}\n  hostname: \"user{owner}'s server #{s}\"\n",
                s % blueprints_per_owner,
                20000 + s,
                if s % 4 == 0 { "stopped" } else { "running" }
            ),
        );
    }
    files
}

fn commit(dir: &Path) {
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "-m", "generated"]);
}

fn git(dir: &Path, args: &[&str]) {
    Git::new(dir, "Bench").run(args);
}
