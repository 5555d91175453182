//! systemctl and journalctl, as child processes.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::api::FailureKind;
use crate::error::Error;

/// Runs `systemctl <args>`. On failure its stderr is passed through and its exit code kept.
pub fn systemctl(args: &[&str]) -> Result<String, Error> {
    let output = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Invalid(format!("cannot run systemctl: {e}")))?;
    if !output.status.success() {
        return Err(Error::child(format!("systemctl {}", args.join(" ")), output.status, FailureKind::Transient));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn daemon_reload() -> Result<(), Error> {
    systemctl(&["daemon-reload"]).map(drop)
}

/// Enables and starts a unit; the template is loaded already, so no reload is needed (a reload
/// costs more than the start itself).
pub fn enable_now(units: &[String]) -> Vec<(String, String)> {
    if together("enable", units) {
        return Vec::new();
    }
    // One of them failed, or several: each on its own, so each gets its own answer. A start
    // asked for is a new attempt: forget an earlier crash loop's start limit first. (Only now:
    // it costs a process per unit.)
    let mut failed = Vec::new();
    for unit in units {
        let _ = Command::new("systemctl").args(["reset-failed", "--quiet", unit]).stderr(Stdio::null()).status();
        // The journal's clock is in seconds: a second back, so this attempt's lines are in.
        let attempt = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
        if let Err(error) = systemctl(&["enable", "--now", "--no-reload", "--quiet", unit]) {
            failed.push((unit.clone(), why_failed(unit, attempt).unwrap_or_else(|| error.to_string())));
        }
    }
    failed
}

pub fn disable_now(unit: &str) -> Result<(), Error> {
    systemctl(&["disable", "--now", "--no-reload", "--quiet", unit]).map(drop)
}

/// Stops and disables units together, one transaction; only when that fails is each tried on its
/// own, so each gets its own answer. Returns those that failed, with why.
pub fn disable_now_all(units: &[String]) -> Vec<(String, String)> {
    if together("disable", units) {
        return Vec::new();
    }
    units.iter().filter_map(|unit| disable_now(unit).err().map(|error| (unit.clone(), error.to_string()))).collect()
}

/// `systemctl <verb> --now --no-reload` of all the units, one transaction: whether it worked.
fn together(verb: &str, units: &[String]) -> bool {
    let mut args = vec![verb, "--now", "--no-reload", "--quiet"];
    args.extend(units.iter().map(String::as_str));
    Command::new("systemctl").args(&args).stdin(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Clears a unit's failed state. Returns whether it was failed.
pub fn reset_failed(unit: &str) -> Result<bool, Error> {
    if systemctl(&["show", "--property", "ActiveState", "--value", "--", unit])?.trim() != "failed" {
        return Ok(false);
    }
    systemctl(&["reset-failed", "--quiet", "--", unit]).map(|_| true)
}

/// Whether `unit` has an entry in the journal; None when journalctl cannot tell (not there, or
/// the journal unreadable to this user: it said so on stderr).
pub fn has_journal_entry(unit: &str) -> Option<bool> {
    let output = Command::new("journalctl")
        .args(["--unit", unit, "--lines", "1", "--quiet", "--output", "cat", "--no-pager"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    (output.status.success() && output.stderr.is_empty()).then_some(!output.stdout.is_empty())
}

/// Why a unit's start just failed, in the words of whoever failed: l4d2ctl's own error from its
/// `ExecStart=` or `ExecStartPost=` (`l4d2ctl: cannot mount …`), else systemd's account of the
/// step that failed — read from the journal since `since` (journald may take a moment to store
/// them, so it is asked a few times).
pub fn why_failed(unit: &str, since: std::time::SystemTime) -> Option<String> {
    let secs = left4me_state::clock::unix_seconds(since);
    let since = format!("@{secs}");
    for _ in 0..10 {
        let output = Command::new("journalctl")
            .args(["--unit", unit, "--since", &since, "--output", "cat", "--no-pager", "--quiet"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let ours: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("l4d2ctl: ")).collect();
        let systemds: Vec<&str> =
            text.lines().filter(|line| line.contains("Failed at step") || line.contains("Failed to set up")).collect();
        if let Some(why) = ours.last().or(systemds.last()) {
            return Some((*why).to_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

/// The state of the units matching `pattern` that systemd has loaded, by unit name, from one
/// `systemctl list-units`: `LoadState`, `ActiveState` and `SubState` only — one call to systemd,
/// where [`show_loaded`] asks for each unit's properties.
pub fn list_loaded(pattern: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>, Error> {
    let text = systemctl(&["list-units", "--all", "--plain", "--no-legend", "--full", "--no-pager", "--", pattern])?;
    Ok(text
        .lines()
        .filter_map(|line| {
            // UNIT LOAD ACTIVE SUB DESCRIPTION…; a bullet in front marks a failed unit on a terminal.
            let mut fields = line.split_whitespace().skip_while(|field| *field == "●");
            let (unit, load, active, sub) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            let props = [("LoadState", load), ("ActiveState", active), ("SubState", sub)]
                .map(|(key, value)| (key.to_owned(), value.to_owned()));
            (load == "loaded").then(|| (unit.to_owned(), BTreeMap::from(props)))
        })
        .collect())
}

/// Properties of the units matching `pattern` that systemd has loaded, by unit name, from one
/// `systemctl show`. A unit not loaded is inactive: systemd drops stopped units nothing refers
/// to, and loading each again only to read its state costs more than the rest of a status.
pub fn show_loaded(pattern: &str, properties: &[&str]) -> Result<BTreeMap<String, BTreeMap<String, String>>, Error> {
    let property_list = ["Id", "LoadState"].iter().chain(properties).copied().collect::<Vec<_>>().join(",");
    let text = systemctl(&["show", "--no-pager", "--timestamp=unix", "--property", &property_list, "--", pattern])?;
    Ok(text
        .split("\n\n")
        .map(|block| -> BTreeMap<String, String> {
            block.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
        })
        .filter(|props| props.get("LoadState").is_some_and(|state| state == "loaded"))
        .filter_map(|props| Some((props.get("Id")?.clone(), props)))
        .collect())
}
