//! Materialised overlays: `$ROOT/overlays/<name>/`, written from a tar the reconciler makes from a
//! validated revision, with the digest of what they hold kept beside them.

use std::fs;
use std::io::Read;
use std::path::{Component, Path};

use left4me_state::{Digest, Name};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::fsutil::{Owner, ensure_dir, lchown, remove_tree, write_atomic};
use crate::host::Host;
use crate::problem::{Problem, Remedy};

/// An overlay on the host and the digest of its tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialisedOverlay {
    pub name: Name,
    pub digest: String,
}

fn digests(host: &Host) -> std::path::PathBuf {
    host.overlays().join(".digests")
}

/// The digest recorded for an overlay written by the reconciler; None for one put there by hand.
pub fn digest(host: &Host, name: &Name) -> Result<Option<String>, Error> {
    let path = digests(host).join(name.as_str());
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
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
            Ok(digest) => all.push(MaterialisedOverlay { name, digest: digest.trim().to_owned() }),
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
    replace(host, name, digest, |staging| unpack(staging, input, game))
}

/// Builds the overlay `name` by running `script` (a script overlay's build.sh) with bash, as the
/// game's user, in a transient systemd unit confined to an empty folder that becomes the tree:
/// no write anywhere else, no private-network addresses, bounded memory, CPU and time. Its output
/// passes through.
pub fn build(host: &Host, name: &Name, digest: &Digest, script: &[u8]) -> Result<(), Error> {
    let recipe = host.overlays().join(format!(".build-{name}-{}.sh", std::process::id()));
    ensure_dir(&host.overlays(), 0o755, Owner::root())?;
    write_atomic(&recipe, script, 0o644, Owner::root())?;
    let result = replace(host, name, digest, |staging| {
        let unit = format!("left4me-build-{name}-{}", std::process::id());
        let status = std::process::Command::new("systemd-run")
            .args(["--quiet", "--wait", "--pipe", "--collect", "--unit", &unit])
            .arg(format!("--property=User={}", host.user))
            .arg(format!("--property=Group={}", host.user))
            .arg(format!("--property=WorkingDirectory={}", staging.display()))
            .arg(format!("--property=ReadWritePaths={}", staging.display()))
            .args([
                "--property=ProtectSystem=strict",
                "--property=ProtectHome=yes",
                "--property=PrivateTmp=yes",
                "--property=PrivateDevices=yes",
                "--property=NoNewPrivileges=yes",
                "--property=ProtectKernelTunables=yes",
                "--property=ProtectControlGroups=yes",
                "--property=RestrictSUIDSGID=yes",
                // The internet yes (plugin downloads), the LAN no.
                // (Prefixes, not systemd's names for them: systemd-run does not take those.)
                "--property=IPAddressDeny=127.0.0.0/8 ::1/128 169.254.0.0/16 fe80::/10 224.0.0.0/4 ff00::/8 \
                 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 fc00::/7",
                "--property=MemoryMax=2G",
                "--property=CPUQuota=100%",
                "--property=RuntimeMaxSec=900",
                "--setenv=HOME=/tmp",
                "--",
                "/bin/bash",
            ])
            .arg(&recipe)
            .stdin(std::process::Stdio::null())
            .status()
            .map_err(|e| Error::Invalid(format!("cannot run systemd-run: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Child { command: format!("build.sh of overlay {name}"), code: status.code().unwrap_or(1) })
        }
    });
    let _ = fs::remove_file(&recipe);
    result
}

/// Fetches a workshop overlay: each item into the deduplicated cache `$ROOT/workshop/<id>.vpk`
/// (downloaded by steamcmd as the game's user, only when not cached), then the overlay's tree is
/// `left4dead2/addons/<id>.vpk`, hard links into the cache — the game's unit sees nothing of
/// `$ROOT` beyond its own tree, so a symlink would point nowhere.
pub fn fetch(host: &Host, name: &Name, digest: &Digest, items: &[u64]) -> Result<(), Error> {
    let game = Owner::user(&host.user)?;
    let cache = host.root.join("workshop");
    ensure_dir(&cache, 0o755, game)?;
    let missing: Vec<u64> = items.iter().copied().filter(|id| !cache.join(format!("{id}.vpk")).is_file()).collect();
    if !missing.is_empty() {
        let download = cache.join(".steamcmd");
        ensure_dir(&download, 0o755, game)?;
        let mut command = std::process::Command::new(&host.steamcmd);
        command.arg("+force_install_dir").arg(&download).args(["+login", "anonymous"]);
        for id in &missing {
            command.args(["+workshop_download_item", "550", &id.to_string()]);
        }
        use std::os::unix::process::CommandExt;
        let status = command
            .arg("+quit")
            .current_dir(&host.root)
            .env("HOME", &host.root)
            .uid(game.uid.as_raw())
            .gid(game.gid.as_raw())
            .stdin(std::process::Stdio::null())
            .status()
            .map_err(|e| Error::Invalid(format!("cannot run steamcmd ({}): {e}", host.steamcmd.display())))?;
        for id in &missing {
            let folder = download.join("steamapps/workshop/content/550").join(id.to_string());
            let file = fs::read_dir(&folder)
                .ok()
                .and_then(|entries| entries.flatten().map(|e| e.path()).find(|p| p.is_file()));
            let Some(file) = file else {
                return Err(Error::Child {
                    command: format!("steamcmd (workshop item {id} of overlay {name}: nothing downloaded)"),
                    code: status.code().unwrap_or(1).max(1),
                });
            };
            let cached = cache.join(format!("{id}.vpk"));
            fs::rename(&file, &cached).map_err(|e| Error::io(&file, e))?;
            lchown(&cached, game)?;
        }
    }
    replace(host, name, digest, |staging| {
        let addons = staging.join("left4dead2/addons");
        ensure_dir(&staging.join("left4dead2"), 0o755, game)?;
        ensure_dir(&addons, 0o755, game)?;
        for id in items {
            let target = addons.join(format!("{id}.vpk"));
            fs::hard_link(cache.join(format!("{id}.vpk")), &target).map_err(|e| Error::io(&target, e))?;
        }
        Ok(())
    })
}

/// Removes the overlay folders set aside by newer writes (`.old-<name>-<n>`) that no running
/// server stacks any more: each start records the inodes of the folders it stacks.
pub fn collect_replaced(host: &Host) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let mounts = crate::mount::mount_points()?;
    let mut in_use = std::collections::BTreeSet::new();
    for name in crate::instance::list(host)? {
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

/// Fills a fresh staging folder with `fill`, then swaps it in for the overlay and records its
/// digest. On failure the staging folder goes and the overlay stays as it was.
fn replace(
    host: &Host,
    name: &Name,
    digest: &Digest,
    fill: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let game = Owner::user(&host.user)?;
    let overlays = host.overlays();
    ensure_dir(&overlays, 0o755, Owner::root())?;
    let staging = overlays.join(format!(".staging-{name}-{}", std::process::id()));
    remove_tree(&staging)?;
    ensure_dir(&staging, 0o755, game)?;
    if let Err(e) = fill(&staging) {
        let _ = remove_tree(&staging);
        return Err(e);
    }
    let target = host.overlay(name);
    if target.exists() {
        let aside = (0..)
            .map(|n| overlays.join(format!(".old-{name}-{n}")))
            .find(|p| !p.exists())
            .expect("some numbered name is free");
        fs::rename(&target, &aside).map_err(|e| Error::io(&target, e))?;
    }
    fs::rename(&staging, &target).map_err(|e| Error::io(&staging, e))?;
    ensure_dir(&digests(host), 0o755, Owner::root())?;
    write_atomic(&digests(host).join(name.as_str()), format!("{digest}\n").as_bytes(), 0o644, Owner::root())?;
    collect_replaced(host)
}

/// Unpacks regular files, folders and symlinks whose paths stay inside `dir`; anything else in
/// the tar is refused.
fn unpack(dir: &Path, input: impl Read, owner: Owner) -> Result<(), Error> {
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(|e| Error::Invalid(format!("the overlay tar is unreadable: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Invalid(format!("the overlay tar is unreadable: {e}")))?;
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
        if !entry.unpack_in(dir).map_err(|e| Error::Invalid(format!("cannot unpack {}: {e}", path.display())))? {
            return Err(Error::Invalid(format!("the overlay tar holds {}, which leaves the overlay", path.display())));
        }
        lchown(&dir.join(&path), owner)?;
    }
    Ok(())
}
