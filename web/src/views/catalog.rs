//! The catalogue pages: blueprints and overlays.

use left4me_state::Name;
use minijinja::{Value, context};

use crate::access;
use crate::accounts::User;
use crate::snapshot::Snapshot;

/// The blueprints `user` may see, with the servers made of each.
pub fn blueprints(snapshot: &Snapshot, user: &User) -> Vec<Value> {
    snapshot
        .desired
        .as_ref()
        .map(|d| {
            d.blueprints
                .values()
                .filter(|b| access::may_see(user, Some(&b.owner)))
                .map(|b| {
                    let servers: Vec<String> =
                        d.servers.values().filter(|s| s.blueprint == b.name).map(|s| s.name.to_string()).collect();
                    context! {
                        name => b.name.to_string(), owner => b.owner.to_string(), file => b.file.clone(),
                        overlays => b.overlays.iter().map(Name::to_string).collect::<Vec<_>>(),
                        arguments => b.arguments.iter().map(|a| a.get().clone()).collect::<Vec<_>>(),
                        config => b.config.iter().map(|c| c.get().clone()).collect::<Vec<_>>(),
                        rollout => rollout_name(b.rollout),
                        servers,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A rollout as the pages and forms write it.
pub fn rollout_name(rollout: left4me_state::Rollout) -> &'static str {
    match rollout {
        left4me_state::Rollout::Immediate => "immediate",
        left4me_state::Rollout::WhenEmpty => "when-empty",
        left4me_state::Rollout::NextStart => "next-start",
    }
}

/// An archive of an archive overlay as the catalogue lists it: where it comes from, the hash
/// it is pinned to, and where it goes.
fn archive_line(source: &left4me_state::ArchiveSource) -> String {
    let mut line = format!("{} (sha256 {})", source.url.as_str(), source.sha256.as_str());
    if let Some(into) = &source.into {
        line.push_str(&format!(" into {}", into.as_str()));
    }
    if source.strip.count() > 0 {
        line.push_str(&format!(", {} leading folders dropped", source.strip.count()));
    }
    line
}

/// The overlay catalogue, with the blueprints of `user`'s that use each.
pub fn overlays(snapshot: &Snapshot, user: &User) -> Vec<Value> {
    snapshot
        .desired
        .as_ref()
        .map(|d| {
            d.overlays
                .values()
                .map(|o| {
                    let files: Vec<String> = match &o.content {
                        left4me_state::OverlayContent::Files(files) => files.iter().map(|f| f.path.clone()).collect(),
                        left4me_state::OverlayContent::Script { .. } => vec!["build.sh".into()],
                        left4me_state::OverlayContent::Workshop { items, collections } => items
                            .iter()
                            .map(|i| format!("workshop item {}", i.get()))
                            .chain(collections.iter().map(|c| format!("workshop collection {}", c.get())))
                            .collect(),
                        left4me_state::OverlayContent::Archive(sources) => sources.iter().map(archive_line).collect(),
                    };
                    let folder = o.file.trim_end_matches("overlay.yaml").to_owned();
                    context! {
                        name => o.name.to_string(), file => o.file.clone(), folder,
                        kind => format!("{:?}", o.content.overlay_type()).to_lowercase(),
                        description => o.description.clone(), files, digest => o.digest.as_str().to_owned(),
                        // Another user's blueprints are theirs to know of.
                        used_by => d.blueprints.values()
                            .filter(|b| b.overlays.contains(&o.name) && access::may_see(user, Some(&b.owner)))
                            .map(|b| b.name.to_string()).collect::<Vec<_>>(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}
