//! Which game build each declared server is to run, and what the host must check, adopt, install
//! or may remove for it. Pure: the planner's part about builds, on plain values.

use std::collections::{BTreeMap, BTreeSet};

use l4d2ctl::api::{Game, InstanceStatus};
use left4me_state::{DesiredState, GameBuild, Name};
use serde::{Deserialize, Serialize};

/// What a declared server is to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// This build: installed, or the branch's current build, which the pass installs first.
    Build(u64),
    /// The build it names cannot be had: pinned, not installed, and not what Steam publishes.
    Unavailable(String),
    /// No build is known at all (a host whose base install predates builds and names none): the
    /// server runs what `l4d2ctl` stacks by itself.
    Unknown,
}

impl Want {
    pub fn build(&self) -> Option<u64> {
        match self {
            Want::Build(build) => Some(*build),
            Want::Unavailable(_) | Want::Unknown => None,
        }
    }
}

/// The build a pass installs before anything else (`l4d2ctl install --branch <branch>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Install {
    pub build: u64,
    pub branch: String,
    pub reason: String,
}

/// What the host's builds need, for one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Builds {
    pub wants: BTreeMap<Name, Want>,
    pub adopt: Option<u64>,
    pub install: Option<Install>,
    /// Installed builds nothing runs, stacks, pins or wants any more; the newest installed build
    /// is always kept, as the base the next build is installed against.
    pub remove: Vec<u64>,
}

/// The branch's build as last checked, if that check was of the branch the revision follows.
pub fn published(desired: &DesiredState, game: &Game) -> Option<u64> {
    game.published.filter(|_| game.branch.as_deref() == Some(desired.settings.game.branch.as_str()))
}

/// The builds the host has or will have without a download: those installed, and a base install
/// from before builds, which is adopted first.
fn on_host(game: &Game) -> BTreeSet<u64> {
    game.installed.iter().copied().chain(game.adoptable).collect()
}

/// What a server whose blueprint asks for `build` is to run.
pub fn want(desired: &DesiredState, game: &Game, build: GameBuild) -> Want {
    let have = on_host(game);
    let published = published(desired, game);
    match build {
        GameBuild::Pinned(pinned) if have.contains(&pinned) || published == Some(pinned) => Want::Build(pinned),
        GameBuild::Pinned(pinned) => {
            let branch = &desired.settings.game.branch;
            let steam = match published {
                Some(current) => format!("Steam's {branch} branch is at build {current}"),
                None => format!("Steam's {branch} branch has not been checked yet"),
            };
            let installed = match have.is_empty() {
                true => "none is installed".to_owned(),
                false => format!("installed: {}", have.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
            };
            Want::Unavailable(format!(
                "build {pinned} is pinned but not installed, and {steam}: only a branch's current build can be \
                 downloaded; pin an installed build ({installed}) or follow latest"
            ))
        }
        GameBuild::Latest => match published.or_else(|| have.last().copied()) {
            Some(build) => Want::Build(build),
            None => Want::Unknown,
        },
    }
}

/// The builds of every declared server, and what the host must do for them.
pub fn builds(desired: &DesiredState, game: &Game, observed: &BTreeMap<Name, InstanceStatus>) -> Builds {
    let wants: BTreeMap<Name, Want> = desired
        .servers
        .iter()
        .map(|(name, server)| (name.clone(), want(desired, game, desired.game_build(server))))
        .collect();
    let have = on_host(game);
    let install = wants.values().filter_map(Want::build).filter(|build| !have.contains(build)).max().map(|build| {
        let branch = desired.settings.game.branch.to_string();
        let users: Vec<&str> =
            wants.iter().filter(|(_, want)| want.build() == Some(build)).map(|(name, _)| name.as_str()).collect();
        let reason = format!("build {build} is the {branch} branch's and not installed; {} run it", users.join(", "));
        Install { build, branch, reason }
    });
    let mut keep: BTreeSet<u64> = wants.values().filter_map(Want::build).collect();
    keep.extend(desired.pinned_builds());
    keep.extend(observed.values().flat_map(|o| [o.rendered_build, o.started_build, o.build]).flatten());
    keep.extend(game.installed.last());
    let remove = game.installed.iter().copied().filter(|build| !keep.contains(build)).collect();
    Builds { wants, adopt: game.adoptable.filter(|build| !game.installed.contains(build)), install, remove }
}

/// Why Steam is to be asked for the branch's build now, or None when the last check is recent
/// enough. `now` is Unix seconds.
pub fn check_due(desired: &DesiredState, game: &Game, now: u64) -> Option<String> {
    let settings = &desired.settings.game;
    let checked = game.checked_at.as_deref().and_then(left4me_state::clock::parse_rfc3339);
    match (checked, game.branch.as_deref()) {
        (None, _) | (_, None) => Some("Steam has not been asked for a build yet".into()),
        (Some(_), Some(branch)) if branch != settings.branch.as_str() => {
            Some(format!("the branch followed moved from {branch} to {}", settings.branch))
        }
        (Some(at), Some(_)) if now.saturating_sub(at) >= settings.check_every.seconds() => Some(format!(
            "the last check was {} ago (checkEvery {} s)",
            ago(now.saturating_sub(at)),
            settings.check_every.seconds()
        )),
        (Some(_), Some(_)) => None,
    }
}

/// A span of seconds as a person reads it: `45 s`, `12 min`, `3 h`, `2 d`.
pub fn ago(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7200 => format!("{} min", seconds / 60),
        7200..172_800 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86_400),
    }
}
