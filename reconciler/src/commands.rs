//! `left4me plan`, `apply`, `status`, `jobs` and `audit`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use left4me_state::Name;
use reconciler::backups::Operation;
use reconciler::daemon::{Disk, ServiceStatus};
use reconciler::db::{CancelAsked, Db};
use reconciler::engine::{self, Config};
use reconciler::report;

fn open(state: Option<PathBuf>) -> anyhow::Result<(Config, Db)> {
    let config = Config::from_env(state)?;
    let db = Db::open(&config.db_path())?;
    Ok((config, db))
}

pub fn plan(state: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let (config, db) = open(state)?;
    match engine::plan_pass(&config, &db, &mut Default::default(), None, engine::Detail::Full, engine::Humans::Count)? {
        Err((revision, diagnostics)) => {
            out!("{diagnostics}");
            eprintln!("left4me: revision {} is invalid; a pass would apply nothing", revision.short());
            Ok(ExitCode::from(2))
        }
        Ok(planned) => {
            if json {
                outln!("{}", serde_json::to_string_pretty(&planned.plan).context("cannot print the plan")?);
            } else {
                outln!("revision {}", planned.revision.short());
                out!("{}", planned.plan);
                for step in &planned.plan.steps {
                    if let reconciler::plan::Action::Rerender { spec, .. } = &step.action {
                        match engine::rendered(&config, &step.server) {
                            Ok(current) => out!("{}", diff(&current, &spec.to_json(), step.server.as_str())),
                            Err(e) => outln!("(no diff for {}: {e})", step.server),
                        }
                    }
                }
            }
            Ok(if planned.plan.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// A unified diff of an instance's rendered spec, as the host has it and as the revision renders it.
fn diff(current: &str, next: &str, server: &str) -> String {
    similar::TextDiff::from_lines(current, next)
        .unified_diff()
        .context_radius(2)
        .header(&format!("{server} (on the host)"), &format!("{server} (the revision)"))
        .to_string()
}

pub fn apply(state: Option<PathBuf>, confirm_prune: Option<&str>) -> anyhow::Result<ExitCode> {
    let (config, mut db) = open(state)?;
    pass(&config, &mut db, confirm_prune, "manual").map(|(code, _)| code)
}

/// `left4me game check`: a pass that asks Steam first, whenever it last did; says what Steam
/// said and what the pass did.
pub fn game_check(state: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (config, mut db) = open(state)?;
    let (code, outcome) = pass(&config, &mut db, None, "check")?;
    if let Some(job) = outcome.failed_check {
        outln!("asking Steam failed; its log is `left4me jobs {job}`");
        return Ok(ExitCode::FAILURE);
    }
    let host = reconciler::host::observe(&config.l4d2ctl, engine::Detail::Brief)?;
    outln!("{}", game_line(&host.game).trim_start_matches("game:").trim_start());
    Ok(code)
}

/// Runs one pass here and now and says how it went: 0 when every step succeeded, 1 when one
/// failed, 2 when the revision is invalid; with what the pass did.
fn pass(
    config: &Config,
    db: &mut Db,
    confirm_prune: Option<&str>,
    trigger: &str,
) -> anyhow::Result<(ExitCode, engine::PassOutcome)> {
    let outcome = engine::apply(config, db, &mut Default::default(), trigger, confirm_prune)?;
    if let Some(diagnostics) = &outcome.invalid {
        out!("{diagnostics}");
        eprintln!("left4me: revision {} is invalid; nothing applied", outcome.revision.short());
        return Ok((ExitCode::from(2), outcome));
    }
    if let Some(event) = db.events(1)?.first() {
        outln!("{}", event.message);
    }
    let code = if outcome.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    Ok((code, outcome))
}

pub fn status(state: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::from_env(state)?;
    // Status always answers: what cannot be looked at now (no commit yet, l4d2ctl missing, a
    // database that cannot be opened) is shown as such rather than ending it.
    let db = Db::open(&config.db_path());
    let meta = |key: &str| db.as_ref().ok().and_then(|db| db.meta(key).ok().flatten());
    let applied = meta("last_applied");
    let attempted = meta("last_attempted");
    let error = meta("revision_error");
    let upstream_error = meta("upstream_error");
    let last_pass = db.as_ref().ok().and_then(|db| db.events(1).ok()?.into_iter().next());
    let mut servers = Vec::new();
    let mut host_problems = Vec::new();
    let mut game = None;
    let (planned, problem) = match &db {
        Ok(db) => match engine::plan_pass(
            &config,
            db,
            &mut Default::default(),
            None,
            engine::Detail::Full,
            engine::Humans::Count,
        ) {
            Ok(planned) => (planned.ok(), None),
            Err(e) => (None, Some(e.to_string())),
        },
        Err(e) => (None, Some(e.to_string())),
    };
    if let Some(planned) = planned {
        servers = report::reports(&planned);
        host_problems = planned.host.problems;
        game = Some(planned.host.game);
    }
    // The service says how its passes go on /run, which it can write when $ROOT's disk is full.
    let service = ServiceStatus::read();
    let disk = Disk::of(&config.root);
    let disk_full = disk.as_ref().is_some_and(Disk::is_full) || service.as_ref().is_some_and(|s| s.disk_full);
    if json {
        let value = serde_json::json!({
            "last_applied": applied, "last_attempted": attempted, "revision_error": error,
            "last_pass": last_pass, "upstream_error": upstream_error, "problem": problem, "servers": servers,
            "host_problems": host_problems, "service": service, "disk": disk, "disk_full": disk_full,
            "game": game, "host": config.host,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let short =
        |r: &Option<String>| r.as_deref().map(|r| r[..r.len().min(12)].to_owned()).unwrap_or_else(|| "none".into());
    if let Some(host) = &config.host {
        outln!("this host:               {host} (LEFT4ME_HOST)");
    }
    outln!("last applied revision:   {}", short(&applied));
    outln!("last attempted revision: {}", short(&attempted));
    if let Some(pass) = &last_pass {
        outln!("last pass:               {} ({})", pass.message, pass.at);
    }
    if let Some(service) = service.as_ref().filter(|s| s.state != "ok") {
        outln!("service:                 {} (since {})", service.message, service.since);
    }
    if disk_full && let Some(disk) = &disk {
        outln!("the disk is full: {disk}; free space on it for the reconciler to write its database");
    }
    if let Some(upstream) = &upstream_error {
        outln!("upstream: {upstream}; the last revision fetched keeps running");
    }
    if let Some(problem) = &problem {
        outln!("cannot look at the state now: {problem}");
    }
    // Files of the host apart from any one server (an overlay's digest): a server's own are told
    // in its Health.
    for problem in &host_problems {
        outln!("host: {problem}");
    }
    if let Some(game) = &game {
        outln!("{}", game_line(game));
    }
    if let Some(error) = &error {
        outln!("the attempted revision is invalid; the last applied one keeps running:");
        for line in error.lines() {
            outln!("  {line}");
        }
    }
    for s in &servers {
        outln!("{:<20} {:<10} {:<9} {}", s.name, format!("{:?}", s.sync), format!("{:?}", s.health), s.health_message);
        if !s.sync_message.is_empty() {
            outln!("{:<20} {}", "", s.sync_message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The game builds in one line: `game: public is at build 200 (checked 2026-…); installed: 100, 200`.
fn game_line(game: &l4d2ctl::api::Game) -> String {
    let published = match (&game.branch, game.published, &game.checked_at) {
        (Some(branch), Some(build), Some(at)) => format!("{branch} is at build {build} (checked {at})"),
        _ => "Steam has not been asked for a build yet".to_owned(),
    };
    let installed = match game.installed.is_empty() {
        true => "no build installed".to_owned(),
        false => format!("installed: {}", game.installed.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    };
    format!("game:                    {published}; {installed}")
}

/// `left4me retry <server>`: a server held back after crashing is tried again now, by a pass
/// run here and now. Asked as the web app asks (a request in `$ROOT/retries`), which this pass
/// takes.
pub fn retry(state: Option<PathBuf>, server: &str) -> anyhow::Result<ExitCode> {
    let name = Name::new(server).map_err(|e| anyhow::anyhow!("{server:?} is not a server name: {e}"))?;
    let (config, mut db) = open(state)?;
    match db.crash_loops()?.get(&name).filter(|crash| crash.failures > 0) {
        Some(crash) => outln!(
            "{name}: held after {} crash{} in a row; trying it now",
            crash.failures,
            if crash.failures == 1 { "" } else { "es" }
        ),
        None => outln!("{name} is not held back after crashing; a pass runs now"),
    }
    reconciler::retries::ask(&config.root, &name)?;
    pass(&config, &mut db, None, "manual").map(|(code, _)| code)
}

/// `left4me alerts test <name>`: one message through the committed revision's alert, once, and
/// what the receiver answered.
pub fn alerts_test(state: Option<PathBuf>, name: &str) -> anyhow::Result<ExitCode> {
    use reconciler::alerts;
    let config = Config::from_env(state)?;
    let (revision, checked) = engine::load(&config, &mut Default::default())?;
    let desired = checked.map_err(|_| {
        anyhow::anyhow!("revision {} is invalid; `left4me validate --rev main` lists its problems", revision.short())
    })?;
    let Some(alert) = Name::new(name).ok().and_then(|name| desired.alerts.get(&name)) else {
        let known: Vec<&str> = desired.alerts.keys().map(Name::as_str).collect();
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        anyhow::bail!("revision {} has no alert {name:?} (its alerts: {known})", revision.short());
    };
    let settings = alerts::Settings::from_env();
    let provider = alerts::provider_name(alert.provider);
    match alerts::send(alert, &alerts::test_message(alert, &settings), &settings) {
        Ok(answer) => {
            let body = if answer.body.is_empty() { String::new() } else { format!(": {}", answer.body) };
            outln!("alert {name} ({provider}): delivered; the receiver answered {}{body}", answer.status);
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            outln!("alert {name} ({provider}): not delivered: {}", failure.why);
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn events(lines: usize, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::from_env(None)?;
    let events = Db::open(&config.db_path())?.events(lines.min(10_000))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    for event in events {
        outln!("{}  {:<10} {}", event.at, event.kind, event.message);
    }
    Ok(ExitCode::SUCCESS)
}

/// `left4me audit`: the newest entries of the audit trail, every one (this is the host's operator).
pub fn audit(lines: usize, server: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let config = Config::from_env(None)?;
    let audit = l4d2ctl::audit::Audit::open(&config.root)?;
    let filter = l4d2ctl::audit::Filter { scope: l4d2ctl::audit::Scope::All, server, before: None, limit: lines };
    let entries = audit.entries(&filter)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in entries {
        outln!(
            "{:>6}  {}  {:<12} {:<16} {:<12} {}  ({})",
            e.id,
            e.at,
            e.who,
            e.action,
            e.server.as_deref().unwrap_or("-"),
            e.detail,
            e.origin
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn jobs(id: Option<i64>, json: bool, follow: bool) -> anyhow::Result<ExitCode> {
    let config = Config::from_env(None)?;
    let db = Db::open(&config.db_path())?;
    let Some(id) = id else {
        let jobs = db.jobs(50)?;
        if json {
            outln!("{}", serde_json::to_string_pretty(&jobs)?);
        } else {
            for j in jobs {
                let code = j.exit_code.map(|c| c.to_string()).unwrap_or_default();
                outln!(
                    "{:>6}  {:<10} {:<20} {:<10} {:<8} {:<4} {}",
                    j.id,
                    j.kind,
                    j.target,
                    j.state,
                    j.trigger,
                    code,
                    j.queued_at
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let job = db.job(id)?.with_context(|| format!("there is no job {id}"))?;
    if json {
        let lines = db.lines(id, 0)?;
        outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "job": job, "lines": lines }))?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("job {} {} {} ({}, {})", job.id, job.kind, job.target, job.trigger, job.state);
    let mut seen = 0;
    loop {
        for line in db.lines(id, seen)? {
            outln!("{} {:<7} {}", line.at, line.stream, line.line);
            seen = line.seq;
        }
        let job = db.job(id)?.with_context(|| format!("job {id} disappeared"))?;
        if !follow || matches!(job.state.as_str(), "succeeded" | "failed" | "cancelled") {
            if follow || job.exit_code.is_some() {
                outln!(
                    "job {} {} (exit code {})",
                    job.id,
                    job.state,
                    job.exit_code.map(|c| c.to_string()).unwrap_or_default()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `left4me schedule run <name>`: one run of a schedule, as its timer starts it. Its lines go to
/// the journal of its unit as they go to its job.
pub fn schedule_run(state: Option<PathBuf>, name: &str) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt().with_target(false).with_ansi(false).without_time().init();
    let name = Name::new(name).map_err(|e| anyhow::anyhow!("{name:?} is not a schedule's name: {e}"))?;
    let config = Config::from_env(state)?;
    let at = reconciler::schedule_run::Where {
        root: &config.root,
        state: &config.state,
        branch: &config.branch,
        l4d2ctl: &config.l4d2ctl,
        host: config.host.as_ref(),
    };
    match reconciler::schedule_run::run(&at, &name)? {
        reconciler::schedule_run::Ran::Gone(why) => {
            outln!("{why}");
            Ok(ExitCode::SUCCESS)
        }
        reconciler::schedule_run::Ran::Done { job, failed } if failed.is_empty() => {
            outln!("schedule {name} ran; its log is `left4me jobs {job}`");
            Ok(ExitCode::SUCCESS)
        }
        reconciler::schedule_run::Ran::Done { job, failed } => {
            let failed: Vec<&str> = failed.iter().map(Name::as_str).collect();
            outln!("schedule {name} failed on {}; its log is `left4me jobs {job}`", failed.join(", "));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `left4me jobs cancel <id>`: asks for the job to be cancelled, as the web does, and waits (at
/// most a minute) for whoever runs it to end it; says how it ended.
pub fn cancel(id: i64) -> anyhow::Result<ExitCode> {
    let config = Config::from_env(None)?;
    let db = Db::open(&config.db_path())?;
    match db.request_cancel(id, "manual")? {
        CancelAsked::Unknown => anyhow::bail!("there is no job {id}; `left4me jobs` lists the recent ones"),
        CancelAsked::Finished(state) => {
            outln!("job {id} has already {}: there is nothing to cancel, and nothing was changed", finished(&state));
            return Ok(ExitCode::FAILURE);
        }
        CancelAsked::AlreadyAsked(by) => {
            outln!("job {id}: cancelling was asked already (by {by}); waiting for it to end")
        }
        CancelAsked::Asked => {
            outln!("job {id}: cancelling asked for; waiting for it to end");
            let (who, origin) = (l4d2ctl::overrides::operator(), l4d2ctl::audit::shell_origin());
            reconciler::requests::record_cancel(&config, &db, id, &who, &origin);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = db.job(id)?.with_context(|| format!("job {id} disappeared"))?;
        if !matches!(job.state.as_str(), "queued" | "running") {
            let last = db.lines(id, 0)?.pop().map(|line| line.line).unwrap_or_default();
            outln!("job {id} {} {}: {}; {last}", job.kind, job.target, finished(&job.state));
            return Ok(if job.state == "cancelled" { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        if std::time::Instant::now() >= deadline {
            outln!(
                "job {id} is still {} after a minute; it ends at its runner's next look (`left4me jobs {id} --follow` \
                 shows when), or at the next pass if its runner is gone",
                job.state
            );
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn finished(state: &str) -> &str {
    match state {
        "succeeded" => "succeeded",
        "failed" => "failed",
        "cancelled" => "been cancelled",
        other => other,
    }
}

/// `left4me backup <server>` and `left4me restore <server> <backup>`: one job, queued at once and
/// run once no pass runs; its log printed as it grows, from a connection of its own.
pub fn backup(server: &str, operation: Operation) -> anyhow::Result<ExitCode> {
    let name = Name::new(server).map_err(|e| anyhow::anyhow!("{server:?} is not a server name: {e}"))?;
    let (config, mut db) = open(None)?;
    let (queued, job) = std::sync::mpsc::channel();
    let ended = std::sync::atomic::AtomicBool::new(false);
    let path = config.db_path();
    let (ran, followed) = std::thread::scope(|scope| {
        let (path, ended_ref) = (&path, &ended);
        let follower = scope.spawn(move || follow_job(path, job, ended_ref));
        let ran = reconciler::backups::run(&config, &mut db, &name, &operation, "manual", move |id| {
            let _ = queued.send(id);
        });
        ended.store(true, std::sync::atomic::Ordering::SeqCst);
        (ran, follower.join())
    });
    let ran = ran?;
    followed.map_err(|_| anyhow::anyhow!("printing the job's log failed"))??;
    Ok(if ran.end.succeeded() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints the log of the job `job` sends as it grows (but why it was queued), then how it ended;
/// stops when the job ends, or once `ended` says its runner gave up.
fn follow_job(
    path: &std::path::Path,
    job: std::sync::mpsc::Receiver<i64>,
    ended: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let Ok(id) = job.recv() else { return Ok(()) };
    let db = Db::open(path)?;
    outln!("job {id}: queued; `left4me jobs cancel {id}` cancels it");
    let mut seen = 0;
    loop {
        let last = ended.load(std::sync::atomic::Ordering::SeqCst);
        for line in db.lines(id, seen)? {
            seen = line.seq;
            if line.stream != "plan" {
                outln!("{}", line.line);
            }
        }
        let job = db.job(id)?.with_context(|| format!("job {id} disappeared"))?;
        if !matches!(job.state.as_str(), "queued" | "running") {
            outln!("job {id} {}", job.state);
            return Ok(());
        }
        if last {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `left4me backups <server>`: its backups, newest first.
pub fn backups(server: &str, json: bool) -> anyhow::Result<ExitCode> {
    let name = Name::new(server).map_err(|e| anyhow::anyhow!("{server:?} is not a server name: {e}"))?;
    let config = Config::from_env(None)?;
    let backups = reconciler::backups::list(&config, &name)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&backups)?);
        return Ok(ExitCode::SUCCESS);
    }
    if backups.is_empty() {
        outln!("{name} has no backups yet; `left4me backup {name}` takes one");
    }
    for backup in backups {
        let place = match (backup.local, backup.restic) {
            (true, true) => "here+restic",
            (true, false) => "here",
            (false, _) => "restic",
        };
        outln!("{:<22} {:<22} {:>10} {:<11} {}", backup.id, backup.taken_at, backup.bytes, place, backup.reason);
    }
    Ok(ExitCode::SUCCESS)
}

/// `left4me remote [--agent]`: one ask of another host, from `SSH_ORIGINAL_COMMAND`, answered on
/// stdout; a refusal says why on stderr and exits 2, having done nothing.
pub fn remote(agent: Option<&str>) -> anyhow::Result<ExitCode> {
    use reconciler::remote::{Ask, JobLog, MAX_LINES};
    let line = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let config = Config::from_env(None)?;
    if let Some(agent) = agent {
        let agent = Name::new(agent).map_err(|e| anyhow::anyhow!("--agent {agent:?} is not a host's name: {e}"))?;
        return serve_agent(&config, &agent, &line);
    }
    let ask = match Ask::parse(&line) {
        Ok(ask) => ask,
        Err(refused) => return Ok(refuse(&refused.0)),
    };
    if let Some(command) = reconciler::remote::l4d2ctl_command(&ask) {
        use std::os::unix::process::CommandExt;
        let error = std::process::Command::new(&config.l4d2ctl).args(command.argv()).exec();
        anyhow::bail!("cannot run {}: {error}", config.l4d2ctl.display());
    }
    match ask {
        Ask::Status => outln!("{}", serde_json::to_string(&reconciler::remote::host_status(&config))?),
        Ask::Jobs { limit } => {
            let db = Db::open_read_only(&config.db_path())?;
            outln!("{}", serde_json::to_string(&db.jobs(limit as usize)?)?);
        }
        Ask::Job { id, after } => {
            let db = Db::open_read_only(&config.db_path())?;
            let job = db.job(id)?.with_context(|| format!("there is no job {id}"))?;
            let mut lines = db.lines(id, after)?;
            lines.truncate(MAX_LINES);
            outln!("{}", serde_json::to_string(&JobLog { job, lines })?);
        }
        Ask::Fetch => {
            let asker = Name::new("remote").expect("a valid name");
            reconciler::requests::ask(&config.root, reconciler::requests::What::Fetch, &asker)?;
            outln!("asked the agent to fetch the state repo now");
        }
        Ask::Handover { server, to } => return hand_over(&config, &server, &to),
        Ask::Logs { .. } | Ask::Rcon { .. } | Ask::Backups { .. } => unreachable!("l4d2ctl answers these"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Says why an ask was refused, on stderr, for the other side: exit 2, nothing done.
fn refuse(why: &str) -> ExitCode {
    eprintln!("left4me remote: refused: {why}");
    ExitCode::from(2)
}

/// `left4me remote --agent <host>` on the control host: the asks of that host's agent, while the
/// branch's revision declares it.
fn serve_agent(config: &Config, agent: &Name, line: &str) -> anyhow::Result<ExitCode> {
    use reconciler::remote::AgentAsk;
    let ask = match AgentAsk::parse(line, &config.state) {
        Ok(ask) => ask,
        Err(refused) => return Ok(refuse(&refused.0)),
    };
    match ask {
        AgentAsk::UploadPack { repo } => {
            use std::os::unix::process::CommandExt;
            // One look, not a validation: the agent validates what it fetches itself.
            let spec = |ext: &str| format!("{}:hosts/{agent}.{ext}", config.branch);
            let (yaml, yml) = (spec("yaml"), spec("yml"));
            let found = left4me_state::cat_files(&config.state, &[&yaml, &yml], 1 << 20)?;
            if found.iter().all(Option::is_none) {
                return Ok(refuse(&format!(
                    "the branch declares no host {agent}, whose key this is; declare hosts/{agent}.yaml first"
                )));
            }
            // Read-only by what it is: upload-pack sends objects and never writes a ref.
            let error = std::process::Command::new("git").arg("upload-pack").arg("--strict").arg(&repo).exec();
            anyhow::bail!("cannot run git upload-pack: {error}")
        }
        AgentAsk::Handover { host, server } => {
            let (revision, checked) = left4me_state::load_revision(&config.state, &config.branch)?;
            let Ok(desired) = checked else {
                return Ok(refuse(&format!(
                    "revision {} is invalid; nothing is relayed until it is fixed",
                    revision.short()
                )));
            };
            relay_handover(config, &desired, &revision, agent, &host, &server)
        }
    }
}

/// `handover <server> --to <host>`: the archive of a server this host let go to that host, on
/// stdout (nothing when it had no data); exit 3 while it is still here.
fn hand_over(config: &Config, server: &Name, to: &Name) -> anyhow::Result<ExitCode> {
    use reconciler::remote::LetGo;
    match reconciler::remote::let_go(&config.root, server, to).map_err(anyhow::Error::msg)? {
        LetGo::StillHere => {
            eprintln!("left4me remote: {server} is still on this host; its move is not applied here yet");
            Ok(ExitCode::from(reconciler::handover::NOT_YET as u8))
        }
        LetGo::Nothing => Ok(ExitCode::SUCCESS),
        LetGo::Archive(path) => {
            let mut file = std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
            std::io::copy(&mut file, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The agent of host `agent` asks, on the control host, for the data of `server` from `host`:
/// only for a server that, in the branch's revision and its history, moved from `host` to the
/// asking host. Answered here when `host` is this one; else asked of `host` with the control
/// host's key, its answer (and exit code) passed through as they come.
fn relay_handover(
    config: &Config,
    desired: &left4me_state::DesiredState,
    revision: &left4me_state::Revision,
    agent: &Name,
    host: &Name,
    server: &Name,
) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let placed_here = desired.servers.get(server).and_then(|s| s.host.as_ref()) == Some(agent);
    let from = reconciler::handover::moved_from(&config.state, revision, server, agent).map_err(anyhow::Error::msg)?;
    if !placed_here || from.as_ref() != Some(host) {
        return Ok(refuse(&format!(
            "in revision {} {server} did not move from host {host} to host {agent}, whose key this is",
            revision.short()
        )));
    }
    if config.host.as_ref() == Some(host) {
        return hand_over(config, server, agent);
    }
    let Some(declared) = desired.hosts.get(host) else {
        return Ok(refuse(&format!("host {host} is not declared in revision {}", revision.short())));
    };
    let ssh = reconciler::remote::Ssh::from_env(reconciler::remote::WEB_KEY, None);
    let ask = reconciler::remote::Ask::Handover { server: server.clone(), to: agent.clone() };
    let error = ssh.command(declared.address.as_str(), &ask).exec();
    anyhow::bail!("cannot run ssh: {error}")
}
