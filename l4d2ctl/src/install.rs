//! `l4d2ctl install`: the game's builds through steamcmd (each a folder of its own, see
//! [`builds`]), the links srcds needs, the layout of `$ROOT`, and the units.

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::api::FailureKind;
use crate::builds::{self, Published, Staging};
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, lchown};
use crate::host::Host;
use crate::steam::{self, BranchInfo, SteamError};
use crate::{units, vdf};

/// The dedicated server's Steam app.
pub const APP_ID: &str = steam::APP_ID;

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The unit files it wrote.
    pub files: Vec<PathBuf>,
    /// The branch's build, now installed.
    pub build: u64,
    /// False when that build was on the host already.
    pub downloaded: bool,
}

/// Installs the build `branch` publishes as `builds/<id>` unless it is there, and everything
/// `start` needs. A base install from before builds is adopted first. A failure changes no
/// installed build and no running server.
/// Says what it does through `say`.
pub fn install(host: &Host, branch: &str, say: &mut dyn FnMut(String)) -> Result<Installed, Error> {
    check_branch(branch)?;
    let game = Owner::user(&host.user)?;
    ensure_dir(&host.root, 0o755, game)?;
    for dir in ["overlays", "instances", "runtime", "overrides", "workshop", "builds"] {
        ensure_dir(&host.root.join(dir), 0o755, Owner::root())?;
    }
    // `left4me live`'s database: the one folder its unit may write, the game user's (the web
    // app reads it as that user).
    ensure_dir(&host.root.join(crate::host::LIVE_DIR), 0o750, game)?;
    let lock = builds::lock(host)?;
    builds::remove_leftovers(host, &lock)?;
    builds::adopt(host, &lock, say)?;
    let info = ask_steam(host, game, branch, say)?;
    let id = info.build_id;
    let downloaded = match builds::is_installed(host, id) {
        true => {
            say(format!(
                "l4d2ctl: build {id} is installed already ({}); nothing to download",
                host.build(id).display()
            ));
            false
        }
        false => {
            check_space(host, id, info.download_bytes)?;
            install_build(host, game, branch, id, say)?;
            true
        }
    };
    drop(lock);
    link_steam_sdk(host, game)?;
    let files = install_units(host, say)?;
    Ok(Installed { files, build: id, downloaded })
}

/// Asks Steam which build `branch` publishes now and records it (`builds/published.json`).
pub fn check(host: &Host, branch: &str, say: &mut dyn FnMut(String)) -> Result<Published, Error> {
    check_branch(branch)?;
    let game = Owner::user(&host.user)?;
    let _lock = builds::lock(host)?;
    ask_steam(host, game, branch, say)?;
    builds::published(host).ok_or_else(|| Error::Invalid("the published build was written but cannot be read".into()))
}

/// A branch is a word of Steam's: it becomes one argv word of steamcmd, never a command.
fn check_branch(branch: &str) -> Result<(), Error> {
    let fine = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if branch.is_empty() || branch.len() > 64 || !branch.chars().all(fine) || branch.starts_with(['-', '.']) {
        return Err(Error::Invalid(format!(
            "{branch:?} is not a Steam branch name (letters, digits, '.', '_' and '-', at most 64)"
        )));
    }
    Ok(())
}

/// steamcmd's `app_info_print` of the app, asked afresh: its cached `appinfo.vdf` is removed first,
/// since a stale cache answers an old build. Records what it says in `published.json`.
fn ask_steam(host: &Host, game: Owner, branch: &str, say: &mut dyn FnMut(String)) -> Result<BranchInfo, Error> {
    let cache = host.root.join(".local/share/Steam/appcache/appinfo.vdf");
    match std::fs::remove_file(&cache) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&cache, e)),
        _ => {}
    }
    say(format!("l4d2ctl: asking Steam which build branch {branch} publishes"));
    let mut child = Command::new(&host.steamcmd)
        .args(["+login", "anonymous", "+app_info_update", "1", "+app_info_print", APP_ID, "+quit"])
        .current_dir(&host.root)
        .env("HOME", &host.root)
        .uid(game.uid.as_raw())
        .gid(game.gid.as_raw())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| cannot_run(host, e))?;
    let mut text = Vec::new();
    let read = child.stdout.take().map(|out| out.take(vdf::MAX_INPUT as u64 + 1).read_to_end(&mut text));
    if text.len() > vdf::MAX_INPUT {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| Error::io(&host.steamcmd, e))?;
    if let Some(Err(e)) = read {
        return Err(Error::io("steamcmd's output", e));
    }
    if !status.success() {
        return Err(Error::child("steamcmd (app_info_print)", status, FailureKind::Transient));
    }
    let info = steam::branch_info(&String::from_utf8_lossy(&text), branch).map_err(|e| match e {
        SteamError::NoBranch { .. } => Error::Invalid(e.to_string()),
        other => Error::NotNow(format!("{other}; Steam may answer in full when asked again")),
    })?;
    let checked_at = left4me_state::clock::rfc3339(std::time::SystemTime::now());
    builds::write_published(host, &Published { branch: branch.to_owned(), build: info.build_id, checked_at })?;
    say(format!(
        "l4d2ctl: branch {branch} publishes build {} ({} to download)",
        info.build_id,
        size(info.download_bytes)
    ));
    Ok(info)
}

fn cannot_run(host: &Host, e: std::io::Error) -> Error {
    Error::Invalid(format!("cannot run steamcmd ({}): {e}; set LEFT4ME_STEAMCMD", host.steamcmd.display()))
}

fn size(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Refuses an install the file system cannot hold: steamcmd would fill it and fail half-way.
fn check_space(host: &Host, id: u64, needed: u64) -> Result<(), Error> {
    let stat = nix::sys::statvfs::statvfs(&host.root).map_err(|e| Error::io(&host.root, e.into()))?;
    #[allow(clippy::unnecessary_cast, reason = "the field types differ between targets")]
    let free = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
    if free < needed {
        return Err(Error::NotNow(format!(
            "not enough free space for build {id}: steamcmd says it downloads {needed} bytes ({}), and {} has              {free} bytes ({}) free; free space (`l4d2ctl game remove <build>` removes a build no server stacks)              and run `l4d2ctl install` again",
            size(needed),
            host.root.display(),
            size(free)
        )));
    }
    Ok(())
}

/// Makes `builds/<id>` in a staging folder: over the newest build as an overlay whose upper takes
/// what steamcmd changes, then flattened into a tree of its own; on a host with no build yet, in
/// a plain folder. Checked complete and of build `id`, synced, then renamed in.
fn install_build(host: &Host, game: Owner, branch: &str, id: u64, say: &mut dyn FnMut(String)) -> Result<(), Error> {
    let staging = Staging::new(host, id)?;
    let tree = staging.tree();
    match builds::installed(host)?.last().copied() {
        Some(base) => {
            let over = Over::new(&staging.dir, host.build(base), game)?;
            say(format!("l4d2ctl: installing build {id} over build {base} in {}", staging.dir.display()));
            steamcmd_passes(host, game, branch, &over.merged, Some(&over))?;
            // steamcmd is done with the upper: closed to the game's user from here (root's alone),
            // and read by descriptors that follow no symlink it may have left or planted.
            ensure_dir(&staging.dir, 0o700, Owner::root())?;
            builds::flatten(Some(&over.lower), Some(&over.upper), &tree)?;
        }
        None => {
            ensure_dir(&tree, 0o755, game)?;
            say(format!("l4d2ctl: installing build {id} in {}", staging.dir.display()));
            steamcmd_passes(host, game, branch, &tree, None)?;
        }
    }
    let again = "nothing was installed; run `l4d2ctl install` again";
    match builds::manifest(&tree) {
        Ok(build) if build.complete && build.build_id == id => {}
        Ok(build) if build.build_id == id => {
            return Err(Error::NotNow(format!(
                "steamcmd ended, but its manifest of build {id} says it is not complete; {again}"
            )));
        }
        Ok(build) => {
            return Err(Error::NotNow(format!(
                "steamcmd installed build {}, not build {id}, which branch {branch} published a moment before; {again}",
                build.build_id
            )));
        }
        Err(cause) => return Err(Error::NotNow(format!("steamcmd ended, but {cause}; {again}"))),
    }
    if !tree.join("srcds_run").is_file() {
        return Err(Error::Invalid(format!("steamcmd finished but build {id} has no srcds_run; see its output above")));
    }
    staging.finish(id)?;
    say(format!("l4d2ctl: installed build {id} in {}", host.build(id).display()));
    Ok(())
}

fn steamcmd_passes(host: &Host, game: Owner, branch: &str, dir: &Path, over: Option<&Over>) -> Result<(), Error> {
    // Since late 2024 an anonymous linux install fails with "Invalid platform" unless a windows
    // pass ran first in the same folder (LinuxGSM #4754).
    for platform in ["windows", "linux"] {
        steamcmd(host, game, platform, branch, dir, over)?;
    }
    Ok(())
}

/// The overlay steamcmd installs a new build through: the newest build below, read-only as
/// every lower layer is, and an upper that takes each file steamcmd writes, whole.
struct Over {
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
}

impl Over {
    fn new(staging: &Path, lower: PathBuf, game: Owner) -> Result<Over, Error> {
        let over =
            Over { lower, upper: staging.join("upper"), work: staging.join("work"), merged: staging.join("merged") };
        ensure_dir(&over.upper, 0o755, game)?;
        ensure_dir(&over.work, 0o700, Owner::root())?;
        ensure_dir(&over.merged, 0o755, game)?;
        Ok(over)
    }

    /// The mount's options. `redirect_dir=off`, `metacopy=off`, `index=off` keep the upper a plain
    /// delta that [`builds::flatten`] reads: a changed file is there whole (no metadata-only
    /// copy-up pointing at the lower's data), a renamed folder is there in full (the rename fails
    /// with EXDEV and the program copies, so no redirect points into the lower), and no index of
    /// hard-link origins is kept.
    fn options(&self) -> Result<CString, Error> {
        for dir in [&self.lower, &self.upper, &self.work] {
            if dir.as_os_str().as_bytes().iter().any(|b| b",:\\".contains(b)) {
                return Err(Error::Invalid(format!(
                    "{} has a ',', ':' or '\\', which overlayfs cannot take",
                    dir.display()
                )));
            }
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
            self.lower.display(),
            self.upper.display(),
            self.work.display()
        );
        CString::new(options).map_err(|_| Error::Invalid("an overlay path holds a NUL byte".into()))
    }
}

/// One steamcmd pass of `app_update`, as the game's user, into `dir` — through `over` when given:
/// the child mounts it in a mount namespace of its own before it becomes the game's user, so the
/// mount lives exactly as long as steamcmd and no install, however it dies, leaves one behind.
fn steamcmd(
    host: &Host,
    game: Owner,
    platform: &str,
    branch: &str,
    dir: &Path,
    over: Option<&Over>,
) -> Result<(), Error> {
    let mut command = Command::new(&host.steamcmd);
    command.arg("+@sSteamCmdForcePlatformType").arg(platform).arg("+force_install_dir").arg(dir);
    command.args(["+login", "anonymous", "+app_update", APP_ID]);
    if branch != "public" {
        command.args(["-beta", branch]);
    }
    command.args(["validate", "+quit"]).current_dir(&host.root).env("HOME", &host.root).stdin(Stdio::null());
    match over {
        None => {
            command.uid(game.uid.as_raw()).gid(game.gid.as_raw());
        }
        Some(over) => {
            let options = over.options()?;
            let merged = CString::new(over.merged.as_os_str().as_bytes())
                .map_err(|_| Error::Invalid("an overlay path holds a NUL byte".into()))?;
            // SAFETY: between fork and exec the closure makes system calls only (unshare, mount,
            // setgroups, setgid, setuid) on strings made before the fork, and allocates nothing.
            unsafe {
                command.pre_exec(move || enter_overlay(&merged, &options, game));
            }
        }
    }
    let status = command.status().map_err(|e| cannot_run(host, e))?;
    if !status.success() {
        return Err(Error::child(format!("steamcmd ({platform} pass)"), status, FailureKind::Transient));
    }
    Ok(())
}

/// In the child, before exec: a mount namespace of its own (nothing propagates back), the
/// overlay on `merged`, then the game's user.
fn enter_overlay(merged: &CStr, options: &CStr, game: Owner) -> std::io::Result<()> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    mount(None::<&CStr>, c"/", None::<&CStr>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&CStr>)?;
    mount(Some(c"overlay"), merged, Some(c"overlay"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(options))?;
    nix::unistd::setgroups(&[])?;
    nix::unistd::setgid(game.gid)?;
    nix::unistd::setuid(game.uid)?;
    Ok(())
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
    for name in crate::mount::clear_host_trees(host)? {
        say(format!("l4d2ctl: unmounted {name}'s tree, left in the host's mount namespace from before"));
    }
    Ok(written)
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
