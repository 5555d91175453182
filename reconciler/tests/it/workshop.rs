//! Workshop overlays on a real host (the sandbox), against fake-steam-api on its loopback: a
//! collection expands to its items, an item updated upstream is downloaded again and its servers
//! roll out by their blueprint's rollout, and an API that misbehaves changes nothing.

use crate::support::{Host, code, text};

const CACHE: &str = "/var/lib/left4me/workshop";
const KNOWN: &str = "/var/lib/fake-steamcmd/steam-api.json";

impl Host {
    /// Left4me installed (service stopped), an overlay `maps` of item 111 and collection 900,
    /// stacked by `s-fast` (rollout immediate) and `s-slow` (when-empty), both running.
    fn with_workshop() -> Host {
        let host = Host::installed(false);
        host.publish(
            r#"{"items": {"111": {"time_updated": 1000, "title": "Maps"}},
            "collections": {"900": [222, 901], "901": [333, 111]}}"#,
        );
        let repo = host.repo();
        let write = |path: &str, text: &str| {
            let path = repo.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "overlays/maps/overlay.yaml",
            "apiVersion: left4me/v1\nkind: Overlay\nmetadata: {name: maps}\n\
             spec: {type: workshop, items: [111], collections: [900]}\n",
        );
        for (blueprint, rollout) in [("fast", "immediate"), ("slow", "when-empty")] {
            write(
                &format!("blueprints/{blueprint}.yaml"),
                &format!(
                    "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {{name: {blueprint}, owner: alice}}\n\
                     spec: {{overlays: [maps], arguments: [\"+map\", \"c1m1_hotel\"], rollout: {rollout}}}\n"
                ),
            );
        }
        for (server, port) in [("fast", 27015), ("slow", 27016)] {
            write(
                &format!("servers/s-{server}.yaml"),
                &format!(
                    "apiVersion: left4me/v1\nkind: Server\nmetadata: {{name: s-{server}, owner: alice}}\n\
                     spec: {{blueprint: {server}, port: {port}, state: running}}\n"
                ),
            );
        }
        host.git(&["add", "--all"]);
        host.git(&["commit", "--quiet", "--message", "workshop maps"]);
        let applied = host.left4me(&["apply"]);
        assert_eq!(code(&applied), Some(0), "{}", text(&applied));
        host.expect_within(20, "both servers run", |h| h.running("s-fast") && h.running("s-slow"));
        host
    }

    /// What fake-steam-api (and fake-steamcmd's downloads) hold from now on.
    fn publish(&self, known: &str) {
        self.sandbox.run_ok("sh", &["-c", "printf '%s\\n' \"$1\" > \"$2\"", "sh", known, KNOWN]);
    }

    /// Makes the last workshop check old, so the next pass asks Steam again.
    fn age_workshop_check(&self) {
        let path = format!("{CACHE}/details.json");
        self.sandbox.run_ok("sed", &["-i", r#"s/"checked_at": "[^"]*"/"checked_at": "2000-01-01T00:00:00Z"/"#, &path]);
    }

    fn overlay_digest(&self, name: &str) -> String {
        let list: serde_json::Value =
            serde_json::from_str(&self.sandbox.run_ok("l4d2ctl", &["overlay", "list", "--json"])).unwrap();
        list.as_array().unwrap().iter().find(|o| o["name"] == name).map(|o| o["digest"].to_string()).unwrap_or_default()
    }

    /// The addons a running server sees in its merged tree.
    fn addons(&self, server: &str) -> String {
        self.sandbox.run_ok("ls", &[&format!("{}/left4dead2/addons", self.sandbox.game_tree(server))])
    }

    fn seen_by(&self, server: &str, item: u64) -> String {
        let path = format!("{}/left4dead2/addons/{item}.vpk", self.sandbox.game_tree(server));
        String::from_utf8_lossy(&self.sandbox.run("head", &["-c", "200", &path]).stdout).into_owned()
    }

    fn inode(&self, path: &str) -> String {
        self.sandbox.run_ok("stat", &["-c", "%i", path])
    }
}

#[test]
fn a_collection_expands_and_an_item_updated_upstream_rolls_out_by_each_rollout() {
    let host = Host::with_workshop();
    // Item 111, collection 900's 222, and 333 of 901, a collection inside 900 (filetype 2); 111
    // is listed twice and linked once.
    for server in ["s-fast", "s-slow"] {
        assert_eq!(host.addons(server).split_whitespace().collect::<Vec<_>>(), ["111.vpk", "222.vpk", "333.vpk"]);
    }
    assert!(host.seen_by("s-fast", 111).contains("version 1000"), "{}", host.seen_by("s-fast", 111));
    let details = host.sandbox.run_ok("cat", &[&format!("{CACHE}/details.json")]);
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["collections"]["900"], serde_json::json!([222, 333, 111]), "{details}");
    assert_eq!(details["items"]["111"]["time_updated"], 1000);

    // Nothing moved upstream: a second pass has nothing to do and asks Steam nothing.
    let requests = host.sandbox.run_ok("cat", &["/var/lib/fake-steamcmd/steam-api.requests"]);
    let again = host.left4me(&["apply"]);
    assert!(text(&again).contains("nothing to do"), "{}", text(&again));
    assert_eq!(host.sandbox.run_ok("cat", &["/var/lib/fake-steamcmd/steam-api.requests"]), requests);

    host.sandbox.run_ok("l4d2ctl", &["rcon", "s-slow", "sim_players", "2"]);
    let (fast, slow) = (host.instance("s-fast"), host.instance("s-slow"));
    let overlay = host.overlay_digest("maps");
    let unchanged = host.inode(&format!("{CACHE}/222.vpk"));
    host.publish(
        r#"{"items": {"111": {"time_updated": 2000, "title": "Maps"}},
        "collections": {"900": [222, 901], "901": [333, 111]}}"#,
    );
    host.age_workshop_check();
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));

    assert_ne!(host.overlay_digest("maps"), overlay, "the overlay is fetched again");
    let cached = host.sandbox.run_ok("head", &["-c", "200", &format!("{CACHE}/111.vpk")]);
    assert!(cached.contains("version 2000"), "{cached}");
    assert_eq!(host.inode(&format!("{CACHE}/222.vpk")), unchanged, "an item that did not move is not downloaded");
    // The immediate rollout restarted s-fast on the new tree.
    let fast_now = host.instance("s-fast");
    assert_ne!(fast_now["digest"], fast["digest"]);
    assert_eq!(fast_now["started_digest"], fast_now["digest"]);
    host.expect_within(20, "s-fast runs again", |h| h.running("s-fast"));
    assert!(host.seen_by("s-fast", 111).contains("version 2000"), "{}", host.seen_by("s-fast", 111));
    // s-slow has players: rendered anew, still running its old tree, whose link keeps the old bytes.
    let slow_now = host.instance("s-slow");
    assert_ne!(slow_now["digest"], slow["digest"]);
    assert_eq!(slow_now["started_digest"], slow["started_digest"], "it waits for its players");
    assert!(host.seen_by("s-slow", 111).contains("version 1000"), "{}", host.seen_by("s-slow", 111));

    host.sandbox.run_ok("l4d2ctl", &["rcon", "s-slow", "sim_players", "0"]);
    let applied = host.left4me(&["apply"]);
    assert_eq!(code(&applied), Some(0), "{}", text(&applied));
    let slow_now = host.instance("s-slow");
    assert_eq!(slow_now["started_digest"], slow_now["digest"], "empty now: restarted");
    host.expect_within(20, "s-slow runs again", |h| h.running("s-slow"));
    assert!(host.seen_by("s-slow", 111).contains("version 2000"), "{}", host.seen_by("s-slow", 111));
}

#[test]
fn an_api_that_misbehaves_is_a_clear_failure_that_changes_nothing() {
    let host = Host::with_workshop();
    let normal = r#"{"items": {"111": {"time_updated": 5000}}, "collections": {"900": [222, 901], "901": [333, 111]}"#;
    let cases = [
        (format!("{normal}, \"answer\": \"huge\"}}"), "answered more than 4 MiB"),
        (format!("{normal}, \"answer\": \"malformed\"}}"), "cannot be read: EOF while parsing"),
        (format!("{normal}, \"answer\": \"ids-not-numbers\"}}"), "cannot be read: publishedfileid \"id-"),
        (
            r#"{"items": {"111": {"time_updated": 5000}}, "collections": {"900": [222, 901], "901": [333, 900]}}"#
                .to_owned(),
            "workshop collection 900 contains itself (900 → 901 → 900)",
        ),
        (format!("{normal}, \"answer\": \"silent\"}}"), "timed out"),
    ];
    for (known, expected) in cases {
        let before = (host.overlay_digest("maps"), host.instance("s-fast"), host.instance("s-slow"));
        let details = host.sandbox.run_ok("cat", &[&format!("{CACHE}/details.json")]);
        host.publish(&known);
        host.age_workshop_check();
        let aged = host.sandbox.run_ok("cat", &[&format!("{CACHE}/details.json")]);
        let requests_before: u64 =
            host.sandbox.run_ok("cat", &["/var/lib/fake-steamcmd/steam-api.requests"]).trim().parse().unwrap();

        let applied = host.left4me(&["apply"]);
        assert_eq!(code(&applied), Some(1), "{expected}: {}", text(&applied));
        assert!(text(&applied).contains("check host"), "{}", text(&applied));
        let jobs: serde_json::Value =
            serde_json::from_str(&host.sandbox.run_ok("left4me", &["jobs", "--json"])).unwrap();
        let check = jobs.as_array().unwrap().iter().find(|j| j["kind"] == "check").unwrap().clone();
        assert_eq!(check["state"], "failed", "{check}");
        let log = host.sandbox.run_ok("left4me", &["jobs", &check["id"].to_string()]);
        assert!(log.contains(expected), "{expected}: {log}");
        assert!(log.contains("LEFT4ME_STEAM_API") || log.contains("contains itself"), "says what to do: {log}");
        // One request or two (a collection's details, then its children's), never more.
        let requests: u64 =
            host.sandbox.run_ok("cat", &["/var/lib/fake-steamcmd/steam-api.requests"]).trim().parse().unwrap();
        assert!(requests - requests_before <= 2, "{expected}: {} requests", requests - requests_before);
        // Nothing changed: the last answer is kept, the overlay and the servers are as they were.
        assert_eq!(host.sandbox.run_ok("cat", &[&format!("{CACHE}/details.json")]), aged);
        assert!(aged.contains("2000-01-01T00:00:00Z") && !details.is_empty(), "the check was made old: {aged}");
        let after = (host.overlay_digest("maps"), host.instance("s-fast"), host.instance("s-slow"));
        assert_eq!(after.0, before.0, "{expected}: the overlay is untouched");
        for (now, then) in [(&after.1, &before.1), (&after.2, &before.2)] {
            assert_eq!((&now["digest"], &now["started_digest"]), (&then["digest"], &then["started_digest"]));
        }
    }
    assert!(host.running("s-fast") && host.running("s-slow"));
}

/// A revision whose server `s` stacks the workshop overlay `maps` (item 111, collection 900).
fn maps_revision() -> left4me_state::DesiredState {
    let mut tree = left4me_state::Tree::default();
    tree.insert_file(
        "overlays/maps/overlay.yaml",
        b"apiVersion: left4me/v1\nkind: Overlay\nmetadata: {name: maps}\nspec: {type: workshop, items: [111], collections: [900]}\n"
            .to_vec(),
    );
    tree.insert_file(
        "blueprints/b.yaml",
        b"apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: b, owner: alice}\nspec: {overlays: [maps]}\n"
            .to_vec(),
    );
    tree.insert_file(
        "servers/s.yaml",
        b"apiVersion: left4me/v1\nkind: Server\nmetadata: {name: s, owner: alice}\nspec: {blueprint: b, port: 27015}\n"
            .to_vec(),
    );
    left4me_state::validate(&tree).expect("the revision is valid")
}

/// Steam's answer: item 111 and collection 900's only item 222, at these versions.
fn checked(item_111: u64, checked_at: &str) -> l4d2ctl::api::WorkshopDetails {
    let item = |time_updated| l4d2ctl::api::WorkshopItemDetails { time_updated, title: String::new() };
    l4d2ctl::api::WorkshopDetails {
        items: [(111, item(item_111)), (222, item(1000))].into(),
        collections: [(900, vec![222, 111])].into(),
        checked_at: Some(checked_at.into()),
    }
}

#[test]
fn an_item_updated_upstream_changes_its_overlays_digest_and_its_servers_render() {
    use l4d2ctl::api::FetchItem;
    use reconciler::workshop;
    let name = left4me_state::Name::new("maps").unwrap();
    let revision = maps_revision();
    let (before, after) = (checked(1000, "2026-12-01T00:00:00Z"), checked(2000, "2026-12-01T01:00:00Z"));
    // Its items and its collection's, each once, at the versions last checked.
    let items = workshop::items(&revision.overlays[&name], &before);
    let at = |id, time| FetchItem { id, time_updated: Some(time) };
    assert_eq!(items, [at(111, 1000), at(222, 1000)]);
    let unchecked = workshop::items(&revision.overlays[&name], &Default::default());
    assert_eq!(unchecked, [FetchItem { id: 111, time_updated: None }], "its collection's items are not known yet");

    let (old, new) = (workshop::pinned(revision.clone(), &before), workshop::pinned(revision.clone(), &after));
    assert_ne!(old.overlays[&name].digest, revision.overlays[&name].digest, "the versions count");
    assert_ne!(new.overlays[&name].digest, old.overlays[&name].digest, "an update upstream is another tree");
    assert_eq!(
        workshop::pinned(revision.clone(), &checked(1000, "later")).overlays[&name].digest,
        old.overlays[&name].digest
    );
    let server = left4me_state::Name::new("s").unwrap();
    let (old_spec, new_spec) = (old.instance_spec(&server).unwrap(), new.instance_spec(&server).unwrap());
    assert_eq!(old_spec.overlays[0].digest, old.overlays[&name].digest, "the server stacks the host's tree");
    assert_ne!(new_spec.digest(), old_spec.digest(), "so it renders anew and rolls out");

    // The planner writes the overlay again when the host has the old tree, and not otherwise.
    let plan_with = |desired: &left4me_state::DesiredState, host_digest: &left4me_state::Digest| {
        reconciler::plan::plan(&reconciler::plan::Inputs {
            desired,
            observed: &Default::default(),
            overlays: &[(name.clone(), host_digest.clone())].into(),
            orphan_overrides: &Default::default(),
            previous: &Default::default(),
            prune_confirmed: false,
            host: &Default::default(),
            game: &Default::default(),
        })
        .overlays
    };
    assert!(plan_with(&old, &old.overlays[&name].digest).is_empty());
    assert_eq!(plan_with(&new, &old.overlays[&name].digest), std::slice::from_ref(&name));
}

#[test]
fn the_workshop_is_checked_when_never_asked_missing_something_or_as_old_as_check_every() {
    use reconciler::workshop::{check_due, wanted};
    let revision = maps_revision();
    assert_eq!(wanted(&revision), (vec![111], vec![900]));
    let at = left4me_state::clock::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let fresh = checked(1000, "2026-12-01T00:00:00Z");
    assert!(check_due(&revision, &Default::default(), at).unwrap().contains("not been asked"));
    assert_eq!(check_due(&revision, &fresh, at + 59 * 60), None, "within the hour of checkEvery");
    assert!(check_due(&revision, &fresh, at + 60 * 60).unwrap().contains("60 min ago"));
    let mut without = fresh.clone();
    without.collections.clear();
    assert!(check_due(&revision, &without, at).unwrap().contains("collection 900 has not been checked"));
    let mut without = fresh;
    without.items.remove(&111);
    assert!(check_due(&revision, &without, at).unwrap().contains("item 111 has not been checked"));
    let no_workshop = left4me_state::validate(&left4me_state::Tree::default()).unwrap();
    assert_eq!(check_due(&no_workshop, &Default::default(), at), None, "nothing to ask about");
}
