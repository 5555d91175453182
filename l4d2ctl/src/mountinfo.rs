//! The mount table of this mount namespace (`/proc/self/mountinfo`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Whether something is mounted on `path`, from this namespace's mount table.
pub fn is_mounted(path: &Path) -> Result<bool, Error> {
    Ok(mount_points()?.iter().any(|p| p == path))
}

/// Every mount point of this mount namespace.
pub fn mount_points() -> Result<Vec<PathBuf>, Error> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::io("/proc/self/mountinfo", e))?;
    Ok(text.lines().filter_map(|line| line.split(' ').nth(4)).map(|p| PathBuf::from(unescape_mount_path(p))).collect())
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(Ok(value)) = text.get(i + 1..i + 4).map(|octal| u8::from_str_radix(octal, 8))
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
