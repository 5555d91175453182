//! A server's resource limits (its blueprint's `spec.resources`) as a drop-in of its unit,
//! `left4me-server@<name>.service.d/resources.conf` in the unit folder: written with the render,
//! read by systemd at the next reload, which the next start or restart of the server makes.

use std::path::{Path, PathBuf};

use left4me_state::{CpuList, Name, ResourceLimits};

use crate::api::{Problem, Remedy};
use crate::error::Error;
use crate::fsutil::{Owner, ensure_dir, read_bounded, write_atomic};
use crate::host::{Host, unit_name};
use crate::systemd;

/// The drop-in's file name inside the unit's `.d` folder.
const FILE: &str = "resources.conf";

/// The CPUs the kernel has online.
const ONLINE: &str = "/sys/devices/system/cpu/online";
/// The CPUs the host's cgroup gives its units (cgroup v2; a container's own may be fewer).
const CGROUP_CPUS: &str = "/sys/fs/cgroup/cpuset.cpus.effective";

/// The drop-in of a server's unit.
pub fn dropin(host: &Host, name: &Name) -> PathBuf {
    host.unit_dir.join(format!("{}.d", unit_name(name))).join(FILE)
}

/// The drop-in for `limits`; None when there are none (the unit then has no drop-in of ours).
pub fn render(name: &Name, limits: &ResourceLimits) -> Option<String> {
    if limits.is_empty() {
        return None;
    }
    let mut text = format!(
        "# Written by l4d2ctl from {name}'s render (its blueprint's spec.resources); `l4d2ctl initialize` rewrites it.\n[Service]\n"
    );
    if let Some(cpus) = &limits.cpus {
        text.push_str(&format!("AllowedCPUs={cpus}\n"));
    }
    if let Some(weight) = limits.cpu_weight {
        text.push_str(&format!("CPUWeight={}\n", weight.get()));
    }
    if let Some(memory) = limits.memory_max {
        text.push_str(&format!("MemoryMax={}\n", memory.bytes()));
    }
    if let Some(nice) = limits.nice {
        text.push_str(&format!("Nice={}\n", nice.get()));
    }
    Some(text)
}

/// Refuses limits this host cannot give: CPUs it does not have online, or that its cgroup does
/// not allow.
pub fn check_host(name: &Name, limits: &ResourceLimits) -> Result<(), Error> {
    let Some(asked) = &limits.cpus else { return Ok(()) };
    for (file, has) in [(ONLINE, "this host has"), (CGROUP_CPUS, "this host's cgroup allows")] {
        let Some(present) = read_cpus(Path::new(file))? else { continue };
        if asked.missing_from(&present).is_some() {
            return Err(Error::Invalid(format!(
                "{name}: its blueprint asks for CPUs {asked} (spec.resources.cpus), but {has} CPUs {present}; \
                 name CPUs among those, or leave cpus out"
            )));
        }
    }
    Ok(())
}

/// Writes the drop-in `limits` render to, or removes it when there are none. Returns whether a
/// file changed, and marks a changed one for the next start's reload.
pub fn write(host: &Host, name: &Name, limits: &ResourceLimits) -> Result<bool, Error> {
    let path = dropin(host, name);
    let changed = match render(name, limits) {
        Some(text) => {
            let folder = path.parent().expect("a drop-in lies in its unit's folder");
            ensure_dir(folder, 0o755, Owner::root())?;
            write_atomic(&path, text.as_bytes(), 0o644, Owner::root())?
        }
        None => remove(host, name)?,
    };
    if changed {
        let marker = reload_marker(host, name);
        write_atomic(&marker, b"", 0o644, Owner::root())?;
    }
    Ok(changed)
}

/// Removes the server's drop-in and, when empty then, its folder. Returns whether it existed.
pub fn remove(host: &Host, name: &Name) -> Result<bool, Error> {
    let path = dropin(host, name);
    let existed = match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(&path, e)),
    };
    // A folder that holds a drop-in of someone else's stays.
    if let Some(folder) = path.parent() {
        let _ = std::fs::remove_dir(folder);
    }
    Ok(existed)
}

/// Before servers start: one `daemon-reload` when the drop-in of any of them changed since
/// systemd last read it, so a start of several servers reloads once, and one of unchanged
/// servers not at all.
pub fn reload_for(host: &Host, names: &[&Name]) -> Result<(), Error> {
    let marked: Vec<PathBuf> = names.iter().map(|name| reload_marker(host, name)).filter(|m| m.exists()).collect();
    if marked.is_empty() {
        return Ok(());
    }
    systemd::daemon_reload()?;
    for marker in marked {
        std::fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
    }
    Ok(())
}

/// A drop-in that is not what the server's render writes: changed or removed by hand, or left
/// by a render that was cut short.
pub fn drift(host: &Host, name: &Name, limits: &ResourceLimits) -> Option<Problem> {
    let path = dropin(host, name);
    let on_disk = read_bounded(&path, 64 * 1024);
    let cause = match (render(name, limits), on_disk) {
        (Some(text), Some(on_disk)) if on_disk == text.as_bytes() => return None,
        (None, None) => return None,
        (Some(_), None) => "is missing (or is not a regular file)",
        (Some(_), Some(_)) => "differs from what l4d2ctl renders for the server's limits",
        (None, Some(_)) => "sets limits the server's render does not have",
    };
    Some(Problem::new(path, cause, Remedy::Initialize))
}

/// Marks a server whose drop-in changed since systemd last read it: the next start or restart
/// reloads first.
fn reload_marker(host: &Host, name: &Name) -> PathBuf {
    host.instance(name).dir.join("units-changed")
}

/// A CPU list file of the kernel's; None when it is not there (no cgroup v2, say).
fn read_cpus(path: &Path) -> Result<Option<CpuList>, Error> {
    let Some(bytes) = read_bounded(path, 64 * 1024) else { return Ok(None) };
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return Ok(None);
    }
    CpuList::parse(text.trim())
        .map(Some)
        .map_err(|why| Error::Invalid(format!("{}: cannot be read as a CPU list: {why}", path.display())))
}
