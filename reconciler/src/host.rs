//! The host as `l4d2ctl` shows and changes it: the only place the reconciler runs l4d2ctl — its
//! reads (`observe`, `show`), a command run as a job with every output line stored as it comes,
//! and a phase of starts as one `l4d2ctl start a b …`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};

use l4d2ctl::api::{Detail, Observation, Override, Problem};
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
        }
    }
}

/// Observes the host in one `l4d2ctl observe`, whatever the number of servers; a brief
/// observation asks systemd less and no game its A2S answer ([`Detail`]).
pub fn observe(l4d2ctl: &Path, detail: Detail) -> Result<HostView, Error> {
    let args: &[&str] = match detail {
        Detail::Full => &["observe"],
        Detail::Brief => &["observe", "--brief"],
    };
    let observed: Observation = read(l4d2ctl, args)?;
    Ok(HostView {
        instances: observed.instances.into_iter().map(|s| (s.name.clone(), s)).collect(),
        overlays: observed.overlays.into_iter().map(|o| (o.name, o.digest)).collect(),
        overrides: observed.overrides.into_iter().map(|o| (o.name, o.marker)).collect(),
        repairs: HostRepairs { units: observed.units, leftover_units: observed.leftover_units },
        problems: observed.problems,
    })
}

/// An instance's rendered spec as the host has it (`l4d2ctl show`), for showing diffs.
pub fn rendered(l4d2ctl: &Path, server: &Name) -> Result<String, Error> {
    let record: serde_json::Value = read(l4d2ctl, &["show", server.as_str()])?;
    let spec: left4me_state::InstanceSpec = serde_json::from_value(record["spec"].clone())
        .map_err(|cause| Error::Unexpected { what: format!("l4d2ctl show {server}"), cause })?;
    Ok(spec.to_json())
}

/// The JSON an l4d2ctl read prints.
fn read<T: serde::de::DeserializeOwned>(l4d2ctl: &Path, args: &[&str]) -> Result<T, Error> {
    let output = Command::new(l4d2ctl)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|cause| Error::Spawn { program: l4d2ctl.to_owned(), cause })?;
    if !output.status.success() {
        return Err(Error::Failed {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            end: ended(Ok(output.status)).0,
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|cause| Error::Unexpected {
        what: format!("l4d2ctl {} answered something unexpected", args.join(" ")),
        cause,
    })
}

/// How a job's l4d2ctl ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobEnd {
    /// The job's exit code: 0 when it did what it was asked.
    pub code: i32,
    /// When it did not: whether trying again soon may help.
    pub retry: Retry,
}

impl JobEnd {
    pub fn succeeded(&self) -> bool {
        self.code == 0
    }

    /// The end of a job whose l4d2ctl could not be started.
    fn not_run(cause: &Error, code: i32) -> JobEnd {
        JobEnd { code, retry: cause.retry() }
    }
}

/// The database a pass's jobs are written to, shared by the jobs that run side by side.
pub type Jobs<'a> = Mutex<&'a mut Db>;

/// Runs `l4d2ctl --reconciler <args>` as the queued job `job`, every output line into the
/// job's log as it comes.
pub fn run_job(
    l4d2ctl: &Path,
    jobs: &Jobs<'_>,
    job: i64,
    args: &[&str],
    input: Option<Vec<u8>>,
) -> Result<JobEnd, Error> {
    let db = |f: &dyn Fn(&Db) -> Result<(), DbError>| f(&jobs.lock().expect("no worker panics"));
    db(&|db| db.start_job(job))?;
    db(&|db| db.append_line(job, "command", &format!("l4d2ctl {}", args.join(" "))))?;
    let mut child = match Command::new(l4d2ctl)
        .arg("--reconciler")
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(cause) => {
            let error = Error::Spawn { program: l4d2ctl.to_owned(), cause };
            db(&|db| db.append_line(job, "stderr", &error.to_string()))?;
            db(&|db| db.finish_job(job, 127))?;
            return Ok(JobEnd::not_run(&error, 127));
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
    read_lines(&mut child, |stream, line| {
        if first_error.is_none()
            && let Err(e) = db(&|db| db.append_line(job, stream, line))
        {
            first_error = Some(e);
        }
    });
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let (end, said) = ended(child.wait());
    if let Some(said) = &said
        && let Err(e) = db(&|db| db.append_line(job, "stderr", said))
    {
        first_error.get_or_insert(e);
    }
    let finished = db(&|db| db.finish_job(job, end.code()));
    match first_error {
        Some(e) => Err(e.into()),
        None => finished.map(|()| JobEnd { code: end.code(), retry: end.retry() }).map_err(Error::from),
    }
}

/// Hands `child`'s stdout and stderr lines to `line` as they come, with the stream's name, until
/// both are closed.
fn read_lines(child: &mut Child, mut line: impl FnMut(&'static str, &str)) {
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
    for (stream, text) in rx {
        line(stream, &text);
    }
    for reader in readers {
        let _ = reader.join();
    }
}

/// Starts several servers with one `l4d2ctl --reconciler start a b …`, each given as its queued
/// job (`jobs`): each job is given the lines about its server (`<name>: …`) and the lines about
/// none in particular. Returns each job's end, in the order of `jobs`.
pub fn start_together(l4d2ctl: &Path, jobs: &Jobs<'_>, servers: &[(Name, i64)]) -> Result<Vec<JobEnd>, Error> {
    {
        let db = jobs.lock().expect("no worker panics");
        for (_, id) in servers {
            db.start_job(*id)?;
        }
    }
    let mut args = vec!["--reconciler".to_owned(), "start".to_owned()];
    args.extend(servers.iter().map(|(server, _)| server.to_string()));
    let output = Command::new(l4d2ctl).args(&args).stdin(Stdio::null()).output();
    let (stdout, stderr, said, retry) = match output {
        Ok(output) => {
            let (end, said) = ended(Ok(output.status));
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            (text(&output.stdout), text(&output.stderr), said, end.retry())
        }
        Err(cause) => {
            let error = Error::Spawn { program: l4d2ctl.to_owned(), cause };
            (String::new(), error.to_string(), None, error.retry())
        }
    };
    let names: Vec<&Name> = servers.iter().map(|(server, _)| server).collect();
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
        keep(db.append_line(*id, "command", &format!("l4d2ctl {}", args.join(" "))));
        let mut started = false;
        for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            for line in text.lines().filter(|line| is_about(line, server, &names)) {
                keep(db.append_line(*id, stream, line));
                started |= line == format!("{server}: started");
            }
        }
        if let Some(said) = &said {
            keep(db.append_line(*id, "stderr", said));
        }
        let end = JobEnd { code: if started { 0 } else { 1 }, retry };
        keep(db.finish_job(*id, end.code));
        ends.push(end);
    }
    first_error.map_or(Ok(ends), |e| Err(e.into()))
}

/// Whether a line of a batched start is for `server`'s job: about it, or about none of `servers`.
fn is_about(line: &str, server: &Name, servers: &[&Name]) -> bool {
    match servers.iter().find(|s| line.starts_with(&format!("{s}: "))) {
        Some(about) => *about == server,
        None => true,
    }
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
