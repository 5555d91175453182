//! sim-srcds: a stand-in for the Left 4 Dead 2 dedicated server (`srcds_linux`), for tests and the demo.
//!
//! It is started like srcds (`srcds_run -game left4dead2 +ip … +hostport … +map …`) with the game root as its
//! working directory, and behaves like srcds wherever left4me can see it: the console log on stdout, the
//! configuration in `left4dead2/cfg/server.cfg` (with `exec`), the maps in `left4dead2/maps/`, A2S queries
//! on the UDP game port, Source RCON on the TCP game port, the game's log stream (`log on`, `sv_logsecret`,
//! `logaddress_add`: players connecting, entering and leaving as `sim_players` changes, the map's start), a clean exit on SIGINT/SIGTERM, and a non-zero exit
//! when the port cannot be bound.
//!
//! Knobs that exist only for tests, beyond the real server's own behaviour:
//! - env `SIM_SRCDS_EXIT_AT_ONCE=<code>`: exit with that code right after start, to test crash-loop caps.
//! - console command `sim_players <n>`: the number of human players A2S and `status` report.
//! - console command `sim_say <player> <text>`: simulated player `<player>` (1 to `sim_players`)
//!   says the text, which the game's log sends.
//! - on stderr, `sim-srcds: answering A2S queries on <ip>:<port>` once the query thread is about to
//!   answer (the socket bound before it): when a start is over, for benchmarks that read it afterwards.
//! - cvar `sim_mapchange_seconds` (default 0): how long the server stays silent to A2S after a map change,
//!   to simulate the query gaps of real map changes.

mod a2s;
mod args;
mod console;
mod gamelog;
mod rcon;

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};

use crate::args::LaunchArgs;
use crate::console::{Server, log};

fn main() -> ExitCode {
    if let Some(code) = exit_at_once() {
        return code;
    }
    // The signals are blocked before any thread starts, so every thread inherits the mask and only the main
    // thread's sigwait ever sees them.
    let signals = shutdown_signals();
    if let Err(err) = signals.thread_block() {
        eprintln!("sim-srcds: cannot block SIGINT/SIGTERM: {err}");
        return ExitCode::FAILURE;
    }

    let argv: Vec<String> = std::env::args().skip(1).collect();
    let launch = match args::parse(&argv) {
        Ok(launch) => launch,
        Err(err) => {
            eprintln!("sim-srcds: {err}");
            return ExitCode::FAILURE;
        }
    };
    match launch.game.as_deref() {
        Some("left4dead2") => {}
        Some(other) => {
            eprintln!("sim-srcds: unsupported game '{other}': only -game left4dead2 is simulated");
            return ExitCode::FAILURE;
        }
        None => {
            eprintln!("sim-srcds: missing -game: start it as `srcds_run -game left4dead2 …`");
            return ExitCode::FAILURE;
        }
    }
    match run(launch, &signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

fn run(launch: LaunchArgs, signals: &SigSet) -> Result<(), String> {
    let ip: IpAddr = launch.ip.parse().map_err(|err| format!("sim-srcds: +ip '{}': {err}", launch.ip))?;
    let addr = SocketAddr::new(ip, launch.port);

    log("Using breakpad crash handler");
    log("Console initialized.");
    log("Game.dll loaded for \"Left 4 Dead 2\"");

    // Binding comes first so that a taken port fails at once, as a real srcds does.
    let udp = UdpSocket::bind(addr).map_err(|err| format!("sim-srcds: cannot bind UDP {addr}: {err}"))?;
    let tcp = TcpListener::bind(addr).map_err(|err| format!("sim-srcds: cannot bind TCP {addr}: {err}"))?;
    log(&format!("Network: IP {ip}, mode MP, dedicated Yes, ports {} SV / 27005 CL", launch.port));

    let steam_ok = steamclient_present();
    let server = Arc::new(Server::new(addr, launch.max_players, launch.insecure, steam_ok));
    server.start(&launch.commands, launch.map.as_deref());

    if steam_ok {
        log("Connection to Steam servers successful.");
        if !launch.insecure {
            log("   VAC secure mode is activated.");
        }
    } else {
        log("[S_API FAIL] SteamAPI_Init() failed; SteamAPI_IsSteamRunning() failed.");
        log("dlopen failed trying to load:");
        log("~/.steam/sdk32/steamclient.so");
        log("Could not connect to Steam servers; running LAN-only (queries are still answered).");
    }

    let udp_server = Arc::clone(&server);
    std::thread::Builder::new()
        .name("a2s".into())
        .spawn(move || a2s::serve(&udp_server, &udp))
        .map_err(|err| format!("sim-srcds: cannot start the A2S thread: {err}"))?;
    let tcp_server = Arc::clone(&server);
    std::thread::Builder::new()
        .name("rcon".into())
        .spawn(move || rcon::serve(&tcp_server, &tcp))
        .map_err(|err| format!("sim-srcds: cannot start the RCON thread: {err}"))?;

    let signal = signals.wait().map_err(|err| format!("sim-srcds: waiting for signals failed: {err}"))?;
    log(&format!("Received {}, shutting down.", signal.as_str()));
    log("Server shutting down.");
    Ok(())
}

fn shutdown_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// `SIM_SRCDS_EXIT_AT_ONCE=<code>`: the test knob for crash loops.
fn exit_at_once() -> Option<ExitCode> {
    let value = std::env::var_os("SIM_SRCDS_EXIT_AT_ONCE")?;
    let value = value.to_string_lossy();
    match value.trim().parse::<u8>() {
        Ok(code) => {
            log(&format!("SIM_SRCDS_EXIT_AT_ONCE: exiting with code {code}"));
            Some(ExitCode::from(code))
        }
        Err(err) => {
            eprintln!("sim-srcds: SIM_SRCDS_EXIT_AT_ONCE='{value}' is not an exit code 0-255: {err}");
            Some(ExitCode::from(2))
        }
    }
}

/// srcds `dlopen`s `~/.steam/sdk32/steamclient.so`; without it (or with a dangling link) it runs LAN-only.
fn steamclient_present() -> bool {
    match std::env::var_os("HOME") {
        Some(home) => Path::new(&home).join(".steam/sdk32/steamclient.so").is_file(),
        None => false,
    }
}
