//! The game's builds on a real host: each Steam build a folder of its own beside the others,
//! installed under a running server without touching its tree, sharing the files that did not
//! change; servers moved between builds; failed installs that change nothing; a base install
//! from before builds adopted under its running server; builds that are not what they say.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Output, Stdio};

use l4d2ctl::api::{FailureKind, Game, Message, Outcome};

use crate::support::{Host, ROOT, read_messages, text};

/// The folder fake-steamcmd reads its knobs from (what Steam publishes, how it fails).
const STEAM: &str = "/var/lib/fake-steamcmd";
const A: u64 = 1001;
const B: u64 = 1002;

impl Host {
    /// A host installed by `deploy/install.sh` while Steam publishes build `build`, with a base
    /// tree of `base_files` (`<count> <bytes each>`) of which one file in a hundred changes per build.
    fn installed_with(build: u64, base_files: &str) -> Host {
        let host = Host::booted();
        host.knob("public-buildid", &build.to_string());
        host.knob("base-files", base_files);
        host.sandbox.install_left4me(bin_dir(), true);
        host
    }

    fn knob(&self, name: &str, value: &str) {
        self.ok("sh", &["-c", &format!("mkdir -p {STEAM} && printf '%s\\n' '{value}' > {STEAM}/{name}")]);
    }

    fn drop_knob(&self, name: &str) {
        self.ok("rm", &["-f", &format!("{STEAM}/{name}")]);
    }

    fn game(&self) -> Game {
        serde_json::from_str(&self.l4d2ctl_ok(&["game", "--json"])).expect("game --json prints api::Game")
    }

    /// A write under `--json`: its output and its last message.
    fn write_json(&self, args: &[&str]) -> (Output, Message) {
        let out = self.l4d2ctl(&[&["--json"], args].concat());
        let last = read_messages(&out.stdout).pop().unwrap_or_else(|| panic!("no message: {}", text(&out.stderr)));
        (out, last)
    }

    fn failure(&self, args: &[&str]) -> (FailureKind, String) {
        let (out, last) = self.write_json(args);
        assert!(!out.status.success(), "{args:?} fails");
        match last {
            Message::Failed { failure } => (failure.kind, failure.message),
            other => panic!("{args:?} ends with a failure, not {other:?}"),
        }
    }

    /// One sha256 over every file below `dir`, in order.
    fn tree_hash(&self, dir: &str) -> String {
        self.ok(
            "sh",
            &["-c", &format!("cd {dir} && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum")],
        )
    }

    /// KiB the folders take together, each inode counted once.
    fn du_kib(&self, dirs: &[&str]) -> u64 {
        let out = self.ok("du", &[&["-sk", "--total"], dirs].concat());
        out.lines().last().and_then(|line| line.split_whitespace().next()?.parse().ok()).expect("du's total")
    }

    fn ino(&self, path: &str) -> u64 {
        std::fs::symlink_metadata(self.root_path(path)).unwrap_or_else(|e| panic!("{path}: {e}")).ino()
    }

    /// The version a running server reports (its RCON `status`, as its A2S_INFO does).
    fn version(&self, server: &str) -> String {
        let status = self.l4d2ctl_ok(&["rcon", server, "status"]);
        let line =
            status.lines().find_map(|line| line.strip_prefix("version : ")).unwrap_or_else(|| panic!("{status}"));
        line.split_whitespace().next().unwrap_or_default().to_owned()
    }

    /// The staging folders of installs left under `builds/`.
    fn staging_left(&self) -> Vec<String> {
        std::fs::read_dir(self.root_path(&format!("{ROOT}/builds")))
            .expect("builds/ is there")
            .map(|entry| entry.expect("an entry of builds/").file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".staging-"))
            .collect()
    }

    /// Builds of the status of `server`: what runs, what its record stacks, what it started on.
    fn builds_of(&self, server: &str) -> [Option<u64>; 3] {
        let status = self.status_json(server);
        ["build", "rendered_build", "started_build"].map(|key| status[key].as_u64())
    }
}

fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_l4d2ctl")).parent().expect("the binaries' folder")
}

fn build_dir(id: u64) -> String {
    format!("{ROOT}/builds/{id}")
}

#[test]
fn a_new_build_installs_beside_a_running_server_and_shares_what_did_not_change() {
    let host = Host::installed_with(A, "300 65536");
    assert_eq!(host.game().installed, [A]);
    let status = host.start_example("coop-1");
    assert_eq!(host.builds_of("coop-1"), [Some(A), Some(A), Some(A)], "{status}");
    assert_eq!(host.version("coop-1"), format!("2.2.4.{A}"));
    let pid = status["main_pid"].clone();
    let (a_hash, a_kib) = (host.tree_hash(&build_dir(A)), host.du_kib(&[&build_dir(A)]));

    // Every file the server's tree has from its build is read again and again while B installs.
    let merged = host.sandbox.game_tree("coop-1");
    host.ok("sh", &["-c", &format!("cd {} && find . -type f | sort > /tmp/build-files", build_dir(A))]);
    let read_all = format!("cd {merged} && xargs -d '\\n' sha256sum < /tmp/build-files | sha256sum");
    let before = host.ok("sh", &["-c", &read_all]);
    let reader = host
        .sandbox
        .command("sh")
        .args(["-c", &format!("while [ ! -e /tmp/stop ]; do {read_all}; touch /tmp/read-once; done")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the reader starts");
    // Once it has read the tree whole, it reads on without a pause until the install has ended:
    // every moment of the install falls in a read, however long either takes on a busy machine.
    host.ok("sh", &["-c", "while [ ! -e /tmp/read-once ]; do sleep 0.1; done"]);
    host.knob("public-buildid", &B.to_string());
    let (out, last) = host.write_json(&["install"]);
    host.ok("touch", &["/tmp/stop"]);
    let seen = text(&reader.wait_with_output().expect("the reader ends").stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Message::Done { outcome: Outcome::Installed { build, downloaded, .. } } = last else { panic!("{last:?}") };
    assert_eq!((build, downloaded), (Some(B), true));
    let progress = text(&out.stdout);
    assert!(progress.contains("Update state (0x61) downloading, progress: "), "steamcmd's lines: {progress}");
    assert!(seen.lines().count() >= 2, "read during the install: {seen}");
    assert!(seen.lines().all(|hash| hash == before.trim()), "the running server's tree never changed: {seen}");
    assert_eq!(host.tree_hash(&build_dir(A)), a_hash, "nothing wrote into build A");

    // B is a tree of its own that shares every file that did not change.
    let (a, b) = (build_dir(A), build_dir(B));
    for same in ["left4dead2/maps/c1m1_hotel.bsp", "srcds_linux", "left4dead2/sim_base/base_000001.bin"] {
        assert_eq!(host.ino(&format!("{a}/{same}")), host.ino(&format!("{b}/{same}")), "{same} is shared");
    }
    for changed in ["left4dead2/steam.inf", "left4dead2/sim_base/base_000100.bin", "bin/engine_srv.so"] {
        assert_ne!(host.ino(&format!("{a}/{changed}")), host.ino(&format!("{b}/{changed}")), "{changed} is B's own");
    }
    assert!(host.ok("cat", &[&format!("{b}/left4dead2/steam.inf")]).contains(&format!("PatchVersion=2.2.4.{B}")));
    let b_own_kib = host.du_kib(&[&a, &b]) - a_kib;
    eprintln!("build A: {a_kib} KiB; build B's own blocks: {b_own_kib} KiB");
    assert!(b_own_kib * 20 < a_kib, "B costs what changed: {b_own_kib} KiB of {a_kib} KiB");

    let (_, again) = host.write_json(&["install"]);
    assert!(matches!(again, Message::Done { outcome: Outcome::Installed { build: Some(B), downloaded: false, .. } }));
    let game = host.game();
    assert_eq!((game.installed, game.published, game.branch.as_deref()), (vec![A, B], Some(B), Some("public")));
    assert!(game.checked_at.is_some());
    // What a plan reads: the builds, and what each server runs, in a brief look too.
    let brief: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(&["observe", "--brief"])).unwrap();
    assert_eq!(brief["game"]["installed"], serde_json::json!([A, B]), "{brief}");
    assert_eq!(brief["game"]["published"], B);
    assert_eq!((&brief["instances"][0]["build"], &brief["instances"][0]["rendered_build"]), (&A.into(), &A.into()));
    assert_eq!(host.status_json("coop-1")["main_pid"], pid, "the server ran on");

    // Rendered for B while running: the record changes, nothing under its mount does.
    let spec = host.example_spec("coop-1");
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec, "--build", &B.to_string()]);
    assert_eq!(host.builds_of("coop-1"), [Some(A), Some(B), Some(A)]);
    assert_eq!(host.ok("sh", &["-c", &read_all]), before);
    let (kind, message) = host.failure(&["game", "remove", &A.to_string()]);
    assert_eq!(kind, FailureKind::Permanent, "A is stacked while coop-1 runs on it");
    assert!(message.starts_with(&format!("build {A} is stacked by coop-1; ")), "{message}");
    assert!(host.root_path(&a).is_dir());

    host.l4d2ctl_ok(&["restart", "coop-1"]);
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 answers on build B");
    assert_eq!(host.builds_of("coop-1"), [Some(B), Some(B), Some(B)]);
    assert_eq!(host.version("coop-1"), format!("2.2.4.{B}"));
    let (_, removed) = host.write_json(&["game", "remove", &A.to_string()]);
    assert_eq!(removed, Message::Done { outcome: Outcome::BuildRemoved { build: A, removed: true } });
    assert!(!host.root_path(&a).exists());
    assert_eq!(host.game().installed, [B]);
    assert!(host.ok("cat", &[&format!("{b}/left4dead2/maps/c1m1_hotel.bsp")]).starts_with("VBSP"), "B keeps its links");
    let unknown = host.l4d2ctl_ok(&["game", "remove", "424242"]);
    assert!(unknown.contains(&format!("build 424242 is not installed on this host (installed: {B})")), "{unknown}");
}

#[test]
fn a_failed_install_leaves_every_build_and_the_running_server_as_they_were() {
    let host = Host::installed_with(A, "40 4096");
    let pid = host.start_example("coop-1")["main_pid"].clone();
    let a_hash = host.tree_hash(&build_dir(A));
    // What an install killed with l4d2ctl left: the next install removes it.
    host.ok("mkdir", &["-p", &format!("{ROOT}/builds/.staging-5-999999/tree")]);
    host.knob("public-buildid", &B.to_string());
    for (fail, words) in [
        ("killed", "steamcmd (windows pass) was killed by SIGKILL".to_owned()),
        ("disk-full", "steamcmd (windows pass) failed with exit code 8".to_owned()),
        ("invalid-platform", "steamcmd (windows pass) failed with exit code 8".to_owned()),
        ("incomplete", format!("its manifest of build {B} says it is not complete")),
    ] {
        host.knob("fail", fail);
        let (kind, message) = host.failure(&["install"]);
        assert_eq!(kind, FailureKind::Transient, "{fail}: {message}");
        assert!(message.contains(&words), "{fail}: {message}");
        assert_eq!(host.game().installed, [A], "{fail}");
        assert_eq!(host.staging_left(), Vec::<String>::new(), "{fail}");
        assert!(!host.ok("cat", &["/proc/self/mountinfo"]).contains(".staging-"), "{fail}: no mount left behind");
        assert_eq!(host.tree_hash(&build_dir(A)), a_hash, "{fail}");
        let status = host.status_json("coop-1");
        assert_eq!((&status["active_state"], &status["main_pid"]), (&"active".into(), &pid), "{fail}");
    }
    host.knob("fail", "disk-full");
    let plain = text(&host.l4d2ctl(&["install"]).stdout);
    assert!(plain.contains("Error! App '222860' state is 0x202 after update job."), "steamcmd's words: {plain}");
    host.drop_knob("fail");

    // Steam says the build downloads more than the disk holds: refused before steamcmd runs.
    host.knob("download-bytes", "1000000000000000");
    let (kind, message) = host.failure(&["install"]);
    assert_eq!(kind, FailureKind::Transient);
    assert!(
        message.contains(&format!(
            "not enough free space for build {B}: steamcmd says it downloads 2000000000000000 bytes"
        )) && message.contains("bytes (")
            && message.contains("l4d2ctl game remove"),
        "{message}"
    );
    assert_eq!((host.game().installed, host.staging_left()), (vec![A], vec![]));
    host.drop_knob("download-bytes");
    host.l4d2ctl_ok(&["install"]);
    assert_eq!(host.game().installed, [A, B]);

    // Another branch: steamcmd is asked for its build with -beta.
    host.knob("beta-buildid", "3003");
    let (_, done) = host.write_json(&["install", "--branch", "beta"]);
    assert!(matches!(done, Message::Done { outcome: Outcome::Installed { build: Some(3003), downloaded: true, .. } }));
    assert!(host.ok("cat", &[&format!("{}/left4dead2/steam.inf", build_dir(3003))]).contains("2.2.4.3003"));
    let game = host.game();
    assert_eq!((game.installed, game.published, game.branch.as_deref()), (vec![A, B, 3003], Some(3003), Some("beta")));
    let (_, checked) = host.write_json(&["game", "check"]);
    let Message::Done { outcome: Outcome::GameChecked { branch, published, .. } } = checked else {
        panic!("{checked:?}")
    };
    assert_eq!((branch.as_str(), published), ("public", B));
    assert_eq!(host.game().published, Some(B));
    // What Steam said, cut short by a power cut: no check is known (a pass asks again), the
    // builds are as they were, and the next check writes it whole.
    host.ok("sh", &["-c", &format!("printf '{{\"branch\": \"pub' > {ROOT}/builds/published.json")]);
    let game = host.game();
    assert_eq!((game.published, game.checked_at, game.installed), (None, None, vec![A, B, 3003]));
    host.write_json(&["game", "check"]);
    assert_eq!(host.game().published, Some(B));
    assert_eq!(host.status_json("coop-1")["main_pid"], pid);
}

#[test]
fn a_base_install_from_before_builds_is_adopted_under_its_running_server() {
    let host = Host::booted();
    host.knob("public-buildid", &A.to_string());
    host.sandbox.install_left4me(bin_dir(), false);
    host.l4d2ctl_ok(&["install", "--units-only"]);
    // As l4d2ctl installed the game before builds: steamcmd's two passes into installation/.
    let steamcmd = left4me_sim::built_binary("fake-steamcmd").expect("fake-steamcmd is built");
    host.ok("install", &["-d", "-o", "left4me", "-g", "left4me", &format!("{ROOT}/installation")]);
    for platform in ["windows", "linux"] {
        host.ok(
            "setpriv",
            &[
                "--reuid=left4me",
                "--regid=left4me",
                "--init-groups",
                "env",
                &format!("HOME={ROOT}"),
                steamcmd.to_str().expect("a UTF-8 path"),
                "+@sSteamCmdForcePlatformType",
                platform,
                "+force_install_dir",
                &format!("{ROOT}/installation"),
                "+login",
                "anonymous",
                "+app_update",
                "222860",
                "validate",
                "+quit",
            ],
        );
    }
    let game = host.game();
    assert_eq!((game.installed, game.adoptable), (vec![], Some(A)));
    let status = host.start_example("coop-1");
    let record = std::fs::read_to_string(host.root_path(&format!("{ROOT}/instances/coop-1/instance.json"))).unwrap();
    assert!(!record.contains("\"build\""), "a record for the base install names no build: {record}");
    assert_eq!(host.builds_of("coop-1"), [Some(A), Some(A), Some(A)], "resolved from its manifest");
    let pid = status["main_pid"].clone();

    let (_, adopted) = host.write_json(&["game", "adopt"]);
    assert_eq!(adopted, Message::Done { outcome: Outcome::Adopted { build: Some(A) } });
    let installation = format!("{ROOT}/installation");
    assert_eq!(host.ino(&format!("{installation}/srcds_linux")), host.ino(&format!("{}/srcds_linux", build_dir(A))));
    assert!(host.root_path(&installation).is_dir(), "coop-1 still stacks it");
    let game = host.game();
    assert_eq!((game.installed, game.adoptable), (vec![A], None));
    assert_eq!(host.status_json("coop-1")["main_pid"], pid, "no server restarted");
    assert_eq!(host.builds_of("coop-1"), [Some(A), Some(A), Some(A)]);

    host.l4d2ctl_ok(&["restart", "coop-1"]);
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 answers on the adopted build");
    let started = host.ok("cat", &[&format!("{ROOT}/runtime/coop-1/started.json")]);
    assert!(started.contains(&format!("\"build\":{A}")), "{started}");
    assert!(!host.root_path(&installation).exists(), "removed once no running server stacks it");
    assert_eq!(host.builds_of("coop-1"), [Some(A), Some(A), Some(A)]);
    assert_eq!(host.version("coop-1"), format!("2.2.4.{A}"));
    let out = host.l4d2ctl(&["game", "remove", &A.to_string()]);
    assert!(text(&out.stderr).contains("stacked by coop-1"), "its record stacks the adopted build");
}

#[test]
fn builds_that_are_not_what_they_say_are_refused() {
    let host = Host::installed_with(A, "0 0");
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    let (kind, message) = host.failure(&["initialize", "coop-1", "-f", &spec, "--build", "999"]);
    assert_eq!(kind, FailureKind::Permanent);
    assert_eq!(message, format!("build 999 is not installed on this host (installed: {A}); run `l4d2ctl install`"));
    assert!(!host.root_path(&format!("{ROOT}/instances/coop-1")).exists(), "nothing rendered");

    // A build that is a symlink out of $ROOT is no build: not listed, not rendered for, not stacked.
    host.ok("mkdir", &["-p", "/tmp/outside"]);
    host.ok("ln", &["-s", "/tmp/outside", &build_dir(999)]);
    assert_eq!(host.game().installed, [A]);
    let (_, message) = host.failure(&["initialize", "coop-1", "-f", &spec, "--build", "999"]);
    assert!(message.starts_with("build 999 is not installed"), "{message}");
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    let record = host.root_path(&format!("{ROOT}/instances/coop-1/instance.json"));
    let text_of_record = std::fs::read_to_string(&record).unwrap();
    assert!(text_of_record.contains(&format!("\"build\": {A}")), "the newest build: {text_of_record}");
    std::fs::write(&record, text_of_record.replace(&format!("\"build\": {A}"), "\"build\": 999")).unwrap();
    let out = host.l4d2ctl(&["start", "coop-1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("resolves to /tmp/outside, which is not a layer left4me may stack"),
        "{}",
        text(&out.stdout)
    );
    let removed = host.l4d2ctl_ok(&["game", "remove", "999"]);
    assert!(removed.contains("build 999 is not installed on this host"), "{removed}");
    assert!(host.ok("ls", &["-d", "/tmp/outside"]).contains("outside"), "what it points to is left alone");

    let (kind, message) = host.failure(&["install", "--branch", "+quit"]);
    assert_eq!(kind, FailureKind::Permanent);
    assert!(message.contains("\"+quit\" is not a Steam branch name"), "{message}");
    let (kind, message) = host.failure(&["install", "--branch", "nosuch"]);
    assert_eq!(kind, FailureKind::Permanent);
    assert!(message.contains("Steam publishes no branch 'nosuch' of app 222860"), "{message}");
    assert_eq!(host.game().installed, [A]);
}
