//! Workshop overlays as the host has them: their items (the revision's, and its collections'
//! as Steam last listed them) at the versions Steam last said, and the digest that makes an item
//! updated upstream an overlay that differs. Pure: the planner's part about the workshop.

use std::collections::BTreeMap;

use l4d2ctl::api::{FetchItem, WorkshopDetails};
use left4me_state::{DesiredState, Digest, Hasher, Name, Overlay, OverlayContent};

use crate::game;

/// The items of a workshop overlay as a pass sees them: its own, then each collection's as last
/// checked, each once, at the version last checked (None: not checked yet). Empty for an overlay
/// of another type.
pub fn items(overlay: &Overlay, details: &WorkshopDetails) -> Vec<FetchItem> {
    let OverlayContent::Workshop { items, collections } = &overlay.content else { return Vec::new() };
    let children = collections.iter().flat_map(|c| details.collections.get(c.get()).into_iter().flatten());
    let mut ids: Vec<u64> = Vec::new();
    for id in items.iter().map(|item| *item.get()).chain(children.copied()) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.into_iter()
        .map(|id| FetchItem { id, time_updated: details.items.get(&id).map(|item| item.time_updated) })
        .collect()
}

/// The digest a workshop overlay's tree has on the host: the revision's digest (its ids) with
/// each item it holds and that item's version. The one place it is computed: the planner
/// compares the host's recorded digest with it, and the fetch records it.
pub fn digest(state: &Digest, items: &[FetchItem]) -> Digest {
    let mut hasher = Hasher::new("workshop overlay");
    hasher.field(state.as_str().as_bytes());
    for item in items {
        hasher.field(&item.id.to_le_bytes());
        match item.time_updated {
            Some(time) => hasher.field(&time.to_le_bytes()),
            None => hasher.field(b"unknown"),
        }
    }
    hasher.finish()
}

/// The revision with each workshop overlay pinned to its digest on the host ([`digest`]), and
/// every server stacking one rendered with it: an item updated upstream re-renders its servers,
/// which roll out as their blueprint says.
pub fn pinned(desired: DesiredState, details: &WorkshopDetails) -> DesiredState {
    let digests: BTreeMap<Name, Digest> = desired
        .overlays
        .values()
        .filter(|overlay| matches!(overlay.content, OverlayContent::Workshop { .. }))
        .map(|overlay| (overlay.name.clone(), digest(&overlay.digest, &items(overlay, details))))
        .collect();
    desired.with_overlay_digests(&digests)
}

/// The items and collections a check asks about: every workshop overlay's of the revision that
/// a declared server stacks, each once.
pub fn wanted(desired: &DesiredState) -> (Vec<u64>, Vec<u64>) {
    let (mut items, mut collections) = (Vec::new(), Vec::new());
    let add = |list: &mut Vec<u64>, ids: &[left4me_state::WorkshopItem]| {
        for id in ids.iter().map(|id| *id.get()) {
            if !list.contains(&id) {
                list.push(id);
            }
        }
    };
    for overlay in stacked(desired) {
        if let OverlayContent::Workshop { items: own, collections: theirs } = &overlay.content {
            add(&mut items, own);
            add(&mut collections, theirs);
        }
    }
    (items, collections)
}

/// Why Steam is to be asked about the workshop now, or None: never asked, an item or collection
/// of the revision not in the last answer, or the last check older than the game's
/// `spec.game.checkEvery` (the workshop is checked as often as the game's build). `now` is Unix
/// seconds.
pub fn check_due(desired: &DesiredState, details: &WorkshopDetails, now: u64) -> Option<String> {
    let (items, collections) = wanted(desired);
    if items.is_empty() && collections.is_empty() {
        return None;
    }
    let Some(checked) = details.checked_at.as_deref().and_then(left4me_state::clock::parse_rfc3339) else {
        return Some("Steam has not been asked about the workshop yet".into());
    };
    if let Some(id) = collections.iter().find(|id| !details.collections.contains_key(id)) {
        return Some(format!("workshop collection {id} has not been checked yet"));
    }
    if let Some(id) = items.iter().find(|id| !details.items.contains_key(id)) {
        return Some(format!("workshop item {id} has not been checked yet"));
    }
    let every = desired.settings.game.check_every.seconds();
    let since = now.saturating_sub(checked);
    (since >= every).then(|| format!("the last workshop check was {} ago (checkEvery {every} s)", game::ago(since)))
}

/// The overlays a declared server stacks.
fn stacked(desired: &DesiredState) -> impl Iterator<Item = &Overlay> {
    let names: std::collections::BTreeSet<&Name> = desired
        .servers
        .values()
        .filter_map(|server| desired.blueprints.get(&server.blueprint))
        .flat_map(|blueprint| &blueprint.overlays)
        .collect();
    names.into_iter().filter_map(|name| desired.overlays.get(name))
}
