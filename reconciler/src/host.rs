//! The host as `l4d2ctl` shows and changes it: the only place the reconciler runs l4d2ctl — its
//! reads (`observe`, `show`, `backups`), a write run as a job with every output line stored as it
//! comes (and stopped when its cancelling is asked), and a phase of starts as one `l4d2ctl start
//! a b …`. Every command line is an
//! [`api::Command`]'s; a write answers in [`api::Message`]s (`--json`), which the job's log keeps
//! as the plain output's lines.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use l4d2ctl::api::{self, Detail, Observation, Override, Problem};
use left4me_state::{DesiredState, Digest, Name};

use crate::db::{Db, DbError};
use crate::error::{End, Error, Retry};
use crate::plan::{HostRepairs, Inputs, Observed, Wish};

/// What the host runs and holds.
pub struct HostView {
    pub instances: Observed,
    pub overlays: BTreeMap<Name, Digest>,
    /// Override markers of servers with no instance (made or deleted by hand).
    pub overrides: BTreeMap<Name, Override>,
    /// Unit files changed by hand or missing, units left behind by deleted servers.
    pub repairs: HostRepairs,
    /// Files of the host apart from any server that could not be used (an overlay's digest).
    pub problems: Vec<Problem>,
    /// The game builds installed and the branch's as last checked.
    pub game: api::Game,
    /// What Steam said of workshop items and collections at the last check.
    pub workshop: api::WorkshopDetails,
    /// The schedules' timers on the host, as their files read.
    pub schedules: Vec<api::InstalledTimer>,
}

impl HostView {
    /// What the planner looks at, with this view of the host.
    pub fn inputs<'a>(
        &'a self,
        desired: &'a DesiredState,
        previous: &'a BTreeMap<Name, Wish>,
        prune_confirmed: bool,
    ) -> Inputs<'a> {
        Inputs {
            desired,
            observed: &self.instances,
            overlays: &self.overlays,
            orphan_overrides: &self.overrides,
            previous,
            prune_confirmed,
            host: &self.repairs,
            game: &self.game,
        }
    }
}

/// Observes the host in one `l4d2ctl observe`, whatever the number of servers; a brief
/// observation asks systemd less and no game its A2S answer ([`Detail`]).
pub fn observe(l4d2ctl: &Path, detail: Detail) -> Result<HostView, Error> {
    look(l4d2ctl, &api::Command::Observe(detail))
}

/// A full look in which the named servers that A2S shows empty are also asked over RCON how many
/// humans play: the look a `when-empty` rollout decides on.
pub fn observe_counting_humans(l4d2ctl: &Path, names: Vec<Name>) -> Result<HostView, Error> {
    look(l4d2ctl, &api::Command::ObserveHumans(names))
}

fn look(l4d2ctl: &Path, command: &api::Command) -> Result<HostView, Error> {
    let observed: Observation = read(l4d2ctl, command)?;
    Ok(HostView {
        instances: observed.instances.into_iter().map(|s| (s.name.clone(), s)).collect(),
        overlays: observed.overlays.into_iter().map(|o| (o.name, o.digest)).collect(),
        overrides: observed.overrides.into_iter().map(|o| (o.name, o.marker)).collect(),
        repairs: HostRepairs { units: observed.units, leftover_units: observed.leftover_units },
        problems: observed.problems,
        game: observed.game,
        workshop: observed.workshop,
        schedules: observed.schedules,
    })
}

/// Every instance's full status in one `l4d2ctl status --json` (one `systemctl show`, one A2S
/// socket): what the sampler looks at.
pub fn status(l4d2ctl: &Path) -> Result<Vec<api::InstanceStatus>, Error> {
    read(l4d2ctl, &api::Command::Status)
}

/// An instance's rendered spec as the host has it (`l4d2ctl show`), for showing diffs.
pub fn rendered(l4d2ctl: &Path, server: &Name) -> Result<String, Error> {
    let record: serde_json::Value = read(l4d2ctl, &api::Command::Show { name: server.clone() })?;
    let spec: left4me_state::InstanceSpec = serde_json::from_value(record["spec"].clone())
        .map_err(|cause| Error::Unexpected { what: format!("l4d2ctl show {server}"), cause })?;
    Ok(spec.to_json())
}

/// What an l4d2ctl command that answers in text prints (`rcon`: the console's answer).
pub fn text(l4d2ctl: &Path, command: &api::Command) -> Result<String, Error> {
    output(l4d2ctl, command).map(|stdout| String::from_utf8_lossy(&stdout).into_owned())
}

/// A server's backups, newest first (`l4d2ctl backups <name> --json`).
pub fn backups(l4d2ctl: &Path, server: &Name) -> Result<Vec<api::Backup>, Error> {
    read(l4d2ctl, &api::Command::Backups { name: server.clone() })
}

/// The JSON an l4d2ctl read prints.
fn read<T: serde::de::DeserializeOwned>(l4d2ctl: &Path, command: &api::Command) -> Result<T, Error> {
    let stdout = output(l4d2ctl, command)?;
    serde_json::from_slice(&stdout).map_err(|cause| Error::Unexpected {
        what: format!("l4d2ctl {} answered something unexpected", command.argv().join(" ")),
        cause,
    })
}

/// The stdout of an l4d2ctl read that succeeded.
fn output(l4d2ctl: &Path, command: &api::Command) -> Result<Vec<u8>, Error> {
    let argv = command.argv();
    let output = Process::new(l4d2ctl)
        .args(&argv)
        .stdin(Stdio::null())
        .output()
        .map_err(|cause| Error::Spawn { program: l4d2ctl.to_owned(), cause })?;
    if !output.status.success() {
        return Err(Error::Failed {
            command: argv.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            end: ended(Ok(output.status)).0,
        });
    }
    Ok(output.stdout)
}

/// How a job's l4d2ctl ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    /// The job's exit code: 0 when it did what it was asked.
    pub code: i32,
    /// When it did not: whether trying again soon may help.
    pub retry: Retry,
    /// What it said it did (its `done` message), when it said so.
    pub outcome: Option<api::Outcome>,
    /// Who cancelled it, when it was cancelled (before it started, or while its l4d2ctl ran).
    pub cancelled: Option<String>,
}

impl JobEnd {
    pub fn succeeded(&self) -> bool {
        self.code == 0
    }
}

/// The database a pass's jobs are written to, shared by the jobs that run side by side.
pub type Jobs<'a> = Mutex<&'a mut Db>;

/// How often a running job looks whether its cancelling was asked for: one query each time, on
/// the thread that waits for its l4d2ctl, never one per line of output.
const CANCEL_LOOK: Duration = Duration::from_millis(250);

/// How long an l4d2ctl asked to stop (SIGTERM) has to put back what it was changing before it
/// is killed: a build stops its unit and removes its staging folder in well under that.
const CANCEL_GRACE: Duration = Duration::from_secs(20);

/// Runs the write `command` as the queued job `job`, every output line into the job's log as it
/// comes: what it says on stdout as its plain output has it, its stderr as it is. A job whose
/// cancelling is asked for before it starts never starts; one asked while it runs has its
/// l4d2ctl's process group sent SIGTERM, and SIGKILL after [`CANCEL_GRACE`].
pub fn run_job(
    l4d2ctl: &Path,
    jobs: &Jobs<'_>,
    job: i64,
    command: &api::Command,
    input: Option<Vec<u8>>,
) -> Result<JobEnd, Error> {
    let db = |f: &dyn Fn(&Db) -> Result<(), DbError>| f(&jobs.lock().expect("no worker panics"));
    let argv = command.argv();
    if let Some(who) = jobs.lock().expect("no worker panics").begin_job(job)? {
        return Ok(JobEnd { code: 1, retry: Retry::Permanent, outcome: None, cancelled: Some(who) });
    }
    db(&|db| db.append_line(job, "command", &command_line(&argv, &["--reconciler", "--json"])))?;
    let mut child = match spawn(l4d2ctl, &argv, input.is_some()) {
        Ok(child) => child,
        Err(cause) => {
            let error = Error::Spawn { program: l4d2ctl.to_owned(), cause };
            db(&|db| db.append_line(job, "stderr", &error.to_string()))?;
            db(&|db| db.finish_job(job, 127))?;
            return Ok(JobEnd { code: 127, retry: error.retry(), outcome: None, cancelled: None });
        }
    };
    let writer = match (child.stdin.take(), input) {
        (Some(mut stdin), Some(input)) => Some(std::thread::spawn(move || stdin.write_all(&input))),
        _ => None,
    };
    // A line that cannot be written (a full disk) does not stop the job: its output is still
    // read to the end, so that it never blocks on a full pipe, and it is waited for, so that it
    // never lingers as a zombie; the job is ended and the first error returned.
    let mut first_error = None;
    let mut answer = Answer::default();
    let mut stop = Stop::new(child.id());
    let look = || jobs.lock().expect("no worker panics").cancel_requested(job).ok().flatten();
    read_lines(
        &mut child,
        |stream, line| {
            let text = match stream {
                "stdout" => answer.read(line, &[]).map(|(_, text)| text),
                _ => Some(Cow::Borrowed(line)),
            };
            for text in text.iter().flat_map(|text| plain_lines(text)) {
                if first_error.is_none()
                    && let Err(e) = db(&|db| db.append_line(job, stream, text))
                {
                    first_error = Some(e);
                }
            }
        },
        || stop.look(&look),
    );
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let (end, said) = ended(child.wait());
    if let Some(said) = &said
        && let Err(e) = db(&|db| db.append_line(job, "stderr", said))
    {
        first_error.get_or_insert(e);
    }
    let cancelled = stop.asked.filter(|_| end.code() != 0);
    let finished = match &cancelled {
        Some(who) => db(&|db| db.end_cancelled(job, Some(end.code()), who)),
        None => db(&|db| db.finish_job(job, end.code())),
    };
    match first_error {
        Some(e) => Err(e.into()),
        None => {
            // Cancelled, it is no failure that may pass by itself: it was asked for.
            let retry = if cancelled.is_some() { Retry::Permanent } else { answer.retry(end) };
            let outcome = answer.outcome;
            finished.map(|()| JobEnd { code: end.code(), retry, outcome, cancelled }).map_err(Error::from)
        }
    }
}

/// Runs l4d2ctl in a process group of its own, so that a cancel reaches what it runs (a
/// `systemd-run --wait`, steamcmd) too, and asked to stop (SIGTERM) when the thread that
/// started it dies, as it did in its caller's group.
fn spawn(l4d2ctl: &Path, argv: &[String], piped_stdin: bool) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    let mut command = Process::new(l4d2ctl);
    command
        .args(argv)
        .stdin(if piped_stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: between fork and exec the closure calls only prctl and getppid, both
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            // The caller may have died before the line above: then nobody would tell it.
            match nix::unistd::getppid() == parent {
                true => Ok(()),
                false => Err(std::io::Error::from_raw_os_error(nix::errno::Errno::ESRCH as i32)),
            }
        });
    }
    command.spawn()
}

/// A running job's cancelling, as its waiting thread sees it.
struct Stop {
    group: nix::unistd::Pid,
    /// Who asked, once someone has.
    asked: Option<String>,
    /// When SIGKILL follows the SIGTERM.
    kill_at: Option<Instant>,
}

impl Stop {
    fn new(pid: u32) -> Stop {
        Stop { group: nix::unistd::Pid::from_raw(pid as i32), asked: None, kill_at: None }
    }

    /// Looks (`asked`: who asked, if anyone) and acts: SIGTERM to the group once asked, SIGKILL
    /// once the grace is over.
    fn look(&mut self, asked: &dyn Fn() -> Option<String>) {
        use nix::sys::signal::{Signal, killpg};
        match (&self.asked, self.kill_at) {
            (None, _) => {
                if let Some(who) = asked() {
                    self.asked = Some(who);
                    self.kill_at = Some(Instant::now() + CANCEL_GRACE);
                    let _ = killpg(self.group, Signal::SIGTERM);
                }
            }
            (Some(_), Some(at)) if Instant::now() >= at => {
                self.kill_at = None;
                let _ = killpg(self.group, Signal::SIGKILL);
            }
            _ => {}
        }
    }
}

/// Hands `child`'s stdout and stderr lines to `line` as they come, with the stream's name, until
/// both are closed; `tick` is called every [`CANCEL_LOOK`] meanwhile, however many lines come.
fn read_lines(child: &mut Child, mut line: impl FnMut(&'static str, &str), mut tick: impl FnMut()) {
    let (tx, rx) = mpsc::channel();
    let pipes: [(&'static str, Option<Box<dyn std::io::Read + Send>>); 2] = [
        ("stdout", child.stdout.take().map(|pipe| Box::new(pipe) as Box<dyn std::io::Read + Send>)),
        ("stderr", child.stderr.take().map(|pipe| Box::new(pipe) as Box<dyn std::io::Read + Send>)),
    ];
    let readers: Vec<_> = pipes
        .into_iter()
        .filter_map(|(stream, pipe)| Some((stream, pipe?)))
        .map(|(stream, pipe)| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for text in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send((stream, text)).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let mut next_look = Instant::now() + CANCEL_LOOK;
    loop {
        match rx.recv_timeout(next_look.saturating_duration_since(Instant::now())) {
            Ok((stream, text)) => line(stream, &text),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_look {
            tick();
            next_look = Instant::now() + CANCEL_LOOK;
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
}

/// Starts (stops) several servers with one `l4d2ctl start a b …` (`command`: `Start` or
/// `StopAll` of them), each given as its queued job: each job is given the lines about its
/// server and the lines about none in particular. Returns each job's end, in the order of
/// `servers`.
pub fn together(
    l4d2ctl: &Path,
    jobs: &Jobs<'_>,
    servers: &[(Name, i64)],
    command: &api::Command,
) -> Result<Vec<JobEnd>, Error> {
    {
        let db = jobs.lock().expect("no worker panics");
        for (_, id) in servers {
            db.start_job(*id)?;
        }
    }
    let names: Vec<Name> = servers.iter().map(|(server, _)| server.clone()).collect();
    let argv = command.argv();
    let output = Process::new(l4d2ctl).args(&argv).stdin(Stdio::null()).output();
    let mut answer = Answer::default();
    let (stdout, stderr, said, retry) = match output {
        Ok(output) => {
            let (end, said) = ended(Ok(output.status));
            let stdout: Vec<(Option<Name>, String)> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| answer.read(line, &names).map(|(about, text)| (about, text.into_owned())))
                .collect();
            (stdout, String::from_utf8_lossy(&output.stderr).into_owned(), said, answer.retry(end))
        }
        Err(cause) => {
            let error = Error::Spawn { program: l4d2ctl.to_owned(), cause };
            (Vec::new(), error.to_string(), None, error.retry())
        }
    };
    let done = answer.done(&stdout);
    let db = jobs.lock().expect("no worker panics");
    // Every job is ended, even when its lines cannot be written: the first error is returned.
    let mut first_error = None;
    let mut ends = Vec::with_capacity(servers.len());
    for (server, id) in servers {
        let mut keep = |written: Result<(), DbError>| {
            if let Err(e) = written {
                first_error.get_or_insert(e);
            }
        };
        keep(db.append_line(*id, "command", &command_line(&argv, &["--json"])));
        for (about, text) in &stdout {
            if about.as_ref().is_none_or(|about| about == server) {
                for text in plain_lines(text) {
                    keep(db.append_line(*id, "stdout", text));
                }
            }
        }
        for line in stderr.lines().filter(|line| about_prefix(line, &names).is_none_or(|about| about == server)) {
            keep(db.append_line(*id, "stderr", line));
        }
        if let Some(said) = &said {
            keep(db.append_line(*id, "stderr", said));
        }
        let end = JobEnd { code: if done.contains(&server) { 0 } else { 1 }, retry, outcome: None, cancelled: None };
        keep(db.finish_job(*id, end.code));
        ends.push(end);
    }
    first_error.map_or(Ok(ends), |e| Err(e.into()))
}

/// The server of `servers` a plain line is about (`<name>: …`), if any.
fn about_prefix<'a>(line: &str, servers: &'a [Name]) -> Option<&'a Name> {
    servers.iter().find(|s| line.strip_prefix(s.as_str()).is_some_and(|rest| rest.starts_with(": ")))
}

/// What a write said on stdout under `--json` ([`api::Message`]s) of how it ended, as far as it
/// has been read.
#[derive(Default)]
struct Answer {
    outcome: Option<api::Outcome>,
    failure: Option<api::FailureKind>,
}

impl Answer {
    /// A stdout line of a write: the text the log keeps of it, as the plain output has it, and
    /// the server of `servers` it is about; None for a message that tells how it ended. A line
    /// that is no message (l4d2ctl writes none there: a guard) is kept as it is, about the server it names.
    fn read<'a>(&mut self, line: &'a str, servers: &[Name]) -> Option<(Option<Name>, Cow<'a, str>)> {
        match serde_json::from_str::<api::Message>(line) {
            Ok(api::Message::Progress { server, text }) => Some((server, Cow::Owned(text))),
            Ok(api::Message::Done { outcome }) => {
                self.outcome = Some(outcome);
                None
            }
            Ok(api::Message::Failed { failure }) => {
                self.failure = Some(failure.kind);
                None
            }
            Err(_) => Some((about_prefix(line, servers).cloned(), Cow::Borrowed(line))),
        }
    }

    /// The servers a `start` (a `stop` of several) says it started (stopped): by its outcome, or
    /// — when it has none, as an l4d2ctl killed after systemd started the units leaves none — by
    /// its `<name>: started` (`stopped`) lines (`lines` as [`Answer::read`] gave them), as a
    /// start's log has always read.
    fn done<'a>(&'a self, lines: &'a [(Option<Name>, String)]) -> Vec<&'a Name> {
        match &self.outcome {
            Some(api::Outcome::Started { servers }) => {
                servers.iter().filter(|server| server.started).map(|server| &server.name).collect()
            }
            Some(api::Outcome::StoppedAll { servers }) => {
                servers.iter().filter(|server| server.stopped).map(|server| &server.name).collect()
            }
            Some(_) => Vec::new(),
            None => lines
                .iter()
                .filter_map(|(about, text)| {
                    about
                        .as_ref()
                        .filter(|about| [": started", ": stopped"].iter().any(|end| *text == format!("{about}{end}")))
                })
                .collect(),
        }
    }

    /// Whether trying again soon may help, after it ended so: as it said, else as it ended.
    fn retry(&self, end: End) -> Retry {
        self.failure.map_or_else(|| end.retry(), Retry::from)
    }
}

/// The lines a text makes in the plain output, which prints it with a line break: one with line
/// breaks of its own is several lines, an empty one an empty line.
fn plain_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line))
}

/// The command line a job's log shows: without the flags `hidden` (the log has never shown
/// `--json`, nor `--reconciler` but for a phase of starts).
fn command_line(argv: &[String], hidden: &[&str]) -> String {
    let shown: Vec<&str> = argv.iter().map(String::as_str).filter(|arg| !hidden.contains(arg)).collect();
    format!("l4d2ctl {}", shown.join(" "))
}

/// How l4d2ctl ended and, when it did not end by itself, a line that says how: a process killed
/// by a signal leaves no message of its own, and a shell's 128 + N says nothing to a reader.
fn ended(status: std::io::Result<ExitStatus>) -> (End, Option<String>) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => (End::Code(code), None),
            (None, Some(signal)) => {
                (End::Signal(signal), Some(format!("l4d2ctl was killed by {}", l4d2ctl::signal_name(signal))))
            }
            (None, None) => (End::Unknown, Some(format!("l4d2ctl ended without an exit code ({status})"))),
        },
        Err(e) => (End::Unknown, Some(format!("cannot learn how l4d2ctl ended: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::new(text).expect("a valid name")
    }

    fn json(message: &api::Message) -> String {
        serde_json::to_string(message).expect("a message serializes")
    }

    #[test]
    fn a_progress_message_is_kept_as_the_plain_output_has_it_about_its_server() {
        let servers = [name("coop-1"), name("coop-10")];
        let mut answer = Answer::default();
        let progress = json(&api::Message::Progress { server: Some(name("coop-10")), text: "coop-10: started".into() });
        let read = answer.read(&progress, &servers).map(|(about, text)| (about, text.into_owned()));
        assert_eq!(read, Some((Some(name("coop-10")), "coop-10: started".to_owned())));
        // About no server, whatever its words.
        let general = json(&api::Message::Progress { server: None, text: "coop-1: looks fine".into() });
        assert_eq!(answer.read(&general, &servers).map(|(about, _)| about), Some(None));
        let lines: Vec<&str> = plain_lines("one\r\ntwo\n").collect();
        assert_eq!(lines, ["one", "two", ""]);
        assert_eq!(plain_lines("").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn a_line_that_is_no_message_is_kept_as_it_is_about_the_server_it_names() {
        let servers = [name("coop-1"), name("coop-10")];
        let mut answer = Answer::default();
        let read = |line| Answer::default().read(line, &servers).map(|(about, text)| (about, text.into_owned()));
        assert_eq!(read("coop-10: started"), Some((Some(name("coop-10")), "coop-10: started".to_owned())));
        assert_eq!(read("coop-1 is not a prefix here"), Some((None, "coop-1 is not a prefix here".to_owned())));
        assert_eq!(read("{\"type\":\"later\"}").map(|(about, _)| about), Some(None));
        let lines: Vec<(Option<Name>, String)> = ["coop-1: started", "coop-10: failed to start: port taken"]
            .into_iter()
            .filter_map(|line| answer.read(line, &servers).map(|(about, text)| (about, text.into_owned())))
            .collect();
        assert_eq!(answer.done(&lines), [&name("coop-1")], "with no outcome, its lines tell");
    }

    #[test]
    fn a_start_says_which_servers_started_and_a_failure_whether_it_may_pass() {
        let servers = [name("coop-1"), name("coop-2")];
        let mut answer = Answer::default();
        let done = json(&api::Message::Done {
            outcome: api::Outcome::Started {
                servers: vec![
                    api::ServerStart { name: name("coop-1"), started: true, error: None },
                    api::ServerStart { name: name("coop-2"), started: false, error: Some("port taken".into()) },
                ],
            },
        });
        assert!(answer.read(&done, &servers).is_none(), "the end is no line of the log");
        let said = [(Some(name("coop-2")), "coop-2: started".to_owned())];
        assert_eq!(answer.done(&said), [&name("coop-1")], "the outcome tells, not the words");
        assert_eq!(answer.retry(End::Code(1)), Retry::Transient, "l4d2ctl said nothing of it");

        for (kind, retry) in
            [(api::FailureKind::Permanent, Retry::Permanent), (api::FailureKind::Transient, Retry::Transient)]
        {
            let mut answer = Answer::default();
            let failed = json(&api::Message::Failed { failure: api::Failure { kind, message: "no".into() } });
            assert!(answer.read(&failed, &servers).is_none());
            assert_eq!(answer.retry(End::Code(1)), retry, "{kind:?}");
        }
    }

    #[test]
    fn the_log_shows_the_command_as_it_always_has() {
        let start = api::Command::Start { names: vec![name("a"), name("b")] }.argv();
        assert_eq!(command_line(&start, &["--json"]), "l4d2ctl --reconciler start a b");
        let stop = api::Command::Stop { name: name("a") }.argv();
        assert_eq!(command_line(&stop, &["--reconciler", "--json"]), "l4d2ctl stop a");
    }
}
