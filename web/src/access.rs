//! Who may see or change what: the one place the web app decides it. An admin sees and changes
//! everything (alerts are admins' alone); a user sees and changes their own servers, blueprints
//! and schedules (`metadata.owner` is them), sees the shared catalogue (overlays, `left4me.yaml`)
//! and the history of it, and nothing of other users' objects — which answer as if they did not
//! exist.

use left4me_state::{Diagnostic, Name};

use crate::accounts::User;
use crate::snapshot::Snapshot;

/// Why a change may not be made.
pub enum Denied {
    /// Another user's object: answered as if it did not exist.
    NotFound,
    /// Not the user's to change, and why.
    Forbidden(String),
    /// The owner of what would be saved cannot be read: the reader's reason.
    Unreadable(Diagnostic),
}

/// Whether `user` sees and changes everything (the host's settings, the overlays, every user's
/// objects and the host's own parts).
pub fn administers(user: &User) -> bool {
    user.admin
}

/// Whether `user` may see a resource owned by `owner` (None: only the host has it).
pub fn may_see(user: &User, owner: Option<&Name>) -> bool {
    user.admin || owner.is_some_and(|owner| *owner == user.name)
}

/// Whether `user` may change (start, retry, send commands to) an object owned by `owner`.
pub fn may_change(user: &User, owner: &Name) -> bool {
    *owner == user.name || user.admin
}

/// Whether `user` may see, take, restore and download the backups of a server owned by `owner`:
/// its owner and admins, as for every change of the server.
pub fn may_back_up(user: &User, owner: &Name) -> bool {
    may_change(user, owner)
}

/// Whether `user` may browse the files of a server owned by `owner`: its owner and admins.
pub fn may_browse_files(user: &User, owner: &Name) -> bool {
    may_change(user, owner)
}

/// Whether `user` may cancel a job about `target`: its owner (the target server is theirs) or an
/// admin — whoever may see the job.
pub fn may_cancel(snapshot: &Snapshot, user: &User, target: &str) -> bool {
    target_visible(snapshot, user, target)
}

/// Whether `user` is `owner` themself (an admin is not: a server's RCON history is its owner's).
pub fn is_owner(user: &User, owner: &Name) -> bool {
    *owner == user.name
}

/// Whether `user` is the owner a file version declares (None: no version, or no owner).
pub fn owns(user: &User, owner: Option<&str>) -> bool {
    owner == Some(user.name.as_str())
}

/// Whether `user` may see the server `name`: declared and theirs, or (admins) on the host at all.
pub fn server_visible(snapshot: &Snapshot, user: &User, name: &str) -> bool {
    match snapshot.desired.as_ref().and_then(|d| d.servers.get(name)) {
        Some(server) => may_see(user, Some(&server.owner)),
        None => user.admin && snapshot.servers.iter().any(|report| report.name == name),
    }
}

/// Whether `user` may see what is about `target` (a server's jobs and plan steps; an overlay's,
/// or a server only the host has, for admins).
pub fn target_visible(snapshot: &Snapshot, user: &User, target: &str) -> bool {
    may_see(user, snapshot.owner(target))
}

/// The servers whose audit entries `user` sees: None for every entry (an admin); else the servers
/// that are theirs in the current revision (a server they gave up, or that is gone, no longer).
pub fn audit_servers(snapshot: &Snapshot, user: &User) -> Option<Vec<Name>> {
    if user.admin {
        return None;
    }
    let Some(desired) = &snapshot.desired else { return Some(Vec::new()) };
    Some(desired.servers.values().filter(|s| s.owner == user.name).map(|s| s.name.clone()).collect())
}

/// The names of the blueprints `user` may see.
pub fn visible_blueprints(snapshot: &Snapshot, user: &User) -> Vec<String> {
    let Some(desired) = &snapshot.desired else { return Vec::new() };
    desired.blueprints.values().filter(|b| may_see(user, Some(&b.owner))).map(|b| b.name.to_string()).collect()
}

/// Who owns what a form saves: the user, unless an admin edits an object that has an owner.
pub fn form_owner(user: &User, editing: bool, given: &str) -> String {
    if user.admin && editing && !given.trim().is_empty() { given.trim().to_owned() } else { user.name.to_string() }
}

/// Files every user may see the history of: the settings and the overlay catalogue.
pub fn shared(path: &str) -> bool {
    matches!(path, "left4me.yaml" | "left4me.yml") || path.starts_with("overlays/")
}

/// Whether `user` sees a commit's change to `path`: everything for an admin, the shared files,
/// and a user's object (`object`: a server or blueprint file) owned by them before or after the
/// commit. `owner_of` reads the owner of the file's `before` and `after` versions, each only when
/// the answer needs it.
pub fn sees_change<'a, E>(
    user: &User,
    path: &str,
    object: bool,
    [before, after]: [Option<&'a str>; 2],
    mut owner_of: impl FnMut(Option<&'a str>) -> Result<Option<String>, E>,
) -> Result<bool, E> {
    if user.admin || shared(path) {
        return Ok(true);
    }
    if !object {
        return Ok(false);
    }
    Ok(owns(user, owner_of(before)?.as_deref()) || owns(user, owner_of(after)?.as_deref()))
}

/// Files a user may own: `servers/<name>.yaml`, `blueprints/<name>.yaml` and
/// `schedules/<name>.yaml`.
fn owned_kind(path: &str) -> bool {
    let Some((folder, file)) = path.split_once('/') else { return false };
    matches!(folder, "servers" | "blueprints" | "schedules") && !file.contains('/') && file.ends_with(".yaml")
}

/// Whether `user` may change `path` from `head` (what the branch has) to `new`. An admin may
/// change anything; a user only their own servers, blueprints and schedules, and may not give them
/// away. (That a schedule names only its owner's servers is validation's rule, told as for a
/// server that does not exist.)
pub fn authorize(user: &User, path: &str, head: Option<&[u8]>, new: Option<&[u8]>) -> Result<(), Denied> {
    if user.admin {
        return Ok(());
    }
    if !owned_kind(path) {
        return Err(Denied::Forbidden(format!(
            "{path}: only admins change overlays, alerts and the host's settings; your own servers, blueprints and schedules are yours to change"
        )));
    }
    // The owner is read as validation reads it (the state crate's bounded reader, the same
    // scalar reading), so what is checked here is what the revision will say.
    if let Some(head) = head
        && !matches!(left4me_state::declared_owner(path, head), Ok(Some(owner)) if owner == user.name)
    {
        return Err(Denied::NotFound);
    }
    if let Some(new) = new {
        match left4me_state::declared_owner(path, new) {
            Ok(Some(owner)) if owner == user.name => {}
            Ok(Some(other)) => {
                return Err(Denied::Forbidden(format!(
                    "{path}: metadata.owner is {other:?}; what you save must be owned by you ({})",
                    user.name
                )));
            }
            Ok(None) => {
                return Err(Denied::Forbidden(format!(
                    "{path}: metadata.owner is missing; what you save must name you ({}) as its owner",
                    user.name
                )));
            }
            Err(diagnostic) => return Err(Denied::Unreadable(diagnostic)),
        }
    }
    Ok(())
}
