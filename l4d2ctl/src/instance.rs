//! Instances: rendering a spec onto the host, reading it back, removing it.

use std::fs;
use std::io::Read;
use std::path::Path;

use left4me_state::{Digest, InstanceSpec, Name};

use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, remove_tree, write_atomic};
use crate::host::{Host, is_under};
use crate::{builds, mount, record};

/// What `initialize` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialized {
    pub digest: Digest,
    /// False when every file already held exactly what was rendered.
    pub changed: bool,
    /// What of an instance already on the host was put right on the way: a file that could not
    /// be used, a folder that was missing.
    pub repaired: Vec<String>,
}

/// Reads a spec file, JSON or YAML, with the place of any problem.
pub fn read_spec_file(path: &Path) -> Result<InstanceSpec, Error> {
    let mut text = String::new();
    // `-` is stdin, which is how the reconciler hands a spec over.
    let file: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(fs::File::open(path).map_err(|e| Error::io(path, e))?)
    };
    // A spec is small; a huge file is a mistake, not a spec.
    file.take(1024 * 1024 + 1).read_to_string(&mut text).map_err(|e| Error::io(path, e))?;
    if text.len() > 1024 * 1024 {
        return Err(Error::Invalid(format!("{}: a spec is at most 1 MiB", path.display())));
    }
    let shown = path.display();
    if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| {
            let message = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = message.strip_suffix(&suffix).unwrap_or(&message);
            Error::Invalid(format!("{shown}:{}:{}: {message}", e.line(), e.column()))
        })
    } else {
        serde_norway::from_str(&text).map_err(|e| match e.location() {
            Some(l) => {
                let message = e.to_string();
                let message =
                    message.strip_suffix(&format!(" at line {} column {}", l.line(), l.column())).unwrap_or(&message);
                Error::Invalid(format!("{shown}:{}:{}: {message}", l.line(), l.column()))
            }
            None => Error::Invalid(format!("{shown}: {e}")),
        })
    }
}

/// Renders `spec` as the instance `name` for the game build `build` (None: the newest installed,
/// or the base install from before builds on a host that has no build): its record, its config
/// layer (server.cfg and each overlay's own server.cfg staged as `server_<overlay>.cfg`), its RCON
/// password (generated once, kept), and its runtime folders. The same spec renders byte-identical
/// files, and rendering it again touches nothing; nothing under a running server's mount changes.
pub fn initialize(host: &Host, name: &Name, spec: &InstanceSpec, build: Option<u64>) -> Result<Initialized, Error> {
    if spec.name != *name {
        return Err(Error::Invalid(format!("the spec is for {}, not {name}", spec.name)));
    }
    let build = choose_build(host, build)?;
    crate::limits::check_host(name, &spec.resources)?;
    for layer in &spec.overlays {
        let dir = host.overlay(&layer.name);
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "overlay {} is not on this host ({} is missing)",
                layer.name,
                dir.display()
            )));
        }
        mount::check_lowerdir(host, name, &dir)?;
        // An overlay written by the reconciler records its digest: the spec must stack that tree.
        if let Some(on_host) = crate::overlay::digest(host, &layer.name)?
            && on_host != layer.digest
        {
            return Err(Error::Invalid(format!(
                "overlay {} on this host is {on_host}, but the spec stacks {}; write the overlay first",
                layer.name, layer.digest
            )));
        }
    }
    let game = Owner::user(&host.user)?;
    let root = Owner::root();
    let paths = host.instance(name);

    let repaired = repairs(&paths);
    ensure_dir(&host.instances(), 0o755, root)?;
    ensure_dir(&paths.dir, 0o755, root)?;
    let password = rcon_password(&paths.rcon_password(), game.root_with_group_of())?;
    let log_secret = log_secret(&paths.log_secret(), game.root_with_group_of())?;
    let secrets = left4me_state::Secrets { rcon_password: &password, log_secret, log_port: host.live_port };
    let digest = spec.digest();

    let mut changed = false;
    let layer = paths.layer(&digest);
    let cfg = layer.join("left4dead2/cfg");
    ensure_dir(&paths.layers(), 0o755, root)?;
    ensure_dir(&layer, 0o755, root)?;
    ensure_dir(&layer.join("left4dead2"), 0o755, root)?;
    ensure_dir(&cfg, 0o755, root)?;
    // server.cfg carries the RCON password, so only root and the game may read it.
    let readable_by_game = game.root_with_group_of();
    changed |=
        write_atomic(&cfg.join("server.cfg"), spec.server_cfg(&digest, &secrets).as_bytes(), 0o640, readable_by_game)?;
    let mut staged = Vec::new();
    for layer in &spec.overlays {
        let file = format!("server_{}.cfg", layer.name);
        if let Some(contents) = read_beneath(&host.overlay(&layer.name), "left4dead2/cfg/server.cfg")? {
            changed |= write_atomic(&cfg.join(&file), &contents, 0o644, root)?;
            staged.push(file);
        }
    }
    // Configs staged for overlays the spec no longer stacks must not linger.
    for entry in fs::read_dir(&cfg).map_err(|e| Error::io(&cfg, e))?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with("server_") && file.ends_with(".cfg") && !staged.contains(&file) {
            fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            changed = true;
        }
    }

    ensure_dir(&paths.runtime, 0o755, root)?;
    // The game writes into its tree; overlayfs puts those writes in upper.
    ensure_dir(&paths.upper(), 0o755, game)?;
    ensure_dir(&paths.work(), 0o700, root)?;
    ensure_dir(&paths.merged(), 0o755, root)?;

    // The unit's drop-in before the record: a render cut short between them is told by the
    // drop-in's drift, which the next render puts right.
    changed |= crate::limits::write(host, name, &spec.resources)?;
    let record = record::InstanceRecord { digest: digest.clone(), spec: spec.clone(), build };
    let mut json = serde_json::to_string_pretty(&record).expect("a record always serializes");
    json.push('\n');
    changed |= write_atomic(&paths.record(), json.as_bytes(), 0o644, root)?;
    Ok(Initialized { digest, changed, repaired })
}

/// The build an instance is rendered for: the one asked for, which must be installed; else the
/// newest installed; else none, on a host with only the base install from before builds.
fn choose_build(host: &Host, asked: Option<u64>) -> Result<Option<u64>, Error> {
    let installed = builds::installed(host)?;
    match asked {
        Some(id) if installed.contains(&id) => return Ok(Some(id)),
        Some(id) => {
            return Err(Error::Invalid(format!(
                "build {id} is not installed on this host (installed: {}); run `l4d2ctl install`",
                builds::list(&installed)
            )));
        }
        None => {}
    }
    if let Some(newest) = installed.last() {
        return Ok(Some(*newest));
    }
    let base = host.installation();
    if !base.join("srcds_run").is_file() {
        return Err(Error::Invalid(format!(
            "the game is not installed (no build in {}, and {} has no srcds_run); run `l4d2ctl install` first",
            host.builds().display(),
            base.display()
        )));
    }
    Ok(None)
}

/// What a render of an instance already on the host puts right, said before it does: a record
/// that cannot be read, an RCON password file holding none, runtime folders that are missing. A
/// new instance repairs nothing.
fn repairs(paths: &crate::host::InstancePaths) -> Vec<String> {
    let record = paths.record();
    if !record.exists() {
        return Vec::new();
    }
    let mut repaired = Vec::new();
    if let Err(cause) = record::load(&record) {
        repaired.push(format!("{}: written again (it could not be read: {cause})", record.display()));
    }
    let password = paths.rcon_password();
    match fs::read_to_string(&password) {
        Ok(text) if is_password(text.trim()) => {}
        Ok(_) => repaired.push(format!("{}: held no password; a new one is generated", password.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            repaired.push(format!("{}: was missing; a new password is generated", password.display()))
        }
        // Unreadable otherwise: the render itself fails on it and says so.
        Err(_) => {}
    }
    for dir in [paths.runtime.clone(), paths.upper(), paths.work(), paths.merged()] {
        if !dir.is_dir() {
            repaired.push(format!("{}: created again (it was missing)", dir.display()));
        }
    }
    repaired
}

/// Reads `path` inside `dir` as root without following any symlink: an overlay's tree belongs to
/// the game's user, who must not make root copy out a file it cannot read. None when absent.
fn read_beneath(dir: &Path, path: &str) -> Result<Option<Vec<u8>>, Error> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let base = fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = match openat2(&base, path, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => {
            return Err(Error::Invalid(format!("{}/{path}: cannot read it safely: {e}", dir.display())));
        }
    };
    let mut file = fs::File::from(fd);
    if !file.metadata().map_err(|e| Error::io(dir.join(path), e))?.is_file() {
        return Ok(None);
    }
    let mut contents = Vec::new();
    file.read_to_end(&mut contents).map_err(|e| Error::io(dir.join(path), e))?;
    Ok(Some(contents))
}

/// The instance's RCON password: read when it exists, else generated from the kernel's random
/// source and kept, readable by root and the game's group (as server.cfg, which carries it, is):
/// the web app runs as the game's user to offer RCON.
fn rcon_password(path: &Path, readable_by: Owner) -> Result<String, Error> {
    match fs::read_to_string(path) {
        Ok(text) if is_password(text.trim()) => {
            // Kept as it is, with the access it should have (older installs made it root-only).
            write_atomic(path, text.as_bytes(), 0o640, readable_by)?;
            return Ok(text.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut random = [0u8; 64];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    // 256 is not a multiple of the alphabet; drop the bytes that would bias it.
    let limit = 256 - 256 % ALPHABET.len();
    let password: String = random
        .iter()
        .filter(|b| (**b as usize) < limit)
        .take(24)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    if password.len() < 24 {
        return rcon_password(path, readable_by);
    }
    write_atomic(path, format!("{password}\n").as_bytes(), 0o640, readable_by)?;
    Ok(password)
}

/// The instance's log secret: read when it holds one, else drawn from the kernel's random source
/// and kept as the RCON password is. srcds sends its digits before each line, so it is a number:
/// nine digits or more, never 0 (which turns the secret off).
fn log_secret(path: &Path, readable_by: Owner) -> Result<u32, Error> {
    match fs::read_to_string(path) {
        Ok(text) => {
            if let Some(secret) = parse_log_secret(&text) {
                write_atomic(path, text.as_bytes(), 0o640, readable_by)?;
                return Ok(secret);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let mut random = [0u8; 4];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    // 100000000..=u32::MAX: at least nine digits, so no secret is a prefix-free guess away.
    let secret = LOG_SECRET_MIN + u32::from_le_bytes(random) % (u32::MAX - LOG_SECRET_MIN + 1);
    write_atomic(path, format!("{secret}\n").as_bytes(), 0o640, readable_by)?;
    Ok(secret)
}

const LOG_SECRET_MIN: u32 = 100_000_000;

/// A log secret as its file holds it: a number of at least nine digits.
pub fn parse_log_secret(text: &str) -> Option<u32> {
    let text = text.trim();
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|secret| *secret >= LOG_SECRET_MIN)
}

pub fn is_password(text: &str) -> bool {
    text.len() >= 16 && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The RCON password of an instance, for `l4d2ctl rcon`.
pub fn read_rcon_password(host: &Host, name: &Name) -> Result<String, Error> {
    let path = host.instance(name).rcon_password();
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok(text.trim().to_owned())
}

/// What `delete` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub existed: bool,
    /// Where the server's own data (its upper layer) was archived, when it had any.
    pub archive: Option<std::path::PathBuf>,
}

/// Removes an instance's files and runtime folders, unmounting its tree first and archiving the
/// game's own data (its upper layer) under `$ROOT/archive/` — nothing a server made is lost
/// silently. A missing instance is already deleted. Its unit must be stopped before.
pub fn delete(host: &Host, name: &Name) -> Result<Deleted, Error> {
    let paths = host.instance(name);
    let existed = paths.dir.exists() || paths.runtime.exists();
    mount::umount(host, name)?;
    let archive = archive_upper(host, name)?;
    // The runtime folder holds the game's own data (upper); it goes only with the instance.
    for dir in [&paths.runtime, &paths.dir] {
        if !is_under(dir, &host.root) {
            return Err(Error::Invalid(format!(
                "refusing to remove {}: it is not under {}",
                dir.display(),
                host.root.display()
            )));
        }
        remove_tree(dir)?;
    }
    // systemd forgets the limits with a reload, so a server made again under this name starts
    // without them.
    if crate::limits::remove(host, name)? {
        crate::systemd::daemon_reload()?;
    }
    Ok(Deleted { existed, archive })
}

/// What a server's delete for a move to another host left, as `$ROOT/archive/<name>-<time>.json`:
/// the host it moves to and its archive's file name (none: it had no data). The host it moves to
/// takes exactly this archive (`left4me remote handover`), never one of an earlier life of a
/// server of the same name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Moved {
    pub moving_to: Name,
    pub archive: Option<String>,
    pub at: String,
}

/// Records that `name` was deleted to move to `to`, with its archive; returns the record's path.
pub fn record_move(host: &Host, name: &Name, to: &Name, archive: Option<&Path>) -> Result<std::path::PathBuf, Error> {
    let dir = host.root.join("archive");
    let group = Owner::user(&host.user).map(Owner::root_with_group_of).unwrap_or_else(|_| Owner::root());
    ensure_dir(&dir, 0o750, group)?;
    let now = std::time::SystemTime::now();
    let stamp = left4me_state::clock::rfc3339(now).replace([':', '-'], "");
    let moved = Moved {
        moving_to: to.clone(),
        archive: archive.and_then(|a| a.file_name()).map(|f| f.to_string_lossy().into_owned()),
        at: left4me_state::clock::rfc3339(now),
    };
    let path = dir.join(format!("{name}-{stamp}.json"));
    let json = serde_json::to_vec(&moved).expect("a move record serializes");
    crate::fsutil::write_atomic(&path, &json, 0o640, group)?;
    Ok(path)
}

/// Archives the upper layer as `$ROOT/archive/<name>-<time>.tar`, unless it is empty.
fn archive_upper(host: &Host, name: &Name) -> Result<Option<std::path::PathBuf>, Error> {
    let upper = host.instance(name).upper();
    let has_data = fs::read_dir(&upper).map(|mut entries| entries.next().is_some()).unwrap_or(false);
    if !has_data {
        return Ok(None);
    }
    let dir = host.root.join("archive");
    // Readable by the group of left4me's user, as backups are: a host the server moves to takes
    // this archive over SSH, through `left4me remote` (which runs as that user).
    let group = Owner::user(&host.user).map(Owner::root_with_group_of).unwrap_or_else(|_| Owner::root());
    ensure_dir(&dir, 0o750, group)?;
    let stamp = left4me_state::clock::rfc3339(std::time::SystemTime::now()).replace([':', '-'], "");
    let path = dir.join(format!("{name}-{stamp}.tar"));
    let temp = dir.join(format!(".{name}-{stamp}.tar.tmp"));
    let result = (|| {
        let file = fs::File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        nix::unistd::fchown(&file, Some(group.uid), Some(group.gid)).map_err(|e| Error::io(&temp, e.into()))?;
        nix::sys::stat::fchmod(&file, nix::sys::stat::Mode::from_bits_truncate(0o640))
            .map_err(|e| Error::io(&temp, e.into()))?;
        // The same tar as a backup's, uncompressed: everything overlayfs kept, read as a backup is.
        let game = crate::backup::game_user(host);
        let (file, _left_out) = crate::backup::pack(&upper, file, game, u64::MAX, &format!("{name}'s data"))?;
        file.sync_all().map_err(|e| Error::io(&temp, e))?;
        fs::rename(&temp, &path).map_err(|e| Error::io(&path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| Some(path))
}
