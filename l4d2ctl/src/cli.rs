//! The command line of `l4d2ctl`: what a person or another program may ask of it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use l4d2ctl::api::FetchItem;

/// Runs Left 4 Dead 2 servers on this host: instances, units, overlay mounts, status.
#[derive(Debug, PartialEq, Eq, Parser)]
#[command(name = "l4d2ctl", version)]
pub struct Cli {
    /// Act for the reconciler: leave no override marker (a person's writes leave one).
    #[arg(long, global = true)]
    pub reconciler: bool,
    /// Machine-readable output: a write prints JSON Lines (its progress, then what it did or why
    /// it failed); `status`, `overlay list` print their JSON form.
    #[arg(long, global = true)]
    pub json: bool,
    /// Act for this schedule of the state repo (with `--reconciler`): the write leaves an
    /// override marker naming it (`schedule <name>`).
    #[arg(long, global = true, value_name = "NAME", requires = "reconciler")]
    pub schedule: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum Cmd {
    /// Install the build a Steam branch publishes beside the others (steamcmd), unless it is
    /// installed; the Steam SDK links and the units.
    Install {
        /// Only write the unit files again where they differ from what l4d2ctl renders (and
        /// reload systemd when one did); no steamcmd.
        #[arg(long)]
        units_only: bool,
        /// The Steam branch whose build to install.
        #[arg(long, default_value = "public")]
        branch: String,
    },
    /// The game builds of this host and what Steam last said; or check, adopt, remove one.
    Game {
        #[command(subcommand)]
        command: Option<GameCmd>,
    },
    /// Render an instance from a spec file (JSON or YAML, as `left4me` renders it).
    Initialize {
        name: String,
        /// The rendered InstanceSpec (`-` for stdin).
        #[arg(short = 'f', long = "file", value_name = "SPEC")]
        file: PathBuf,
        /// The game build it stacks (default: the newest installed).
        #[arg(long)]
        build: Option<u64>,
    },
    /// Enable and start servers (they also start after a reboot). Several start together, as
    /// one systemd transaction.
    Start {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop and disable servers. Several stop together, as one systemd transaction.
    Stop {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Restart a running server (it runs its current render afterwards).
    Restart { name: String },
    /// Stop a server and remove its instance; a missing one is already deleted.
    Delete {
        name: String,
        /// The server moves to this host of the state repo's: its archive (or that it had no
        /// data) is recorded as that host's to take (`left4me remote handover`).
        #[arg(long, value_name = "HOST")]
        moving_to: Option<String>,
    },
    /// Show every instance, or one.
    Status { name: Option<String> },
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
    /// Back up what a server wrote itself (its upper layer) to `$ROOT/backups/<name>/`, and to
    /// restic when host.env names a repository.
    Backup {
        name: String,
        /// Why it is taken, kept beside it: `manual`, `schedule <name>`, …
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Then remove the oldest backups beyond this many (the newest is never removed).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
    },
    /// List a server's backups, newest first: on this host and in restic.
    Backups { name: String },
    /// Put a backup's data back: the server stopped, its data kept as one more backup, the
    /// backup restored exactly, the server started again if it ran.
    Restore {
        name: String,
        /// The backup's id, as `backups` lists it.
        id: String,
    },
    /// Put the data of a server moving in from another host ($ROOT/incoming/<name>.tar, which the
    /// reconciler fetched from that host's archive of it) in place of its upper layer, before its
    /// first start here.
    Receive { name: String },
    /// Browse a server's tree as its game sees it, read-only: a folder's entries and the layer
    /// each comes from (upper, config, an overlay, the build), or with `--cat` the start of a file
    /// (64 KiB; secrets of config files hidden).
    Files {
        name: String,
        /// A path inside the tree (default: its top).
        path: Option<String>,
        /// Print the file at the path.
        #[arg(long)]
        cat: bool,
    },
    /// Run a console command on a server over RCON.
    Rcon {
        /// Record the command as this web user's (the web app sends its users' commands).
        #[arg(long = "as", value_name = "USER", requires = "from")]
        on_behalf: Option<String>,
        /// The address the web user sent it from.
        #[arg(long, value_name = "ADDRESS", requires = "on_behalf")]
        from: Option<String>,
        name: String,
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Materialised overlays: `list`, or `put` one from a tar on stdin (as the reconciler does).
    Overlay {
        #[command(subcommand)]
        command: OverlayCmd,
    },
    /// Steam Workshop items and collections: `check` asks Steam what they hold now.
    Workshop {
        #[command(subcommand)]
        command: WorkshopCmd,
    },
    /// The schedules' systemd timers: `put` makes them match the list on stdin.
    Schedules {
        #[command(subcommand)]
        command: SchedulesCmd,
    },
    /// Every instance's status and every materialised overlay, as one JSON object: what the
    /// reconciler observes, in one call.
    #[command(hide = true)]
    Observe {
        /// Only what a plan needs: each unit's state from one `systemctl list-units`, no A2S
        /// query, no restarts, main PID, result or timestamps.
        #[arg(long)]
        brief: bool,
        /// Also ask these servers over RCON how many humans play, where A2S shows none.
        #[arg(long = "count-humans", value_name = "NAME")]
        count_humans: Vec<String>,
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

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum GameCmd {
    /// Ask Steam which build a branch publishes now (steamcmd's app_info, fetched afresh).
    Check {
        #[arg(long, default_value = "public")]
        branch: String,
    },
    /// Adopt the base install from before builds (`installation/`) as the build it holds.
    Adopt,
    /// Remove a build no server stacks.
    Remove { build: u64 },
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum OverlayCmd {
    /// Every materialised overlay and the digest of its tree.
    List,
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
        /// A Steam Workshop item id, with the version (`time_updated`) it must have as
        /// `<id>@<time_updated>`; repeat for each (none: an empty collection's overlay).
        #[arg(long = "item")]
        items: Vec<FetchItem>,
    },
    /// Unpack an archive overlay: its archives (JSON on stdin, as the reconciler writes them),
    /// each downloaded once into the cache by a confined transient unit and checked against its
    /// SHA-256, unpacked in order into the new tree.
    Unpack {
        name: String,
        /// The digest of the archive list, as the state model computes it.
        #[arg(long)]
        digest: String,
    },
    /// Replace an overlay with the tree of the tar read from stdin.
    Put {
        name: String,
        /// The digest of the tree, as the state model computes it.
        #[arg(long)]
        digest: String,
    },
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum WorkshopCmd {
    /// Ask the Steam Web API for items' versions and collections' items (collections in them
    /// expanded), and keep the answer in `$ROOT/workshop/details.json`.
    Check {
        /// A Steam Workshop item id; repeat for each.
        #[arg(long = "item", value_parser = clap::value_parser!(u64).range(1..))]
        items: Vec<u64>,
        /// A Steam Workshop collection id; repeat for each.
        #[arg(long = "collection", value_parser = clap::value_parser!(u64).range(1..))]
        collections: Vec<u64>,
    },
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum SchedulesCmd {
    /// Make the timers `left4me-schedule@<name>.timer` match the JSON array on stdin
    /// (`[{"name": …, "calendar": …}]`): write new and changed ones, enable and start them;
    /// stop, disable and remove those not listed.
    Put,
}

impl Cmd {
    /// A write answers `--json` with [`l4d2ctl::api::Message`]s; a read with its own JSON form.
    pub fn is_write(&self) -> bool {
        match self {
            Cmd::Install { .. }
            | Cmd::Initialize { .. }
            | Cmd::Start { .. }
            | Cmd::Stop { .. }
            | Cmd::Restart { .. }
            | Cmd::Delete { .. }
            | Cmd::Release { .. }
            | Cmd::Backup { .. }
            | Cmd::Restore { .. }
            | Cmd::Receive { .. }
            | Cmd::Mount { .. }
            | Cmd::Umount { .. }
            | Cmd::Workshop { .. }
            | Cmd::Schedules { .. } => true,
            Cmd::Overlay { command } => !matches!(command, OverlayCmd::List),
            Cmd::Game { command } => command.is_some(),
            Cmd::Status { .. }
            | Cmd::Show { .. }
            | Cmd::Backups { .. }
            | Cmd::Files { .. }
            | Cmd::Logs { .. }
            | Cmd::Rcon { .. }
            | Cmd::Observe { .. }
            | Cmd::Exec { .. } => false,
        }
    }

    /// It enters PID 1's mount namespace, which a process of more than one thread may not.
    pub fn enters_pid1_namespace(&self) -> bool {
        matches!(self, Cmd::Mount { .. } | Cmd::Umount { .. })
    }

    /// Output that is another program's own, word for word (the journal, the server's console,
    /// srcds itself): it has no JSON form.
    pub fn has_json_form(&self) -> bool {
        !matches!(self, Cmd::Logs { .. } | Cmd::Rcon { .. } | Cmd::Exec { .. })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use l4d2ctl::api::{Command, Detail, FetchItem, parse_digest};
    use left4me_state::Name;

    use super::{Cli, Cmd, GameCmd, OverlayCmd, SchedulesCmd, WorkshopCmd};

    /// What each command another program runs must parse into: its own subcommand, for the
    /// reconciler (`--reconciler --json`) when it is a write.
    fn expected(command: Command) -> Cli {
        let write = |command| Cli { reconciler: true, json: true, schedule: None, command };
        let read = |command| Cli { reconciler: false, json: false, schedule: None, command };
        let digest = |digest: &left4me_state::Digest| digest.to_string();
        match command {
            Command::Observe(Detail::Full) => read(Cmd::Observe { brief: false, count_humans: Vec::new() }),
            Command::Observe(Detail::Brief) => read(Cmd::Observe { brief: true, count_humans: Vec::new() }),
            Command::ObserveHumans(names) => {
                read(Cmd::Observe { brief: false, count_humans: names.iter().map(Name::to_string).collect() })
            }
            Command::Status => {
                Cli { reconciler: false, json: true, schedule: None, command: Cmd::Status { name: None } }
            }
            Command::Show { name } => read(Cmd::Show { name: name.to_string() }),
            Command::InstallUnits => write(Cmd::Install { units_only: true, branch: "public".into() }),
            Command::Install { branch } => write(Cmd::Install { units_only: false, branch }),
            Command::Game => {
                Cli { reconciler: false, json: true, schedule: None, command: Cmd::Game { command: None } }
            }
            Command::GameCheck { branch } => write(Cmd::Game { command: Some(GameCmd::Check { branch }) }),
            Command::GameAdopt => write(Cmd::Game { command: Some(GameCmd::Adopt) }),
            Command::GameRemove { build } => write(Cmd::Game { command: Some(GameCmd::Remove { build }) }),
            Command::Initialize { name, build } => {
                write(Cmd::Initialize { name: name.to_string(), file: "-".into(), build })
            }
            Command::Start { names } => write(Cmd::Start { names: names.iter().map(Name::to_string).collect() }),
            Command::Stop { name } => write(Cmd::Stop { names: vec![name.to_string()] }),
            Command::StopAll { names } => write(Cmd::Stop { names: names.iter().map(Name::to_string).collect() }),
            Command::Restart { name } => write(Cmd::Restart { name: name.to_string() }),
            Command::Delete { name, moving_to } => {
                write(Cmd::Delete { name: name.to_string(), moving_to: moving_to.as_ref().map(Name::to_string) })
            }
            Command::Release { name } => write(Cmd::Release { name: name.to_string() }),
            Command::OverlayPut { name, digest: d } => {
                write(Cmd::Overlay { command: OverlayCmd::Put { name: name.to_string(), digest: digest(&d) } })
            }
            Command::OverlayBuild { name, digest: d } => {
                write(Cmd::Overlay { command: OverlayCmd::Build { name: name.to_string(), digest: digest(&d) } })
            }
            Command::OverlayFetch { name, digest: d, items } => {
                write(Cmd::Overlay { command: OverlayCmd::Fetch { name: name.to_string(), digest: digest(&d), items } })
            }
            Command::OverlayArchive { name, digest: d } => {
                write(Cmd::Overlay { command: OverlayCmd::Unpack { name: name.to_string(), digest: digest(&d) } })
            }
            Command::WorkshopCheck { items, collections } => {
                write(Cmd::Workshop { command: WorkshopCmd::Check { items, collections } })
            }
            Command::Logs { name, lines, follow } => read(Cmd::Logs { name: name.to_string(), lines, follow }),
            Command::Rcon { name, command } => {
                read(Cmd::Rcon { on_behalf: None, from: None, name: name.to_string(), command: vec![command] })
            }
            Command::RconAs { name, command, user, from } => read(Cmd::Rcon {
                on_behalf: Some(user.to_string()),
                from: Some(from),
                name: name.to_string(),
                command: vec![command],
            }),
            Command::SchedulesPut => write(Cmd::Schedules { command: SchedulesCmd::Put }),
            Command::ForSchedule { schedule, write } => {
                Cli { schedule: Some(schedule.to_string()), ..expected(*write) }
            }
            Command::Backup { name, keep, reason } => write(Cmd::Backup { name: name.to_string(), reason, keep }),
            Command::Backups { name } => {
                Cli { reconciler: false, json: true, schedule: None, command: Cmd::Backups { name: name.to_string() } }
            }
            Command::Restore { name, id } => write(Cmd::Restore { name: name.to_string(), id }),
            Command::Receive { name } => write(Cmd::Receive { name: name.to_string() }),
        }
    }

    #[test]
    fn every_command_others_run_parses_into_the_command_it_names() {
        let name = Name::new("coop-1").unwrap();
        let other = Name::new("versus-2").unwrap();
        let digest = parse_digest("sha256:0123abcd").unwrap();
        let commands = [
            Command::Observe(Detail::Full),
            Command::Observe(Detail::Brief),
            Command::ObserveHumans(vec![name.clone(), Name::new("coop-2").unwrap()]),
            Command::Status,
            Command::Show { name: name.clone() },
            Command::InstallUnits,
            Command::Install { branch: "public".into() },
            Command::Install { branch: "beta_2.2.5".into() },
            Command::Game,
            Command::GameCheck { branch: "public".into() },
            Command::GameAdopt,
            Command::GameRemove { build: 16_046_151 },
            Command::Initialize { name: name.clone(), build: None },
            Command::Initialize { name: name.clone(), build: Some(16_046_151) },
            Command::Start { names: vec![name.clone(), other] },
            Command::Stop { name: name.clone() },
            Command::StopAll { names: vec![name.clone(), Name::new("coop-2").unwrap()] },
            Command::Restart { name: name.clone() },
            Command::Delete { name: name.clone(), moving_to: None },
            Command::Delete { name: name.clone(), moving_to: Some(Name::new("c").unwrap()) },
            Command::Release { name: name.clone() },
            Command::OverlayPut { name: name.clone(), digest: digest.clone() },
            Command::OverlayBuild { name: name.clone(), digest: digest.clone() },
            Command::OverlayFetch {
                name: name.clone(),
                digest: digest.clone(),
                items: vec![
                    FetchItem { id: 123, time_updated: None },
                    FetchItem { id: 456, time_updated: Some(1_733_000_000) },
                ],
            },
            Command::OverlayArchive { name: name.clone(), digest },
            Command::WorkshopCheck { items: vec![123, 456], collections: vec![789] },
            Command::WorkshopCheck { items: Vec::new(), collections: vec![789, 790] },
            Command::Backup { name: name.clone(), keep: None, reason: "manual".into() },
            Command::Backup { name: name.clone(), keep: Some(7), reason: "schedule nightly".into() },
            Command::Backups { name: name.clone() },
            Command::Restore { name: name.clone(), id: "2026-12-01T06-00-00Z".into() },
            Command::Receive { name: name.clone() },
            Command::Logs { name: name.clone(), lines: 500, follow: true },
            Command::Logs { name: name.clone(), lines: 100, follow: false },
            Command::Rcon { name: name.clone(), command: "-sv_cheats 1; status".into() },
            Command::SchedulesPut,
            Command::ForSchedule {
                schedule: Name::new("nightly").unwrap(),
                write: Box::new(Command::Stop { name: name.clone() }),
            },
            Command::ForSchedule {
                schedule: Name::new("morning").unwrap(),
                write: Box::new(Command::Start { names: vec![name.clone()] }),
            },
            Command::RconAs {
                name,
                command: "say hi".into(),
                user: Name::new("alice").unwrap(),
                from: "203.0.113.7".into(),
            },
        ];
        for command in commands {
            let argv = command.argv();
            let parsed = Cli::try_parse_from(std::iter::once("l4d2ctl".to_owned()).chain(argv.clone()))
                .unwrap_or_else(|e| panic!("l4d2ctl {argv:?} does not parse: {e}"));
            assert_eq!(parsed, expected(command), "l4d2ctl {argv:?}");
        }
    }
}
