//! Override markers: a write made by hand tells the reconciler to leave that server alone until
//! `l4d2ctl release` (docs/DESIGN.md §6).

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use left4me_state::Name;
use left4me_state::clock::rfc3339;

use crate::api::Override;
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, write_atomic};
use crate::host::Host;

/// Marks a write by the person running l4d2ctl.
pub fn mark(host: &Host, name: &Name, what: &str) -> Result<(), Error> {
    mark_as(host, name, &operator(), what)
}

/// Marks a write made for `who` (a schedule: `schedule <name>`).
pub fn mark_as(host: &Host, name: &Name, who: &str, what: &str) -> Result<(), Error> {
    let marker = Override { who: who.to_owned(), when: rfc3339(SystemTime::now()), what: what.to_owned() };
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
pub fn operator() -> String {
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
