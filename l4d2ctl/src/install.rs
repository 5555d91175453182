//! `l4d2ctl install`: the base install through steamcmd, the links srcds needs, the layout of
//! `$ROOT`, and the units.

use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::api::FailureKind;
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, lchown};
use crate::host::Host;
use crate::units;

/// The dedicated server's Steam app.
pub const APP_ID: &str = "222860";

/// Installs or updates everything `start` needs. Safe to run again: steamcmd only fetches what
/// changed, and files already right are left alone.
/// Says what it does through `say`; returns the unit files it wrote.
pub fn install(host: &Host, say: &mut dyn FnMut(String)) -> Result<Vec<PathBuf>, Error> {
    let game = Owner::user(&host.user)?;
    let root = Owner::root();
    ensure_dir(&host.root, 0o755, game)?;
    for dir in ["overlays", "instances", "runtime", "overrides", "workshop"] {
        ensure_dir(&host.root.join(dir), 0o755, root)?;
    }
    // steamcmd runs as the game's user, so the base install belongs to it: overlayfs then lets
    // the game write through to its own upper layer where srcds expects to write.
    ensure_dir(&host.installation(), 0o755, game)?;

    // Since late 2024 an anonymous linux install fails with "Invalid platform" unless a windows
    // pass ran first in the same folder (LinuxGSM #4754).
    for platform in ["windows", "linux"] {
        say(format!("l4d2ctl: steamcmd pass for platform {platform}"));
        steamcmd(host, game, platform)?;
    }
    if !host.installation().join("srcds_run").is_file() {
        return Err(Error::Invalid(format!(
            "steamcmd finished but {} has no srcds_run; see its output above",
            host.installation().display()
        )));
    }
    link_steam_sdk(host, game)?;
    install_units(host, say)
}

/// Writes the unit files again where they differ from what l4d2ctl renders, and says which
/// (through `say`). Returns the files it wrote.
pub fn install_units(host: &Host, say: &mut dyn FnMut(String)) -> Result<Vec<PathBuf>, Error> {
    let written: Vec<PathBuf> = units::install(host)?.into_iter().map(|name| host.unit_dir.join(name)).collect();
    for path in &written {
        say(format!("l4d2ctl: wrote {}", path.display()));
    }
    say(format!(
        "l4d2ctl: units {} in {}",
        if written.is_empty() { "unchanged" } else { "installed" },
        host.unit_dir.display()
    ));
    Ok(written)
}

fn steamcmd(host: &Host, game: Owner, platform: &str) -> Result<(), Error> {
    let install_dir = host.installation();
    let status = Command::new(&host.steamcmd)
        .arg("+@sSteamCmdForcePlatformType")
        .arg(platform)
        .arg("+force_install_dir")
        .arg(&install_dir)
        .args(["+login", "anonymous", "+app_update", APP_ID, "validate", "+quit"])
        .current_dir(&host.root)
        .env("HOME", &host.root)
        .uid(game.uid.as_raw())
        .gid(game.gid.as_raw())
        .stdin(Stdio::null())
        .status()
        .map_err(|e| {
            Error::Invalid(format!("cannot run steamcmd ({}): {e}; set LEFT4ME_STEAMCMD", host.steamcmd.display()))
        })?;
    if !status.success() {
        return Err(Error::Child {
            command: format!("steamcmd ({platform} pass)"),
            code: status.code().unwrap_or(1),
            kind: FailureKind::Transient,
        });
    }
    Ok(())
}

/// srcds loads `~/.steam/sdk32/steamclient.so` (and sdk64); without it the server runs LAN-only.
fn link_steam_sdk(host: &Host, game: Owner) -> Result<(), Error> {
    let steam = host.root.join(".steam");
    ensure_dir(&steam, 0o755, game)?;
    for bits in ["32", "64"] {
        let Some(source) = steamclient_dir(host, bits) else {
            return Err(Error::Invalid(format!(
                "steamcmd left no linux{bits}/steamclient.so where it is expected (under {}); cannot link sdk{bits}",
                host.root.display()
            )));
        };
        let link = steam.join(format!("sdk{bits}"));
        if std::fs::read_link(&link).ok().as_deref() == Some(source.as_path()) {
            continue;
        }
        let _ = std::fs::remove_file(&link);
        symlink(&source, &link).map_err(|e| Error::io(&link, e))?;
        lchown(&link, game)?;
    }
    Ok(())
}

/// Where steamcmd keeps its own linux32/linux64 runtime: Debian's package bootstraps into the
/// user's data folder; a steamcmd unpacked by hand keeps it beside itself.
fn steamclient_dir(host: &Host, bits: &str) -> Option<PathBuf> {
    let beside = which(&host.steamcmd)
        .and_then(|path| std::fs::canonicalize(path).ok())
        .and_then(|path| path.parent().map(Path::to_path_buf));
    [Some(host.root.join(".local/share/Steam/steamcmd")), Some(host.root.join(".steam/steamcmd")), beside]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(format!("linux{bits}")))
        .find(|dir| dir.join("steamclient.so").is_file())
}

fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}
