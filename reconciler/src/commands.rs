//! `left4me plan`, `apply`, `status` and `jobs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use reconciler::db::Db;
use reconciler::engine::{self, Config};
use reconciler::report;

fn open(state: Option<PathBuf>) -> anyhow::Result<(Config, Db)> {
    let config = Config::from_env(state)?;
    let db = Db::open(&config.db_path())?;
    Ok((config, db))
}

pub fn plan(state: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let (config, db) = open(state)?;
    match engine::plan_pass(&config, &db, &mut Default::default(), None, engine::Detail::Full)? {
        Err((revision, diagnostics)) => {
            print!("{diagnostics}");
            eprintln!("left4me: revision {} is invalid; a pass would apply nothing", revision.short());
            Ok(ExitCode::from(2))
        }
        Ok(planned) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&planned.plan).context("cannot print the plan")?);
            } else {
                println!("revision {}", planned.revision.short());
                print!("{}", planned.plan);
                for step in &planned.plan.steps {
                    if let reconciler::plan::Action::Rerender { spec } = &step.action {
                        match engine::rendered(&config, &step.server) {
                            Ok(current) => print!("{}", diff(&current, &spec.to_json(), step.server.as_str())),
                            Err(e) => println!("(no diff for {}: {e})", step.server),
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
    let outcome = engine::apply(&config, &mut db, &mut Default::default(), "manual", confirm_prune)?;
    if let Some(diagnostics) = &outcome.invalid {
        print!("{diagnostics}");
        eprintln!("left4me: revision {} is invalid; nothing applied", outcome.revision.short());
        return Ok(ExitCode::from(2));
    }
    let events = db.events(1)?;
    if let Some(event) = events.first() {
        println!("{}", event.message);
    }
    Ok(if outcome.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub fn status(state: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let (config, db) = open(state)?;
    let applied = db.meta("last_applied")?;
    let attempted = db.meta("last_attempted")?;
    let error = db.meta("revision_error")?;
    let last_pass = db.events(1)?.into_iter().next();
    let upstream_error = db.meta("upstream_error")?;
    let mut servers = Vec::new();
    // Status always answers: what cannot be looked at now (no commit yet, l4d2ctl missing) is
    // shown as such rather than ending it.
    let (planned, problem) = match engine::plan_pass(&config, &db, &mut Default::default(), None, engine::Detail::Full)
    {
        Ok(planned) => (planned.ok(), None),
        Err(e) => (None, Some(e.to_string())),
    };
    if let Some(planned) = planned {
        servers = report::reports(&planned);
    }
    if json {
        let value = serde_json::json!({
            "last_applied": applied, "last_attempted": attempted, "revision_error": error,
            "last_pass": last_pass, "upstream_error": upstream_error, "problem": problem, "servers": servers,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let short =
        |r: &Option<String>| r.as_deref().map(|r| r[..r.len().min(12)].to_owned()).unwrap_or_else(|| "none".into());
    println!("last applied revision:   {}", short(&applied));
    println!("last attempted revision: {}", short(&attempted));
    if let Some(pass) = &last_pass {
        println!("last pass:               {} ({})", pass.message, pass.at);
    }
    if let Some(upstream) = &upstream_error {
        println!("upstream: {upstream}");
    }
    if let Some(problem) = &problem {
        println!("cannot look at the state now: {problem}");
    }
    if let Some(error) = &error {
        println!("the attempted revision is invalid; the last applied one keeps running:");
        for line in error.lines() {
            println!("  {line}");
        }
    }
    for s in &servers {
        println!(
            "{:<20} {:<10} {:<9} {}",
            s.name,
            format!("{:?}", s.sync),
            format!("{:?}", s.health),
            s.health_message
        );
        if !s.sync_message.is_empty() {
            println!("{:<20} {}", "", s.sync_message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn jobs(id: Option<i64>, json: bool, follow: bool) -> anyhow::Result<ExitCode> {
    let config = Config::from_env(None)?;
    let db = Db::open(&config.db_path())?;
    let Some(id) = id else {
        let jobs = db.jobs(50)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&jobs)?);
        } else {
            for j in jobs {
                let code = j.exit_code.map(|c| c.to_string()).unwrap_or_default();
                println!(
                    "{:>6}  {:<10} {:<20} {:<10} {:<8} {:<4} {}",
                    j.id, j.kind, j.target, j.state, j.trigger, code, j.queued_at
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let job = db.job(id)?.with_context(|| format!("there is no job {id}"))?;
    if json {
        let lines = db.lines(id, 0)?;
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "job": job, "lines": lines }))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("job {} {} {} ({}, {})", job.id, job.kind, job.target, job.trigger, job.state);
    let mut seen = 0;
    loop {
        for line in db.lines(id, seen)? {
            println!("{} {:<7} {}", line.at, line.stream, line.line);
            seen = line.seq;
        }
        let job = db.job(id)?.with_context(|| format!("job {id} disappeared"))?;
        if !follow || matches!(job.state.as_str(), "succeeded" | "failed" | "cancelled") {
            if follow || job.exit_code.is_some() {
                println!(
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
