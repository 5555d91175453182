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
        return Err(Error::child(format!("systemctl {}", args.join(" ")), output.status));
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
