//! The schedules of the state repo as systemd timers: one `left4me-schedule@<name>.timer` each in
//! the unit folder, firing at the schedule's calendar (`OnCalendar=`, `Persistent=true`), starting
//! the template `left4me-schedule@.service` that `units.rs` installs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use left4me_state::Name;

use crate::api::{InstalledTimer, ScheduleTimer};
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, read_bounded, write_atomic};
use crate::host::Host;
use crate::{systemd, units};

/// Where `systemctl enable` links a timer.
const TIMERS_WANTS: &str = "/etc/systemd/system/timers.target.wants";

/// The longest calendar expression taken, as the state model takes it.
const MAX_CALENDAR: usize = 256;

/// A timer file larger than this is none of l4d2ctl's.
const MAX_TIMER_FILE: u64 = 8 * 1024;

/// The timer unit of a schedule.
pub fn timer_unit(name: &Name) -> String {
    format!("left4me-schedule@{name}.timer")
}

/// The schedule of a timer unit's file name, when it is one of l4d2ctl's.
fn schedule_of(file: &str) -> Option<Name> {
    Name::new(file.strip_prefix("left4me-schedule@")?.strip_suffix(".timer")?).ok()
}

/// A calendar goes into a unit file as it is, written by root: only the characters systemd's
/// calendar syntax uses (`Mon..Fri *-*-* 04:30:00 Europe/Berlin`), so no line break, `\` (which
/// continues a line), `%` (a specifier) or `#` can make it anything but one `OnCalendar=` value.
pub fn check_calendar(name: &Name, calendar: &str) -> Result<(), Error> {
    let fine = |c: char| c.is_ascii_alphanumeric() || " *-:.,/~_+".contains(c);
    let refused = calendar.chars().find(|c| !fine(*c));
    if calendar.trim().is_empty() || calendar.len() > MAX_CALENDAR || refused.is_some() {
        let why = match refused {
            Some(c) => format!("holds {c:?}"),
            None if calendar.trim().is_empty() => "is empty".to_owned(),
            None => format!("has {} bytes, more than {MAX_CALENDAR}", calendar.len()),
        };
        return Err(Error::Invalid(format!(
            "schedule {name}: the calendar {calendar:?} {why}; write systemd's calendar syntax, such as \"*-*-* 06:00:00\""
        )));
    }
    Ok(())
}

/// The timer file of a schedule, as l4d2ctl writes it.
pub fn render(name: &Name, calendar: &str) -> String {
    format!(
        "# Written by `l4d2ctl schedules put` for the schedule {name} of the state repo, which writes it again:\n\
         # change the schedule, not this file.\n\
         \n\
         [Unit]\n\
         Description=left4me schedule {name}\n\
         \n\
         [Timer]\n\
         OnCalendar={calendar}\n\
         # A run missed while the host was off happens once at boot.\n\
         Persistent=true\n\
         AccuracySec=1s\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n"
    )
}

/// The schedules' timers in the unit folder, each read back from its file: no process.
pub fn installed(host: &Host) -> Result<Vec<InstalledTimer>, Error> {
    let mut timers: Vec<InstalledTimer> = timer_files(host)?
        .into_iter()
        .map(|(name, path)| {
            let calendar = read_bounded(&path, MAX_TIMER_FILE).and_then(|bytes| calendar_in(&name, &bytes));
            let enabled = Path::new(TIMERS_WANTS).join(timer_unit(&name)).symlink_metadata().is_ok();
            InstalledTimer { name, calendar, enabled }
        })
        .collect();
    timers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(timers)
}

/// The calendar of a timer file that is exactly what l4d2ctl writes for it.
fn calendar_in(name: &Name, bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let calendar = text.lines().find_map(|line| line.strip_prefix("OnCalendar="))?;
    (render(name, calendar) == text).then(|| calendar.to_owned())
}

/// Every `left4me-schedule@<name>.timer` file of the unit folder.
fn timer_files(host: &Host) -> Result<Vec<(Name, PathBuf)>, Error> {
    let entries = match std::fs::read_dir(&host.unit_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&host.unit_dir, e)),
    };
    Ok(entries
        .flatten()
        .filter_map(|entry| Some((schedule_of(&entry.file_name().to_string_lossy())?, entry.path())))
        .collect())
}

/// Makes the host's timers those of `timers`: new and changed ones written, enabled and
/// (re)started; those not listed stopped, disabled, their stamps cleaned and removed; systemd
/// reloaded once when a file changed. Returns the schedules written and removed.
pub fn put(
    host: &Host,
    timers: &[ScheduleTimer],
    say: &mut dyn FnMut(String),
) -> Result<(Vec<Name>, Vec<Name>), Error> {
    let mut names = BTreeSet::new();
    for timer in timers {
        check_calendar(&timer.name, &timer.calendar)?;
        if !names.insert(&timer.name) {
            return Err(Error::Invalid(format!("schedule {} is listed twice", timer.name)));
        }
    }
    let before = installed(host)?;
    let current = |timer: &ScheduleTimer| {
        before.iter().any(|b| b.name == timer.name && b.calendar.as_deref() == Some(timer.calendar.as_str()))
    };
    let changed: Vec<&ScheduleTimer> = timers.iter().filter(|timer| !current(timer)).collect();
    ask_systemd(&changed)?;
    ensure_dir(&host.unit_dir, 0o755, Owner::root())?;
    let template = units::render(host)?.into_iter().find(|(name, _)| *name == units::SCHEDULE_SERVICE);
    let mut reload = match template {
        Some((name, contents)) => write_atomic(&host.unit_dir.join(name), contents.as_bytes(), 0o644, Owner::root())?,
        None => false,
    };
    let mut written = Vec::new();
    for timer in &changed {
        let path = host.unit_dir.join(timer_unit(&timer.name));
        reload |= write_atomic(&path, render(&timer.name, &timer.calendar).as_bytes(), 0o644, Owner::root())?;
        say(format!("schedule {}: timer {} at {}", timer.name, path.display(), timer.calendar));
        written.push(timer.name.clone());
    }
    let removed = remove_unlisted(host, &before, &names, say)?;
    reload |= !removed.is_empty();
    if reload {
        systemd::daemon_reload()?;
    }
    start(timers, &before, &written)?;
    say(format!("schedules: {} timers, {} written, {} removed", timers.len(), written.len(), removed.len()));
    Ok((written, removed))
}

/// systemd's own reading of the calendars about to be written, in one `systemd-analyze calendar`:
/// a calendar it cannot read would leave its timer with nothing to fire on, said only in the
/// journal.
fn ask_systemd(timers: &[&ScheduleTimer]) -> Result<(), Error> {
    if timers.is_empty() {
        return Ok(());
    }
    let mut command = Command::new("systemd-analyze");
    command.args(["calendar", "--"]).args(timers.iter().map(|timer| &timer.calendar));
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| Error::Invalid(format!("cannot run systemd-analyze to check the calendars: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr).trim().replace('\n', "; ");
    let listed = timers.iter().map(|timer| format!("{} ({:?})", timer.name, timer.calendar)).collect::<Vec<_>>();
    Err(Error::Invalid(format!(
        "systemd cannot read the calendar of a schedule among {}: {said}; nothing was written",
        listed.join(", ")
    )))
}

/// Stops, disables and removes the timers no schedule lists any more. Their stamp (the last run
/// `Persistent=` keeps) is cleaned too, so a schedule made again later with the same name does
/// not take the old one's last run for a missed run of its own.
fn remove_unlisted(
    host: &Host,
    before: &[InstalledTimer],
    listed: &BTreeSet<&Name>,
    say: &mut dyn FnMut(String),
) -> Result<Vec<Name>, Error> {
    let mut removed = Vec::new();
    for timer in before.iter().filter(|timer| !listed.contains(&timer.name)) {
        let unit = timer_unit(&timer.name);
        systemd::disable_now(&unit)?;
        // Only a stopped unit can be cleaned; one that has no stamp yet has nothing to clean.
        let _ = systemd::systemctl(&["clean", "--quiet", "--what=state", "--", &unit]);
        let path = host.unit_dir.join(&unit);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        say(format!("schedule {}: timer stopped and removed", timer.name));
        removed.push(timer.name.clone());
    }
    Ok(removed)
}

/// Enables and starts the timers written or not enabled, in one `systemctl enable --now`, and
/// restarts those whose calendar changed (a running timer keeps the time it computed).
fn start(timers: &[ScheduleTimer], before: &[InstalledTimer], written: &[Name]) -> Result<(), Error> {
    let was = |name: &Name| before.iter().find(|timer| timer.name == *name);
    let enable: Vec<String> = timers
        .iter()
        .filter(|timer| written.contains(&timer.name) || was(&timer.name).is_none_or(|was| !was.enabled))
        .map(|timer| timer_unit(&timer.name))
        .collect();
    if !enable.is_empty() {
        let mut args = vec!["enable", "--now", "--no-reload", "--quiet", "--"];
        args.extend(enable.iter().map(String::as_str));
        systemd::systemctl(&args)?;
    }
    let restart: Vec<String> = written.iter().filter(|name| was(name).is_some()).map(timer_unit).collect();
    if !restart.is_empty() {
        let mut args = vec!["restart", "--quiet", "--"];
        args.extend(restart.iter().map(String::as_str));
        systemd::systemctl(&args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::new(text).unwrap()
    }

    #[test]
    fn a_calendar_cannot_add_a_line_to_its_timer() {
        let nightly = name("nightly");
        for fine in [
            "*-*-* 06:00:00",
            "Mon..Fri 04:30",
            "daily",
            "2026-12-01 17:05:30 UTC",
            "*:0/15",
            "Sat *-*-1..7 18:00:00 Europe/Berlin",
        ] {
            assert!(check_calendar(&nightly, fine).is_ok(), "{fine}");
        }
        for refused in
            ["daily\nExecStart=/bin/sh", "daily\\", "daily\r", "%H:00", "daily # x", "", "  ", &"1".repeat(257)]
        {
            let error = check_calendar(&nightly, refused).expect_err(refused).to_string();
            assert!(error.starts_with("schedule nightly: the calendar"), "{error}");
        }
    }

    #[test]
    fn a_timer_reads_back_only_as_l4d2ctl_writes_it() {
        let nightly = name("nightly");
        let file = render(&nightly, "*-*-* 06:00:00");
        assert!(file.contains("\nOnCalendar=*-*-* 06:00:00\n"), "{file}");
        assert!(file.contains("\nPersistent=true\nAccuracySec=1s\n"), "{file}");
        assert_eq!(calendar_in(&nightly, file.as_bytes()).as_deref(), Some("*-*-* 06:00:00"));
        let edited = file.replace("AccuracySec=1s", "AccuracySec=1h");
        assert_eq!(calendar_in(&nightly, edited.as_bytes()), None, "changed by hand");
        assert_eq!(calendar_in(&name("other"), file.as_bytes()), None, "another schedule's file");
        assert_eq!(calendar_in(&nightly, &file.as_bytes()[..40]), None, "cut short");
        assert_eq!(schedule_of("left4me-schedule@nightly.timer"), Some(nightly));
        assert_eq!(schedule_of("left4me-schedule@.service"), None);
        assert_eq!(schedule_of("left4me-schedule@Bad Name.timer"), None);
    }
}
