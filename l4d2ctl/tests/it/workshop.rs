//! `workshop check` against fake-steam-api on the sandbox's loopback, what observations read of
//! it, and `overlay fetch` by version: an item cached at an older version is downloaded again.

use crate::support::{Host, ROOT, text};

const KNOWN: &str = "/var/lib/fake-steamcmd/steam-api.json";
const DIGEST: &str = "sha256:0123";

fn publish(host: &Host, known: &str) {
    host.ok("sh", &["-c", "printf '%s\\n' \"$1\" > \"$2\"", "sh", known, KNOWN]);
}

fn inode(host: &Host, path: &str) -> String {
    host.ok("stat", &["-c", "%i", path])
}

#[test]
fn a_check_is_kept_and_observed_and_a_fetch_downloads_only_what_moved() {
    let host = Host::installed();
    host.sandbox.serve_steam_api();
    publish(
        &host,
        r#"{"items": {"7": {"time_updated": 100, "title": "Seven"}}, "collections": {"70": [8, 71], "71": [9]}}"#,
    );

    let out = host.l4d2ctl(&["--json", "workshop", "check", "--item", "7", "--collection", "70"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let last: serde_json::Value = serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["outcome"]["kind"], "workshop_checked", "{last}");
    assert_eq!(last["outcome"]["details"]["collections"]["70"], serde_json::json!([8, 9]));
    let observed: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(&["observe", "--brief"])).unwrap();
    assert_eq!(observed["workshop"]["items"]["7"], serde_json::json!({"time_updated": 100, "title": "Seven"}));
    assert_eq!(observed["workshop"]["items"]["9"]["time_updated"], 1_700_000_000);

    let fetch = |items: &[&str]| {
        let mut args = vec!["overlay", "fetch", "maps", "--digest", DIGEST];
        for item in items {
            args.extend(["--item", item]);
        }
        host.l4d2ctl_ok(&args);
    };
    let cached = format!("{ROOT}/workshop/7.vpk");
    fetch(&["7@100", "8"]);
    assert_eq!(host.ok("cat", &[&format!("{ROOT}/workshop/7.json")]).trim(), r#"{"time_updated":100}"#);
    let first = inode(&host, &cached);
    fetch(&["7@100", "8"]);
    assert_eq!(inode(&host, &cached), first, "cached at that version: not downloaded again");
    publish(&host, r#"{"items": {"7": {"time_updated": 200}}}"#);
    fetch(&["7@200", "8"]);
    assert_ne!(inode(&host, &cached), first, "an older version is downloaded again");
    let bytes = host.ok("head", &["-c", "200", &format!("{ROOT}/overlays/maps/left4dead2/addons/7.vpk")]);
    assert!(bytes.contains("version 200"), "{bytes}");
    // A fetch asks for no version: what the cache holds will do.
    fetch(&["7"]);
    assert!(host.ok("head", &["-c", "200", &cached]).contains("version 200"));
}

#[test]
fn a_large_collection_is_asked_in_batches_and_one_too_large_is_refused() {
    let host = Host::installed();
    host.sandbox.serve_steam_api();
    let requests = || -> u64 { host.ok("cat", &["/var/lib/fake-steamcmd/steam-api.requests"]).trim().parse().unwrap() };
    let children = |n: u64| (1000..1000 + n).map(|id| id.to_string()).collect::<Vec<_>>().join(", ");
    publish(&host, &format!(r#"{{"collections": {{"70": [{}]}}}}"#, children(150)));
    host.l4d2ctl_ok(&["workshop", "check", "--collection", "70"]);
    // The collection, then its 150 items in two requests of at most 100.
    assert_eq!(requests(), 3);
    let observed: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(&["observe", "--brief"])).unwrap();
    assert_eq!(observed["workshop"]["items"].as_object().unwrap().len(), 150);
    let before = host.ok("cat", &[&format!("{ROOT}/workshop/details.json")]);

    publish(&host, &format!(r#"{{"collections": {{"70": [{}]}}}}"#, children(1001)));
    let out = host.l4d2ctl(&["workshop", "check", "--collection", "70"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("workshop collection 70 holds more than 1000 items"), "{}", text(&out.stderr));
    assert_eq!(requests(), 4, "refused before any item is asked about");
    assert_eq!(host.ok("cat", &[&format!("{ROOT}/workshop/details.json")]), before, "the last answer is kept");
}

#[test]
fn a_broken_details_file_is_a_problem_of_the_host_and_bad_versions_are_refused() {
    let host = Host::installed();
    let details = format!("{ROOT}/workshop/details.json");
    for (broken, cause) in [("{\"items\": ", "EOF while parsing"), ("", "EOF while parsing")] {
        host.ok("sh", &["-c", "printf '%s' \"$1\" > \"$2\"", "sh", broken, &details]);
        let observed: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(&["observe", "--brief"])).unwrap();
        let problem = observed["problems"].as_array().unwrap().iter().find(|p| p["path"] == details).cloned();
        let problem = problem.unwrap_or_else(|| panic!("{observed}"));
        assert!(problem["cause"].as_str().unwrap().contains(cause), "{problem}");
        assert_eq!(problem["remedy"], "check-workshop");
        assert_eq!(observed["workshop"]["items"], serde_json::json!({}));
    }
    // A thousand times larger than any details file: not read at all.
    host.ok("sh", &["-c", &format!("head -c 2000000 /dev/zero > {details}")]);
    let observed: serde_json::Value = serde_json::from_str(&host.l4d2ctl_ok(&["observe", "--brief"])).unwrap();
    assert!(observed["problems"].to_string().contains("is not a regular file of at most 1024 KiB"), "{observed}");

    for (args, expected) in [
        (
            &["overlay", "fetch", "maps", "--digest", DIGEST, "--item", "7@soon"][..],
            "the version \"soon\" is not a number",
        ),
        (
            &["overlay", "fetch", "maps", "--digest", DIGEST, "--item", "0"][..],
            "the item id \"0\" is not a number above 0",
        ),
        (&["workshop", "check"][..], "needs an --item or a --collection"),
        (&["workshop", "check", "--collection", "x"][..], "invalid value 'x'"),
    ] {
        let out = host.l4d2ctl(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out.stderr).contains(expected), "{args:?}: {}", text(&out.stderr));
    }
    assert!(!host.root_path(&format!("{ROOT}/overlays/maps")).exists(), "nothing was fetched");
}

#[test]
fn a_workshop_folder_swapped_for_a_symlink_is_refused_and_its_target_left_as_it_was() {
    let host = Host::installed();
    host.sandbox.serve_steam_api();
    publish(&host, r#"{"items": {"7": {"time_updated": 100, "title": "Seven"}}}"#);
    // The game's user owns $ROOT, so it may rename what is in it: here it puts a symlink to a
    // folder of root's where the workshop cache was.
    host.ok("mkdir", &["-p", "/var/lib/roots-own"]);
    host.ok("chmod", &["0700", "/var/lib/roots-own"]);
    host.ok("runuser", &["-u", "left4me", "--", "mv", &format!("{ROOT}/workshop"), &format!("{ROOT}/workshop.moved")]);
    host.ok("runuser", &["-u", "left4me", "--", "ln", "-s", "/var/lib/roots-own", &format!("{ROOT}/workshop")]);
    let out = host.l4d2ctl(&["workshop", "check", "--item", "7"]);
    assert!(!out.status.success(), "the check went through the symlink");
    assert!(text(&out.stderr).contains("is a symlink"), "{}", text(&out.stderr));
    assert_eq!(host.ok("stat", &["-c", "%U %a", "/var/lib/roots-own"]).trim(), "root 700", "its target is as it was");
    assert!(!host.run("test", &["-e", "/var/lib/roots-own/details.json"]).status.success());
    let fetch = host.l4d2ctl(&["overlay", "fetch", "maps", "--digest", DIGEST, "--item", "7@100"]);
    assert!(!fetch.status.success() && text(&fetch.stderr).contains("is a symlink"), "{}", text(&fetch.stderr));
    assert_eq!(host.ok("stat", &["-c", "%U %a", "/var/lib/roots-own"]).trim(), "root 700");
}
