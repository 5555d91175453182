//! The commands other programs run: the reconciler its observations and writes, the web a
//! server's console and RCON. Each builds its own argv, so no caller spells one by hand.

use left4me_state::{Digest, Name};

use super::{Detail, FetchItem};

/// A command of `l4d2ctl` another program runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `observe [--brief]`: the whole host as one [`super::Observation`].
    Observe(Detail),
    /// `observe --count-humans <name>…`: a full look, and the named servers that A2S shows empty
    /// asked over RCON how many humans play (`QueryInfo::humans`).
    ObserveHumans(Vec<Name>),
    /// `status --json`: every instance's full status as [`super::InstanceStatus`]es, without the
    /// rest of an observation (the sampler's look every 30 s).
    Status,
    /// `show <name>`: the instance's record (its rendered spec and digest) as JSON.
    Show {
        name: Name,
    },
    /// `install --units-only`: the unit files written again where they differ.
    InstallUnits,
    /// `install --branch <branch>`: the build the branch publishes, beside the others, unless it
    /// is installed.
    Install {
        branch: String,
    },
    /// `game --json`: the game builds of the host as [`super::Game`] (a read).
    Game,
    /// `game check --branch <branch>`: ask Steam which build the branch publishes now.
    GameCheck {
        branch: String,
    },
    /// `game adopt`: the base install from before builds, adopted as the build it holds.
    GameAdopt,
    /// `game remove <build>`: a build no server stacks.
    GameRemove {
        build: u64,
    },
    /// `initialize <name> -f - [--build <id>]`: the rendered spec is written to its stdin; without
    /// a build, the newest installed one.
    Initialize {
        name: Name,
        build: Option<u64>,
    },
    /// `start <names>…`: several start together, as one systemd transaction.
    Start {
        names: Vec<Name>,
    },
    Stop {
        name: Name,
    },
    /// Several servers stopped together (`l4d2ctl stop a b …`): one systemd transaction.
    StopAll {
        names: Vec<Name>,
    },
    Restart {
        name: Name,
    },
    /// `delete <name> [--moving-to <host>]`: with a host, the server moves there, and the
    /// archive of its data (or that it had none) is recorded as that host's to take.
    Delete {
        name: Name,
        moving_to: Option<Name>,
    },
    Release {
        name: Name,
    },
    /// `overlay put`: the tar of the tree is written to its stdin.
    OverlayPut {
        name: Name,
        digest: Digest,
    },
    /// `overlay build`: the recipe (build.sh) is written to its stdin.
    OverlayBuild {
        name: Name,
        digest: Digest,
    },
    /// `overlay fetch`: each item at the version it must have, where one is known.
    OverlayFetch {
        name: Name,
        digest: Digest,
        items: Vec<FetchItem>,
    },
    /// `workshop check`: Steam asked about these items and collections; what it says is kept in
    /// `$ROOT/workshop/details.json`, read back in every observation.
    WorkshopCheck {
        items: Vec<u64>,
        collections: Vec<u64>,
    },
    /// `overlay unpack`: the archives, in order, are written to its stdin as the JSON array of
    /// their [`left4me_state::ArchiveSource`]s (read back through the same checks as the YAML).
    OverlayArchive {
        name: Name,
        digest: Digest,
    },
    /// `backup <name> [--keep <n>] [--reason <why>]`: the server's own data saved (and sent to
    /// restic when host.env names a repository); with `--keep`, only the newest n are kept.
    Backup {
        name: Name,
        keep: Option<u32>,
        reason: String,
    },
    /// `backups <name> --json`: its backups, newest first, as [`super::Backup`]s (a read).
    Backups {
        name: Name,
    },
    /// `restore <name> <id>`: the server stopped, its data kept as one more backup, the backup
    /// put back, the server started again if it ran.
    Restore {
        name: Name,
        id: String,
    },
    /// `receive <name>`: the data of a server moving in from another host
    /// (`$ROOT/incoming/<name>.tar`) put in place of its upper layer, before its first start.
    Receive {
        name: Name,
    },
    /// `logs <name> --lines <n> [--follow]`: the server's console from the journal, as text.
    Logs {
        name: Name,
        lines: u32,
        follow: bool,
    },
    /// `rcon <name> -- <command>`: one console command; its answer is the output, as text.
    Rcon {
        name: Name,
        command: String,
    },
    /// `schedules put`: the host's schedule timers made to match the JSON array of
    /// [`super::ScheduleTimer`]s written to its stdin.
    SchedulesPut,
    /// A write run for a schedule of the state repo (`--schedule <name>`): it leaves an override
    /// marker naming the schedule (`schedule <name>`), so a pass leaves the server as the
    /// schedule put it; like every reconciler write it takes no lock (its caller holds it).
    ForSchedule {
        schedule: Name,
        write: Box<Command>,
    },
    /// `rcon --as <user> --from <address> <name> -- <command>`: one console command a web user
    /// sends, recorded in the audit trail as theirs.
    RconAs {
        name: Name,
        command: String,
        user: Name,
        from: String,
    },
}

impl Command {
    /// The arguments to run `l4d2ctl` with. A write is the reconciler's (`--reconciler`: it leaves
    /// no override marker) and answers in [`super::Message`]s (`--json`); reads and the web's
    /// commands answer as they always do.
    pub fn argv(&self) -> Vec<String> {
        let words = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<String>>();
        let write = |words: &[&str]| {
            let mut argv = vec!["--reconciler".to_owned(), "--json".to_owned()];
            argv.extend(words.iter().map(|w| (*w).to_owned()));
            argv
        };
        match self {
            Command::Observe(Detail::Full) => words(&["observe"]),
            Command::Observe(Detail::Brief) => words(&["observe", "--brief"]),
            Command::ObserveHumans(names) => {
                let mut argv = words(&["observe"]);
                for name in names {
                    argv.extend(["--count-humans".to_owned(), name.to_string()]);
                }
                argv
            }
            Command::Status => words(&["status", "--json"]),
            Command::Show { name } => words(&["show", name.as_str()]),
            Command::InstallUnits => write(&["install", "--units-only"]),
            Command::Install { branch } => write(&["install", "--branch", branch]),
            Command::Game => words(&["game", "--json"]),
            Command::GameCheck { branch } => write(&["game", "check", "--branch", branch]),
            Command::GameAdopt => write(&["game", "adopt"]),
            Command::GameRemove { build } => write(&["game", "remove", &build.to_string()]),
            Command::Initialize { name, build } => {
                let mut argv = write(&["initialize", name.as_str(), "-f", "-"]);
                if let Some(build) = build {
                    argv.extend(["--build".to_owned(), build.to_string()]);
                }
                argv
            }
            Command::Start { names } => {
                let mut argv = write(&["start"]);
                argv.extend(names.iter().map(Name::to_string));
                argv
            }
            Command::Stop { name } => write(&["stop", name.as_str()]),
            Command::StopAll { names } => {
                let mut argv = write(&["stop"]);
                argv.extend(names.iter().map(Name::to_string));
                argv
            }
            Command::Restart { name } => write(&["restart", name.as_str()]),
            Command::Delete { name, moving_to: None } => write(&["delete", name.as_str()]),
            Command::Delete { name, moving_to: Some(host) } => {
                write(&["delete", name.as_str(), "--moving-to", host.as_str()])
            }
            Command::Release { name } => write(&["release", name.as_str()]),
            Command::OverlayPut { name, digest } => {
                write(&["overlay", "put", name.as_str(), "--digest", digest.as_str()])
            }
            Command::OverlayBuild { name, digest } => {
                write(&["overlay", "build", name.as_str(), "--digest", digest.as_str()])
            }
            Command::OverlayFetch { name, digest, items } => {
                let mut argv = write(&["overlay", "fetch", name.as_str(), "--digest", digest.as_str()]);
                argv.extend(items.iter().flat_map(|item| ["--item".to_owned(), item.to_string()]));
                argv
            }
            Command::OverlayArchive { name, digest } => {
                write(&["overlay", "unpack", name.as_str(), "--digest", digest.as_str()])
            }
            Command::WorkshopCheck { items, collections } => {
                let mut argv = write(&["workshop", "check"]);
                argv.extend(items.iter().flat_map(|item| ["--item".to_owned(), item.to_string()]));
                argv.extend(collections.iter().flat_map(|id| ["--collection".to_owned(), id.to_string()]));
                argv
            }
            Command::Backup { name, keep, reason } => {
                let mut argv = write(&["backup", name.as_str(), "--reason", reason]);
                if let Some(keep) = keep {
                    argv.extend(["--keep".to_owned(), keep.to_string()]);
                }
                argv
            }
            Command::Backups { name } => words(&["backups", name.as_str(), "--json"]),
            Command::Restore { name, id } => write(&["restore", name.as_str(), id]),
            Command::Receive { name } => write(&["receive", name.as_str()]),
            Command::Logs { name, lines, follow } => {
                let mut argv = words(&["logs", name.as_str(), "--lines", &lines.to_string()]);
                if *follow {
                    argv.push("--follow".to_owned());
                }
                argv
            }
            Command::Rcon { name, command } => words(&["rcon", name.as_str(), "--", command]),
            Command::SchedulesPut => write(&["schedules", "put"]),
            Command::ForSchedule { schedule, write } => {
                let mut argv = vec!["--schedule".to_owned(), schedule.to_string()];
                argv.extend(write.argv());
                argv
            }
            Command::RconAs { name, command, user, from } => {
                words(&["rcon", "--as", user.as_str(), "--from", from, name.as_str(), "--", command])
            }
        }
    }
}
