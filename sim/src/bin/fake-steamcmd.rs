//! fake-steamcmd: a stand-in for `steamcmd`, for what `l4d2ctl install` does with it.
//!
//! `fake-steamcmd +force_install_dir <dir> +login anonymous [+@sSteamCmdForcePlatformType windows|linux]
//! +app_update 222860 [validate] +quit` installs a small base tree of the L4D2 dedicated server whose
//! `srcds_run` starts `sim-srcds` (copied from next to this executable as `srcds_linux`). Like the real tool
//! since late 2024, an anonymous linux install into a directory without an earlier windows pass fails with
//! "Invalid platform" (exit 8); a windows pass first makes the linux pass succeed.
//!
//! An install records its platform and build id in `steamapps/appmanifest_222860.acf`. Running the same
//! update again is a no-op ("already up to date"); `validate` compares every file and restores the missing or
//! modified ones. Files are replaced by rename, so a running `srcds_linux` is never written to.
//!
//! `+app_info_update 1 +app_info_print 222860` prints steamcmd's log lines, then the app's VDF block
//! (`common`, `config`, `depots` with `branches > public > buildid`). The public build is the number in
//! `public-buildid` of the state folder (`/var/lib/fake-steamcmd`, or `FAKE_STEAMCMD_STATE_DIR`) when that file
//! exists; otherwise it is the build `app_update` installs from this binary's own content, as before. Like
//! steamcmd, the answer is cached in `~/.local/share/Steam/appcache/appinfo.vdf` (here as VDF text, not
//! steamcmd's binary form): `app_info_print` answers from the cache, stale or not, and only
//! `app_info_update 1` (or a missing cache) refreshes it. `app_update` installs the published build: its
//! `left4dead2/steam.inf` says `PatchVersion=2.2.4.<build>` and `bin/` holds a file naming the build.
//!
//! `app_update 222860 -beta <branch>` installs the build of `<branch>-buildid` in the state folder, and
//! `app_info_print` lists every branch published there, with each depot's manifest per branch (`gid`, `size`,
//! `download`: the depot's files, or the `download-bytes` knob). `app_update` prints steamcmd's
//! `Update state (0x61) downloading, progress: …` lines and writes only the files that differ.
//!
//! Test knobs: `FAKE_STEAMCMD_EXTRA_FILES=<n>` adds n files of 100 KiB with deterministic names and content
//! under `left4dead2/sim_content/`, to make the base install large for performance tests. In the state
//! folder: `base-files` (`<count> <bytes each>`) adds a tree under `left4dead2/sim_base/` of which one file
//! in a hundred changes with every build; `fail` makes `app_update` fail: `killed` (part of the files
//! written, then SIGKILL), `disk-full` (part written, then "Error! App '222860' state is 0x202 after update
//! job." and exit 8), `invalid-platform`, `incomplete` (a manifest that says the update is not finished).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const APP_ID: &str = "222860";
const APP_NAME: &str = "Left 4 Dead 2 Dedicated Server";
/// The exit code steamcmd ends with after a failed app_update.
const EXIT_APP_UPDATE_FAILED: u8 = 8;
/// The exit code after a failed login.
const EXIT_LOGIN_FAILED: u8 = 5;
const EXTRA_FILE_SIZE: usize = 100 * 1024;
/// Where a test publishes a build (`public-buildid`), as Steam would.
const STATE_DIR: &str = "/var/lib/fake-steamcmd";
/// The `timeupdated` of the public branch when no build is published by file.
const DEFAULT_TIME_UPDATED: u64 = 1_731_434_533;

/// Official campaign maps (c1 … c14), shipped as placeholder .bsp files.
const MAPS: &[&str] = &[
    "c1m1_hotel",
    "c1m2_streets",
    "c1m3_mall",
    "c1m4_atrium",
    "c2m1_highway",
    "c2m2_fairgrounds",
    "c2m3_coaster",
    "c2m4_barns",
    "c2m5_concert",
    "c3m1_plankcountry",
    "c3m2_swamp",
    "c3m3_shantytown",
    "c3m4_plantation",
    "c4m1_milltown_a",
    "c4m2_sugarmill_a",
    "c4m3_sugarmill_b",
    "c4m4_milltown_b",
    "c4m5_milltown_escape",
    "c5m1_waterfront",
    "c5m2_park",
    "c5m3_cemetery",
    "c5m4_quarter",
    "c5m5_bridge",
    "c6m1_riverbank",
    "c6m2_bedlam",
    "c6m3_port",
    "c7m1_docks",
    "c7m2_barge",
    "c7m3_port",
    "c8m1_apartment",
    "c8m2_subway",
    "c8m3_sewers",
    "c8m4_interior",
    "c8m5_rooftop",
    "c9m1_alleys",
    "c9m2_lots",
    "c10m1_caves",
    "c10m2_drainage",
    "c10m3_ranchhouse",
    "c10m4_mainstreet",
    "c10m5_houseboat",
    "c11m1_greenhouse",
    "c11m2_offices",
    "c11m3_garage",
    "c11m4_terminal",
    "c11m5_runway",
    "c12m1_hilltop",
    "c12m2_traintunnel",
    "c12m3_bridge",
    "c12m4_barn",
    "c12m5_cornfield",
    "c13m1_alpinecreek",
    "c13m2_southpinestream",
    "c13m3_memorialbridge",
    "c13m4_cutthroatcreek",
    "c14m1_junkyard",
    "c14m2_lighthouse",
];

const SRCDS_RUN: &str = "#!/bin/sh\n\
# srcds_run as installed by fake-steamcmd (left4me's simulation): like the real script it runs the server\n\
# from its own directory with the same arguments; the real one's restart loop is left out (-norestart).\n\
cd \"$(dirname \"$0\")\" || exit 1\n\
exec ./srcds_linux \"$@\"\n";

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("fake-steamcmd: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<u8, String> {
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .ok_or("HOME is not set; steamcmd keeps its own files under $HOME")?;
    let extra_files = extra_files()?;
    say("[  0%] Checking for available updates...");
    say("[----] Verifying installation...");
    bootstrap(&home)?;
    say("Steam Console Client (c) Valve Corporation - version 1738634470");
    say("-- type 'quit' to exit --");
    say("Loading Steam API...OK");

    let mut session = Session { home, extra_files, install_dir: None, logged_in: false, platform: None, failure: None };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for (name, args) in commands(&argv) {
        if name.eq_ignore_ascii_case("quit") {
            break;
        }
        session.command(&name, &args)?;
    }
    Ok(session.failure.unwrap_or(0))
}

/// Writes one line of output; a closed stdout must not abort an install half-way, so errors are dropped.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn extra_files() -> Result<u32, String> {
    match std::env::var("FAKE_STEAMCMD_EXTRA_FILES") {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|err| format!("FAKE_STEAMCMD_EXTRA_FILES='{value}' is not a number of files: {err}")),
        Err(std::env::VarError::NotPresent) => Ok(0),
        Err(err) => Err(format!("FAKE_STEAMCMD_EXTRA_FILES: {err}")),
    }
}

/// Debian's steamcmd bootstraps its client into `~/.local/share/Steam/steamcmd`; srcds later needs the
/// `steamclient.so` files found there (l4d2ctl links them into `~/.steam/sdk32|sdk64`).
fn bootstrap(home: &Path) -> Result<(), String> {
    for arch in ["linux32", "linux64"] {
        let dir = home.join(".local/share/Steam/steamcmd").join(arch);
        let file = dir.join("steamclient.so");
        if file.is_file() {
            continue;
        }
        fs::create_dir_all(&dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        let content = format!("fake-steamcmd placeholder for steamclient.so ({arch})\n");
        fs::write(&file, content).map_err(|err| format!("cannot write {}: {err}", file.display()))?;
    }
    Ok(())
}

/// Groups the command line into `+command args…`, in order; each argv word stays one argument.
fn commands(argv: &[String]) -> Vec<(String, Vec<String>)> {
    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
    for word in argv {
        match (word.strip_prefix('+'), commands.last_mut()) {
            (Some(name), _) => commands.push((name.to_owned(), Vec::new())),
            (None, Some((_, args))) => args.push(word.clone()),
            (None, None) => say(&format!("Ignoring '{word}': commands start with '+'")),
        }
    }
    commands
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Platform {
    Windows,
    Linux,
}

impl Platform {
    fn name(self) -> &'static str {
        match self {
            Platform::Windows => "windows",
            Platform::Linux => "linux",
        }
    }
}

struct Session {
    home: PathBuf,
    extra_files: u32,
    install_dir: Option<PathBuf>,
    logged_in: bool,
    /// `@sSteamCmdForcePlatformType`; steamcmd on Linux installs for linux when it is not set.
    platform: Option<String>,
    /// The exit code steamcmd ends with; later commands still run after a failure.
    failure: Option<u8>,
}

impl Session {
    /// Runs one command. Errors are only those of the simulation itself (no sim-srcds to install).
    fn command(&mut self, name: &str, args: &[String]) -> Result<(), String> {
        match name.to_ascii_lowercase().as_str() {
            "force_install_dir" => match args.first() {
                Some(dir) => self.install_dir = Some(PathBuf::from(dir)),
                None => say("ERROR! force_install_dir needs a directory"),
            },
            "login" => match args.first().map(String::as_str) {
                Some("anonymous") => {
                    say("Logging in user 'anonymous' to Steam Public...OK");
                    say("Waiting for client config...OK");
                    say("Waiting for user info...OK");
                    self.logged_in = true;
                }
                Some(user) => {
                    say(&format!("Logging in user '{user}' to Steam Public...FAILED (Invalid Password)"));
                    self.failure = Some(EXIT_LOGIN_FAILED);
                }
                None => say("ERROR! login needs a user name (anonymous)"),
            },
            "@ssteamcmdforceplatformtype" => match args.first() {
                Some(platform) => self.platform = Some(platform.to_ascii_lowercase()),
                None => say("ERROR! @sSteamCmdForcePlatformType needs a platform"),
            },
            // Other steamcmd settings (@NoPromptForPassword 1, @ShutdownOnFailedCommand 1, …) change nothing here.
            setting if setting.starts_with('@') => {}
            "app_update" => self.app_update(args)?,
            "app_info_update" => self.app_info_update()?,
            "app_info_print" => self.app_info_print(args)?,
            "workshop_download_item" => self.workshop_download_item(args)?,
            _ => say(&format!("Unknown command \"{name}\"")),
        }
        Ok(())
    }

    /// `workshop_download_item <app> <item>`: the item's file under the install folder's
    /// `steamapps/workshop/content/<app>/<item>/`, as steamcmd leaves it. Item 404 does not exist
    /// (to test failures); any other item downloads a small VPK whose bytes depend on its id and
    /// its current version: the `time_updated` fake-steam-api answers for it (`steam-api.json` of
    /// the state folder), so an update published there downloads other bytes.
    fn workshop_download_item(&mut self, args: &[String]) -> Result<(), String> {
        let (Some(app), Some(item)) = (args.first(), args.get(1)) else {
            say("ERROR! workshop_download_item needs an app id and an item id");
            self.failure = Some(EXIT_APP_UPDATE_FAILED);
            return Ok(());
        };
        if !self.logged_in {
            say("ERROR! Not logged on.");
            self.failure = Some(EXIT_APP_UPDATE_FAILED);
            return Ok(());
        }
        say(&format!("Downloading item {item} ..."));
        if app != "550" || item == "404" || item.parse::<u64>().is_err() {
            say(&format!("ERROR! Download item {item} failed (File Not Found)."));
            self.failure = Some(EXIT_APP_UPDATE_FAILED);
            return Ok(());
        }
        let base = self.install_dir.clone().unwrap_or_else(|| self.home.join(".local/share/Steam"));
        let dir = base.join("steamapps/workshop/content").join(app).join(item);
        fs::create_dir_all(&dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        // A VPK's signature, then content that is the item's own.
        let mut bytes = vec![0x34, 0x12, 0xaa, 0x55];
        let version = workshop_version(item);
        bytes.extend(format!("fake-steamcmd workshop item {item} version {version}\n").repeat(64).into_bytes());
        let file = dir.join(format!("{item}_legacy.bin"));
        fs::write(&file, &bytes).map_err(|err| format!("cannot write {}: {err}", file.display()))?;
        say(&format!("Success. Downloaded item {item} to \"{}\" ({} bytes)", dir.display(), bytes.len()));
        Ok(())
    }

    /// The platform `app_update` installs for; none for one steamcmd does not know.
    fn install_platform(&self) -> Option<Platform> {
        match self.platform.as_deref() {
            None | Some("linux") => Some(Platform::Linux),
            Some("windows") => Some(Platform::Windows),
            Some(_) => None,
        }
    }

    fn app_info_cache(&self) -> PathBuf {
        self.home.join(".local/share/Steam/appcache/appinfo.vdf")
    }

    /// `app_info_update 1`: fetches the app's info afresh into the cache: every branch published in
    /// the state folder, each depot's manifest for it with its size.
    fn app_info_update(&mut self) -> Result<(), String> {
        let mut branches = Vec::new();
        for branch in branch_names()? {
            let published = match (published(&branch)?, branch.as_str()) {
                (Some(published), _) => published,
                (None, "public") => {
                    let platform = self.install_platform().unwrap_or(Platform::Linux);
                    let build_id = Depot::new(platform, self.extra_files, None)?.build_id();
                    Published { build_id, time_updated: DEFAULT_TIME_UPDATED }
                }
                (None, _) => continue,
            };
            let mut sizes = Vec::new();
            for platform in [Platform::Windows, Platform::Linux] {
                let depot = Depot::new(platform, self.extra_files, Some(published.build_id))?;
                let size = depot.size();
                sizes.push((size, knob("download-bytes")?.map_or(Ok(size), |text| parse_number(&text))?));
            }
            branches.push(Branch { name: branch, published, sizes });
        }
        write_file(&self.app_info_cache(), app_info(&branches).as_bytes(), 0o644)
    }

    /// `app_info_print <app>`: the cached info, fetched first when there is none.
    fn app_info_print(&mut self, args: &[String]) -> Result<(), String> {
        let Some(app) = args.first().filter(|app| *app == APP_ID) else {
            say(&format!("No app info for AppID {} found", args.first().map_or("", String::as_str)));
            return Ok(());
        };
        let cache = self.app_info_cache();
        if !cache.is_file() {
            self.app_info_update()?;
        }
        let text = fs::read_to_string(&cache).map_err(|err| format!("cannot read {}: {err}", cache.display()))?;
        say(&format!("AppID : {app}, change number : 26340421/0, last change : Tue Nov 12 18:02:13 2024"));
        say(text.trim_end());
        Ok(())
    }

    fn fail(&mut self, app: &str, reason: &str) {
        say(&format!("ERROR! Failed to install app '{app}' ({reason})"));
        self.failure = Some(EXIT_APP_UPDATE_FAILED);
    }

    fn app_update(&mut self, args: &[String]) -> Result<(), String> {
        let Some(app) = args.first() else {
            say("ERROR! app_update needs an app id");
            self.failure = Some(EXIT_APP_UPDATE_FAILED);
            return Ok(());
        };
        let validate = args[1..].iter().any(|arg| arg.eq_ignore_ascii_case("validate"));
        let branch =
            args.iter().position(|arg| arg == "-beta").and_then(|at| args.get(at + 1)).map_or("public", String::as_str);
        if !self.logged_in {
            say("ERROR! Not logged on.");
            self.failure = Some(EXIT_APP_UPDATE_FAILED);
            return Ok(());
        }
        if app != APP_ID {
            self.fail(app, "No subscription");
            return Ok(());
        }
        let Some(platform) = self.install_platform() else {
            self.fail(app, "Invalid platform");
            return Ok(());
        };
        let dir = match &self.install_dir {
            Some(dir) => dir.clone(),
            None => self.home.join(".local/share/Steam/steamapps/common").join(APP_NAME),
        };
        let manifest_path = dir.join("steamapps").join(format!("appmanifest_{APP_ID}.acf"));
        let manifest = read_manifest(&manifest_path);
        // The anonymous linux depot is only served to a directory that already holds the app (the
        // workaround of LinuxGSM issue #4754: a windows pass first).
        if platform == Platform::Linux && manifest.is_none() {
            self.fail(app, "Invalid platform");
            return Ok(());
        }
        let published = match (published(branch)?, branch) {
            (Some(published), _) => Some(published.build_id),
            (None, "public") => None,
            (None, _) => {
                self.fail(app, &format!("Invalid beta branch '{branch}'"));
                return Ok(());
            }
        };
        if knob("fail")?.as_deref().map(str::trim) == Some("invalid-platform") {
            self.fail(app, "Invalid platform");
            return Ok(());
        }
        let depot = Depot::new(platform, self.extra_files, published)?;
        let build_id = depot.build_id();
        if !validate
            && manifest.as_ref().is_some_and(|m| m.platform == platform.name() && m.build_id == build_id.to_string())
        {
            say(&format!("Success! App '{APP_ID}' already up to date."));
            return Ok(());
        }
        say(" Update state (0x3) reconfiguring, progress: 0.00 (0 / 0)");
        let failure = Failure::from_knob()?;
        let installed = depot.install(&dir, validate, failure).and_then(|()| {
            let complete = failure != Some(Failure::Incomplete);
            write_file(&manifest_path, depot.manifest(build_id, complete).as_bytes(), 0o644)
        });
        match installed {
            Err(_) if failure == Some(Failure::DiskFull) => {
                say(&format!("Error! App '{APP_ID}' state is 0x202 after update job."));
                self.failure = Some(EXIT_APP_UPDATE_FAILED);
            }
            Ok(()) => say(&format!("Success! App '{APP_ID}' fully installed.")),
            Err(err) => self.fail(app, &format!("Disk write failure: {err}")),
        }
        Ok(())
    }
}

/// A branch as `app_info_print` shows it: its build and, per depot (windows, linux), the size of
/// its manifest and what downloading it takes.
struct Branch {
    name: String,
    published: Published,
    sizes: Vec<(u64, u64)>,
}

/// A build Steam publishes on a branch.
struct Published {
    build_id: u64,
    time_updated: u64,
}

/// The state folder a test sets knobs in (`/var/lib/fake-steamcmd`, or `FAKE_STEAMCMD_STATE_DIR`).
fn state_dir() -> PathBuf {
    std::env::var_os("FAKE_STEAMCMD_STATE_DIR").map_or_else(|| PathBuf::from(STATE_DIR), PathBuf::from)
}

/// The text of a knob file in the state folder, if it is there.
fn knob(name: &str) -> Result<Option<String>, String> {
    let path = state_dir().join(name);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("cannot read {}: {err}", path.display())),
    }
}

fn parse_number(text: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|err| format!("'{}' is not a number: {err}", text.trim()))
}

/// The branches Steam publishes: public, and each `<branch>-buildid` of the state folder.
fn branch_names() -> Result<Vec<String>, String> {
    let mut names = vec!["public".to_owned()];
    let entries = match fs::read_dir(state_dir()) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(err) => return Err(format!("cannot read {}: {err}", state_dir().display())),
    };
    let mut others: Vec<String> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.strip_suffix("-buildid").map(str::to_owned))
        .filter(|name| name != "public")
        .collect();
    others.sort();
    names.extend(others);
    Ok(names)
}

/// The build a test published on `branch` in the state folder's `<branch>-buildid`, if it did.
fn published(branch: &str) -> Result<Option<Published>, String> {
    let path = state_dir().join(format!("{branch}-buildid"));
    let Some(text) = knob(&format!("{branch}-buildid"))? else { return Ok(None) };
    let build_id = text
        .trim()
        .parse()
        .map_err(|err| format!("{} holds '{}', not a build id: {err}", path.display(), text.trim()))?;
    let time_updated = fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(DEFAULT_TIME_UPDATED, |since| since.as_secs());
    Ok(Some(Published { build_id, time_updated }))
}

/// How a test makes `app_update` fail (the state folder's `fail`): `killed` (part of the files
/// written, then SIGKILL), `disk-full` (part written, then steamcmd's state 0x202 error and exit
/// 8), `invalid-platform`, `incomplete` (a manifest that says the update is not finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Killed,
    DiskFull,
    Incomplete,
}

impl Failure {
    fn from_knob() -> Result<Option<Failure>, String> {
        match knob("fail")?.as_deref().map(str::trim) {
            None | Some("" | "invalid-platform") => Ok(None),
            Some("killed") => Ok(Some(Failure::Killed)),
            Some("disk-full") => Ok(Some(Failure::DiskFull)),
            Some("incomplete") => Ok(Some(Failure::Incomplete)),
            Some(other) => {
                Err(format!("the fail knob holds '{other}', not killed, disk-full, invalid-platform or incomplete"))
            }
        }
    }
}

/// The app's info block as `app_info_print` shows it (the shape of steamcmd's, with fewer keys):
/// each branch's build, and each depot's manifest for each branch with its `size` and `download`.
fn app_info(branches: &[Branch]) -> String {
    let depot = |index: usize, id: u32, os: &str| {
        let manifests: String = branches
            .iter()
            .map(|Branch { name: branch, published, sizes }| {
                let (size, download) = sizes[index];
                format!(
                    "\t\t\t\t\"{branch}\"\n\t\t\t\t{{\n\t\t\t\t\t\"gid\"\t\t\"{}\"\n\
                     \t\t\t\t\t\"size\"\t\t\"{size}\"\n\t\t\t\t\t\"download\"\t\t\"{download}\"\n\t\t\t\t}}\n",
                    u64::from(id) * 1_000_003 + published.build_id
                )
            })
            .collect();
        format!(
            "\t\t\"{id}\"\n\t\t{{\n\t\t\t\"config\"\n\t\t\t{{\n\t\t\t\t\"oslist\"\t\t\"{os}\"\n\t\t\t}}\n\
             \t\t\t\"manifests\"\n\t\t\t{{\n{manifests}\t\t\t}}\n\t\t}}\n"
        )
    };
    let branch_blocks: String = branches
        .iter()
        .map(|Branch { name: branch, published: Published { build_id, time_updated }, .. }| {
            format!(
                "\t\t\t\"{branch}\"\n\t\t\t{{\n\t\t\t\t\"buildid\"\t\t\"{build_id}\"\n\
                 \t\t\t\t\"timeupdated\"\t\t\"{time_updated}\"\n\t\t\t}}\n"
            )
        })
        .collect();
    format!(
        "\"{APP_ID}\"\n{{\n\t\"common\"\n\t{{\n\t\t\"name\"\t\t\"{APP_NAME}\"\n\t\t\"type\"\t\t\"Tool\"\n\
         \t\t\"oslist\"\t\t\"windows,linux\"\n\t\t\"gameid\"\t\t\"{APP_ID}\"\n\t}}\n\
         \t\"config\"\n\t{{\n\t\t\"installdir\"\t\t\"{APP_NAME}\"\n\t}}\n\
         \t\"depots\"\n\t{{\n{}{}\
         \t\t\"branches\"\n\t\t{{\n{branch_blocks}\t\t}}\n\t}}\n}}\n",
        depot(0, 222_861, "windows"),
        depot(1, 222_862, "linux"),
    )
}

struct Manifest {
    platform: String,
    build_id: String,
}

/// The platform and build id an earlier install recorded, if there is a readable manifest.
fn read_manifest(path: &Path) -> Option<Manifest> {
    let text = fs::read_to_string(path).ok()?;
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let mut quoted = line.split('"').skip(1).step_by(2);
            (quoted.next() == Some(key)).then(|| quoted.next().unwrap_or("").to_owned())
        })
    };
    Some(Manifest { platform: value("platform_override_dest")?, build_id: value("buildid")? })
}

enum Content {
    Bytes(Vec<u8>),
    /// The n-th extra file of FAKE_STEAMCMD_EXTRA_FILES, generated when needed.
    Extra(u32),
    /// The n-th file of the `base-files` knob's tree: `len` bytes seeded by its index and, for
    /// the files that change with every build (one in a hundred), by the build.
    Base {
        index: u32,
        len: u64,
        build: Option<u64>,
    },
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::Extra(_) => EXTRA_FILE_SIZE as u64,
            Content::Base { len, .. } => *len,
        }
    }

    fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            Content::Bytes(bytes) => bytes.into(),
            Content::Extra(index) => extra_content(*index).into(),
            Content::Base { index, len, build } => {
                let seed = u64::from(*index) ^ build.unwrap_or(0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                noise(seed, usize::try_from(*len).unwrap_or(usize::MAX)).into()
            }
        }
    }

    /// Generated content that is the same in every build: an update without `validate` checks
    /// only its size, as reading gigabytes on every update would be.
    fn is_generated_and_stable(&self) -> bool {
        matches!(self, Content::Extra(_) | Content::Base { build: None, .. })
    }
}

struct DepotFile {
    path: String,
    content: Content,
    mode: u32,
}

/// Everything one platform's install consists of.
struct Depot {
    platform: Platform,
    files: Vec<DepotFile>,
    dirs: Vec<&'static str>,
    extra_files: u32,
    /// The published build this depot is, when a test published one; else its id is its content's hash.
    published: Option<u64>,
}

impl Depot {
    fn new(platform: Platform, extra_files: u32, published: Option<u64>) -> Result<Self, String> {
        // The engine binary differs from build to build, as a real update's do.
        let placeholder = |path: &str| {
            let build = match published {
                Some(build) if path.starts_with("bin/engine") => format!(" (build {build})"),
                _ => String::new(),
            };
            DepotFile {
                path: path.to_owned(),
                content: Content::Bytes(format!("fake-steamcmd placeholder for {path}{build}\n").into_bytes()),
                mode: 0o644,
            }
        };
        let patch_version = published.map_or_else(|| "2.2.4.3".to_owned(), |build| format!("2.2.4.{build}"));
        let mut files = vec![
            placeholder("left4dead2/gameinfo.txt"),
            DepotFile {
                path: "left4dead2/steam.inf".to_owned(),
                content: Content::Bytes(
                    format!(
                        "ClientVersion=2243\nServerVersion=2243\nPatchVersion={patch_version}\nProductName=left4dead2\nappID=550\n"
                    )
                    .into_bytes(),
                ),
                mode: 0o644,
            },
            // The real install ships no server.cfg: that is the operator's (left4me renders it).
            placeholder("left4dead2/cfg/valve.rc"),
            placeholder("left4dead2/cfg/config_default.cfg"),
        ];
        files.extend(MAPS.iter().map(|map| {
            let mut bsp = b"VBSP".to_vec();
            bsp.extend_from_slice(&21u32.to_le_bytes());
            bsp.extend_from_slice(format!("fake-steamcmd placeholder map {map}\n").as_bytes());
            DepotFile { path: format!("left4dead2/maps/{map}.bsp"), content: Content::Bytes(bsp), mode: 0o644 }
        }));
        files.extend((0..extra_files).map(|index| DepotFile {
            path: extra_path(index),
            content: Content::Extra(index),
            mode: 0o644,
        }));
        let (count, len) = base_files()?;
        files.extend((0..count).map(|index| DepotFile {
            path: format!("left4dead2/sim_base/base_{index:06}.bin"),
            content: Content::Base { index, len, build: (index % 100 == 0).then(|| published.unwrap_or(0)) },
            mode: 0o644,
        }));
        match platform {
            Platform::Windows => files.extend(
                [
                    "srcds.exe",
                    "bin/engine.dll",
                    "bin/dedicated.dll",
                    "bin/tier0.dll",
                    "bin/vstdlib.dll",
                    "left4dead2/bin/server.dll",
                ]
                .map(placeholder),
            ),
            Platform::Linux => {
                files.extend(
                    [
                        "bin/engine_srv.so",
                        "bin/dedicated_srv.so",
                        "bin/libtier0_srv.so",
                        "bin/libvstdlib_srv.so",
                        "left4dead2/bin/server_srv.so",
                    ]
                    .map(placeholder),
                );
                files.push(DepotFile {
                    path: "srcds_run".to_owned(),
                    content: Content::Bytes(SRCDS_RUN.as_bytes().to_vec()),
                    mode: 0o755,
                });
                files.push(DepotFile { path: "srcds_linux".to_owned(), content: sim_srcds()?, mode: 0o755 });
            }
        }
        Ok(Depot { platform, files, dirs: vec!["left4dead2/addons", "steamapps"], extra_files, published })
    }

    /// A build id that changes whenever the depot's content does (a rebuilt sim-srcds is a game update).
    fn build_id(&self) -> u64 {
        if let Some(build) = self.published {
            return build;
        }
        let mut hash = Fnv::new();
        hash.write(self.platform.name().as_bytes());
        for file in &self.files {
            hash.write(file.path.as_bytes());
            hash.write(&file.mode.to_le_bytes());
            if let Content::Bytes(bytes) = &file.content {
                hash.write(bytes);
            }
        }
        // Extra and base files are a pure function of their index (and the build), so their count
        // stands for their content.
        hash.write(&self.extra_files.to_le_bytes());
        if let Ok((count, len)) = base_files() {
            hash.write(&count.to_le_bytes());
            hash.write(&len.to_le_bytes());
        }
        hash.0 % 90_000_000 + 10_000_000
    }

    /// The bytes of all its files.
    fn size(&self) -> u64 {
        self.files.iter().map(|file| file.content.len()).sum()
    }

    /// Its manifest; an incomplete one says an update is pending, half of it downloaded.
    fn manifest(&self, build_id: u64, complete: bool) -> String {
        let size = self.size();
        let (flags, downloaded) = if complete { (4, size) } else { (1026, size / 2) };
        format!(
            "\"AppState\"\n{{\n\t\"appid\"\t\t\"{APP_ID}\"\n\t\"Universe\"\t\t\"1\"\n\t\"name\"\t\t\"{APP_NAME}\"\n\
             \t\"StateFlags\"\t\t\"{flags}\"\n\t\"installdir\"\t\t\"{APP_NAME}\"\n\t\"SizeOnDisk\"\t\t\"{size}\"\n\
             \t\"buildid\"\t\t\"{build_id}\"\n\t\"BytesToDownload\"\t\t\"{size}\"\n\t\"BytesDownloaded\"\t\t\"{downloaded}\"\n\t\"UserConfig\"\n\t{{\n\
             \t\t\"platform_override_dest\"\t\t\"{}\"\n\t}}\n}}\n",
            self.platform.name()
        )
    }

    /// Writes the files that are missing or differ. Without `validate`, generated files that do
    /// not change between builds are checked by size only, as reading gigabytes on every update
    /// would be; with it, every byte is compared. A `failure` stops it half-way through the files.
    fn install(&self, dir: &Path, validate: bool, failure: Option<Failure>) -> Result<(), String> {
        let total: u64 = self.files.iter().map(|file| file.content.len()).sum();
        let mut verifying = Progress::new("(0x5) verifying install", total, validate);
        let mut stale = Vec::new();
        for file in &self.files {
            let path = dir.join(&file.path);
            match is_current(&path, file, validate) {
                Ok(Current::Yes) => {}
                Ok(Current::WrongMode) => fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))
                    .map_err(|err| format!("{}: {err}", path.display()))?,
                Ok(Current::No) => stale.push(file),
                Err(err) => return Err(format!("{}: {err}", path.display())),
            }
            verifying.advance(file.content.len());
        }
        let total: u64 = stale.iter().map(|file| file.content.len()).sum();
        let mut downloading = Progress::new("(0x61) downloading", total, !stale.is_empty());
        let stop_at =
            if matches!(failure, Some(Failure::Killed | Failure::DiskFull)) { stale.len() / 2 } else { usize::MAX };
        for (index, file) in stale.into_iter().enumerate() {
            if index == stop_at {
                return stop(failure);
            }
            write_file(&dir.join(&file.path), &file.content.bytes(), file.mode)?;
            downloading.advance(file.content.len());
        }
        if stop_at != usize::MAX {
            return stop(failure);
        }
        for sub in &self.dirs {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        }
        Ok(())
    }
}

/// Where a failure knob stops an install: killed, as steamcmd is by the OOM killer or a reboot; or
/// the job failing with the disk full.
fn stop(failure: Option<Failure>) -> Result<(), String> {
    if failure == Some(Failure::Killed) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    Err("No space left on device".to_owned())
}

enum Current {
    Yes,
    WrongMode,
    No,
}

fn is_current(path: &Path, file: &DepotFile, validate: bool) -> io::Result<Current> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Current::No),
        Err(err) => return Err(err),
    };
    if !meta.is_file() || meta.len() != file.content.len() {
        return Ok(Current::No);
    }
    let same = match (&file.content, validate) {
        (content, false) if content.is_generated_and_stable() => true,
        (content, _) => fs::read(path)? == *content.bytes(),
    };
    Ok(match (same, meta.permissions().mode() & 0o7777 == file.mode) {
        (false, _) => Current::No,
        (true, true) => Current::Yes,
        (true, false) => Current::WrongMode,
    })
}

/// Replaces a file by rename, so a reader (or a running srcds_linux) never sees it half-written.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let parent = path.parent().ok_or_else(|| format!("{}: no parent directory", path.display()))?;
    fs::create_dir_all(parent).map_err(|err| format!("{}: {err}", parent.display()))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".fake-steamcmd-tmp");
    let tmp = parent.join(tmp_name);
    let written = fs::write(&tmp, bytes)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&tmp, path));
    written.map_err(|err| {
        let _ = fs::remove_file(&tmp);
        format!("{}: {err}", path.display())
    })
}

/// The sim-srcds binary, which must sit next to this executable (cargo builds both into one directory).
fn sim_srcds() -> Result<Content, String> {
    let exe = std::env::current_exe().map_err(|err| format!("cannot find the fake-steamcmd executable: {err}"))?;
    let path = exe.with_file_name("sim-srcds");
    let bytes = fs::read(&path).map_err(|err| {
        let path = path.display();
        format!(
            "cannot read {path} (sim-srcds must sit next to fake-steamcmd; cargo build -p left4me-sim --bins): {err}"
        )
    })?;
    Ok(Content::Bytes(bytes))
}

/// The `base-files` knob, `<count> <bytes each>`: a tree of that many generated files, of which
/// one in a hundred changes with every build, so that a base of gigabytes can be measured.
fn base_files() -> Result<(u32, u64), String> {
    let Some(text) = knob("base-files")? else { return Ok((0, 0)) };
    let mut words = text.split_whitespace();
    let (Some(count), Some(len), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("the base-files knob holds '{}', not '<count> <bytes each>'", text.trim()));
    };
    let count = u32::try_from(parse_number(count)?).map_err(|err| format!("base-files: {err}"))?;
    Ok((count, parse_number(len)?))
}

fn extra_path(index: u32) -> String {
    format!("left4dead2/sim_content/sim_content_{index:06}.bin")
}

/// The bytes of the n-th extra file: xorshift64* noise seeded by the index, so every file differs, no file
/// compresses away, and every run writes the same bytes.
fn extra_content(index: u32) -> Vec<u8> {
    noise(u64::from(index), EXTRA_FILE_SIZE)
}

/// `len` bytes of xorshift64* noise seeded by `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (seed + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// FNV-1a, 64 bit: a stable hash (std's hashers may change between Rust releases).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// steamcmd's ` Update state (…) …, progress: 42.00 (n / m)` lines, one per tenth of the way.
struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    printed_tenths: u64,
    enabled: bool,
}

impl Progress {
    fn new(label: &'static str, total: u64, enabled: bool) -> Self {
        let progress = Progress { label, total, done: 0, printed_tenths: 0, enabled };
        progress.print();
        progress
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        let tenths = (self.done * 10).checked_div(self.total).unwrap_or(10);
        if tenths > self.printed_tenths {
            self.printed_tenths = tenths;
            self.print();
        }
    }

    fn print(&self) {
        if !self.enabled {
            return;
        }
        let percent = if self.total == 0 { 0.0 } else { self.done as f64 * 100.0 / self.total as f64 };
        say(&format!(" Update state {}, progress: {percent:.2} ({} / {})", self.label, self.done, self.total));
    }
}

/// The `time_updated` of a workshop item as fake-steam-api answers it: from `steam-api.json` of
/// the state folder, else its default.
fn workshop_version(item: &str) -> u64 {
    const DEFAULT_WORKSHOP_TIME_UPDATED: u64 = 1_700_000_000;
    let known = fs::read(state_dir().join("steam-api.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    known.and_then(|k| k["items"][item]["time_updated"].as_u64()).unwrap_or(DEFAULT_WORKSHOP_TIME_UPDATED)
}
