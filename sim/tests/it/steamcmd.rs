//! fake-steamcmd as `l4d2ctl install` uses it: the "Invalid platform" failure, the windows-then-linux
//! workaround, a base tree whose `srcds_run` starts sim-srcds, no-op reruns and `validate`; the app info
//! `app_info_print` shows, its cache, and installing the build it publishes.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use tempfile::TempDir;

use crate::srcds::{Proc, free_port, wait_until_answering};

const FAKE_STEAMCMD: &str = env!("CARGO_BIN_EXE_fake-steamcmd");

/// A home directory and an install directory, both temporary.
struct Host {
    dir: TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        fs::create_dir_all(dir.path().join("home")).expect("creating the home directory");
        fs::create_dir_all(dir.path().join("state")).expect("creating the state folder");
        Host { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn install(&self) -> PathBuf {
        self.dir.path().join("installation")
    }

    /// Publishes `build` on the public branch, as Steam would on an update.
    fn publish(&self, build: u64) {
        fs::write(self.dir.path().join("state/public-buildid"), format!("{build}\n")).expect("publishing a build");
    }

    /// `+login anonymous [+app_info_update 1] +app_info_print 222860 +quit`; returns its stdout.
    fn app_info(&self, update: bool) -> String {
        let mut command = self.command();
        command.args(["+login", "anonymous"]);
        if update {
            command.args(["+app_info_update", "1"]);
        }
        command.args(["+app_info_print", "222860", "+quit"]);
        let mut proc = Proc::spawn(command);
        assert!(proc.exited().success(), "{}\n{}", proc.stdout(), proc.stderr());
        proc.stdout()
    }

    /// fake-steamcmd with this host's home and state folder, and no knob from the caller's environment.
    fn command(&self) -> Command {
        let mut command = Command::new(FAKE_STEAMCMD);
        command
            .current_dir(self.dir.path())
            .env("HOME", self.home())
            .env("FAKE_STEAMCMD_STATE_DIR", self.dir.path().join("state"))
            .env_remove("FAKE_STEAMCMD_EXTRA_FILES");
        command
    }

    /// Runs fake-steamcmd the way l4d2ctl does; returns its exit status and stdout.
    fn steamcmd(&self, platform: Option<&str>, validate: bool, env: &[(&str, &str)]) -> (ExitStatus, String) {
        let install = self.install();
        let mut command = self.command();
        command.envs(env.iter().copied()).args([
            "+force_install_dir".as_ref(),
            install.as_os_str(),
            "+login".as_ref(),
            "anonymous".as_ref(),
        ]);
        if let Some(platform) = platform {
            command.args(["+@sSteamCmdForcePlatformType", platform]);
        }
        command.args(["+app_update", "222860"]);
        if validate {
            command.arg("validate");
        }
        command.arg("+quit");
        let mut proc = Proc::spawn(command);
        let status = proc.exited();
        (status, format!("{}\n{}", proc.stdout(), proc.stderr()))
    }

    /// The workaround: a windows pass, then a linux pass.
    fn install_base(&self) {
        let (status, out) = self.steamcmd(Some("windows"), true, &[]);
        assert!(status.success(), "windows pass failed:\n{out}");
        let (status, out) = self.steamcmd(Some("linux"), true, &[]);
        assert!(status.success(), "linux pass failed:\n{out}");
        assert!(out.contains("Success! App '222860' fully installed."), "{out}");
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

#[test]
fn anonymous_linux_install_fails_with_invalid_platform() {
    let host = Host::new();
    let (status, out) = host.steamcmd(None, true, &[]);
    assert_eq!(status.code(), Some(8), "{out}");
    assert!(out.contains("ERROR! Failed to install app '222860' (Invalid platform)"), "{out}");
    assert!(out.contains("Loading Steam API...OK"), "{out}");
    assert!(out.contains("Logging in user 'anonymous' to Steam Public...OK"), "{out}");
    assert!(!host.install().join("srcds_run").exists());
    for arch in ["linux32", "linux64"] {
        let client = host.home().join(".local/share/Steam/steamcmd").join(arch).join("steamclient.so");
        assert!(client.is_file(), "bootstrap should create {}", client.display());
    }
}

#[test]
fn windows_then_linux_installs_a_tree_whose_srcds_run_answers_a2s() {
    let host = Host::new();
    let (status, out) = host.steamcmd(Some("windows"), false, &[]);
    assert!(status.success(), "{out}");
    assert!(out.contains("Success! App '222860' fully installed."), "{out}");
    let install = host.install();
    assert!(install.join("srcds.exe").is_file());
    assert!(install.join("left4dead2/bin/server.dll").is_file());
    assert!(install.join("steamapps/appmanifest_222860.acf").is_file());

    let (status, out) = host.steamcmd(Some("linux"), true, &[]);
    assert!(status.success(), "{out}");
    assert!(out.contains(" Update state (0x61) downloading, progress: "), "{out}");
    let srcds_run = install.join("srcds_run");
    assert_eq!(fs::metadata(&srcds_run).expect("srcds_run exists").permissions().mode() & 0o777, 0o755);
    assert_eq!(read(&install.join("srcds_linux")), read(Path::new(env!("CARGO_BIN_EXE_sim-srcds"))));
    for map in ["c1m1_hotel", "c1m2_streets", "c2m1_highway", "c5m1_waterfront", "c8m1_apartment", "c14m2_lighthouse"] {
        assert!(install.join(format!("left4dead2/maps/{map}.bsp")).is_file(), "{map} is missing");
    }
    assert!(install.join("left4dead2/addons").is_dir());
    assert!(install.join("left4dead2/cfg/valve.rc").is_file());
    assert!(!install.join("left4dead2/cfg/server.cfg").exists(), "L4D2 ships no server.cfg");
    let manifest = String::from_utf8(read(&install.join("steamapps/appmanifest_222860.acf"))).expect("text");
    assert!(manifest.contains("\"appid\"\t\t\"222860\"") && manifest.contains("\"linux\""), "{manifest}");

    // What l4d2ctl install adds: the sdk32 link to steamcmd's client, so srcds reaches Steam.
    let sdk32 = host.home().join(".steam/sdk32");
    fs::create_dir_all(&sdk32).expect("creating ~/.steam/sdk32");
    std::os::unix::fs::symlink(
        host.home().join(".local/share/Steam/steamcmd/linux32/steamclient.so"),
        sdk32.join("steamclient.so"),
    )
    .expect("linking steamclient.so");
    fs::write(install.join("left4dead2/cfg/server.cfg"), "hostname \"from the installed tree\"\n").expect("server.cfg");

    // srcds_run is started by its path from elsewhere, as systemd does; it must cd to its own directory.
    let port = free_port();
    let mut command = Command::new(&srcds_run);
    command.current_dir(host.dir.path()).env("HOME", host.home()).args([
        "-game",
        "left4dead2",
        "-norestart",
        "+ip",
        "127.0.0.1",
        "+hostport",
        &port.to_string(),
        "+map",
        "c1m1_hotel",
    ]);
    let mut proc = Proc::spawn(command);
    let info = wait_until_answering(&mut proc, port);
    assert_eq!((info.name.as_str(), info.map.as_str()), ("from the installed tree", "c1m1_hotel"));
    proc.wait_for_stdout("Connection to Steam servers successful.");
}

#[test]
fn a_second_run_is_a_no_op_and_validate_restores_files() {
    let host = Host::new();
    host.install_base();
    let install = host.install();
    let srcds_linux = install.join("srcds_linux");
    let modified = fs::metadata(&srcds_linux).and_then(|meta| meta.modified()).expect("srcds_linux mtime");

    let (status, out) = host.steamcmd(Some("linux"), false, &[]);
    assert!(status.success(), "{out}");
    assert!(out.contains("Success! App '222860' already up to date."), "{out}");
    assert!(!out.contains("downloading"), "{out}");
    assert_eq!(fs::metadata(&srcds_linux).and_then(|meta| meta.modified()).expect("mtime"), modified);

    // A plain update trusts the manifest, as steamcmd does; only validate notices damage.
    let deleted = install.join("left4dead2/maps/c2m1_highway.bsp");
    let original = read(&deleted);
    fs::remove_file(&deleted).expect("deleting a map");
    let valve_rc = install.join("left4dead2/cfg/valve.rc");
    let valve_rc_original = read(&valve_rc);
    fs::write(&valve_rc, "tampered\n").expect("modifying valve.rc");
    let (status, out) = host.steamcmd(Some("linux"), false, &[]);
    assert!(status.success() && out.contains("already up to date"), "{out}");
    assert!(!deleted.exists());

    let (status, out) = host.steamcmd(Some("linux"), true, &[]);
    assert!(status.success(), "{out}");
    assert!(out.contains(" Update state (0x5) verifying install, progress: "), "{out}");
    assert_eq!(read(&deleted), original, "validate restores a deleted file");
    assert_eq!(read(&valve_rc), valve_rc_original, "validate restores a modified file");
}

#[test]
fn extra_files_are_deterministic() {
    let first = Host::new();
    let second = Host::new();
    for host in [&first, &second] {
        let (status, out) = host.steamcmd(Some("windows"), false, &[("FAKE_STEAMCMD_EXTRA_FILES", "3")]);
        assert!(status.success(), "{out}");
    }
    for index in 0..3 {
        let relative = format!("left4dead2/sim_content/sim_content_{index:06}.bin");
        let content = read(&first.install().join(&relative));
        assert_eq!(content.len(), 100 * 1024, "{relative}");
        assert_eq!(content, read(&second.install().join(&relative)), "{relative} differs between installs");
    }
    let zero = read(&first.install().join("left4dead2/sim_content/sim_content_000000.bin"));
    let one = read(&first.install().join("left4dead2/sim_content/sim_content_000001.bin"));
    assert_ne!(zero, one, "every extra file has its own content");
    assert!(!first.install().join("left4dead2/sim_content/sim_content_000003.bin").exists());
}

#[test]
fn unknown_commands_are_reported_and_skipped() {
    let host = Host::new();
    let install = host.install();
    let mut command = Command::new(FAKE_STEAMCMD);
    command.env("HOME", host.home()).args([
        "+force_install_dir".as_ref(),
        install.as_os_str(),
        "+login".as_ref(),
        "anonymous".as_ref(),
        "+frobnicate".as_ref(),
        "+@sSteamCmdForcePlatformType".as_ref(),
        "windows".as_ref(),
        "+app_update".as_ref(),
        "222860".as_ref(),
        "+quit".as_ref(),
    ]);
    let mut proc = Proc::spawn(command);
    assert!(proc.exited().success(), "{}", proc.stdout());
    assert!(proc.stdout().contains("Unknown command \"frobnicate\""), "{}", proc.stdout());
    assert!(install.join("srcds.exe").is_file());
}

/// The value of the first `"buildid"` line of VDF text.
fn build_id_in(vdf: &str) -> String {
    vdf.lines()
        .find_map(|line| {
            let mut quoted = line.split('"').skip(1).step_by(2);
            (quoted.next() == Some("buildid")).then(|| quoted.next().unwrap_or_default().to_owned())
        })
        .unwrap_or_else(|| panic!("no buildid in:\n{vdf}"))
}

fn text(path: &Path) -> String {
    String::from_utf8(read(path)).unwrap_or_else(|err| panic!("{} is not text: {err}", path.display()))
}

#[test]
fn app_info_print_shows_the_build_app_update_installs_when_none_is_published() {
    let host = Host::new();
    let out = host.app_info(true);
    let block = out.find("\n\"222860\"\n{\n").unwrap_or_else(|| panic!("no app block in:\n{out}"));
    assert!(out[..block].contains("Loading Steam API...OK"), "steamcmd's log lines come first:\n{out}");
    assert!(out[..block].contains("AppID : 222860, change number : "), "{out}");
    assert!(
        out.contains("\t\"depots\"\n\t{\n") && out.contains("\t\t\"branches\"\n\t\t{\n\t\t\t\"public\"\n"),
        "{out}"
    );
    host.install_base();
    let manifest = text(&host.install().join("steamapps/appmanifest_222860.acf"));
    assert_eq!(build_id_in(&out), build_id_in(&manifest));
    assert!(text(&host.install().join("left4dead2/steam.inf")).contains("PatchVersion=2.2.4.3\n"));
}

#[test]
fn a_published_build_is_cached_until_app_info_update_and_installed_by_app_update() {
    let host = Host::new();
    host.publish(16_046_151);
    assert_eq!(build_id_in(&host.app_info(false)), "16046151", "a missing cache is fetched");
    assert!(host.home().join(".local/share/Steam/appcache/appinfo.vdf").is_file());
    host.install_base();
    let install = host.install();
    let manifest_path = install.join("steamapps/appmanifest_222860.acf");
    assert_eq!(build_id_in(&text(&manifest_path)), "16046151");
    assert!(text(&install.join("left4dead2/steam.inf")).contains("PatchVersion=2.2.4.16046151\n"));
    assert!(text(&install.join("bin/engine_srv.so")).contains("(build 16046151)"));
    let map = read(&install.join("left4dead2/maps/c1m1_hotel.bsp"));

    host.publish(16_046_152);
    assert_eq!(build_id_in(&host.app_info(false)), "16046151", "without app_info_update the cache answers");
    assert_eq!(build_id_in(&host.app_info(true)), "16046152");
    let (status, out) = host.steamcmd(Some("linux"), false, &[]);
    assert!(status.success() && out.contains("Success! App '222860' fully installed."), "{out}");
    assert_eq!(build_id_in(&text(&manifest_path)), "16046152");
    assert!(text(&install.join("left4dead2/steam.inf")).contains("PatchVersion=2.2.4.16046152\n"));
    assert!(text(&install.join("bin/engine_srv.so")).contains("(build 16046152)"));
    assert_eq!(read(&install.join("left4dead2/maps/c1m1_hotel.bsp")), map, "what no build changes stays");
}

#[test]
fn a_published_build_that_is_not_a_number_is_an_error_naming_the_file() {
    let host = Host::new();
    fs::write(host.dir.path().join("state/public-buildid"), "latest\n").expect("writing public-buildid");
    let mut command = host.command();
    command.args(["+login", "anonymous", "+app_info_update", "1", "+quit"]);
    let mut proc = Proc::spawn(command);
    assert!(!proc.exited().success());
    assert!(proc.stderr().contains("public-buildid holds 'latest', not a build id"), "{}", proc.stderr());
}
