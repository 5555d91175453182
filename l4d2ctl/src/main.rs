//! `l4d2ctl`: the left4me host CLI. See `l4d2ctl --help`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Parser, Subcommand};
use l4d2ctl::host::unit_name;
use l4d2ctl::rcon::Rcon;
use l4d2ctl::{Error, Host, install, instance, mount, overlay, overrides, status, systemd};
use left4me_state::Name;

/// Runs Left 4 Dead 2 servers on this host: instances, units, overlay mounts, status.
#[derive(Parser)]
#[command(name = "l4d2ctl", version)]
struct Cli {
    /// Act for the reconciler: leave no override marker (a person's writes leave one).
    #[arg(long, global = true)]
    reconciler: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install or update the base game (steamcmd), the Steam SDK links and the units.
    Install {
        /// Only write the unit files again where they differ from what l4d2ctl renders (and
        /// reload systemd when one did); no steamcmd.
        #[arg(long)]
        units_only: bool,
    },
    /// Render an instance from a spec file (JSON or YAML, as `left4me` renders it).
    Initialize {
        name: String,
        /// The rendered InstanceSpec (`-` for stdin).
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
    },
    /// Enable and start servers (they also start after a reboot). Several start together, as
    /// one systemd transaction.
    Start {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop and disable a server.
    Stop { name: String },
    /// Restart a running server (it runs its current render afterwards).
    Restart { name: String },
    /// Stop a server and remove its instance; a missing one is already deleted.
    Delete { name: String },
    /// Show every instance, or one.
    Status {
        name: Option<String>,
        /// The machine-readable form the reconciler and web read.
        #[arg(long)]
        json: bool,
    },
    /// Print an instance's rendered spec and digest (instance.json).
    Show { name: String },
    /// Show a server's console log from the journal.
    Logs {
        name: String,
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: u32,
        #[arg(short, long)]
        follow: bool,
    },
    /// Hand a server changed by hand back to the reconciler.
    Release { name: String },
    /// Run a console command on a server over RCON.
    Rcon {
        name: String,
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Materialised overlays: `list`, or `put` one from a tar on stdin (as the reconciler does).
    Overlay {
        #[command(subcommand)]
        command: OverlayCmd,
    },
    /// Every instance's status and every materialised overlay, as one JSON object: what the
    /// reconciler observes, in one call.
    #[command(hide = true)]
    Observe {
        /// Only what a plan needs: each unit's state from one `systemctl list-units`, no A2S
        /// query, no restarts, main PID, result or timestamps.
        #[arg(long)]
        brief: bool,
    },
    /// Mount a server's overlay (run by its unit, as root).
    #[command(hide = true)]
    Mount { name: String },
    /// Unmount a server's overlay (run by its unit, as root).
    #[command(hide = true)]
    Umount { name: String },
    /// Become the server's srcds_run with its rendered argv (run by its unit).
    #[command(hide = true)]
    Exec { name: String },
}

/// How long an RCON connection and each reply may take.
const RCON_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Subcommand)]
enum OverlayCmd {
    /// Every materialised overlay and the digest of its tree.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Build a script overlay: run its build.sh (read from stdin) in a confined transient unit.
    Build {
        name: String,
        /// The digest of the recipe, as the state model computes it.
        #[arg(long)]
        digest: String,
    },
    /// Fetch a workshop overlay: its items through steamcmd into the cache, linked into addons/.
    Fetch {
        name: String,
        /// The digest of the item list, as the state model computes it.
        #[arg(long)]
        digest: String,
        /// A Steam Workshop item id; repeat for each.
        #[arg(long = "item", required = true)]
        items: Vec<u64>,
    },
    /// Replace an overlay with the tree of the tar read from stdin.
    Put {
        name: String,
        /// The digest of the tree, as the state model computes it.
        #[arg(long)]
        digest: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("l4d2ctl: {error}");
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
}

/// A person's write waits for a running reconcile pass to end, so the pass never acts on a server
/// changed under it; the reconciler's own writes run inside its pass, which holds the lock. Taken
/// once the input is known good, so a refused command never waits.
fn hand_lock(host: &Host, by_hand: bool) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, Error> {
    if !by_hand {
        return Ok(None);
    }
    l4d2ctl::host::pass_lock(&host.root, || eprintln!("l4d2ctl: waiting for the reconciler's pass to end")).map(Some)
}

/// A write by a person leaves an override marker — before it acts, so the reconciler never
/// sees the change without the marker and undoes it.
fn mark(host: &Host, name: &Name, what: &str, by_hand: bool) -> Result<(), Error> {
    if by_hand { overrides::mark(host, name, what) } else { Ok(()) }
}

fn parse_name(text: &str) -> Result<Name, Error> {
    Name::new(text).map_err(|e| Error::Invalid(format!("invalid server name {text:?}: {e}")))
}

fn require_root(what: &str) -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{what} must run as root (try sudo)")))
    }
}

/// Root, or the host's game user (whom the web app runs as).
fn require_root_or(user: &str, what: &str) -> Result<(), Error> {
    let uid = nix::unistd::geteuid();
    let is_user = nix::unistd::User::from_name(user).ok().flatten().is_some_and(|u| u.uid == uid);
    if uid.is_root() || is_user {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{what} must run as root or as {user} (try sudo)")))
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    let host = Host::from_env()?;
    let by_hand = !cli.reconciler;
    match cli.command {
        Cmd::Install { units_only } => {
            require_root("install")?;
            if units_only { install::install_units(&host) } else { install::install(&host) }
        }
        Cmd::Initialize { name, file } => {
            let name = parse_name(&name)?;
            let spec = instance::read_spec_file(&file)?;
            require_root("initialize")?;
            let _lock = hand_lock(&host, by_hand)?;
            mark(&host, &name, "initialize", by_hand)?;
            let done = instance::initialize(&host, &name, &spec)?;
            for repaired in &done.repaired {
                println!("{name}: repaired {repaired}");
            }
            println!("{name}: {} ({})", if done.changed { "initialized" } else { "already up to date" }, done.digest);
            Ok(())
        }
        Cmd::Start { names } => {
            let names = names.iter().map(|n| parse_name(n)).collect::<Result<Vec<_>, _>>()?;
            require_root("start")?;
            // A server that cannot start (not initialized, its record unreadable) is its own
            // failure; the others start.
            let mut failed = 0;
            let mut startable = Vec::new();
            for name in &names {
                match instance::read_record(&host, name) {
                    Ok(Some(_)) => startable.push(name),
                    Ok(None) => {
                        println!(
                            "{name}: failed to start: not initialized; run `l4d2ctl initialize {name} -f <spec>` first"
                        );
                        failed += 1;
                    }
                    Err(e) => {
                        println!("{name}: failed to start: {e}; initialize it again");
                        failed += 1;
                    }
                }
            }
            if startable.is_empty() {
                return Err(Error::Invalid(format!("{failed} of {} servers failed to start", names.len())));
            }
            let _lock = hand_lock(&host, by_hand)?;
            for name in &startable {
                mark(&host, name, "start", by_hand)?;
            }
            let units: Vec<String> = startable.iter().map(|name| unit_name(name)).collect();
            let not_started = systemd::enable_now(&units);
            for (name, unit) in startable.iter().zip(&units) {
                match not_started.iter().find(|(u, _)| u == unit) {
                    Some((_, error)) => println!("{name}: failed to start: {error}"),
                    None => println!("{name}: started"),
                }
            }
            match failed + not_started.len() {
                0 => Ok(()),
                n => Err(Error::Invalid(format!("{n} of {} servers failed to start", names.len()))),
            }
        }
        Cmd::Restart { name } => {
            let name = parse_name(&name)?;
            require_root("restart")?;
            let _lock = hand_lock(&host, by_hand)?;
            mark(&host, &name, "restart", by_hand)?;
            systemd::systemctl(&["restart", "--quiet", &unit_name(&name)])?;
            println!("{name}: restarted");
            Ok(())
        }
        Cmd::Stop { name } => {
            let name = parse_name(&name)?;
            require_root("stop")?;
            let _lock = hand_lock(&host, by_hand)?;
            mark(&host, &name, "stop", by_hand)?;
            systemd::disable_now(&unit_name(&name))?;
            println!("{name}: stopped");
            Ok(())
        }
        Cmd::Delete { name } => {
            let name = parse_name(&name)?;
            require_root("delete")?;
            let _lock = hand_lock(&host, by_hand)?;
            let unit = unit_name(&name);
            mark(&host, &name, "delete", by_hand)?;
            // Stopping a unit that was never started is fine; a missing instance is deleted already.
            systemd::disable_now(&unit)?;
            // A unit that failed stays listed as failed after it is stopped, with nothing behind it.
            if systemd::reset_failed(&unit)? {
                println!("{name}: {unit} had failed; its failed state is cleared");
            }
            let deleted = instance::delete(&host, &name)?;
            match (deleted.existed, deleted.archive) {
                (_, Some(archive)) => println!("{name}: deleted; its data is archived in {}", archive.display()),
                (true, None) => println!("{name}: deleted"),
                (false, None) => println!("{name}: already deleted"),
            }
            Ok(())
        }
        Cmd::Status { name, json } => {
            let name = name.as_deref().map(parse_name).transpose()?;
            let statuses = status::status(&host, name.as_ref(), status::Detail::Full)?;
            if json {
                let text = serde_json::to_string_pretty(&statuses).expect("status always serializes");
                println!("{text}");
            } else {
                print!("{}", status::table(&statuses));
            }
            Ok(())
        }
        Cmd::Show { name } => {
            let name = parse_name(&name)?;
            let record = instance::read_record(&host, &name)?
                .ok_or_else(|| Error::Invalid(format!("{name} is not initialized")))?;
            println!("{}", serde_json::to_string_pretty(&record).expect("a record always serializes"));
            Ok(())
        }
        Cmd::Logs { name, lines, follow } => {
            let name = parse_name(&name)?;
            let mut command = Command::new("journalctl");
            command.args(["--unit", &unit_name(&name), "--lines", &lines.to_string(), "--output", "cat", "--no-pager"]);
            if follow {
                command.arg("--follow");
            }
            // journalctl's own output and exit code are the answer.
            Err(Error::Invalid(format!("cannot run journalctl: {}", command.exec())))
        }
        Cmd::Release { name } => {
            let name = parse_name(&name)?;
            require_root("release")?;
            let had = overrides::release(&host, &name)?;
            // Handing a server back is also a new attempt after a crash loop: a unit no longer
            // failed is one the reconciler tries at once rather than holding it back.
            let _ = systemd::systemctl(&["reset-failed", "--quiet", &unit_name(&name)]);
            println!("{name}: {}", if had { "released to the reconciler" } else { "was not overridden" });
            Ok(())
        }
        Cmd::Rcon { name, command } => {
            let name = parse_name(&name)?;
            require_root_or(&host.user, "rcon")?;
            let record = instance::read_record(&host, &name)?
                .ok_or_else(|| Error::Invalid(format!("{name} is not initialized")))?;
            let password = instance::read_rcon_password(&host, &name)?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, record.spec.port.number()));
            let mut rcon =
                Rcon::connect(addr, &password, RCON_TIMEOUT).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
            let output = rcon.exec(&command.join(" ")).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
            print!("{output}");
            if !output.is_empty() && !output.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        Cmd::Overlay { command: OverlayCmd::List { json } } => {
            let (all, problems) = overlay::list(&host)?;
            for problem in &problems {
                eprintln!("l4d2ctl: {problem}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all).expect("overlays always serialize"));
            } else {
                for o in all {
                    println!("{}  {}", o.name, o.digest);
                }
            }
            Ok(())
        }
        Cmd::Overlay { command: OverlayCmd::Build { name, digest } } => {
            let name = Name::new(&name).map_err(|e| Error::Invalid(format!("invalid overlay name {name:?}: {e}")))?;
            require_root("overlay build")?;
            let digest: left4me_state::Digest = serde_json::from_value(serde_json::Value::String(digest))
                .map_err(|e| Error::Invalid(format!("invalid digest: {e}")))?;
            let mut script = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(std::io::stdin(), 1024 * 1024), &mut script)
                .map_err(|e| Error::io("stdin", e))?;
            overlay::build(&host, &name, &digest, &script)?;
            println!("overlay {name}: built ({digest})");
            Ok(())
        }
        Cmd::Overlay { command: OverlayCmd::Fetch { name, digest, items } } => {
            let name = Name::new(&name).map_err(|e| Error::Invalid(format!("invalid overlay name {name:?}: {e}")))?;
            require_root("overlay fetch")?;
            let digest: left4me_state::Digest = serde_json::from_value(serde_json::Value::String(digest))
                .map_err(|e| Error::Invalid(format!("invalid digest: {e}")))?;
            overlay::fetch(&host, &name, &digest, &items)?;
            println!("overlay {name}: {} workshop items ({digest})", items.len());
            Ok(())
        }
        Cmd::Overlay { command: OverlayCmd::Put { name, digest } } => {
            let name = Name::new(&name).map_err(|e| Error::Invalid(format!("invalid overlay name {name:?}: {e}")))?;
            require_root("overlay put")?;
            let digest: left4me_state::Digest = serde_json::from_value(serde_json::Value::String(digest))
                .map_err(|e| Error::Invalid(format!("invalid digest: {e}")))?;
            overlay::put(&host, &name, &digest, std::io::stdin().lock())?;
            println!("overlay {name}: {digest}");
            Ok(())
        }
        Cmd::Observe { brief } => {
            let detail = if brief { status::Detail::Brief } else { status::Detail::Full };
            let observed = status::observe(&host, detail)?;
            println!("{}", serde_json::to_string(&observed).expect("an observation always serializes"));
            Ok(())
        }
        Cmd::Mount { name } => {
            let name = parse_name(&name)?;
            require_root("mount")?;
            mount::mount(&host, &name).map(drop)
        }
        Cmd::Umount { name } => {
            let name = parse_name(&name)?;
            require_root("umount")?;
            mount::umount(&host, &name).map(drop)
        }
        Cmd::Exec { name } => {
            let name = parse_name(&name)?;
            exec(&host, &name)
        }
    }
}

/// Replaces this process with the server's `srcds_run`, started by its path inside the merged tree
/// (it `cd`s to its own folder), with the rendered argv word for word.
fn exec(host: &Host, name: &Name) -> Result<(), Error> {
    let record =
        instance::read_record(host, name)?.ok_or_else(|| Error::Invalid(format!("{name} is not initialized")))?;
    let srcds_run = host.instance(name).merged().join("srcds_run");
    let port = record.spec.port.to_string();
    let mut command = Command::new(&srcds_run);
    command.args(["-game", "left4dead2", "-norestart", "+ip", "0.0.0.0", "+hostport", &port]);
    command.args(record.spec.arguments.iter().map(|a| a.get()));
    let error = command.exec();
    Err(Error::Invalid(format!("cannot run {}: {error}", srcds_run.display())))
}
