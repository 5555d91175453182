//! `left4me`: the reconciler's command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use left4me_state::{Checked, DesiredState};

/// Declarative Left 4 Dead 2 servers: the desired state in git, converged onto this host.
#[derive(Parser)]
#[command(name = "left4me", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a state repo and list every problem as path:line:col: message.
    ///
    /// Exits 0 when valid, 1 when invalid (problems on stdout, one per line), 2 when it cannot be read.
    Validate {
        /// The state repo [default: $LEFT4ME_ROOT/state, with LEFT4ME_ROOT defaulting to /var/lib/left4me]
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Check this committed revision (branch, tag or commit) instead of the files in DIR.
        #[arg(long, value_name = "REV")]
        rev: Option<String>,
    },
    /// Print the JSON Schema of the state repo's documents, for editors.
    Schema,
    /// Show what the next pass would do. Exits 0 when nothing, 1 when there are changes, 2 on error.
    Plan {
        /// The state repo [default: $LEFT4ME_ROOT/state]
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Run one pass now: converge the host to the committed revision.
    Apply {
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Let this revision delete more servers than the prune limit allows.
        #[arg(long, value_name = "REV")]
        confirm_prune: Option<String>,
    },
    /// Show the revisions applied and attempted, and every server's Sync and Health.
    Status {
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Run as the reconciler service: act on each new commit at once, resync periodically.
    Run {
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Seconds between passes that catch drift when nothing was committed.
        #[arg(long, env = "LEFT4ME_RESYNC_SECONDS", default_value_t = 60)]
        resync: u64,
        /// Follow this upstream repository's main (fast-forward only).
        #[arg(long, env = "LEFT4ME_UPSTREAM", value_name = "URL")]
        upstream: Option<String>,
        /// Seconds between fetches of the upstream.
        #[arg(long, env = "LEFT4ME_FETCH_SECONDS", default_value_t = 60)]
        fetch_every: u64,
    },
    /// Sample every running server's players, CPU and memory into $ROOT/live.db, every 30 s
    /// (what `left4me live` does beside the game's events); `--looks` to stop after that many.
    #[command(hide = true)]
    Sample {
        /// Seconds between looks.
        #[arg(long, default_value_t = 30)]
        every: u64,
        #[arg(long)]
        looks: Option<u64>,
    },
    /// Answer one ask of another host, as an SSH forced command (`command="left4me remote",restrict`
    /// in authorized_keys): the line is SSH_ORIGINAL_COMMAND; one of a fixed set of reads (status,
    /// logs, jobs, job, backups), rcon, fetch and handover — or, with --agent <host>, what the agent
    /// of that host may ask: a fetch of the state repo (git-upload-pack) and the data of a server
    /// moving to it (handover). Anything else is refused (exit 2).
    Remote {
        /// Take the asks of this host's agent (the state repo, read-only; the data of a server
        /// placed on it) rather than the control host's.
        #[arg(long, value_name = "HOST")]
        agent: Option<String>,
    },
    /// Run as left4me-live.service (the game's user): take every server's log stream on
    /// 127.0.0.1:$LEFT4ME_LIVE_PORT into $ROOT/live.db — who is on, who came and went, the chat.
    Live,
    /// Back a server's own data up now (a job): the newest `backups.keep` of its blueprint are kept.
    Backup { server: String },
    /// List a server's backups, newest first.
    Backups {
        server: String,
        #[arg(long)]
        json: bool,
    },
    /// Put a backup of a server back (a job): the server stops, its current data is kept as one
    /// more backup, and it starts again if it ran.
    Restore { server: String, backup: String },
    /// Try a server held back after crashing again now: runs a pass at once.
    Retry {
        server: String,
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
    /// The game's Steam builds: `check` asks Steam now which build the branch publishes, as the
    /// service does every `spec.game.checkEvery`, and runs a pass that acts on it.
    Game {
        #[command(subcommand)]
        command: GameCommand,
    },
    /// The revision's alerts (`alerts/*.yaml`): `test` sends one message through an alert now.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// The state repo's schedules: `run` runs one now, as its timer does.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// What passes did, newest first: each pass, an invalid revision, a build published,
    /// installed, a server moved to it.
    Events {
        /// How many to show.
        #[arg(long, short = 'n', default_value_t = 20)]
        lines: usize,
        #[arg(long)]
        json: bool,
    },
    /// Who did what to the host, newest first: sign-ins, RCON commands, writes by hand, backups,
    /// restores, user administration, job cancellations.
    Audit {
        /// How many to show.
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: usize,
        /// Only the entries about this server.
        #[arg(long, value_name = "NAME")]
        server: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List recent jobs, or show one job's log; `jobs cancel <id>` cancels one.
    #[command(args_conflicts_with_subcommands = true)]
    Jobs {
        #[command(subcommand)]
        action: Option<JobsCommand>,
        /// A job to show with its whole log.
        id: Option<i64>,
        #[arg(long)]
        json: bool,
        /// With a job id: keep printing its log as it grows, until the job ends.
        #[arg(long, requires = "id")]
        follow: bool,
    },
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Run a schedule of the branch's committed revision once (its timer,
    /// left4me-schedule@<name>.timer, starts this): a job whose log says what happened to each
    /// server.
    Run {
        name: String,
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Cancel a queued or running job: its l4d2ctl is stopped and what it was changing stays as
    /// it was; waits (at most a minute) for it to end and says how it ended.
    Cancel { id: i64 },
}

#[derive(Subcommand)]
enum GameCommand {
    /// Ask Steam for the branch's build now (a job), then run a pass: a new build is installed
    /// and servers move to it by their rollout.
    Check {
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Send a test message through an alert of the committed revision now, and say what the
    /// receiver answered. Exits 0 when it took it, 1 when it did not.
    Test {
        /// The alert's name (its file in alerts/).
        name: String,
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
}

/// Exit code for "could not do what was asked", as for usage errors.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // Whoever read the output stopped (`left4me jobs | head`): nothing is wrong.
        Err(error) if closed_stdout(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("left4me: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Whether an error is a write to a stdout whose reader has gone.
fn closed_stdout(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Like `println!` and `print!`, but a failed write is an error to return rather than a panic:
/// stdout may be a pipe whose reader has gone.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), $($arg)*)?
    };
}
macro_rules! out {
    ($($arg:tt)*) => {
        write!(std::io::stdout(), $($arg)*)?
    };
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { state, rev } => {
            let state = match state {
                Some(state) => state,
                None => default_state_repo()?,
            };
            validate(&state, rev.as_deref())
        }
        Command::Schema => {
            std::io::stdout().write_all(left4me_state::json_schema().as_bytes()).context("cannot write the schema")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { state, json } => commands::plan(state, json),
        Command::Apply { state, confirm_prune } => commands::apply(state, confirm_prune.as_deref()),
        Command::Status { state, json } => commands::status(state, json),
        Command::Game { command: GameCommand::Check { state } } => commands::game_check(state),
        Command::Alerts { command: AlertsCommand::Test { name, state } } => commands::alerts_test(state, &name),
        Command::Schedule { command: ScheduleCommand::Run { name, state } } => commands::schedule_run(state, &name),
        Command::Events { lines, json } => commands::events(lines, json),
        Command::Jobs { action: Some(JobsCommand::Cancel { id }), .. } => commands::cancel(id),
        Command::Jobs { action: None, id, json, follow } => commands::jobs(id, json, follow),
        Command::Audit { lines, server, json } => commands::audit(lines, server.as_deref(), json),
        Command::Backup { server } => commands::backup(&server, reconciler::backups::Operation::Backup),
        Command::Restore { server, backup } => {
            commands::backup(&server, reconciler::backups::Operation::Restore { id: backup })
        }
        Command::Backups { server, json } => commands::backups(&server, json),
        Command::Retry { server, state } => commands::retry(state, &server),
        Command::Remote { agent } => commands::remote(agent.as_deref()),
        Command::Sample { every, looks } => {
            let config = reconciler::engine::Config::from_env(None)?;
            let pace = reconciler::live::sample::Pace { every: std::time::Duration::from_secs(every.max(1)), looks };
            reconciler::live::sample::run(&config.root, &config.l4d2ctl, pace)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Live => {
            tracing_subscriber::fmt().with_target(false).with_ansi(false).init();
            let host = l4d2ctl::Host::from_env().context("cannot read the host's settings")?;
            let config = reconciler::engine::Config::from_env(None)?;
            reconciler::live::service::run(&host, &config.l4d2ctl)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { state, resync, upstream, fetch_every } => {
            tracing_subscriber::fmt().with_target(false).with_ansi(false).init();
            let config = reconciler::engine::Config::from_env(state)?;
            let upstream = upstream.filter(|url| !url.is_empty()).map(|url| reconciler::daemon::Upstream {
                url,
                every: std::time::Duration::from_secs(fetch_every.max(1)),
            });
            reconciler::daemon::run(&config, std::time::Duration::from_secs(resync.max(1)), upstream)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

mod commands;

/// `$ROOT/state`, with `$ROOT` read as every left4me program reads it (host.env, then the
/// environment).
fn default_state_repo() -> anyhow::Result<PathBuf> {
    let host = l4d2ctl::Host::from_env().context("cannot read the host's settings")?;
    Ok(host.root.join("state"))
}

fn validate(repo: &Path, rev: Option<&str>) -> anyhow::Result<ExitCode> {
    let (what, checked): (String, Checked) = match rev {
        Some(rev) => {
            let (revision, checked) = left4me_state::load_revision(repo, rev)?;
            (format!("{} at {}", repo.display(), revision.short()), checked)
        }
        None => (repo.display().to_string(), left4me_state::load_dir(repo)?),
    };
    match checked {
        Ok(state) => {
            outln!("{what}: valid, {}", summary(&state));
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            out!("{diagnostics}");
            let count = diagnostics.len();
            eprintln!("{what}: invalid, {count} problem{}", if count == 1 { "" } else { "s" });
            Ok(ExitCode::FAILURE)
        }
    }
}

fn summary(state: &DesiredState) -> String {
    let count = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}, {}",
        count(state.servers.len(), "server"),
        count(state.blueprints.len(), "blueprint"),
        count(state.overlays.len(), "overlay")
    )
}
