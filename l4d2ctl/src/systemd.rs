//! systemctl and journalctl, as child processes.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::Error;

/// Runs `systemctl <args>`. On failure its stderr is passed through and its exit code kept.
pub fn systemctl(args: &[&str]) -> Result<String, Error> {
    let output = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Invalid(format!("cannot run systemctl: {e}")))?;
    if !output.status.success() {
        return Err(Error::Child {
            command: format!("systemctl {}", args.join(" ")),
            code: output.status.code().unwrap_or(1),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn daemon_reload() -> Result<(), Error> {
    systemctl(&["daemon-reload"]).map(drop)
}

/// Enables and starts a unit; the template is loaded already, so no reload is needed (a reload
/// costs more than the start itself).
pub fn enable_now(units: &[String]) -> Vec<(String, String)> {
    let mut enable = vec!["enable", "--now", "--no-reload", "--quiet"];
    enable.extend(units.iter().map(String::as_str));
    let together = Command::new("systemctl").args(&enable).stdin(Stdio::null()).stderr(Stdio::null()).status();
    if together.is_ok_and(|s| s.success()) {
        return Vec::new();
    }
    // One of them failed, or several: each on its own, so each gets its own answer. A start
    // asked for is a new attempt: forget an earlier crash loop's start limit first. (Only now:
    // it costs a process per unit.)
    let mut failed = Vec::new();
    for unit in units {
        let _ = Command::new("systemctl").args(["reset-failed", "--quiet", unit]).stderr(Stdio::null()).status();
        if let Err(error) = systemctl(&["enable", "--now", "--no-reload", "--quiet", unit]) {
            failed.push((unit.clone(), error.to_string()));
        }
    }
    failed
}

pub fn disable_now(unit: &str) -> Result<(), Error> {
    systemctl(&["disable", "--now", "--no-reload", "--quiet", unit]).map(drop)
}

/// Properties of many units from one `systemctl show`, in the order asked.
pub fn show(units: &[String], properties: &[&str]) -> Result<Vec<BTreeMap<String, String>>, Error> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let property_list = properties.join(",");
    let mut args = vec!["show", "--no-pager", "--timestamp=unix", "--property", &property_list, "--"];
    args.extend(units.iter().map(String::as_str));
    let text = systemctl(&args)?;
    let blocks: Vec<BTreeMap<String, String>> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
        })
        .collect();
    if blocks.len() != units.len() {
        return Err(Error::Invalid(format!("systemctl show answered for {} of {} units", blocks.len(), units.len())));
    }
    Ok(blocks)
}

/// The units matching `pattern` that systemd has loaded, with their active and sub state. A unit
/// not loaded is inactive: systemd drops stopped units nothing refers to, and loading each again
/// only to read its state costs more than the rest of a status together.
pub fn loaded_units(pattern: &str) -> Result<BTreeMap<String, (String, String)>, Error> {
    let text = systemctl(&["list-units", "--all", "--plain", "--no-legend", "--no-pager", "--", pattern])?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (unit, load, active, sub) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            (load == "loaded").then(|| (unit.to_owned(), (active.to_owned(), sub.to_owned())))
        })
        .collect())
}
