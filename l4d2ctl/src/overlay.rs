//! Materialised overlays: `$ROOT/overlays/<name>/`, written from a tar the reconciler makes from a
//! validated revision, with the digest of what they hold kept beside them.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::Flock;

use left4me_state::{Digest, Name};

use crate::api::{FailureKind, FetchItem, MaterialisedOverlay, parse_digest};
use crate::api::{Problem, Remedy};
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, hand_over, lchown, remove_tree, write_atomic};
use crate::host::Host;

fn digests(host: &Host) -> std::path::PathBuf {
    host.overlays().join(".digests")
}

/// The digest recorded for an overlay written by the reconciler; None for one put there by hand.
pub fn digest(host: &Host, name: &Name) -> Result<Option<Digest>, Error> {
    let path = digests(host).join(name.as_str());
    match fs::read_to_string(&path) {
        Ok(text) => parse_digest(text.trim()).map(Some).map_err(|e| Error::Invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Every materialised overlay with a known digest. A digest file that cannot be read leaves its
/// overlay out, as one whose digest is unknown (the reconciler writes it again), with the problem.
pub fn list(host: &Host) -> Result<(Vec<MaterialisedOverlay>, Vec<Problem>), Error> {
    let dir = digests(host);
    let entries = crate::fsutil::entries(&dir)?;
    let mut all = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let Ok(name) = Name::new(entry.file_name().to_string_lossy().into_owned()) else { continue };
        if !host.overlay(&name).is_dir() {
            continue;
        }
        match fs::read_to_string(entry.path()) {
            Ok(text) => match parse_digest(text.trim()) {
                Ok(digest) => all.push(MaterialisedOverlay { name, digest }),
                Err(e) => problems.push(Problem::new(entry.path(), e, Remedy::WriteOverlay)),
            },
            Err(e) => problems.extend(Problem::unreadable(&entry.path(), &e, Remedy::WriteOverlay)),
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((all, problems))
}

/// Replaces the overlay `name` with the tree in the tar `input`: unpacked into a staging folder,
/// checked, then swapped in by rename. The folder it replaces is kept aside (`.old-<name>-<n>`):
/// servers that run on it keep their tree until they restart.
pub fn put(host: &Host, name: &Name, digest: &Digest, input: impl Read) -> Result<(), Error> {
    let game = Owner::user(&host.user)?;
    let writing = Writing::begin(host, name, || ())?;
    unpack(&writing.tree(), input, game)?;
    writing.swap_in(digest)
}

/// Builds the overlay `name` by running `script` (a script overlay's build.sh) with bash in a
/// transient systemd unit, `left4me-build-<name>.service`, as a user of its own (systemd's
/// `DynamicUser=`): it sees of `$ROOT` only the base install (read-only) and its staging folder,
/// which becomes the tree and is given to the game's user when swapped in; no write anywhere
/// else, no private-network addresses, bounded memory, CPU and time. Its output passes through.
/// The unit ends with this process: it is bound to a watcher that ends when this process does,
/// however it ends, and a build of the same overlay stops a unit left behind before it starts.
pub fn build(host: &Host, name: &Name, digest: &Digest, script: &[u8]) -> Result<(), Error> {
    let game = Owner::user(&host.user)?;
    let units = BuildUnits::new(name);
    // A unit a killed build left running ends before its staging folder goes.
    let writing = Writing::begin(host, name, || units.stop())?;
    let recipe = writing.dir.join("build.sh");
    write_atomic(&recipe, script, 0o644, Owner::root())?;
    // Writable by the build's user, whose number systemd picks as the unit starts; nobody else
    // reaches it, since the staging folder around it is root's alone.
    let tree = writing.tree();
    ensure_dir(&tree, 0o777, Owner::root())?;
    let _watcher = units.watch_caller()?;
    let status = Command::new("systemd-run")
        .args(["--quiet", "--wait", "--pipe", "--unit", &units.build])
        .arg(format!("--property=BindsTo={}", units.watcher))
        .arg(format!("--property=After={}", units.watcher))
        .args(confinement(host, &tree, &recipe))
        .args(["--", "/bin/bash"])
        .arg(&recipe)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::Invalid(format!("cannot run systemd-run (for the build of overlay {name}): {e}")))?;
    if !status.success() {
        return Err(units.failure(name, status));
    }
    hand_over(&tree, 0o755, game)?;
    writing.swap_in(digest)
}

/// Fetches a workshop overlay: each item into the deduplicated cache `$ROOT/workshop/<id>.vpk`
/// (downloaded by steamcmd as the game's user when not cached, or cached at a version older than
/// the one asked for; `<id>.json` beside it keeps the version), then the overlay's tree is
/// `left4dead2/addons/<id>.vpk`, hard links into the cache — the game's unit sees nothing of
/// `$ROOT` beyond its own tree, so a symlink would point nowhere. A new version is a new file
/// renamed over the cached one: a running server's link keeps the bytes it started with.
pub fn fetch(host: &Host, name: &Name, digest: &Digest, items: &[FetchItem]) -> Result<(), Error> {
    let game = Owner::user(&host.user)?;
    let writing = Writing::begin(host, name, || ())?;
    let cache = host.root.join("workshop");
    ensure_dir(&cache, 0o755, game)?;
    let missing: Vec<FetchItem> = items.iter().copied().filter(|item| !is_cached(&cache, item)).collect();
    if !missing.is_empty() {
        download(host, name, &cache, &missing, game)?;
    }
    let tree = writing.tree();
    let addons = tree.join("left4dead2/addons");
    ensure_dir(&tree.join("left4dead2"), 0o755, game)?;
    ensure_dir(&addons, 0o755, game)?;
    for item in items {
        let target = addons.join(format!("{}.vpk", item.id));
        fs::hard_link(cache.join(format!("{}.vpk", item.id)), &target).map_err(|e| Error::io(&target, e))?;
    }
    writing.swap_in(digest)
}

/// The version a cached item was downloaded at, as `<id>.json` records it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    time_updated: u64,
}

/// Whether the cache holds the item at the version asked for (or later); any version will do
/// when none is asked for.
fn is_cached(cache: &Path, item: &FetchItem) -> bool {
    if !cache.join(format!("{}.vpk", item.id)).is_file() {
        return false;
    }
    let Some(wanted) = item.time_updated else { return true };
    let recorded = crate::fsutil::read_bounded(&cache.join(format!("{}.json", item.id)), 4096)
        .and_then(|bytes| serde_json::from_slice::<Cached>(&bytes).ok());
    recorded.is_some_and(|cached| cached.time_updated >= wanted)
}

/// Downloads `items` with one steamcmd and moves each into the cache, with its version.
fn download(host: &Host, name: &Name, cache: &Path, items: &[FetchItem], game: Owner) -> Result<(), Error> {
    let download = cache.join(".steamcmd");
    ensure_dir(&download, 0o755, game)?;
    let mut command = Command::new(&host.steamcmd);
    command.arg("+force_install_dir").arg(&download).args(["+login", "anonymous"]);
    for item in items {
        command.args(["+workshop_download_item", "550", &item.id.to_string()]);
    }
    use std::os::unix::process::CommandExt;
    let status = command
        .arg("+quit")
        .current_dir(&host.root)
        .env("HOME", &host.root)
        .uid(game.uid.as_raw())
        .gid(game.gid.as_raw())
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::Invalid(format!("cannot run steamcmd ({}): {e}", host.steamcmd.display())))?;
    for item in items {
        let id = item.id;
        let folder = download.join("steamapps/workshop/content/550").join(id.to_string());
        let file = match fs::read_dir(&folder) {
            Ok(entries) => entries.flatten().map(|e| e.path()).find(|p| p.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&folder, e)),
        };
        let Some(file) = file else {
            let command = format!("steamcmd (workshop item {id} of overlay {name}: nothing downloaded)");
            return Err(match status.success() {
                true => Error::Child { command, code: 1, kind: FailureKind::Transient },
                false => Error::child(command, status, FailureKind::Transient),
            });
        };
        let cached = cache.join(format!("{id}.vpk"));
        let version = cache.join(format!("{id}.json"));
        // The old version's record goes first: a write cut short between the two leaves a file
        // of unknown version, which is downloaded again, never one taken for newer than it is.
        match fs::remove_file(&version) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&version, e)),
        }
        fs::rename(&file, &cached).map_err(|e| Error::io(&file, e))?;
        lchown(&cached, game)?;
        if let Some(time_updated) = item.time_updated {
            let record = serde_json::to_vec(&Cached { time_updated }).expect("a version always serializes");
            write_atomic(&version, &record, 0o644, Owner::root())?;
        }
    }
    Ok(())
}

/// Removes the overlay folders set aside by newer writes (`.old-<name>-<n>`) that no running
/// server stacks any more: each start records the inodes of the folders it stacks.
pub fn collect_replaced(host: &Host) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let mounts = crate::mountinfo::mount_points()?;
    let mut in_use = std::collections::BTreeSet::new();
    for name in crate::record::list(host)? {
        let paths = host.instance(&name);
        if !mounts.contains(&paths.merged()) {
            continue;
        }
        let started: Option<serde_json::Value> =
            fs::read_to_string(paths.started()).ok().and_then(|text| serde_json::from_str(&text).ok());
        // A server started before starts recorded their folders: nothing can be known gone.
        let Some(inodes) = started.as_ref().and_then(|s| s["overlay_inodes"].as_array().cloned()) else {
            return Ok(());
        };
        in_use.extend(inodes.iter().filter_map(serde_json::Value::as_u64));
    }
    for entry in crate::fsutil::entries(&host.overlays())? {
        let aside = entry.file_name().to_string_lossy().starts_with(".old-");
        let inode = entry.metadata().map(|m| m.ino()).unwrap_or(0);
        if aside && !in_use.contains(&inode) {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// One write of an overlay under way. It holds the overlay's lock (`overlays/.locks/<name>`) for
/// its whole length, so two writes of one overlay never interleave, and a staging folder whose
/// overlay's lock is free belongs to no live write: each write removes those before it starts.
/// Its staging folder (`.staging-<name>-<pid>`, root's alone) holds the new tree (`tree`) and
/// what makes it; dropped, the write removes it, so a failure leaves the overlay as it was.
struct Writing<'a> {
    host: &'a Host,
    name: &'a Name,
    dir: PathBuf,
    _lock: Flock<fs::File>,
}

impl<'a> Writing<'a> {
    /// Takes the overlay's lock, lets `settle` end what a dead write of it left running, removes
    /// leftovers and makes a fresh staging folder.
    fn begin(host: &'a Host, name: &'a Name, settle: impl FnOnce()) -> Result<Writing<'a>, Error> {
        let game = Owner::user(&host.user)?;
        let overlays = host.overlays();
        ensure_dir(&overlays, 0o755, Owner::root())?;
        ensure_dir(&locks(host), 0o700, Owner::root())?;
        let lock = crate::fsutil::lock(&locks(host).join(name.as_str()), || {
            eprintln!("l4d2ctl: waiting for another write of overlay {name} to end")
        })?;
        settle();
        remove_leftovers(host, name)?;
        let dir = overlays.join(format!(".staging-{name}-{}", std::process::id()));
        ensure_dir(&dir, 0o700, Owner::root())?;
        let writing = Writing { host, name, dir, _lock: lock };
        ensure_dir(&writing.tree(), 0o755, game)?;
        Ok(writing)
    }

    fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// Swaps the tree in for the overlay and records its digest.
    fn swap_in(self, digest: &Digest) -> Result<(), Error> {
        let (host, name) = (self.host, self.name);
        let overlays = host.overlays();
        let target = host.overlay(name);
        if target.exists() {
            let aside = (0..)
                .map(|n| overlays.join(format!(".old-{name}-{n}")))
                .find(|p| !p.exists())
                .expect("some numbered name is free");
            fs::rename(&target, &aside).map_err(|e| Error::io(&target, e))?;
        }
        let tree = self.tree();
        fs::rename(&tree, &target).map_err(|e| Error::io(&tree, e))?;
        ensure_dir(&digests(host), 0o755, Owner::root())?;
        write_atomic(&digests(host).join(name.as_str()), format!("{digest}\n").as_bytes(), 0o644, Owner::root())?;
        drop(self);
        collect_replaced(host)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        // Before the lock goes (fields drop after this): nobody else may think it abandoned.
        let _ = remove_tree(&self.dir);
    }
}

fn locks(host: &Host) -> PathBuf {
    host.overlays().join(".locks")
}

/// Removes what writes that died left behind — staging folders, and the recipes
/// (`.build-<name>-<pid>.sh`) of builds before recipes moved into them — of every overlay whose
/// lock nobody holds; `own`'s lock is the caller's. One that cannot be removed is reported and
/// left: it must not stop the write of another overlay.
fn remove_leftovers(host: &Host, own: &Name) -> Result<(), Error> {
    for entry in crate::fsutil::entries(&host.overlays())? {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let owner = match (file_name.strip_prefix(".staging-"), file_name.strip_prefix(".build-")) {
            (Some(rest), _) => rest,
            (None, Some(rest)) => match rest.strip_suffix(".sh") {
                Some(rest) => rest,
                None => continue,
            },
            (None, None) => continue,
        };
        // `<name>-<pid>`; a name that is no overlay's can belong to no write.
        let overlay = owner.rsplit_once('-').and_then(|(name, _)| Name::new(name).ok());
        let _held = match &overlay {
            Some(overlay) if overlay == own => None,
            Some(overlay) => match crate::fsutil::try_lock(&locks(host).join(overlay.as_str()))? {
                Some(lock) => Some(lock),
                None => continue,
            },
            None => None,
        };
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => remove_tree(&path),
            _ => fs::remove_file(&path).map_err(|e| Error::io(&path, e)),
        };
        if let Err(e) = removed {
            eprintln!("l4d2ctl: cannot remove the leftover {}: {e}", path.display());
        }
    }
    Ok(())
}

/// The two units of a build: the build itself, and the watcher it is bound to, which ends when
/// the `l4d2ctl` that started it does. (A process cannot be a unit's dependency; a unit that
/// follows it can. `tail --pid` is that unit: coreutils, on every host.)
struct BuildUnits {
    build: String,
    watcher: String,
}

impl BuildUnits {
    fn new(name: &Name) -> BuildUnits {
        // `@` is in no overlay's name: one overlay's watcher is never another's build.
        BuildUnits {
            build: format!("left4me-build-{name}.service"),
            watcher: format!("left4me-build-caller@{name}.service"),
        }
    }

    /// Stops the units a build of the same overlay left behind, if any: the new build runs alone.
    fn stop(&self) {
        for verb in ["stop", "reset-failed"] {
            let _ = Command::new("systemctl")
                .args([verb, "--quiet", &self.build, &self.watcher])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Starts the watcher of this process; dropped, it is stopped. It watches a sentinel, a
    /// child of this process that the kernel kills when this process dies, not this process
    /// itself: a parent that reads a dead `l4d2ctl`'s output to its end before reaping it (as
    /// `Command::output` does) keeps it a zombie, which `tail --pid` takes for alive, and the
    /// build that holds that output open would never end. The sentinel, orphaned, is reaped by
    /// init at once.
    fn watch_caller(&self) -> Result<Watcher<'_>, Error> {
        use std::os::unix::process::CommandExt;
        let parent = nix::unistd::getpid();
        let mut sentinel = Command::new("sleep");
        sentinel.arg("infinity").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: between fork and exec the closure calls only prctl and getppid, both
        // async-signal-safe, and allocates nothing.
        unsafe {
            sentinel.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // This process may have died before the line above: then nobody would kill it.
                match nix::unistd::getppid() == parent {
                    true => Ok(()),
                    false => Err(std::io::Error::from_raw_os_error(nix::errno::Errno::ESRCH as i32)),
                }
            });
        }
        let sentinel =
            sentinel.spawn().map_err(|e| Error::Invalid(format!("cannot run sleep (the sentinel of a build): {e}")))?;
        let watcher = Watcher { unit: &self.watcher, sentinel };
        let status = Command::new("systemd-run")
            .args(["--quiet", "--collect", "--unit", &self.watcher])
            .args(["--property=DynamicUser=yes", "--property=PrivateNetwork=yes"])
            .args(["--", "tail", "--sleep-interval=1", &format!("--pid={}", watcher.sentinel.id()), "-f", "/dev/null"])
            .stdin(Stdio::null())
            .status()
            .map_err(|e| Error::Invalid(format!("cannot run systemd-run (for {}): {e}", self.watcher)))?;
        if !status.success() {
            return Err(Error::child(format!("systemd-run of {}", self.watcher), status, FailureKind::Transient));
        }
        Ok(watcher)
    }

    /// What a failed build's unit says of its end: its exit code, the signal that stopped it, or
    /// the limit it ran into. The unit, failed, stays loaded until read; then it is let go.
    fn failure(&self, name: &Name, status: std::process::ExitStatus) -> Error {
        let shown = crate::systemd::systemctl(&["show", "--property=Result,ExecMainCode,ExecMainStatus", &self.build]);
        let _ = Command::new("systemctl").args(["reset-failed", "--quiet", &self.build]).stderr(Stdio::null()).status();
        let command = format!("build.sh of overlay {name}");
        let Ok(shown) = shown else { return Error::child(command, status, FailureKind::Permanent) };
        let value = |key: &str| shown.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('='));
        let (result, code) = (value("Result"), value("ExecMainCode"));
        let main_status = value("ExecMainStatus").and_then(|s| s.trim().parse::<i32>().ok());
        match (result, code, main_status) {
            (Some("timeout"), _, _) => {
                Error::Invalid(format!("the build of overlay {name} ran longer than {BUILD_TIME} and was stopped"))
            }
            (Some("oom-kill"), _, _) => {
                Error::Invalid(format!("the build of overlay {name} ran out of its {BUILD_MEMORY} of memory"))
            }
            // CLD_KILLED, CLD_DUMPED: the main process was ended by that signal.
            (_, Some("2" | "3"), Some(signal)) => Error::Invalid(format!(
                "the build of overlay {name} was stopped by {}",
                left4me_state::signal_name(signal)
            )),
            // systemd's own codes (200–243): the unit's set-up failed before bash ran.
            (_, Some("1"), Some(code)) if (200..=243).contains(&code) => Error::Invalid(format!(
                "systemd could not set up the build of overlay {name} (status {code}); \
                 `journalctl -u {}` says why",
                self.build
            )),
            (_, Some("1"), Some(code)) if code != 0 => Error::Child { command, code, kind: FailureKind::Permanent },
            _ => Error::child(command, status, FailureKind::Permanent),
        }
    }
}

/// A started watcher unit and its sentinel; both end when dropped, once the build is over.
struct Watcher<'a> {
    unit: &'a str,
    sentinel: std::process::Child,
}

impl Drop for Watcher<'_> {
    fn drop(&mut self) {
        let _ = Command::new("systemctl").args(["stop", "--quiet", self.unit]).stderr(Stdio::null()).status();
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
    }
}

const BUILD_TIME: &str = "15 minutes";
const BUILD_MEMORY: &str = "2 GiB";

/// The build's unit settings: its own user; of `$ROOT` only its tree (writable), its recipe and
/// the base install (read-only), as the game's unit hides it; nothing else writable; the
/// internet, not the LAN; bounded memory, CPU and time.
fn confinement(host: &Host, tree: &Path, recipe: &Path) -> Vec<String> {
    let root = host.root.display();
    let mut settings = vec![
        "DynamicUser=yes".to_owned(),
        format!("TemporaryFileSystem={root}:ro"),
        format!("BindPaths={}", tree.display()),
        // The base install only where there is one: a host set up without the game builds too.
        format!("BindReadOnlyPaths={} -{}", recipe.display(), host.installation().display()),
        format!("WorkingDirectory={}", tree.display()),
    ];
    settings.extend(
        [
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "PrivateIPC=yes",
            "ProtectProc=invisible",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictNamespaces=yes",
            "RestrictSUIDSGID=yes",
            "RestrictRealtime=yes",
            "LockPersonality=yes",
            // The internet yes (plugin downloads), the LAN no.
            // (Prefixes, not systemd's names for them: systemd-run does not take those.)
            "IPAddressDeny=127.0.0.0/8 ::1/128 169.254.0.0/16 fe80::/10 224.0.0.0/4 ff00::/8 \
             10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 fc00::/7",
            "MemoryMax=2G",
            "CPUQuota=100%",
            "RuntimeMaxSec=900",
            // Stopped (by hand, by its watcher, at shutdown) is a failure, never a finished build:
            // systemd counts a main process ended by SIGTERM as a clean exit.
            "KillSignal=SIGKILL",
        ]
        .map(str::to_owned),
    );
    let mut args: Vec<String> = settings.into_iter().map(|s| format!("--property={s}")).collect();
    args.push("--setenv=HOME=/tmp".to_owned());
    args
}

/// Unpacks regular files, folders and symlinks whose paths stay inside `dir`; anything else in
/// the tar is refused.
fn unpack(dir: &Path, input: impl Read, owner: Owner) -> Result<(), Error> {
    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(|e| Error::Invalid(format!("the overlay tar is unreadable: {}", crate::error::describe(&e))))?;
    for entry in entries {
        let mut entry = entry
            .map_err(|e| Error::Invalid(format!("the overlay tar is unreadable: {}", crate::error::describe(&e))))?;
        let path =
            entry.path().map_err(|e| Error::Invalid(format!("the overlay tar has a bad path: {e}")))?.into_owned();
        if path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(Error::Invalid(format!("the overlay tar holds {}, which leaves the overlay", path.display())));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            return Err(Error::Invalid(format!(
                "the overlay tar holds {}, which is not a file, folder or symlink",
                path.display()
            )));
        }
        let unpacked = entry.unpack_in(dir).map_err(|e| {
            Error::Invalid(format!(
                "cannot unpack {} of the overlay tar: {}",
                path.display(),
                crate::error::describe(&e)
            ))
        })?;
        if !unpacked {
            return Err(Error::Invalid(format!("the overlay tar holds {}, which leaves the overlay", path.display())));
        }
        lchown(&dir.join(&path), owner)?;
    }
    Ok(())
}
