//! `left4me-demo`: left4me on a throwaway host, in one command.
//!
//! Builds the workspace's binaries, boots the sandbox host (a real systemd in namespaces),
//! installs left4me into it exactly as `deploy/install.sh` does on a real host (the simulated game
//! included), commits `examples/state` to its state repo, makes an admin account, waits until the
//! example servers run, and forwards the web app to `127.0.0.1:8080` on this machine. Ctrl-C (or
//! SIGTERM) powers the host off and removes its disk: nothing is left behind.
//!
//!   cargo run --release --bin left4me-demo [-- --port 8080] [-- --no-build]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use left4me_sim::{Sandbox, built_binary, workspace};

/// Where the web app listens inside the sandbox host (its own network).
const INSIDE: u16 = 8080;
const ADMIN: &str = "admin";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Options {
    port: u16,
    build: bool,
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("left4me-demo: {message}\nusage: left4me-demo [--port PORT] [--no-build]");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C reaches the whole process group: the sandbox's helper cuts the host's power on its
    // own, and this process cleans up once it notices.
    let handler = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_signal),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    for signal in [nix::sys::signal::Signal::SIGINT, nix::sys::signal::Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if let Err(e) = unsafe { nix::sys::signal::sigaction(signal, &handler) } {
            eprintln!("left4me-demo: cannot handle {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("left4me-demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options { port: 8080, build: true };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a port number")?;
                options.port = value.parse().map_err(|_| format!("--port {value:?} is not a port number"))?;
            }
            "--no-build" => options.build = false,
            "-h" | "--help" => return Err("a throwaway left4me host, in one command".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn run(options: &Options) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the demo boots a host in namespaces (a real systemd) and needs root: \
                    run it as root, e.g. sudo -E cargo run --release --bin left4me-demo"
            .into());
    }
    // The forwarded port is taken first: if it is busy, say so before anything else happens.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
        .map_err(|e| format!("127.0.0.1:{} is not free ({e}); pick another port with --port", options.port))?;
    let started = Instant::now();
    if options.build {
        stage("building the binaries (cargo build --release)", build)?;
    }
    let bin_dir = built_binary("left4me-sandbox")
        .map_err(|e| e.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("the binaries have no folder")?;
    for binary in ["l4d2ctl", "left4me", "left4me-web", "sim-srcds", "fake-steamcmd"] {
        if !bin_dir.join(binary).is_file() {
            return Err(format!(
                "{} is missing; build with: cargo build --release --workspace --bins",
                bin_dir.join(binary).display()
            ));
        }
    }
    let disk = left4me_sim::disk(Path::new("/var/tmp"), "left4me-demo-")
        .map_err(|e| format!("cannot make the host's disk: {e}"))?;
    let sandbox = stage("booting the sandbox host (systemd in namespaces)", || {
        Sandbox::boot(disk.path(), &[]).map_err(|e| e.to_string())
    })?;
    let outcome = serve(options, &listener, &sandbox, disk.path(), &bin_dir, started);
    stage("powering the host off", || {
        sandbox.power_off();
        Ok(())
    })?;
    let path = disk.path().to_path_buf();
    disk.close().map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    println!("    removed {}; nothing is left running", path.display());
    outcome
}

fn serve(
    options: &Options,
    listener: &TcpListener,
    sandbox: &Sandbox,
    disk: &Path,
    bin_dir: &Path,
    started: Instant,
) -> Result<(), String> {
    let inside = |program: &str, args: &[&str]| -> Result<String, String> {
        let output = sandbox.run(program, args);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "`{program} {}` failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    stage("installing left4me as deploy/install.sh does, with the simulated game", || {
        inside(
            "sh",
            &[
                "-c",
                &format!("mkdir -p /etc/left4me && echo LEFT4ME_WEB_LISTEN=127.0.0.1:{INSIDE} > /etc/left4me/web.env"),
            ],
        )?;
        let steamcmd = bin_dir.join("fake-steamcmd");
        let install = workspace().join("deploy/install.sh");
        inside(
            &install.display().to_string(),
            &["--bin-dir", &bin_dir.display().to_string(), "--steamcmd", &steamcmd.display().to_string()],
        )
        .map(drop)?;
        // The Steam Web API of this host: fake-steam-api on its loopback, as the tests have it.
        sandbox.serve_steam_api();
        Ok(())
    })?;
    let repo = disk.join("root/state");
    stage("committing examples/state to the host's state repo", || {
        sandbox.commit_state(&workspace().join("examples/state"), "The examples")?;
        // This machine's root clones and pushes from outside the host, where git knows nothing of
        // the host's users: the repo is root's, and the web app's user writes it through the
        // group it is shared with.
        inside("chown", &["-R", "root:left4me", "/var/lib/left4me/state"]).map(drop)
    })?;
    let password = random_password()?;
    stage("creating the admin account", || {
        inside("sh", &["-c", &format!("LEFT4ME_PASSWORD='{password}' left4me-web create-user {ADMIN} --admin")])
            .map(drop)
    })?;
    stage("waiting for the example servers to run", || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = sandbox.run("left4me", &["status", "--json"]);
            let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
            let servers = status["servers"].as_array().cloned().unwrap_or_default();
            // Every example server declared running is Running (coop-2 is declared stopped).
            let running = servers.iter().filter(|s| s["health"] == "Running").count();
            if running >= 2 {
                return Ok(());
            }
            if STOP.load(Ordering::SeqCst) {
                return Err("stopped".into());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the examples did not run within 2 minutes; `left4me status` says:\n{}",
                    inside("left4me", &["status"]).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    })?;
    let forwarding = forward(listener, sandbox.init_pid())?;
    let url = format!("http://127.0.0.1:{}/", options.port);
    println!();
    println!("left4me is up after {:.0} s.", started.elapsed().as_secs_f64());
    println!();
    println!("  web app     {url}");
    println!("  sign in as  {ADMIN} / {password}");
    println!("  state repo  {}", repo.display());
    println!();
    println!("In another terminal, change the desired state with git and watch the reconciler act:");
    println!("  git clone {} demo-state && cd demo-state", repo.display());
    println!("  sed -i 's/state: stopped/state: running/' servers/coop-2.yaml");
    println!("  git commit -am 'Start coop-2' && git push");
    println!();
    println!("Ctrl-C stops the demo and removes everything it made.");
    let _ = std::io::stdout().flush();
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!();
    drop(forwarding);
    Ok(())
}

/// Runs one stage of the demo with a spinner on a terminal, and a line saying how long it took.
fn stage<T>(name: &str, work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    println!("==> {name}");
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("    {spinner} {elapsed}").expect("the template is valid"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let started = Instant::now();
    let result = work();
    spinner.finish_and_clear();
    match &result {
        Ok(_) => println!("    done in {:.1} s", started.elapsed().as_secs_f64()),
        Err(e) => println!("    failed: {e}"),
    }
    let _ = std::io::stdout().flush();
    result
}

fn build() -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--workspace", "--bins", "--quiet"])
        .current_dir(workspace())
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("cargo build failed ({status})")) }
}

fn random_password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 64];
    let mut random = std::fs::File::open("/dev/urandom").map_err(|e| format!("/dev/urandom: {e}"))?;
    std::io::Read::read_exact(&mut random, &mut bytes).map_err(|e| format!("/dev/urandom: {e}"))?;
    let limit = 256 - 256 % ALPHABET.len();
    Ok(bytes
        .iter()
        .filter(|b| (**b as usize) < limit)
        .take(16)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

/// Forwards connections to `listener` into the sandbox's network, to the web app. One thread
/// lives in the sandbox's network namespace and opens the connections there; sockets keep their
/// namespace wherever they are used. Stops when the returned guard is dropped.
fn forward(listener: &TcpListener, init: i32) -> Result<Forwarding, String> {
    let (requests, incoming) = mpsc::channel::<mpsc::Sender<std::io::Result<TcpStream>>>();
    let netns =
        std::fs::File::open(format!("/proc/{init}/ns/net")).map_err(|e| format!("the sandbox's network: {e}"))?;
    std::thread::spawn(move || {
        if nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return;
        }
        for reply in incoming {
            let _ = reply.send(TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, INSIDE))));
        }
    });
    let listener = listener.try_clone().map_err(|e| format!("the forwarded port: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("the forwarded port: {e}"))?;
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let client = match listener.accept() {
                Ok((client, _)) => client,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(_) => continue,
            };
            let (reply, answer) = mpsc::channel();
            if requests.send(reply).is_err() {
                return;
            }
            let Ok(Ok(server)) = answer.recv() else { continue };
            let _ = client.set_nonblocking(false);
            pipe(client, server);
        }
    });
    Ok(Forwarding { done })
}

fn pipe(client: TcpStream, server: TcpStream) {
    let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone()) else { return };
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    copy(client_reader, server);
    copy(server_reader, client);
}

struct Forwarding {
    done: std::sync::Arc<AtomicBool>,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}
