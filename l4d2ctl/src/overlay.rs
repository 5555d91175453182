//! Materialised overlays: `$ROOT/overlays/<name>/`, written from a tar the reconciler makes from a
//! validated revision, with the digest of what they hold kept beside them.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::Flock;

use left4me_state::{ArchiveSource, Digest, Name};

use crate::api::{FailureKind, FetchItem, MaterialisedOverlay, parse_digest};
use crate::api::{Problem, Remedy};
use crate::archive;
use crate::confined::{self, Ending, Units};
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
    unpack_tar(&writing.tree(), input, game)?;
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
    let units = Units::new(confined::BUILD, name);
    // A unit a killed build left running ends before its staging folder goes.
    let writing = Writing::begin(host, name, || units.stop())?;
    let recipe = writing.dir.join("build.sh");
    write_atomic(&recipe, script, 0o644, Owner::root())?;
    // Writable by the build's user, whose number systemd picks as the unit starts; nobody else
    // reaches it, since the staging folder around it is root's alone.
    let tree = writing.tree();
    ensure_dir(&tree, 0o777, Owner::root())?;
    let _watcher = units.watch_caller()?;
    // The game where there is one (a host set up without it builds too), seen where it always
    // was: the newest build at `installation/`.
    let newest = crate::builds::installed(host).ok().and_then(|ids| ids.last().copied());
    let base = newest.map_or_else(|| host.installation(), |id| host.build(id));
    let settings = [
        format!("BindPaths={}", tree.display()),
        format!("BindReadOnlyPaths={} -{}:{}", recipe.display(), base.display(), host.installation().display()),
        format!("WorkingDirectory={}", tree.display()),
    ];
    let status = units
        .command(host, &settings)
        .args(["--", "/bin/bash"])
        .arg(&recipe)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Error::Invalid(format!("cannot run systemd-run (for the build of overlay {name}): {e}")))?;
    if crate::interrupt::asked() {
        // systemd-run may have ended before the unit did: the unit ends before the staging
        // folder around its tree goes.
        units.stop();
        return Err(crate::interrupt::stopped(&format!("the build of overlay {name}")));
    }
    if !status.success() {
        return Err(build_failure(&units, name, status));
    }
    hand_over(&tree, 0o755, game)?;
    writing.swap_in(digest)
}

/// What a failed build's unit says of its end: its exit code, the signal that stopped it, or
/// the limit it ran into.
fn build_failure(units: &Units, name: &Name, status: std::process::ExitStatus) -> Error {
    let command = format!("build.sh of overlay {name}");
    let limits = units.limits;
    match units.ending() {
        Ending::TimedOut => {
            Error::Invalid(format!("the build of overlay {name} ran longer than {} and was stopped", limits.time))
        }
        Ending::OutOfMemory => {
            Error::Invalid(format!("the build of overlay {name} ran out of its {} of memory", limits.memory))
        }
        Ending::Signal(signal) => {
            Error::Invalid(format!("the build of overlay {name} was stopped by {}", left4me_state::signal_name(signal)))
        }
        Ending::SetUp(code) => Error::Invalid(format!(
            "systemd could not set up the build of overlay {name} (status {code}); `journalctl -u {}` says why",
            units.unit
        )),
        Ending::Exit(code) => Error::Child { command, code, kind: FailureKind::Permanent },
        Ending::Unknown => Error::child(command, status, FailureKind::Permanent),
    }
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
    // Root's: the game's user downloads into `.steamcmd` below it, and root moves each item in.
    ensure_dir(&cache, 0o755, Owner::root())?;
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

/// The largest archive downloaded: ten times a SourceMod release, a small share of a disk.
const MAX_DOWNLOAD: u64 = 512 << 20;

/// Unpacks an archive overlay: each archive is taken from the cache `$ROOT/archives/<sha256>`
/// (hashed again first: a changed file is fetched anew), or downloaded by curl in the confined
/// unit `left4me-download-<name>.service`, streamed to this process, hashed here and kept only
/// when it is the pinned file. Once every archive is at hand they unpack in order into a fresh
/// tree (a later one replaces an earlier one's files) with `overlay put`'s safety, bounded in
/// bytes and entries, and the tree is swapped in.
pub fn unpack(host: &Host, name: &Name, digest: &Digest, sources: &[ArchiveSource]) -> Result<(), Error> {
    let game = Owner::user(&host.user)?;
    let allowed = confined::download_allow(host)?;
    let units = Units::new(confined::DOWNLOAD, name);
    let writing = Writing::begin(host, name, || units.stop())?;
    let cache = host.root.join("archives");
    ensure_dir(&cache, 0o755, Owner::root())?;
    let mut files = Vec::with_capacity(sources.len());
    for source in sources {
        let fetch = Fetch { host, name, units: &units, staging: &writing.dir, allowed: &allowed };
        files.push(fetch.cached(&cache, source)?);
    }
    let tree = writing.tree();
    let mut budget = archive::Budget::new(archive::Limits::OVERLAY);
    for (source, (path, file)) in sources.iter().zip(files) {
        let into = source.into.as_ref().map_or_else(PathBuf::new, |into| PathBuf::from(into.as_str()));
        let name = format!("the archive {} of overlay {name}", source.url.as_str());
        let how =
            archive::Unpacking { name: &name, tree: &tree, into: &into, strip: source.strip.count(), owner: game };
        archive::unpack(file, &path, &how, &mut budget)?;
    }
    archive::check_symlinks(&tree, name.as_str())?;
    writing.swap_in(digest)
}

/// The cached archive at `path`, opened without following a symlink, if it is a regular file
/// whose SHA-256 is `want`; rewound for reading. Anything else there is removed (a file with
/// another hash is said so), and None says to download it.
fn checked(path: &Path, want: &str) -> Result<Option<fs::File>, Error> {
    use std::io::Seek;
    use std::os::unix::fs::OpenOptionsExt;
    let opened = fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A symlink (ELOOP) or anything that cannot be opened as a file: not the cached archive.
        Err(_) => {
            remove_tree(path)?;
            return Ok(None);
        }
    };
    if !file.metadata().map_err(|e| Error::io(path, e))?.is_file() {
        remove_tree(path)?;
        return Ok(None);
    }
    let (got, _) = archive::sha256(&mut file).map_err(|e| Error::io(path, e))?;
    if got != want {
        eprintln!("l4d2ctl: the cached {} has sha256 {got}, not its name; downloading it again", path.display());
        fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        return Ok(None);
    }
    file.rewind().map_err(|e| Error::io(path, e))?;
    Ok(Some(file))
}

/// What fetching the archives of one overlay needs.
struct Fetch<'a> {
    host: &'a Host,
    name: &'a Name,
    units: &'a Units,
    /// The write's staging folder, root's alone: a download lands there until it is checked.
    staging: &'a Path,
    allowed: &'a [confined::Block],
}

impl Fetch<'_> {
    /// The cached file of `source`, downloaded first when the cache lacks it or holds something
    /// else under its name — open, checked to be the pinned file as it is open: what is unpacked
    /// is the very file whose hash was taken, whatever is renamed in at its name meanwhile.
    fn cached(&self, cache: &Path, source: &ArchiveSource) -> Result<(PathBuf, fs::File), Error> {
        let want = source.sha256.as_str();
        let path = cache.join(want);
        if let Some(file) = checked(&path, want)? {
            return Ok((path, file));
        }
        let downloaded = self.download(source)?;
        // The staging folder and the cache are both under $ROOT, so this is a rename; where a
        // mount splits them, a copy under a temporary name.
        if fs::rename(&downloaded, &path).is_err() {
            let partial = cache.join(format!(".{want}.tmp-{}", std::process::id()));
            fs::copy(&downloaded, &partial).map_err(|e| Error::io(&partial, e))?;
            fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))?;
        }
        let file = checked(&path, want)?.ok_or_else(|| {
            Error::Invalid(format!(
                "{} is not the file just downloaded and checked (sha256 {want}): something replaced it; refused",
                path.display()
            ))
        })?;
        Ok((path, file))
    }

    /// Downloads `source` into the staging folder: curl in the confined unit writes it to its
    /// stdout, which this process hashes and writes, at most [`MAX_DOWNLOAD`] bytes of it.
    fn download(&self, source: &ArchiveSource) -> Result<PathBuf, Error> {
        let (url, name, want) = (source.url.as_str(), self.name, source.sha256.as_str());
        if let Some((address, what)) = confined::literal_denied(url, self.allowed) {
            return Err(Error::Invalid(format!(
                "the archive {url} of overlay {name} is at {address}, {what}: downloads may not reach the \
                 host's own or private networks (LEFT4ME_DOWNLOAD_ALLOW in {} allows one)",
                crate::host::HOST_ENV
            )));
        }
        eprintln!("l4d2ctl: downloading {url}");
        let target = self.staging.join(format!("download-{want}"));
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&target)
                .map_err(|e| Error::io(&target, e))?
        };
        let _watcher = self.units.watch_caller()?;
        let mut settings = vec!["WorkingDirectory=/tmp".to_owned()];
        if !self.allowed.is_empty() {
            let allowed: Vec<String> = self.allowed.iter().map(ToString::to_string).collect();
            settings.push(format!("IPAddressAllow={}", allowed.join(" ")));
        }
        let mut child = self
            .units
            .command(self.host, &settings)
            .args(["--", "curl", "--fail", "--location", "--silent", "--show-error", "--max-redirs", "5"])
            .args(["--proto", "=https,http", "--proto-redir", "=https,http", "--connect-timeout", "30"])
            .args(["--max-filesize", &MAX_DOWNLOAD.to_string(), "--output", "-", "--", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Invalid(format!("cannot run systemd-run (for the download of {url}): {e}")))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut writer = archive::HashingWriter::new(file);
        let copied = std::io::copy(&mut stdout.take(MAX_DOWNLOAD + 1), &mut writer);
        if !matches!(copied, Ok(n) if n <= MAX_DOWNLOAD) {
            // Stopped before it is waited for: a download past the limit ends here.
            self.units.stop();
        }
        let status = child.wait().map_err(|e| Error::Invalid(format!("cannot wait for the download of {url}: {e}")))?;
        match copied {
            Ok(n) if n > MAX_DOWNLOAD => {
                return Err(Error::Invalid(format!(
                    "the archive {url} of overlay {name} is larger than {} MiB: refused",
                    MAX_DOWNLOAD >> 20
                )));
            }
            Err(e) => return Err(Error::io(&target, e)),
            Ok(_) => {}
        }
        if !status.success() {
            return Err(download_failure(self.units, url, name, status));
        }
        let (file, got) = writer.finish();
        file.sync_all().map_err(|e| Error::io(&target, e))?;
        if got != want {
            return Err(Error::Invalid(format!(
                "the archive {url} of overlay {name} has sha256 {got}, but the overlay pins sha256 {want}: \
                 refused; nothing was kept or changed (pin the hash of the file you mean, or fix the url)"
            )));
        }
        Ok(target)
    }
}

/// Why a download failed, from curl's exit code or the limit its unit ran into; a failed
/// download may pass later, so it is transient.
fn download_failure(units: &Units, url: &str, name: &Name, status: std::process::ExitStatus) -> Error {
    let limits = units.limits;
    let why = match units.ending() {
        Ending::TimedOut => format!("it ran longer than {} and was stopped", limits.time),
        Ending::OutOfMemory => format!("curl ran out of its {} of memory", limits.memory),
        Ending::Signal(signal) => format!("it was stopped by {}", left4me_state::signal_name(signal)),
        Ending::SetUp(code) => {
            format!("systemd could not set up its unit (status {code}); `journalctl -u {}` says why", units.unit)
        }
        Ending::Exit(code) => curl_failure(code).to_owned(),
        Ending::Unknown => "curl failed".to_owned(),
    };
    let command = format!("the download of {url} for overlay {name} ({why})");
    let code = match status.code() {
        Some(code) if code != 0 => code,
        _ => 1,
    };
    Error::Child { command, code, kind: FailureKind::Transient }
}

/// What curl's exit codes that a download meets mean (curl(1), EXIT CODES).
fn curl_failure(code: i32) -> &'static str {
    match code {
        1 => "the url or a redirect is not http or https",
        6 => "its host name could not be resolved",
        7 => {
            "no connection: the server is down, or it is on the host's own or a private network, which \
              downloads may not reach (LEFT4ME_DOWNLOAD_ALLOW allows one)"
        }
        22 => "the server answered with an HTTP error",
        28 => {
            "no answer in time: the server is slow or unreachable, or it is on the host's own or a private \
               network, which downloads may not reach (LEFT4ME_DOWNLOAD_ALLOW allows one)"
        }
        35 | 60 => "the TLS handshake or the server's certificate failed",
        47 => "it was redirected more than 5 times",
        56 => "the connection broke off",
        63 => "the file is larger than the download limit",
        127 => "curl is not installed",
        _ => "curl failed",
    }
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
    let aside: Vec<_> = crate::fsutil::entries(&host.overlays())?
        .into_iter()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".old-"))
        .collect();
    // Most starts find none: then no running server's files are read.
    if aside.is_empty() {
        return Ok(());
    }
    let mut in_use = std::collections::BTreeSet::new();
    for name in crate::running::running(host)? {
        let paths = host.instance(&name);
        let started: Option<serde_json::Value> =
            fs::read_to_string(paths.started()).ok().and_then(|text| serde_json::from_str(&text).ok());
        // A server started before starts recorded their folders: nothing can be known gone.
        let Some(inodes) = started.as_ref().and_then(|s| s["overlay_inodes"].as_array().cloned()) else {
            return Ok(());
        };
        in_use.extend(inodes.iter().filter_map(serde_json::Value::as_u64));
    }
    for entry in aside {
        let inode = entry.metadata().map(|m| m.ino()).unwrap_or(0);
        if !in_use.contains(&inode) {
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
        // The last moment a write asked to stop can leave the overlay as it was.
        if crate::interrupt::asked() {
            return Err(crate::interrupt::stopped(&format!("the write of overlay {name}")));
        }
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

/// Unpacks regular files, folders and symlinks whose paths stay inside `dir`; anything else in
/// the tar is refused.
fn unpack_tar(dir: &Path, input: impl Read, owner: Owner) -> Result<(), Error> {
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
