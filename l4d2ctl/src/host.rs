//! The host: where things live, from `/etc/left4me/host.env` and the environment.

use std::path::{Path, PathBuf};

use left4me_state::Name;

use crate::error::Error;

/// The settings file every left4me program reads; variables set in the environment win.
pub const HOST_ENV: &str = "/etc/left4me/host.env";

/// The paths and names of one left4me host (docs/DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `$ROOT`: everything left4me keeps (`LEFT4ME_ROOT`, default `/var/lib/left4me`).
    pub root: PathBuf,
    /// Where unit files are installed (`LEFT4ME_UNIT_DIR`, default `/usr/local/lib/systemd/system`).
    pub unit_dir: PathBuf,
    /// The steamcmd to run (`LEFT4ME_STEAMCMD`, default `steamcmd` on the PATH).
    pub steamcmd: PathBuf,
    /// The user game servers run as (`LEFT4ME_USER`, default `left4me`).
    pub user: String,
    /// This program, as the units call it (`LEFT4ME_L4D2CTL`, default the running executable).
    pub l4d2ctl: PathBuf,
    /// Networks an archive's download may reach although they are private (`LEFT4ME_DOWNLOAD_ALLOW`,
    /// addresses and blocks such as `10.1.2.0/24`; default none).
    pub download_allow: String,
    /// The Steam Web API's base URL (`LEFT4ME_STEAM_API`, default `https://api.steampowered.com`).
    pub steam_api: String,
    /// The restic repository every backup is sent to as well (`LEFT4ME_RESTIC_REPOSITORY`, as
    /// restic's `-r` takes it; default none: backups stay on this host).
    pub restic_repository: Option<String>,
    /// The file holding that repository's password, root's (`LEFT4ME_RESTIC_PASSWORD_FILE`).
    pub restic_password_file: Option<PathBuf>,
    /// Whose snapshots in that repository are this host's (`LEFT4ME_RESTIC_HOST`, default the
    /// host's name): a new host that takes over from a lost one names the old one to restore its
    /// backups.
    pub restic_host: Option<String>,
    /// The most a backup holds: its files' sizes added up, a sparse file counted whole
    /// (`LEFT4ME_BACKUP_MAX_BYTES`, default 4 GiB). The game's user writes the data root packs
    /// and unpacks; it must not fill the host's disk through root.
    pub backup_max_bytes: u64,
    /// The UDP port on 127.0.0.1 where `left4me live` takes the game's log stream, and every
    /// server.cfg sends it (`LEFT4ME_LIVE_PORT`, default 27500).
    pub live_port: u16,
    /// Which of the state repo's `hosts/` this is (`LEFT4ME_HOST`); none on a host whose repo
    /// declares no hosts. It is given only the servers placed on it.
    pub name: Option<Name>,
}

/// Where the game's log goes unless host.env says otherwise: outside the game ports (27015 on)
/// and the ports tests use.
pub const LIVE_PORT: u16 = 27500;

/// `$ROOT/live/`: `left4me live`'s database (`live.db`), the one folder its unit may write.
pub const LIVE_DIR: &str = "live";

/// The most a backup holds unless host.env says otherwise.
pub const BACKUP_MAX_BYTES: u64 = 4 << 30;

impl Host {
    /// The host as configured: `/etc/left4me/host.env`, then the environment.
    pub fn from_env() -> Result<Host, Error> {
        let file = match std::fs::read_to_string(HOST_ENV) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(HOST_ENV, e)),
        };
        let from_file = parse_env_file(&file);
        let get = |key: &str| {
            std::env::var(key)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| from_file.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
        };
        let l4d2ctl = match get("LEFT4ME_L4D2CTL") {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe().map_err(|e| Error::io("the running l4d2ctl", e))?,
        };
        let root = PathBuf::from(get("LEFT4ME_ROOT").unwrap_or_else(|| "/var/lib/left4me".into()));
        if !root.is_absolute() {
            return Err(Error::Invalid(format!("LEFT4ME_ROOT must be an absolute path, not {}", root.display())));
        }
        // Mount points are matched by their real path: a $ROOT reached through a symlink must
        // resolve to it.
        let root = root.canonicalize().unwrap_or(root);
        Ok(Host {
            root,
            // Folders are made with no symlink followed (fsutil::ensure_dir): a unit folder an
            // operator reaches through one is taken at its real path.
            unit_dir: {
                let dir =
                    PathBuf::from(get("LEFT4ME_UNIT_DIR").unwrap_or_else(|| "/usr/local/lib/systemd/system".into()));
                dir.canonicalize().unwrap_or(dir)
            },
            steamcmd: PathBuf::from(get("LEFT4ME_STEAMCMD").unwrap_or_else(|| "steamcmd".into())),
            user: get("LEFT4ME_USER").unwrap_or_else(|| "left4me".into()),
            l4d2ctl,
            download_allow: get("LEFT4ME_DOWNLOAD_ALLOW").unwrap_or_default(),
            steam_api: get("LEFT4ME_STEAM_API").unwrap_or_else(|| "https://api.steampowered.com".into()),
            restic_repository: get("LEFT4ME_RESTIC_REPOSITORY"),
            restic_password_file: get("LEFT4ME_RESTIC_PASSWORD_FILE").map(PathBuf::from),
            restic_host: get("LEFT4ME_RESTIC_HOST"),
            backup_max_bytes: match get("LEFT4ME_BACKUP_MAX_BYTES") {
                None => BACKUP_MAX_BYTES,
                Some(text) => text.parse().map_err(|_| {
                    Error::Invalid(format!(
                        "LEFT4ME_BACKUP_MAX_BYTES must be a number of bytes (4294967296 is 4 GiB), not {text:?}"
                    ))
                })?,
            },
            live_port: match get("LEFT4ME_LIVE_PORT") {
                None => LIVE_PORT,
                Some(text) => text.parse().ok().filter(|port| *port > 0).ok_or_else(|| {
                    Error::Invalid(format!("LEFT4ME_LIVE_PORT must be a UDP port (1 to 65535), not {text:?}"))
                })?,
            },
            name: match get("LEFT4ME_HOST") {
                None => None,
                Some(text) => Some(Name::new(&text).map_err(|e| {
                    Error::Invalid(format!("LEFT4ME_HOST must be the name of one of the state repo's hosts/: {e}"))
                })?),
            },
        })
    }

    /// The host at `root` with every other setting at its default: for a reader of `$ROOT` that
    /// is told where it is by its own settings (the web app) and acts on nothing.
    pub fn at(root: &Path) -> Host {
        Host {
            root: root.canonicalize().unwrap_or_else(|_| root.to_path_buf()),
            unit_dir: PathBuf::from("/usr/local/lib/systemd/system"),
            steamcmd: PathBuf::from("steamcmd"),
            user: "left4me".into(),
            l4d2ctl: PathBuf::from("l4d2ctl"),
            download_allow: String::new(),
            steam_api: "https://api.steampowered.com".into(),
            restic_repository: None,
            restic_password_file: None,
            restic_host: None,
            backup_max_bytes: BACKUP_MAX_BYTES,
            live_port: LIVE_PORT,
            name: None,
        }
    }

    pub fn installation(&self) -> PathBuf {
        self.root.join("installation")
    }

    /// `$ROOT/builds/`: one complete tree per Steam build of the game, never changed once installed.
    pub fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }

    /// The tree of one build, `builds/<build id>`.
    pub fn build(&self, id: u64) -> PathBuf {
        self.builds().join(id.to_string())
    }

    pub fn overlays(&self) -> PathBuf {
        self.root.join("overlays")
    }

    pub fn overlay(&self, name: &Name) -> PathBuf {
        self.overlays().join(name.as_str())
    }

    pub fn instances(&self) -> PathBuf {
        self.root.join("instances")
    }

    pub fn instance(&self, name: &Name) -> InstancePaths {
        InstancePaths {
            dir: self.instances().join(name.as_str()),
            runtime: self.root.join("runtime").join(name.as_str()),
        }
    }

    /// Override markers live apart from instances, so that deleting an instance by hand is
    /// remembered too.
    pub fn overrides(&self) -> PathBuf {
        self.root.join("overrides")
    }

    pub fn override_marker(&self, name: &Name) -> PathBuf {
        self.overrides().join(format!("{name}.json"))
    }

    /// `$ROOT/backups/`: each server's backups in a folder of its own, root's, readable by the
    /// game's group (the web app lists and downloads them; a server's unit hides `$ROOT`).
    pub fn backups(&self) -> PathBuf {
        self.root.join("backups")
    }
}

/// The files and folders of one instance.
#[derive(Debug, Clone)]
pub struct InstancePaths {
    /// `instances/<name>/`: the rendered spec, the secrets, the rendered config layer.
    pub dir: PathBuf,
    /// `runtime/<name>/`: upper, work and merged of the overlay.
    pub runtime: PathBuf,
}

impl InstancePaths {
    /// The rendered spec and its digest.
    pub fn record(&self) -> PathBuf {
        self.dir.join("instance.json")
    }

    /// The generated RCON password (0600, never in git, logs or HTML).
    pub fn rcon_password(&self) -> PathBuf {
        self.dir.join("rcon_password")
    }

    /// The generated secret the game signs its log packets with (`sv_logsecret`, a number;
    /// root:game 0640, as the RCON password: `left4me live` reads it to tell whose a packet is).
    pub fn log_secret(&self) -> PathBuf {
        self.dir.join("log_secret")
    }

    /// The layers of rendered configs, one per rendered digest.
    pub fn layers(&self) -> PathBuf {
        self.dir.join("layers")
    }

    /// The uppermost layer of the instance's tree for one render: its server.cfg and staged
    /// configs. Each render gets a folder of its own, so rendering anew never changes the files
    /// under a running server's mount (overlayfs leaves that undefined); the next start mounts
    /// the new one.
    pub fn layer(&self, digest: &left4me_state::Digest) -> PathBuf {
        let hex = digest.as_str().trim_start_matches("sha256:");
        self.layers().join(&hex[..hex.len().min(16)])
    }

    pub fn upper(&self) -> PathBuf {
        self.runtime.join("upper")
    }

    pub fn work(&self) -> PathBuf {
        self.runtime.join("work")
    }

    pub fn merged(&self) -> PathBuf {
        self.runtime.join("merged")
    }

    /// The digest, port and build the running server was started with, written at each mount.
    pub fn started(&self) -> PathBuf {
        self.runtime.join("started.json")
    }
}

/// The host's pass lock (`$ROOT/left4me.lock`): held by a reconcile pass for its whole length and
/// by a person's `l4d2ctl` write, so neither acts on a server the other is changing. Released when
/// dropped, or when the holder dies; `waiting` is told when the wait passes a second.
pub fn pass_lock(root: &Path, waiting: impl FnOnce()) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    crate::fsutil::lock(&root.join("left4me.lock"), waiting)
}

/// The host's pass lock if nobody holds it now, else None: for a waiter that looks at something
/// else between tries (a job's cancelling).
pub fn try_pass_lock(root: &Path) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, Error> {
    crate::fsutil::try_lock(&root.join("left4me.lock"))
}

/// The lock of one server (`$ROOT/locks/<name>.lock`): held by every write that stops, starts,
/// renders, deletes, backs up or restores it, so none of them acts on a server another is
/// halfway through — the reconciler's writes included, which the pass lock does not keep apart
/// from a backup that runs beside a pass. Released when dropped, or when the holder dies.
pub fn server_lock(
    root: &Path,
    name: &Name,
    waiting: impl FnOnce(),
) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    let dir = root.join("locks");
    crate::fsutil::ensure_dir(&dir, 0o755, crate::fsutil::Owner::root())?;
    crate::fsutil::lock(&dir.join(format!("{name}.lock")), waiting)
}

/// `KEY=VALUE` lines, `#` comments, optional double quotes — the subset of systemd's
/// EnvironmentFile= syntax the files left4me writes use.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let value = value.trim();
            let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
            (key.trim().to_owned(), value.to_owned())
        })
        .collect()
}

/// The unit instance of a server.
pub fn unit_name(name: &Name) -> String {
    format!("left4me-server@{name}.service")
}

/// True when `path` is `base` or lies below it.
pub fn is_under(path: &Path, base: &Path) -> bool {
    path.starts_with(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_read_like_systemd() {
        let parsed = parse_env_file("# comment\nLEFT4ME_ROOT=/srv/l4d2\n\nLEFT4ME_USER = \"game\"\nbroken line\n");
        assert_eq!(parsed, vec![("LEFT4ME_ROOT".into(), "/srv/l4d2".into()), ("LEFT4ME_USER".into(), "game".into())]);
    }
}
