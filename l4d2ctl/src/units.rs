//! The unit files l4d2ctl owns, rendered from templates with this host's paths.

use std::path::Path;

use minijinja::{Environment, context};

use crate::api::{Problem, Remedy};
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, write_atomic};
use crate::host::Host;
use crate::systemd;

/// (file name, template) of every unit l4d2ctl installs.
const UNITS: &[(&str, &str)] = &[
    ("left4me-server@.service", include_str!("../templates/left4me-server@.service")),
    ("left4me-game.slice", include_str!("../templates/left4me-game.slice")),
    ("left4me-schedule@.service", include_str!("../templates/left4me-schedule@.service")),
    ("left4me-reconciler.service", include_str!("../templates/left4me-reconciler.service")),
    ("left4me-web.service", include_str!("../templates/left4me-web.service")),
    ("left4me-live.service", include_str!("../templates/left4me-live.service")),
    ("left4me-live.socket", include_str!("../templates/left4me-live.socket")),
];

/// Every unit as this host needs it: (file name, contents).
pub fn render(host: &Host) -> Result<Vec<(&'static str, String)>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are a valid syntax"),
    );
    let header = "Installed by `l4d2ctl install`, which rewrites it: change the template, not this file.";
    let values = context! {
        header,
        root => host.root.display().to_string(),
        user => host.user.clone(),
        l4d2ctl => host.l4d2ctl.display().to_string(),
        // The binaries are installed side by side.
        left4me => host.l4d2ctl.with_file_name("left4me").display().to_string(),
        left4me_web => host.l4d2ctl.with_file_name("left4me-web").display().to_string(),
        live_port => host.live_port,
    };
    UNITS
        .iter()
        .map(|(name, template)| {
            let rendered = env
                .render_str(template, &values)
                .map_err(|e| Error::Invalid(format!("cannot render the unit {name}: {e}")))?;
            Ok((*name, rendered))
        })
        .collect()
}

/// The units a game server needs to start and a schedule to run as left4me means them to: what a
/// look at the host compares with what l4d2ctl renders.
pub const GAME_UNITS: &[&str] = &["left4me-server@.service", "left4me-game.slice", SCHEDULE_SERVICE];

/// The template every schedule's timer starts (`left4me-schedule@<name>.service`).
pub const SCHEDULE_SERVICE: &str = "left4me-schedule@.service";

/// Writes the units into the unit folder and reloads systemd when one changed. Returns the
/// files it wrote.
pub fn install(host: &Host) -> Result<Vec<&'static str>, Error> {
    check_path(&host.root)?;
    check_path(&host.l4d2ctl)?;
    ensure_dir(&host.unit_dir, 0o755, Owner::root())?;
    let mut written = Vec::new();
    for (name, contents) in render(host)? {
        if write_atomic(&host.unit_dir.join(name), contents.as_bytes(), 0o644, Owner::root())? {
            written.push(name);
        }
    }
    if !written.is_empty() {
        systemd::daemon_reload()?;
    }
    Ok(written)
}

/// The game's unit files in the unit folder that differ from what l4d2ctl renders (changed by
/// hand) or are missing; `install --units-only` writes them again.
pub fn drift(host: &Host) -> Result<Vec<Problem>, Error> {
    let mut problems = Vec::new();
    for (name, contents) in render(host)?.into_iter().filter(|(name, _)| GAME_UNITS.contains(name)) {
        let path = host.unit_dir.join(name);
        match std::fs::read(&path) {
            Ok(on_disk) if on_disk == contents.as_bytes() => {}
            Ok(_) => problems.push(Problem::new(&path, "differs from what l4d2ctl renders", Remedy::InstallUnits)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(Problem::new(&path, "is missing", Remedy::InstallUnits))
            }
            Err(e) => problems.push(Problem::new(&path, e, Remedy::InstallUnits)),
        }
    }
    Ok(problems)
}

/// A path written into a unit must not need quoting: systemd would split it or read specifiers.
fn check_path(path: &Path) -> Result<(), Error> {
    let text = path.display().to_string();
    if !path.is_absolute()
        || text.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '%' | '"' | '\'' | '\\'))
    {
        return Err(Error::Invalid(format!(
            "{text} cannot go into a unit file: use an absolute path without spaces, quotes or %"
        )));
    }
    Ok(())
}
