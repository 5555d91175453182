//! One function per command: each reads its input, acts, says what it does through [`Out`] and
//! returns what it did ([`Outcome`]) when it is a write.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use l4d2ctl::api::{Detail, FetchItem, Outcome, ServerStart, ServerStop, parse_digest};
use l4d2ctl::host::unit_name;
use l4d2ctl::rcon::Rcon;
use l4d2ctl::{
    Error, Host, audit, backup, builds, files, humans, install, instance, mount, overlay, overrides, record, schedules,
    status, systemd, workshop,
};
use left4me_state::{Digest, Name};

use crate::cli::{Cli, Cmd, GameCmd, OverlayCmd, SchedulesCmd, WorkshopCmd};
use crate::sink::Out;

/// How long an RCON connection and each reply may take.
const RCON_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the command `cli` names. A write returns what it did; a read prints its answer itself.
pub fn run(cli: Cli, out: &mut Out) -> Result<Option<Outcome>, Error> {
    let host = Host::from_env()?;
    let for_schedule = cli.schedule.as_deref().map(|schedule| format!("schedule {schedule}"));
    let by = Actor { host: &host, by_hand: !cli.reconciler, for_schedule };
    let json = cli.json;
    match cli.command {
        Cmd::Install { units_only, branch } => install(&host, units_only, &branch, out).map(Some),
        Cmd::Game { command: None } => show_game(&host, json).map(|()| None),
        Cmd::Game { command: Some(command) } => game(&by, command, out).map(Some),
        Cmd::Initialize { name, file, build } => initialize(&by, &name, &file, build, out).map(Some),
        Cmd::Start { names } => start(&by, &names, out).map(Some),
        Cmd::Restart { name } => restart(&by, &name, out).map(Some),
        Cmd::Stop { names } => stop(&by, &names, out).map(Some),
        Cmd::Delete { name, moving_to } => delete(&by, &name, moving_to.as_deref(), out).map(Some),
        Cmd::Status { name } => show_status(&host, name.as_deref(), json).map(|()| None),
        Cmd::Show { name } => show(&host, &name).map(|()| None),
        Cmd::Logs { name, lines, follow } => logs(&name, lines, follow).map(|()| None),
        Cmd::Release { name } => release(&by, &name, out).map(Some),
        Cmd::Backup { name, reason, keep } => backup(&by, &name, &reason, keep, out).map(Some),
        Cmd::Backups { name } => show_backups(&host, &name, json).map(|()| None),
        Cmd::Restore { name, id } => restore(&by, &name, &id, out).map(Some),
        Cmd::Receive { name } => receive(&by, &name, out).map(Some),
        Cmd::Files { name, path, cat } => show_files(&host, &name, path.as_deref(), cat, json).map(|()| None),
        Cmd::Rcon { name, command, on_behalf, from } => {
            rcon(&host, &name, &command, on_behalf.as_deref(), from.as_deref()).map(|()| None)
        }
        Cmd::Overlay { command: OverlayCmd::List } => list_overlays(&host, json).map(|()| None),
        Cmd::Overlay { command: OverlayCmd::Build { name, digest } } => build(&host, &name, &digest, out).map(Some),
        Cmd::Overlay { command: OverlayCmd::Fetch { name, digest, items } } => {
            fetch(&host, &name, &digest, &items, out).map(Some)
        }
        Cmd::Overlay { command: OverlayCmd::Unpack { name, digest } } => unpack(&host, &name, &digest, out).map(Some),
        Cmd::Overlay { command: OverlayCmd::Put { name, digest } } => put(&host, &name, &digest, out).map(Some),
        Cmd::Workshop { command: WorkshopCmd::Check { items, collections } } => {
            workshop_check(&host, &items, &collections, out).map(Some)
        }
        Cmd::Schedules { command: SchedulesCmd::Put } => schedules_put(&host, out).map(Some),
        Cmd::Observe { brief, count_humans } => observe(&host, brief, &count_humans).map(|()| None),
        Cmd::Mount { name } => mount(&host, &name).map(Some),
        Cmd::Umount { name } => umount(&host, &name).map(Some),
        Cmd::Exec { name } => exec(&host, &name).map(|()| None),
    }
}

/// What a write that ran to its end still answers with its exit code: a `start` (a `stop` of
/// several) of which some servers did not start (stop) fails, after every server got its answer.
pub fn verdict(outcome: &Outcome) -> Result<(), Error> {
    let (failed, of, verb) = match outcome {
        Outcome::Started { servers } => (servers.iter().filter(|s| !s.started).count(), servers.len(), "start"),
        Outcome::StoppedAll { servers } => (servers.iter().filter(|s| !s.stopped).count(), servers.len(), "stop"),
        _ => return Ok(()),
    };
    match failed {
        0 => Ok(()),
        n => Err(Error::Invalid(format!("{n} of {of} servers failed to {verb}"))),
    }
}

/// Who writes: a person, or the reconciler (for one of the state repo's schedules, maybe).
struct Actor<'a> {
    host: &'a Host,
    by_hand: bool,
    /// The reconciler writes for a schedule: `schedule <name>`, the marker's `who`.
    for_schedule: Option<String>,
}

impl Actor<'_> {
    /// A person's write waits for a running reconcile pass to end, so the pass never acts on a
    /// server changed under it; the reconciler's own writes run inside its pass, which holds the
    /// lock. Taken once the input is known good, so a refused command never waits.
    fn lock(&self) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, Error> {
        if !self.by_hand {
            return Ok(None);
        }
        l4d2ctl::host::pass_lock(&self.host.root, || eprintln!("l4d2ctl: waiting for the reconciler's pass to end"))
            .map(Some)
    }

    /// The locks of these servers, taken in name order so that two writes of several never wait
    /// for each other: no write stops, starts, renders, deletes, backs up or restores a server
    /// another is halfway through (the reconciler's included).
    fn server_locks<'n>(
        &self,
        names: impl IntoIterator<Item = &'n Name>,
    ) -> Result<Vec<nix::fcntl::Flock<std::fs::File>>, Error> {
        let mut names: Vec<&Name> = names.into_iter().collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                l4d2ctl::host::server_lock(&self.host.root, name, || {
                    eprintln!("l4d2ctl: waiting for another write to {name} to end")
                })
            })
            .collect()
    }

    /// Where a person's backup or restore is written to the host's audit trail (the reconciler's
    /// own are its jobs'). A backup and a restore change no desired state, so they leave no
    /// override marker; what was done by hand is recorded here alone.
    fn audit_by_hand(&self, name: &Name, what: &str) {
        if self.by_hand {
            audit::record_by_hand(&self.host.root, what, Some(name), &format!("{what} by hand"));
        }
    }

    /// A write by a person leaves an override marker — before it acts, so the reconciler never
    /// sees the change without the marker and undoes it — and an entry in the audit trail, who
    /// and what as the marker says.
    /// A schedule's write leaves one too, naming the schedule: what it did departs from the
    /// revision until a later run of a schedule (or a release) hands the server back.
    fn mark(&self, name: &Name, what: &str) -> Result<(), Error> {
        match (&self.for_schedule, self.by_hand) {
            (Some(schedule), _) => overrides::mark_as(self.host, name, schedule, what),
            (None, true) => {
                overrides::mark(self.host, name, what)?;
                audit::record_by_hand(&self.host.root, what, Some(name), &format!("{what} by hand"));
                Ok(())
            }
            (None, false) => Ok(()),
        }
    }
}

fn parse_name(text: &str) -> Result<Name, Error> {
    Name::new(text).map_err(|e| Error::Invalid(format!("invalid server name {text:?}: {e}")))
}

fn parse_overlay(name: &str, digest: &str) -> Result<(Name, Digest), Error> {
    let name = Name::new(name).map_err(|e| Error::Invalid(format!("invalid overlay name {name:?}: {e}")))?;
    let digest = parse_digest(digest).map_err(|e| Error::Invalid(format!("invalid digest: {e}")))?;
    Ok((name, digest))
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

fn not_initialized(name: &Name) -> Error {
    Error::Invalid(format!("{name} is not initialized"))
}

fn install(host: &Host, units_only: bool, branch: &str, out: &mut Out) -> Result<Outcome, Error> {
    require_root("install")?;
    let mut say = |line: String| out.say(line);
    match units_only {
        true => install::install_units(host, &mut say).map(|files| Outcome::UnitsWritten { files }),
        false => install::install(host, branch, &mut say).map(|done| Outcome::Installed {
            files: done.files,
            build: Some(done.build),
            downloaded: done.downloaded,
        }),
    }
}

/// `l4d2ctl game`: what builds the host has, without asking Steam or running anything.
fn show_game(host: &Host, json: bool) -> Result<(), Error> {
    let game = builds::game(host)?;
    if json {
        println!("{}", serde_json::to_string(&game).expect("the game's builds always serialize"));
        return Ok(());
    }
    println!("installed: {}", builds::list(&game.installed));
    match (&game.published, &game.branch, &game.checked_at) {
        (Some(build), branch, at) => println!(
            "published: {build} (branch {}, checked at {})",
            branch.as_deref().unwrap_or("public"),
            at.as_deref().unwrap_or("an unknown time")
        ),
        (None, ..) => println!("published: not checked yet (`l4d2ctl game check`)"),
    }
    if let Some(build) = game.adoptable {
        println!("adoptable: {} holds build {build} (`l4d2ctl game adopt`)", host.installation().display());
    }
    Ok(())
}

fn game(by: &Actor, command: GameCmd, out: &mut Out) -> Result<Outcome, Error> {
    require_root("game")?;
    let host = by.host;
    let mut say = |line: String| out.say(line);
    match command {
        GameCmd::Check { branch } => {
            let published = install::check(host, &branch, &mut say)?;
            Ok(Outcome::GameChecked {
                branch: published.branch,
                published: published.build,
                checked_at: published.checked_at,
            })
        }
        GameCmd::Adopt => {
            let _pass = by.lock()?;
            let lock = builds::lock(host)?;
            let build = builds::adopt(host, &lock, &mut say)?;
            if build.is_none() {
                say(format!("l4d2ctl: nothing to adopt ({} holds no complete build)", host.installation().display()));
            }
            Ok(Outcome::Adopted { build })
        }
        GameCmd::Remove { build } => {
            let _pass = by.lock()?;
            let lock = builds::lock(host)?;
            let removed = builds::remove(host, &lock, build)?;
            match removed {
                true => say(format!("l4d2ctl: removed build {build}")),
                false => say(format!(
                    "l4d2ctl: build {build} is not installed on this host (installed: {}); nothing removed",
                    builds::list(&builds::installed(host)?)
                )),
            }
            Ok(Outcome::BuildRemoved { build, removed })
        }
    }
}

fn initialize(by: &Actor, name: &str, file: &Path, build: Option<u64>, out: &mut Out) -> Result<Outcome, Error> {
    let name = parse_name(name)?;
    let spec = instance::read_spec_file(file)?;
    require_root("initialize")?;
    let _lock = by.lock()?;
    let _server = by.server_locks([&name])?;
    by.mark(&name, "initialize")?;
    let done = instance::initialize(by.host, &name, &spec, build)?;
    for repaired in &done.repaired {
        out.about(&name, format!("{name}: repaired {repaired}"));
    }
    let what = if done.changed { "initialized" } else { "already up to date" };
    out.about(&name, format!("{name}: {what} ({})", done.digest));
    Ok(Outcome::Initialized { name, digest: done.digest, changed: done.changed, repaired: done.repaired })
}

/// Starts the servers together; each gets its own answer. A server that cannot start (not
/// initialized, its record unreadable) is its own failure; the others start.
fn start(by: &Actor, names: &[String], out: &mut Out) -> Result<Outcome, Error> {
    let names = names.iter().map(|n| parse_name(n)).collect::<Result<Vec<_>, _>>()?;
    require_root("start")?;
    let mut answers = Vec::new();
    let mut startable = Vec::new();
    for name in &names {
        match record::read(by.host, name) {
            // A server that moved here starts on the data it brought, never without it.
            Ok(Some(_)) if std::fs::symlink_metadata(backup::incoming(by.host, name)).is_ok() => {
                answers.push(ServerStart {
                    name: name.clone(),
                    started: false,
                    error: Some(format!(
                        "its data from the host it moved from waits in {}; `l4d2ctl receive {name}` first",
                        backup::incoming(by.host, name).display()
                    )),
                })
            }
            Ok(Some(_)) => startable.push(name),
            Ok(None) => answers.push(ServerStart {
                name: name.clone(),
                started: false,
                error: Some(format!("not initialized; run `l4d2ctl initialize {name} -f <spec>` first")),
            }),
            Err(e) => answers.push(ServerStart {
                name: name.clone(),
                started: false,
                error: Some(format!("{e}; initialize it again")),
            }),
        }
    }
    for answer in &answers {
        say_start(out, answer);
    }
    if startable.is_empty() {
        return Ok(Outcome::Started { servers: answers });
    }
    let _lock = by.lock()?;
    let _servers = by.server_locks(startable.iter().copied())?;
    for name in &startable {
        by.mark(name, "start")?;
    }
    l4d2ctl::limits::reload_for(by.host, &startable)?;
    let units: Vec<String> = startable.iter().map(|name| unit_name(name)).collect();
    let not_started = systemd::enable_now(&units);
    for (name, unit) in startable.iter().zip(&units) {
        let error = not_started.iter().find(|(u, _)| u == unit).map(|(_, error)| error.clone());
        let answer = ServerStart { name: (*name).clone(), started: error.is_none(), error };
        say_start(out, &answer);
        answers.push(answer);
    }
    // In the order asked, as they were named.
    answers.sort_by_key(|answer| names.iter().position(|n| *n == answer.name));
    Ok(Outcome::Started { servers: answers })
}

fn say_start(out: &mut Out, answer: &ServerStart) {
    let name = &answer.name;
    match &answer.error {
        Some(error) => out.about(name, format!("{name}: failed to start: {error}")),
        None => out.about(name, format!("{name}: started")),
    }
}

fn restart(by: &Actor, name: &str, out: &mut Out) -> Result<Outcome, Error> {
    let name = parse_name(name)?;
    require_root("restart")?;
    let _lock = by.lock()?;
    let _server = by.server_locks([&name])?;
    by.mark(&name, "restart")?;
    l4d2ctl::limits::reload_for(by.host, &[&name])?;
    let unit = unit_name(&name);
    let since = std::time::SystemTime::now();
    if systemd::systemctl(&["restart", "--quiet", &unit]).is_err() {
        // A restart asked for is a new attempt. systemd's start limit (StartLimitBurst=5 in 60 s,
        // which keeps a crashing game from being restarted for ever) counts every start, asked
        // for or not: a few rollouts in a minute would find the next restart refused. Only then
        // is it reset, as a start of several servers retries each alone.
        systemd::systemctl(&["reset-failed", "--quiet", "--", &unit])?;
        if let Err(error) = systemd::systemctl(&["restart", "--quiet", &unit]) {
            return Err(match systemd::why_failed(&unit, since) {
                Some(why) => Error::NotNow(format!("{name} did not start again: {why}")),
                None => error,
            });
        }
    }
    out.about(&name, format!("{name}: restarted"));
    Ok(Outcome::Restarted { name })
}

/// Stops the servers together, one systemd transaction; of several, each gets its own answer.
fn stop(by: &Actor, names: &[String], out: &mut Out) -> Result<Outcome, Error> {
    let names = names.iter().map(|n| parse_name(n)).collect::<Result<Vec<_>, _>>()?;
    require_root("stop")?;
    let _lock = by.lock()?;
    let _servers = by.server_locks(names.iter())?;
    for name in &names {
        by.mark(name, "stop")?;
    }
    if let [name] = names.as_slice() {
        systemd::disable_now(&unit_name(name))?;
        out.about(name, format!("{name}: stopped"));
        return Ok(Outcome::Stopped { name: name.clone() });
    }
    let units: Vec<String> = names.iter().map(unit_name).collect();
    let not_stopped = systemd::disable_now_all(&units);
    let mut servers = Vec::with_capacity(names.len());
    for (name, unit) in names.iter().zip(&units) {
        let error = not_stopped.iter().find(|(u, _)| u == unit).map(|(_, error)| error.clone());
        match &error {
            Some(error) => out.about(name, format!("{name}: failed to stop: {error}")),
            None => out.about(name, format!("{name}: stopped")),
        }
        servers.push(ServerStop { name: name.clone(), stopped: error.is_none(), error });
    }
    Ok(Outcome::StoppedAll { servers })
}

fn delete(by: &Actor, name: &str, moving_to: Option<&str>, out: &mut Out) -> Result<Outcome, Error> {
    let name = parse_name(name)?;
    let moving_to = moving_to.map(parse_name).transpose()?;
    require_root("delete")?;
    let _lock = by.lock()?;
    let _server = by.server_locks([&name])?;
    let unit = unit_name(&name);
    by.mark(&name, "delete")?;
    // Stopping a unit that was never started is fine; a missing instance is deleted already.
    systemd::disable_now(&unit)?;
    // A unit that failed stays listed as failed after it is stopped, with nothing behind it.
    let cleared_failed = systemd::reset_failed(&unit)?;
    if cleared_failed {
        out.about(&name, format!("{name}: {unit} had failed; its failed state is cleared"));
    }
    let deleted = instance::delete(by.host, &name)?;
    match (deleted.existed, &deleted.archive) {
        (_, Some(archive)) => {
            out.about(&name, format!("{name}: deleted; its data is archived in {}", archive.display()))
        }
        (true, None) => out.about(&name, format!("{name}: deleted")),
        (false, None) => out.about(&name, format!("{name}: already deleted")),
    }
    if let Some(to) = &moving_to {
        let record = instance::record_move(by.host, &name, to, deleted.archive.as_deref())?;
        out.about(&name, format!("{name}: moving to host {to}; recorded in {}", record.display()));
    }
    Ok(Outcome::Deleted { name, existed: deleted.existed, archive: deleted.archive, cleared_failed })
}

/// The locks a backup or a restore of an initialized server holds while it runs; a person's is
/// recorded in the audit trail.
fn hold_server_data(by: &Actor, name: &Name, what: &str) -> Result<Vec<nix::fcntl::Flock<std::fs::File>>, Error> {
    require_root(what)?;
    record::read(by.host, name)?.ok_or_else(|| not_initialized(name))?;
    let mut held: Vec<_> = by.lock()?.into_iter().collect();
    held.extend(by.server_locks([name])?);
    by.audit_by_hand(name, what);
    Ok(held)
}

/// `backup`: only a server that is initialized has data of its own to back up.
fn backup(by: &Actor, name: &str, reason: &str, keep: Option<u32>, out: &mut Out) -> Result<Outcome, Error> {
    let name = parse_name(name)?;
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 200 || reason.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "--reason {reason:?}: say why in one line of at most 200 characters (`manual`, `schedule nightly`)"
        )));
    }
    let _locks = hold_server_data(by, &name, "backup")?;
    let mut say = |line: String| out.about(&name, line);
    let done = backup::backup(by.host, &name, reason, keep, &mut say)?;
    Ok(Outcome::BackedUp { name, backup: done.backup, removed: done.removed })
}

/// `backups`: for root, and for the game's user the web app runs as (restic as root last heard).
fn show_backups(host: &Host, name: &str, json: bool) -> Result<(), Error> {
    let name = parse_name(name)?;
    require_root_or(&host.user, "backups")?;
    let all = backup::list(host, &name, &mut |line| eprintln!("l4d2ctl: {line}"))?;
    if json {
        println!("{}", serde_json::to_string(&all).expect("backups always serialize"));
        return Ok(());
    }
    if all.is_empty() {
        println!("{name} has no backups (`l4d2ctl backup {name}` takes one)");
    }
    for b in all {
        let place = match (b.local, b.restic) {
            (true, true) => "host+restic",
            (true, false) => "host",
            (false, _) => "restic",
        };
        println!("{}  {:>10} KiB  {place:<11}  {}", b.id, b.bytes.div_ceil(1024), b.reason);
    }
    Ok(())
}

/// `files`: a folder of the server's tree, or the start of one of its files; nothing is written.
fn show_files(host: &Host, name: &str, path: Option<&str>, cat: bool, json: bool) -> Result<(), Error> {
    let name = parse_name(name)?;
    require_root_or(&host.user, "files")?;
    let shown = |e: files::FilesError| match e {
        files::FilesError::Host(e) => e,
        e => Error::Invalid(format!("{name}: {e}")),
    };
    let path = files::TreePath::parse(path.unwrap_or("")).map_err(shown)?;
    let tree = files::open(host, &name).map_err(shown)?;
    if cat {
        let preview = tree.preview(&path).map_err(shown)?;
        if json {
            println!("{}", serde_json::to_string(&preview).expect("a preview always serializes"));
            return Ok(());
        }
        let Some(text) = preview.text else {
            return Err(Error::Invalid(format!(
                "{name}: {path} is binary ({} bytes); it is not printed",
                preview.entry.size
            )));
        };
        print!("{}", printable(&text, true));
        if preview.truncated {
            eprintln!(
                "l4d2ctl: {path} is {} bytes; only its first {} KiB are printed",
                preview.entry.size,
                files::PREVIEW_BYTES / 1024
            );
        }
        return Ok(());
    }
    let listing = tree.list(&path).map_err(shown)?;
    if json {
        println!("{}", serde_json::to_string(&listing).expect("a listing always serializes"));
        return Ok(());
    }
    for entry in &listing.entries {
        let kind = match entry.kind {
            files::Kind::File => "file",
            files::Kind::Folder => "folder",
            files::Kind::Link => "link",
            files::Kind::Other => "other",
        };
        let target = entry.target.as_deref().map(|t| format!(" -> {}", printable(t, false))).unwrap_or_default();
        let modified = entry.modified.as_deref().unwrap_or("-");
        let (layer, name) = (entry.layer.to_string(), printable(&entry.name, false));
        println!("{kind:<6}  {:>12}  {modified}  {layer:<20}  {name}{target}", entry.size);
    }
    if listing.truncated {
        eprintln!("l4d2ctl: {path} holds more than {} entries; the rest are left out", files::MAX_ENTRIES);
    }
    Ok(())
}

/// Text the game chose (a file's name, a link's target, a file's start), as a terminal may be
/// given it: control and bidirectional-override characters escaped (`\u{1b}`), so no name can
/// move the cursor, set the clipboard or pass for another row. `lines` keeps line breaks and tabs.
fn printable(text: &str, lines: bool) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        let kept = lines && matches!(c, '\n' | '\t');
        if !kept && (c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')) {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// `receive`: under the same locks as a restore.
fn receive(by: &Actor, name: &str, out: &mut Out) -> Result<Outcome, Error> {
    let name = parse_name(name)?;
    let _locks = hold_server_data(by, &name, "receive")?;
    let mut say = |line: String| out.about(&name, line);
    let done = backup::receive(by.host, &name, &mut say)?;
    Ok(Outcome::Received { name, entries: done.entries, bytes: done.bytes })
}

/// `restore`: the id and the server are checked before anything stops.
fn restore(by: &Actor, name: &str, id: &str, out: &mut Out) -> Result<Outcome, Error> {
    let name = parse_name(name)?;
    backup::parse_id(id)?;
    let _locks = hold_server_data(by, &name, "restore")?;
    let mut say = |line: String| out.about(&name, line);
    let done = backup::restore(by.host, &name, id, &mut say)?;
    Ok(Outcome::Restored { name, backup: id.to_owned(), kept: done.kept, started: done.started })
}

fn show_status(host: &Host, name: Option<&str>, json: bool) -> Result<(), Error> {
    let name = name.map(parse_name).transpose()?;
    let statuses = status::status(host, name.as_ref(), Detail::Full)?;
    if json {
        let text = serde_json::to_string_pretty(&statuses).expect("status always serializes");
        println!("{text}");
    } else {
        print!("{}", status::table(&statuses));
    }
    Ok(())
}

fn show(host: &Host, name: &str) -> Result<(), Error> {
    let name = parse_name(name)?;
    let record = record::read(host, &name)?.ok_or_else(|| not_initialized(&name))?;
    println!("{}", serde_json::to_string_pretty(&record).expect("a record always serializes"));
    Ok(())
}

fn logs(name: &str, lines: u32, follow: bool) -> Result<(), Error> {
    let name = parse_name(name)?;
    let unit = unit_name(&name);
    if follow {
        wait_for_first_entry(&unit);
    }
    let mut command = Command::new("journalctl");
    command.args(["--unit", &unit, "--lines", &lines.to_string(), "--output", "cat", "--no-pager"]);
    if follow {
        command.arg("--follow");
    }
    // journalctl's own output and exit code are the answer.
    Err(Error::Invalid(format!("cannot run journalctl: {}", command.exec())))
}

/// Returns once `unit` has an entry in the journal (or journalctl says why it cannot tell): a
/// journalctl 252 (Debian 12's) that begins to follow a unit with no entries yet can miss every
/// entry that comes after (systemd issue 25649), and a console opened on a server just made
/// would stay empty. Looked at once a second for a minute, then every 5 s. A reader gone (its
/// end of the output closed: the web's viewer left, or an ssh session of another host's web
/// ended) ends the wait and this process, as journalctl would end writing to it.
fn wait_for_first_entry(unit: &str) {
    let asked = std::time::Instant::now();
    loop {
        if reader_gone() {
            std::process::exit(0);
        }
        // An entry, or a journal that cannot be read (no journalctl, no permission): the follow
        // itself then shows what there is or says why.
        if systemd::has_journal_entry(unit) != Some(false) {
            return;
        }
        let pause = if asked.elapsed() < Duration::from_secs(60) { 1 } else { 5 };
        std::thread::sleep(Duration::from_secs(pause));
    }
}

/// Whether standard output is a pipe or socket whose reader has closed it.
fn reader_gone() -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&stdout), PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

fn release(by: &Actor, name: &str, out: &mut Out) -> Result<Outcome, Error> {
    let name = parse_name(name)?;
    require_root("release")?;
    let had = overrides::release(by.host, &name)?;
    if had && by.by_hand {
        audit::record_by_hand(&by.host.root, "release", Some(&name), "released to the reconciler by hand");
    }
    // Handing a server back is also a new attempt after a crash loop: a unit no longer
    // failed is one the reconciler tries at once rather than holding it back.
    let _ = systemd::systemctl(&["reset-failed", "--quiet", &unit_name(&name)]);
    let what = if had { "released to the reconciler" } else { "was not overridden" };
    out.about(&name, format!("{name}: {what}"));
    Ok(Outcome::Released { name, was_overridden: had })
}

/// `l4d2ctl rcon`: one console command, recorded in the audit trail (its passwords hidden) once
/// the caller may send it, before anything else can fail, so an attempt is recorded too: as the
/// person's behind sudo, or as `--as`'s from `--from` when the web app sends it for its user.
fn rcon(host: &Host, name: &str, command: &[String], on_behalf: Option<&str>, from: Option<&str>) -> Result<(), Error> {
    let name = parse_name(name)?;
    let on_behalf = on_behalf
        .map(|user| Name::new(user).map_err(|e| Error::Invalid(format!("invalid user {user:?} for --as: {e}"))))
        .transpose()?;
    if let Some(from) = from
        && (from.is_empty() || from.len() > 64 || from.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err(Error::Invalid(format!("invalid address {from:?} for --from: one word of at most 64 bytes")));
    }
    require_root_or(&host.user, "rcon")?;
    let line = command.join(" ");
    let entry = audit::Entry {
        who: on_behalf.map_or_else(overrides::operator, |user| user.to_string()),
        action: "rcon".into(),
        server: Some(name.to_string()),
        detail: audit::redact(&line),
        origin: match from {
            Some(from) => format!("web {from}"),
            None => audit::shell_origin(),
        },
    };
    audit::record_or_say(&host.root, &entry);
    let record = record::read(host, &name)?.ok_or_else(|| not_initialized(&name))?;
    let password = instance::read_rcon_password(host, &name)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, record.spec.port.number()));
    let mut rcon = Rcon::connect(addr, &password, RCON_TIMEOUT).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
    let output = rcon.exec(&line).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
    print!("{output}");
    if !output.is_empty() && !output.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn list_overlays(host: &Host, json: bool) -> Result<(), Error> {
    let (all, problems) = overlay::list(host)?;
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

/// An overlay write's input from stdin: a recipe or an archive list, at most 1 MiB of it.
fn read_stdin() -> Result<Vec<u8>, Error> {
    let mut input = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(std::io::stdin(), 1024 * 1024), &mut input)
        .map_err(|e| Error::io("stdin", e))?;
    Ok(input)
}

fn build(host: &Host, name: &str, digest: &str, out: &mut Out) -> Result<Outcome, Error> {
    let (name, digest) = parse_overlay(name, digest)?;
    require_root("overlay build")?;
    l4d2ctl::interrupt::catch()?;
    let script = read_stdin()?;
    overlay::build(host, &name, &digest, &script)?;
    out.say(format!("overlay {name}: built ({digest})"));
    Ok(Outcome::OverlayWritten { name, digest })
}

fn fetch(host: &Host, name: &str, digest: &str, items: &[FetchItem], out: &mut Out) -> Result<Outcome, Error> {
    let (name, digest) = parse_overlay(name, digest)?;
    require_root("overlay fetch")?;
    l4d2ctl::interrupt::catch()?;
    overlay::fetch(host, &name, &digest, items)?;
    out.say(format!("overlay {name}: {} workshop items ({digest})", items.len()));
    Ok(Outcome::OverlayWritten { name, digest })
}

/// The archives are read from stdin as JSON, through the same checks as overlay.yaml's: a list
/// of URLs up to 2 KiB each does not belong on a command line, where `ps` shows it.
fn unpack(host: &Host, name: &str, digest: &str, out: &mut Out) -> Result<Outcome, Error> {
    let (name, digest) = parse_overlay(name, digest)?;
    require_root("overlay unpack")?;
    l4d2ctl::interrupt::catch()?;
    let input = read_stdin()?;
    let sources: Vec<left4me_state::ArchiveSource> = serde_json::from_slice(&input).map_err(|e| {
        Error::Invalid(format!(
            "stdin is not a list of archives (JSON: [{{\"url\": …, \"sha256\": …, \"strip\": …, \"into\": …}}]): {e}"
        ))
    })?;
    if sources.is_empty() {
        return Err(Error::Invalid(format!("overlay {name}: stdin lists no archive to unpack")));
    }
    overlay::unpack(host, &name, &digest, &sources)?;
    out.say(format!("overlay {name}: {} archives unpacked ({digest})", sources.len()));
    Ok(Outcome::OverlayWritten { name, digest })
}

/// Asks Steam about workshop items and collections and keeps what it says.
fn workshop_check(host: &Host, items: &[u64], collections: &[u64], out: &mut Out) -> Result<Outcome, Error> {
    if items.is_empty() && collections.is_empty() {
        return Err(Error::Invalid("workshop check needs an --item or a --collection to ask about".into()));
    }
    require_root("workshop check")?;
    let now = left4me_state::clock::rfc3339(std::time::SystemTime::now());
    let details = workshop::check(host, items, collections, &now)?;
    for (id, children) in &details.collections {
        out.say(format!("workshop collection {id}: {} items", children.len()));
    }
    for (id, item) in &details.items {
        out.say(format!("workshop item {id}: updated {} ({})", item.time_updated, item.title));
    }
    Ok(Outcome::WorkshopChecked { details })
}

fn put(host: &Host, name: &str, digest: &str, out: &mut Out) -> Result<Outcome, Error> {
    let (name, digest) = parse_overlay(name, digest)?;
    require_root("overlay put")?;
    overlay::put(host, &name, &digest, std::io::stdin().lock())?;
    out.say(format!("overlay {name}: {digest}"));
    Ok(Outcome::OverlayWritten { name, digest })
}

/// Makes the schedules' timers match the list on stdin (JSON, as the reconciler writes it).
fn schedules_put(host: &Host, out: &mut Out) -> Result<Outcome, Error> {
    require_root("schedules put")?;
    let input = read_stdin()?;
    let timers: Vec<l4d2ctl::api::ScheduleTimer> = serde_json::from_slice(&input).map_err(|e| {
        Error::Invalid(format!("stdin is not a list of schedules (JSON: [{{\"name\": …, \"calendar\": …}}]): {e}"))
    })?;
    let mut say = |line: String| out.say(line);
    let (written, removed) = schedules::put(host, &timers, &mut say)?;
    Ok(Outcome::SchedulesWritten { written, removed })
}

fn observe(host: &Host, brief: bool, count_humans: &[String]) -> Result<(), Error> {
    let detail = if brief { Detail::Brief } else { Detail::Full };
    let names = count_humans.iter().map(|name| parse_name(name)).collect::<Result<Vec<_>, _>>()?;
    let mut observed = status::observe(host, detail)?;
    humans::count(host, &mut observed.instances, &names);
    println!("{}", serde_json::to_string(&observed).expect("an observation always serializes"));
    Ok(())
}

fn mount(host: &Host, name: &str) -> Result<Outcome, Error> {
    let name = parse_name(name)?;
    require_root("mount")?;
    let mounted = mount::mount(host, &name)?;
    Ok(Outcome::Mounted { name, mounted })
}

fn umount(host: &Host, name: &str) -> Result<Outcome, Error> {
    let name = parse_name(name)?;
    require_root("umount")?;
    let unmounted = mount::umount(host, &name)?;
    Ok(Outcome::Unmounted { name, unmounted })
}

/// Replaces this process with the server's `srcds_run`, started by its path inside the merged
/// tree (it `cd`s to its own folder), with the rendered argv word for word.
fn exec(host: &Host, name: &str) -> Result<(), Error> {
    let name = parse_name(name)?;
    let record = record::read(host, &name)?.ok_or_else(|| not_initialized(&name))?;
    let merged = host.instance(&name).merged();
    // The unit's ExecStartPost= mounts the tree in this process's namespace once it runs.
    mount::await_tree(&merged, Duration::from_secs(90))?;
    let srcds_run = merged.join("srcds_run");
    let port = record.spec.port.to_string();
    let mut command = Command::new(&srcds_run);
    command.args(["-game", "left4dead2", "-norestart", "+ip", "0.0.0.0", "+hostport", &port]);
    command.args(record.spec.arguments.iter().map(|a| a.get()));
    let error = command.exec();
    Err(Error::Invalid(format!("cannot run {}: {error}", srcds_run.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_the_game_chose_cannot_drive_a_terminal() {
        let name = "a\u{1b}]52;c;aGk=\u{7}b\nfile  0  x\u{202e}gpj.exe\tz";
        let shown = super::printable(name, false);
        assert_eq!(shown, "a\\u{1b}]52;c;aGk=\\u{7}b\\u{a}file  0  x\\u{202e}gpj.exe\\u{9}z");
        assert!(!shown.chars().any(char::is_control));
        assert_eq!(super::printable("line one\n\tline two\u{1b}[2J\n", true), "line one\n\tline two\\u{1b}[2J\n");
    }
}
