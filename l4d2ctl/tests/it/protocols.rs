//! The A2S and RCON clients against sim-srcds, the simulated game server, started the way srcds is started
//! (`-game left4dead2 +ip … +hostport … +map …`, with the game root as its working directory).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use l4d2ctl::a2s;
use l4d2ctl::rcon::{Rcon, RconError};
use left4me_sim::free_port;

/// The longest a test waits for a server to come up; the poll ends as soon as it answers.
const PATIENCE: Duration = Duration::from_secs(15);
const TIMEOUT: Duration = Duration::from_secs(2);
const PASSWORD: &str = "protocols-secret";

// ---------------------------------------------------------------------------------------------------------
// Running sim-srcds

/// The sim-srcds binary, built next to this test's.
fn sim_srcds() -> PathBuf {
    left4me_sim::built_binary("sim-srcds").expect("sim-srcds is built (cargo build --workspace)")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A game root in a temporary folder, removed with everything in it when dropped.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new() -> TempDir {
        TempDir(tempfile::Builder::new().prefix("l4d2ctl-protocols-").tempdir().expect("a temporary folder"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn write(&self, relative: &str, content: &str) {
        let path = self.path().join(relative);
        let parent = path.parent().expect("a relative file path has a parent");
        fs::create_dir_all(parent).unwrap_or_else(|err| panic!("creating {}: {err}", parent.display()));
        fs::write(&path, content).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
    }
}

/// A running sim-srcds in its own game root; dropping it kills and reaps the process, then removes the root.
struct Srcds {
    child: Child,
    port: u16,
    hostname: String,
    root: TempDir,
}

impl Srcds {
    /// Starts a server and waits until it answers A2S.
    fn start(hostname: &str, extra_cfg: &str, extra_args: &[&str]) -> Srcds {
        let mut server = Srcds::spawn(hostname, extra_cfg, extra_args);
        server.wait_until_answering();
        server
    }

    /// Starts a server without waiting for it, so that several can come up at once.
    fn spawn(hostname: &str, extra_cfg: &str, extra_args: &[&str]) -> Srcds {
        let root = TempDir::new();
        root.write(
            "left4dead2/cfg/server.cfg",
            &format!("hostname \"{hostname}\"\nrcon_password \"{PASSWORD}\"\n{extra_cfg}"),
        );
        root.write("left4dead2/maps/c1m1_hotel.bsp", "VBSP");
        // An empty home: no ~/.steam/sdk32/steamclient.so, so the server runs LAN-only whatever this host has.
        root.write("home/.keep", "");
        let log = root.path().join("console.log");
        let stdout = fs::File::create(&log).unwrap_or_else(|err| panic!("creating {}: {err}", log.display()));
        let stderr = stdout.try_clone().expect("duplicating a file handle");
        let port = free_port();
        let mut command = Command::new(sim_srcds());
        command
            .current_dir(root.path())
            .env("HOME", root.path().join("home"))
            .env_remove("SIM_SRCDS_EXIT_AT_ONCE")
            .args(["-game", "left4dead2", "-norestart", "+ip", "127.0.0.1", "+hostport", &port.to_string()])
            .args(["+map", "c1m1_hotel"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = command.spawn().unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        Srcds { child, port, hostname: hostname.to_owned(), root }
    }

    fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    fn console_log(&self) -> String {
        fs::read_to_string(self.root.path().join("console.log")).unwrap_or_else(|err| format!("(no log: {err})"))
    }

    /// Polls A2S_INFO with short timeouts until the server answers; panics with its log when it exits or
    /// never answers.
    fn wait_until_answering(&mut self) -> a2s::Info {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(info) = a2s::query_info(self.addr(), Duration::from_millis(100)) {
                return info;
            }
            if let Some(status) = self.child.try_wait().expect("waiting for our own child") {
                panic!("sim-srcds exited with {status}; its log:\n{}", self.console_log());
            }
            assert!(
                Instant::now() < deadline,
                "no A2S answer on {} within {PATIENCE:?}; log:\n{}",
                self.addr(),
                self.console_log()
            );
        }
    }

    fn rcon(&self) -> Rcon {
        Rcon::connect(self.addr(), PASSWORD, TIMEOUT)
            .unwrap_or_else(|err| panic!("logging in: {err}; log:\n{}", self.console_log()))
    }
}

impl Drop for Srcds {
    fn drop(&mut self) {
        // Only our own child, through its handle (its PID), and reaped so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------------------
// A2S

#[test]
fn query_info_reports_what_the_server_runs() {
    let server = Srcds::start("left4me protocols #1", "", &["-maxplayers", "8"]);
    let info = a2s::query_info(server.addr(), TIMEOUT).expect("the server answers A2S_INFO");
    assert_eq!(info.name, server.hostname, "the name is the hostname from server.cfg");
    assert_eq!(info.map, "c1m1_hotel");
    assert_eq!(info.folder, "left4dead2");
    assert_eq!(info.app_id, 550, "A2S reports the game's app id, not the dedicated server's");
    assert_eq!((info.players, info.max_players, info.bots), (0, 8, 0));
    assert_eq!((info.server_type, info.environment), ('d', 'l'));
    assert_eq!(info.port, Some(server.port));
}

#[test]
fn query_info_many_reports_the_servers_that_answer() {
    let mut servers: Vec<Srcds> = (1..=3).map(|n| Srcds::spawn(&format!("left4me many #{n}"), "", &[])).collect();
    for server in &mut servers {
        server.wait_until_answering();
    }
    // A port nobody listens on: free_port never hands it to a server of another test.
    let silent = loopback(free_port());
    let mut targets: Vec<SocketAddr> = servers.iter().map(Srcds::addr).collect();
    targets.insert(1, silent);

    let infos = a2s::query_info_many(&targets, TIMEOUT);
    assert!(!infos.contains_key(&silent), "an address with nothing listening is absent");
    assert_eq!(infos.len(), 3, "every live server answers: {infos:?}");
    for server in &servers {
        assert_eq!(infos.get(&server.addr()).map(|info| info.name.as_str()), Some(server.hostname.as_str()));
    }
}

#[test]
fn query_info_to_a_silent_address_times_out() {
    let silent = loopback(free_port());
    match a2s::query_info(silent, Duration::from_millis(300)) {
        Err(a2s::A2sError::Timeout { addr, .. }) => assert_eq!(addr, silent),
        other => panic!("expected a timeout from {silent}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// RCON

#[test]
fn rcon_refuses_a_wrong_password() {
    let server = Srcds::start("left4me rcon auth", "", &[]);
    match Rcon::connect(server.addr(), "not-the-password", TIMEOUT) {
        Err(RconError::AuthFailed { addr }) => assert_eq!(addr, server.addr()),
        Err(err) => panic!("expected AuthFailed, got {err}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    // One failure is below the server's ban threshold: the right password still gets in.
    let mut rcon = server.rcon();
    assert_eq!(rcon.exec("echo in").expect("a command after logging in"), "in\n");
}

#[test]
fn rcon_to_a_closed_port_is_a_connect_error() {
    let closed = loopback(free_port());
    match Rcon::connect(closed, PASSWORD, TIMEOUT) {
        Err(err @ RconError::Connect { .. }) => assert!(err.to_string().contains(&closed.to_string()), "{err}"),
        Err(err) => panic!("expected a connect error, got {err}"),
        Ok(_) => panic!("connected to {closed}, where nothing listens"),
    }
}

#[test]
fn players_set_over_rcon_show_in_a2s() {
    let server = Srcds::start("left4me players", "", &[]);
    let mut rcon = server.rcon();
    let output = rcon.exec("sim_players 3").expect("sim_players runs");
    assert!(output.contains("sim_players set to 3"), "{output:?}");
    let info = a2s::query_info(server.addr(), TIMEOUT).expect("the server answers A2S_INFO");
    assert_eq!(info.players, 3);
}

#[test]
fn output_spanning_many_packets_comes_back_whole() {
    const CVARS: usize = 300;
    let cfg: String = (0..CVARS)
        .map(|i| format!("l4m_test_cvar_{i:03} \"value {i} of a config that fills several packets\"\n"))
        .collect();
    let server = Srcds::start("left4me cvarlist", &cfg, &[]);
    let mut rcon = server.rcon();

    let output = rcon.exec("cvarlist").expect("cvarlist runs");
    assert!(output.len() > 2 * 4096, "the output should span several packets, it is {} bytes", output.len());
    for i in 0..CVARS {
        let line = format!("l4m_test_cvar_{i:03}");
        assert!(output.contains(&line), "{line} is missing from cvarlist:\n{output}");
    }
    // The list is sorted and ends with its total: the last cvar and that line prove nothing was cut off.
    assert!(output.contains("z_difficulty"), "the last cvar is missing:\n{output}");
    assert!(output.ends_with("total convars\n"), "the output is cut off:\n{output}");

    // The connection stays in step: the next replies belong to the next commands, including an empty one.
    assert_eq!(rcon.exec("cvarlist").expect("cvarlist again"), output);
    assert_eq!(rcon.exec("sv_cheats 0").expect("setting a cvar prints nothing"), "");
    assert_eq!(rcon.exec("echo still in step").expect("echo runs"), "still in step\n");
}

#[test]
fn status_names_the_server() {
    let server = Srcds::start("left4me status check", "", &[]);
    let output = server.rcon().exec("status").expect("status runs");
    assert!(output.contains(&format!("hostname: {}", server.hostname)), "{output}");
    assert!(output.contains("c1m1_hotel"), "{output}");
}

#[test]
fn commands_no_packet_can_carry_are_refused_before_sending() {
    let server = Srcds::start("left4me refusals", "", &[]);
    let mut rcon = server.rcon();
    for command in ["echo a\0b".to_owned(), format!("echo {}", "x".repeat(5000))] {
        match rcon.exec(&command) {
            Err(RconError::InvalidInput { what, .. }) => assert_eq!(what, "the command"),
            other => panic!("expected InvalidInput for a command of {} bytes, got {other:?}", command.len()),
        }
    }
    // Nothing was sent, so the connection is still usable.
    assert_eq!(rcon.exec("echo fine").expect("echo runs"), "fine\n");
}
