//! Override markers: a write made by hand tells the reconciler to leave that server alone until
//! `l4d2ctl release` (DESIGN.md §6).

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use left4me_state::Name;

use crate::api::Override;
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, write_atomic};
use crate::host::Host;

pub fn mark(host: &Host, name: &Name, what: &str) -> Result<(), Error> {
    let marker = Override { who: operator(), when: rfc3339(SystemTime::now()), what: what.to_owned() };
    ensure_dir(&host.overrides(), 0o755, Owner::root())?;
    let mut json = serde_json::to_string_pretty(&marker).expect("a marker always serializes");
    json.push('\n');
    write_atomic(&host.override_marker(name), json.as_bytes(), 0o644, Owner::root()).map(drop)
}

pub fn read(host: &Host, name: &Name) -> Result<Option<Override>, Error> {
    let path = host.override_marker(name);
    load(&path).map_err(|cause| Error::Invalid(format!("{}: {cause}", path.display())))
}

/// The marker at `path`, None when there is none, or why the one there cannot be used.
pub fn load(path: &Path) -> Result<Option<Override>, String> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Stands for a marker that is there but cannot be read: someone changed the server by hand
/// (a marker is written before the change), so it is respected as any other.
pub fn unreadable(path: &Path) -> Override {
    let when = fs::metadata(path).and_then(|m| m.modified()).map(rfc3339).unwrap_or_else(|_| "an unknown time".into());
    Override { who: "someone".into(), when, what: "a change whose marker cannot be read".into() }
}

/// The servers that have an override marker, by name.
pub fn names(host: &Host) -> Result<Vec<Name>, Error> {
    let mut names: Vec<Name> = crate::fsutil::entries(&host.overrides())?
        .into_iter()
        .filter_map(|entry| entry.file_name().to_string_lossy().strip_suffix(".json").map(Name::new)?.ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Hands the server back to the reconciler. True when there was a marker.
pub fn release(host: &Host, name: &Name) -> Result<bool, Error> {
    let path = host.override_marker(name);
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The person behind a command run through sudo, else the user running it.
fn operator() -> String {
    for variable in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(variable)
            && !name.is_empty()
        {
            return name;
        }
    }
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| format!("uid {uid}"))
}

/// `2026-11-26T10:15:00Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// `2026-11-26T10:15:00Z` (as [`rfc3339`] writes it) back to Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let mut time = time.splitn(3, ':').map(|p| p.split('.').next().and_then(|p| p.parse::<i64>().ok()));
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_691_723)), "2026-11-26T11:15:23Z");
        for secs in [0, 951_782_400, 1_795_691_723, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(UNIX_EPOCH + Duration::from_secs(secs))), Some(secs));
        }
        assert_eq!(parse_rfc3339("2026-11-26T11:15:23.250Z"), Some(1_795_691_723));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
