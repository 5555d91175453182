//! Retries asked for: `$ROOT/retries/<server>`, an empty file per server someone asked to try
//! again at once, whatever its crash loop's wait. Whoever may write `$ROOT` asks — the web app as
//! the game user, `left4me retry` as root — and the service's watch on the folder starts a pass at
//! once. A folder rather than the database: the web app only reads the database.
//!
//! A pass takes the requests by renaming each to its taken name, and removes the taken ones once
//! it has recorded them: a request made while it runs is a new file, seen by the next pass.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use left4me_state::Name;

/// The folder under `$ROOT`.
pub const FOLDER: &str = "retries";

/// What a request is renamed to once a pass has taken it.
const TAKEN: &str = ".taken-";

/// A request that could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a request in {path}: {cause}")]
pub struct Error {
    path: String,
    cause: io::Error,
}

impl Error {
    pub fn new(path: &Path, cause: io::Error) -> Error {
        Error { path: path.display().to_string(), cause }
    }
}

fn error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |cause| Error { path: path.display().to_string(), cause }
}

/// `$ROOT/retries`.
pub fn folder(root: &Path) -> PathBuf {
    root.join(FOLDER)
}

/// Makes the folder when it is missing (mode 0755). Made by root, it is given to the owner of
/// `$ROOT` — the game user, as whom the web app writes its requests; one root already owns is
/// given over too.
pub fn make_folder(root: &Path) -> Result<PathBuf, Error> {
    make_inbox(root, folder(root))
}

/// Makes `folder`, an inbox of requests under `root` (this one, `requests.rs`'), as
/// [`make_folder`] makes the retries'.
pub fn make_inbox(root: &Path, folder: PathBuf) -> Result<PathBuf, Error> {
    match fs::create_dir(&folder) {
        Ok(()) => fs::set_permissions(&folder, fs::Permissions::from_mode(0o755)).map_err(error(&folder))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(error(&folder)(e)),
    }
    if nix::unistd::geteuid().is_root() {
        let owner = fs::metadata(root).map_err(error(root))?;
        let meta = fs::symlink_metadata(&folder).map_err(error(&folder))?;
        if !meta.is_dir() {
            return Err(error(&folder)(io::Error::other("it is not a folder; remove it")));
        }
        if (meta.uid(), meta.gid()) != (owner.uid(), owner.gid()) {
            std::os::unix::fs::chown(&folder, Some(owner.uid()), Some(owner.gid())).map_err(error(&folder))?;
        }
    }
    Ok(folder)
}

/// Asks the next pass to try `server` at once.
pub fn ask(root: &Path, server: &Name) -> Result<(), Error> {
    let file = make_folder(root)?.join(server.as_str());
    fs::File::create(&file).map(drop).map_err(error(&file))
}

/// Whether `path` (from a watch on the folder) is a request just made: one of the folder's own
/// files, not a taken one, there now.
pub fn is_request(root: &Path, path: &Path) -> bool {
    path.parent() == Some(folder(root).as_path())
        && path.file_name().is_some_and(|name| !name.to_string_lossy().starts_with('.'))
        && path.exists()
}

/// The servers asked for, taken or not: what a plan counts as retried. Reads only. A folder that
/// cannot be read asks for nothing (said in the log): it never stops a pass.
pub fn asked(root: &Path) -> Vec<Name> {
    let mut names: Vec<Name> = entries(root).into_iter().filter_map(|(_, request)| request).collect();
    names.sort();
    names.dedup();
    names
}

/// Takes the requests for a pass: each new one is renamed to its taken name, so that one made
/// from now on is a file of its own. Returns the servers taken (with those an earlier pass took
/// and did not get to remove). What is no request is removed, with a warning.
pub fn take(root: &Path) -> Vec<Name> {
    let mut taken = Vec::new();
    for (path, request) in entries(root) {
        let Some(name) = request else {
            tracing::warn!("{} is no retry request (not a server name): removed", path.display());
            if let Err(e) = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path)) {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
            continue;
        };
        let is_taken = path.file_name().is_some_and(|f| f.to_string_lossy().starts_with(TAKEN));
        if !is_taken && let Err(e) = fs::rename(&path, taken_path(root, &name)) {
            tracing::warn!("cannot take the retry request {}: {e}", path.display());
            continue;
        }
        taken.push(name);
    }
    taken.sort();
    taken.dedup();
    taken
}

/// Removes the requests a pass took, once it has recorded them.
pub fn done(root: &Path, taken: &[Name]) {
    for name in taken {
        let path = taken_path(root, name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!("cannot remove the retry request {}: {e}", path.display())
            }
            _ => {}
        }
    }
}

fn taken_path(root: &Path, name: &Name) -> PathBuf {
    folder(root).join(format!("{TAKEN}{name}"))
}

/// The folder's entries, each with the server it asks for (None: it is no request).
fn entries(root: &Path) -> Vec<(PathBuf, Option<Name>)> {
    let folder = folder(root);
    let read = match fs::read_dir(&folder) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!("cannot read the retry requests in {}: {e}", folder.display());
            return Vec::new();
        }
    };
    read.flatten()
        .map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let name = file.strip_prefix(TAKEN).unwrap_or(&file);
            let request = entry.file_type().is_ok_and(|t| t.is_file()).then(|| Name::new(name).ok()).flatten();
            (entry.path(), request)
        })
        .collect()
}
