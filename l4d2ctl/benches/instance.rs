//! Making a server's instance, against what copy-per-server managers do, in the same run: on a
//! generated base install of about 2 GiB in 20,000 files, `l4d2ctl initialize` plus the first
//! mount (what the unit's `ExecStartPost` does) against `cp -a` of the base — time, and disk
//! used. The mount goes into the game's own namespace, so each round's unit is started first with
//! a drop-in that leaves its `ExecStartPost` out (its game waits for its tree), untimed, and the
//! mount is then run by hand for that game, timed.
//!
//! Needs root and release binaries of the whole workspace:
//! `cargo build --release --workspace --bins && cargo bench -p left4me-l4d2ctl --bench instance`

use std::io::Write;
use std::path::Path;

use left4me_sim::Sandbox;

const FILES: usize = 20_000;
const TOTAL_BYTES: u64 = 2 * 1024 * 1024 * 1024;
const INSTANCE_ROUNDS: usize = 7;
const COPY_ROUNDS: usize = 3;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("instance bench: needs root (it boots a sandbox host)");
        std::process::exit(2);
    }
    let disk = left4me_sim::disk(Path::new(env!("CARGO_TARGET_TMPDIR")), "instance-bench-").unwrap();
    let sandbox = Sandbox::boot(disk.path(), &[]).expect("the sandbox boots (build the workspace's binaries first)");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_l4d2ctl")).parent().unwrap().to_path_buf();
    sandbox.install_left4me(&bin_dir, true);
    // The one build the install made (the bench fills it before any server stacks it).
    let build = std::fs::read_dir(disk.path().join("root/builds"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|name| l4d2ctl::builds::parse_id(name).is_some())
        .expect("the install made a build");
    let base = disk.path().join("root/builds").join(&build);
    let written = fill(&base.join("left4dead2/bench-content"));
    let inside = format!("/var/lib/left4me/builds/{build}");
    let (files, kib) = count(&sandbox, &inside);
    println!(
        "base install: {files} files, {:.2} GiB ({} MiB generated)",
        kib as f64 / 1024.0 / 1024.0,
        written / 1024 / 1024
    );

    let mut instance_ms = Vec::new();
    let mut instance_kib = Vec::new();
    for round in 0..INSTANCE_ROUNDS {
        let name = format!("bench-{round}");
        let spec = serde_json::json!({
            "name": name, "port": 27015, "hostname": name,
            "overlays": [], "arguments": ["+map", "c1m1_hotel"], "config": ["sv_consistency 0"],
        });
        std::fs::write(disk.path().join(format!("root/{name}.json")), spec.to_string()).unwrap();
        let unit = format!("left4me-server@{name}.service");
        let script = format!(
            "set -e; a=$(date +%s%N); l4d2ctl --reconciler initialize {name} -f /var/lib/left4me/{name}.json >/dev/null; \
             b=$(date +%s%N); mkdir -p /run/systemd/system/{unit}.d; \
             printf '[Service]\\nExecStartPost=\\n' > /run/systemd/system/{unit}.d/bench.conf; \
             systemctl daemon-reload; systemctl start {unit}; pid=$(systemctl show -p MainPID --value {unit}); \
             c=$(date +%s%N); MAINPID=$pid l4d2ctl mount {name}; d=$(date +%s%N); \
             echo $(( (b - a + d - c) / 1000 )); \
             test -e /proc/$pid/root/var/lib/left4me/runtime/{name}/merged/srcds_run; \
             du -skxc /var/lib/left4me/instances/{name} /var/lib/left4me/runtime/{name} | tail -n 1 | cut -f1; \
             systemctl stop {unit}; rm -r /run/systemd/system/{unit}.d; systemctl daemon-reload"
        );
        let out = sandbox.run_ok("sh", &["-c", &script]);
        let mut lines = out.lines();
        instance_ms.push(lines.next().unwrap().trim().parse::<f64>().unwrap() / 1000.0);
        instance_kib.push(lines.next().unwrap().trim().parse::<u64>().unwrap());
        sandbox.run_ok("l4d2ctl", &["--reconciler", "delete", &name]);
    }
    let mut copy_ms = Vec::new();
    let mut copy_kib = Vec::new();
    for round in 0..COPY_ROUNDS {
        let script = format!(
            "set -e; a=$(date +%s%N); cp -a {inside} /var/lib/left4me/copy-{round}; sync -f /var/lib/left4me; \
             b=$(date +%s%N); echo $(( (b - a) / 1000 )); du -sk /var/lib/left4me/copy-{round} | cut -f1; \
             rm -rf /var/lib/left4me/copy-{round}"
        );
        let out = sandbox.run_ok("sh", &["-c", &script]);
        let mut lines = out.lines();
        copy_ms.push(lines.next().unwrap().trim().parse::<f64>().unwrap() / 1000.0);
        copy_kib.push(lines.next().unwrap().trim().parse::<u64>().unwrap());
    }
    let (instance, copy) = (median(&mut instance_ms), median(&mut copy_ms));
    let (instance_disk, copy_disk) = (instance_kib.iter().max().copied().unwrap(), copy_kib[0]);
    println!();
    println!("making one server's instance (median of {INSTANCE_ROUNDS} instances, {COPY_ROUNDS} copies):");
    println!("{:<44} {:>12} {:>14}", "", "time", "disk");
    println!("{:<44} {:>9.1} ms {:>10} KiB", "l4d2ctl initialize + first mount", instance, instance_disk);
    println!("{:<44} {:>9.1} ms {:>10} KiB", "cp -a of the base (copy-per-server)", copy, copy_disk);
    println!(
        "{:<44} {:>11.0}x {:>13.0}x",
        "copy / instance",
        copy / instance,
        copy_disk as f64 / instance_disk.max(1) as f64
    );
    sandbox.power_off();
}

/// Writes about TOTAL_BYTES in FILES files of varied sizes (as a game's maps, models, sounds and
/// small configs are), in folders of 100, with bytes that do not compress. Returns bytes written.
fn fill(dir: &Path) -> u64 {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut block = vec![0u8; 1 << 20];
    for chunk in block.chunks_mut(8) {
        chunk.copy_from_slice(&next().to_le_bytes()[..chunk.len()]);
    }
    let mean = TOTAL_BYTES / FILES as u64;
    let mut written = 0u64;
    for i in 0..FILES {
        let folder = dir.join(format!("{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&folder).unwrap();
        }
        // Sizes from a few bytes to about 4x the mean; most are small, a few are large.
        let size = match next() % 10 {
            0..=5 => next() % (mean / 4),
            6..=8 => next() % (mean * 2),
            _ => mean * 2 + next() % (mean * 8),
        };
        let size = size.min(TOTAL_BYTES.saturating_sub(written));
        let mut file = std::fs::File::create(folder.join(format!("{i:05}.bin"))).unwrap();
        let mut left = size as usize;
        while left > 0 {
            let take = left.min(block.len());
            let offset = (next() as usize) % (block.len() - take + 1);
            file.write_all(&block[offset..offset + take]).unwrap();
            left -= take;
        }
        written += size;
    }
    written
}

/// (files, KiB) under a folder, inside the sandbox.
fn count(sandbox: &Sandbox, path: &str) -> (u64, u64) {
    let out = sandbox.run_ok("sh", &["-c", &format!("find {path} -type f | wc -l; du -sk {path} | cut -f1")]);
    let mut lines = out.lines();
    (lines.next().unwrap().trim().parse().unwrap(), lines.next().unwrap().trim().parse().unwrap())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
