//! restic as a second place for backups, off the host: each backup's file sent as one snapshot
//! read from stdin, tagged with the server, found again by that tag.
//!
//! The password stays in its file: restic is told where it is (`RESTIC_PASSWORD_FILE`), never
//! given it on its command line, where `ps` would show it.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use left4me_state::Name;
use serde::Deserialize;

use crate::error::Error;
use crate::host::Host;

/// The restic repository of host.env.
#[derive(Debug, Clone)]
pub struct Restic {
    repository: String,
    password_file: PathBuf,
    /// Whose snapshots are this host's (its name, or `LEFT4ME_RESTIC_HOST`): a repository may
    /// hold several hosts' servers of the same name.
    hostname: String,
}

/// One backup's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// restic's own id of it.
    pub snapshot: String,
    /// The backup's id (its file's name without `.tar.gz`).
    pub id: String,
    /// The path restic keeps the file under.
    pub path: String,
    pub taken_at: String,
    pub bytes: u64,
    pub reason: String,
}

#[derive(Deserialize)]
struct Listed {
    id: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

impl Restic {
    /// The repository host.env names; None when it names none. One setting without the other is
    /// a mistake, said as one.
    pub fn of(host: &Host) -> Result<Option<Restic>, Error> {
        let (repository, password_file) = match (&host.restic_repository, &host.restic_password_file) {
            (None, None) => return Ok(None),
            (Some(repository), Some(file)) => (repository.clone(), file.clone()),
            _ => {
                return Err(Error::Invalid(
                    "host.env sets only one of LEFT4ME_RESTIC_REPOSITORY and LEFT4ME_RESTIC_PASSWORD_FILE; a \
                     restic repository needs both"
                        .into(),
                ));
            }
        };
        let hostname = match &host.restic_host {
            Some(name) => name.clone(),
            None => nix::unistd::gethostname()
                .map_err(|e| Error::Invalid(format!("cannot read this host's name: {e}")))?
                .to_string_lossy()
                .into_owned(),
        };
        Ok(Some(Restic { repository, password_file, hostname }))
    }

    /// Sends the backup file `file` as the snapshot of `<name>/<id>.tar.gz`.
    pub fn backup(&self, name: &Name, id: &str, reason: &str, bytes: u64, file: fs::File) -> Result<(), Error> {
        let path = format!("{name}/{id}.tar.gz");
        let server = format!("server:{name}");
        // A tag is split at commas; the rest of a reason is kept as it is.
        let reason = format!("reason:{}", reason.replace(',', " "));
        let size = format!("bytes:{bytes}");
        let args = [
            "backup",
            "--quiet",
            "--stdin",
            "--stdin-filename",
            &path,
            "--host",
            &self.hostname,
            "--tag",
            "left4me",
            "--tag",
            &server,
            "--tag",
            &reason,
            "--tag",
            &size,
        ];
        self.run(&args, Stdio::from(file), Stdio::piped()).map(drop)
    }

    /// The snapshots of `name`'s backups made from this host.
    pub fn snapshots(&self, name: &Name) -> Result<Vec<Snapshot>, Error> {
        let tags = format!("left4me,server:{name}");
        let out = self.run(
            &["snapshots", "--json", "--host", &self.hostname, "--tag", &tags],
            Stdio::null(),
            Stdio::piped(),
        )?;
        let listed: Vec<Listed> = serde_json::from_str(out.trim()).map_err(|e| {
            Error::NotNow(format!("restic repository {}: its list of snapshots is unreadable: {e}", self.shown()))
        })?;
        let tag = |tags: &[String], key: &str| {
            tags.iter().find_map(|t| t.strip_prefix(key)).map(str::to_owned).unwrap_or_default()
        };
        let mut found = Vec::new();
        for snapshot in listed {
            // Only a snapshot of `<name>/<id>.tar.gz` is a backup of this server's: the path is
            // what `dump` reads, and another (one of another server's, under its tag) is none.
            let [path] = snapshot.paths.as_slice() else { continue };
            let Some(id) = backup_id(path, name) else { continue };
            found.push(Snapshot {
                snapshot: snapshot.id,
                id: id.to_owned(),
                path: path.clone(),
                taken_at: super::taken_at(id),
                bytes: tag(&snapshot.tags, "bytes:").parse().unwrap_or(0),
                reason: tag(&snapshot.tags, "reason:"),
            });
        }
        Ok(found)
    }

    /// Writes the file of a snapshot to `out`.
    pub fn dump(&self, snapshot: &Snapshot, out: fs::File) -> Result<(), Error> {
        // After `--`: neither is taken for an option, whatever the repository's JSON said.
        self.run(&["dump", "--", &snapshot.snapshot, &snapshot.path], Stdio::null(), Stdio::from(out)).map(drop)
    }

    /// Forgets all but the newest `keep` snapshots of `name`'s backups. Without `--prune`: a
    /// prune rewrites the repository's packs under an exclusive lock, which a repository shared
    /// by several hosts, or one on a slow remote, should get on its operator's own schedule.
    pub fn forget(&self, name: &Name, keep: u32) -> Result<(), Error> {
        let tags = format!("left4me,server:{name}");
        let keep = keep.to_string();
        let args = [
            "forget",
            "--quiet",
            "--host",
            &self.hostname,
            "--tag",
            &tags,
            // One group for all of them: a group by tags would be one per reason and size, each
            // keeping its own last `keep`.
            "--group-by",
            "host",
            "--keep-last",
            &keep,
        ];
        self.run(&args, Stdio::null(), Stdio::piped()).map(drop)
    }

    /// The repository as messages name it: without the user and password a URL may hold.
    fn shown(&self) -> String {
        without_userinfo(&self.repository)
    }

    /// Runs restic on the repository; its stdout when `stdout` is piped. A failure is transient:
    /// a repository out of reach now may be reached later.
    fn run(&self, args: &[&str], stdin: Stdio, stdout: Stdio) -> Result<String, Error> {
        let output = Command::new("restic")
            .args(args)
            .env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Error::NotNow(format!("cannot run restic (install Debian's restic package): {e}")))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            let said = said.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no message");
            return Err(Error::NotNow(format!(
                "restic {} on {} failed ({}): {said}",
                args[0],
                self.shown(),
                output.status
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The id of the backup a snapshot of `path` is, when the path is `<name>/<id>.tar.gz` (restic
/// may keep it with a leading `/`).
fn backup_id<'p>(path: &'p str, name: &Name) -> Option<&'p str> {
    let file = path.strip_prefix('/').unwrap_or(path).strip_prefix(name.as_str())?.strip_prefix('/')?;
    let id = file.strip_suffix(".tar.gz")?;
    super::parse_id(id).is_ok().then_some(id)
}

/// A repository string without the `user:password@` of a URL in it (`rest:https://u:p@host/`).
fn without_userinfo(repository: &str) -> String {
    let Some((scheme, rest)) = repository.split_once("://") else { return repository.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => repository.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_named_without_its_password() {
        assert_eq!(
            without_userinfo("rest:https://ada:hunter2@backup.example/l4d2"),
            "rest:https://backup.example/l4d2"
        );
        assert_eq!(without_userinfo("s3:https://key:secret@s3.example"), "s3:https://s3.example");
        assert_eq!(without_userinfo("/var/lib/restic"), "/var/lib/restic");
        assert_eq!(without_userinfo("rest:https://backup.example/a@b"), "rest:https://backup.example/a@b");
    }

    #[test]
    fn only_a_snapshot_of_the_servers_own_path_is_its_backup() {
        let name = Name::new("coop-1").unwrap();
        let id = "2026-12-01T06-00-00Z";
        assert_eq!(backup_id(&format!("coop-1/{id}.tar.gz"), &name), Some(id));
        assert_eq!(backup_id(&format!("/coop-1/{id}.tar.gz"), &name), Some(id));
        for path in [
            format!("versus-2/{id}.tar.gz"),
            format!("/etc/coop-1/{id}.tar.gz"),
            format!("coop-1/x/{id}.tar.gz"),
            format!("coop-10/{id}.tar.gz"),
            format!("coop-1/{id}.tar"),
            "coop-1/--help.tar.gz".to_owned(),
        ] {
            assert_eq!(backup_id(&path, &name), None, "{path}");
        }
    }
}
