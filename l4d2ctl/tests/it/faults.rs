//! What goes wrong on a real host, server by server: files cut short by a power cut or edited by
//! hand, folders removed, unit files changed, units left behind — each reported where it lies,
//! none stopping a look at the rest.

use crate::support::{Host, ROOT, text};

impl Host {
    /// `l4d2ctl observe` (a full look), which must succeed.
    fn observe(&self) -> serde_json::Value {
        serde_json::from_str(&self.l4d2ctl_ok(&["observe"])).expect("observe prints JSON")
    }
}

/// One server's part of an observation.
fn instance<'a>(observed: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    observed["instances"].as_array().unwrap().iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("{name}"))
}

/// The problems reported at a path ending in `file`, as "<path>: <cause> [remedy]".
fn problems_at(problems: &serde_json::Value, file: &str) -> Vec<String> {
    problems
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["path"].as_str().unwrap().ends_with(file))
        .map(|p| format!("{}: {} [{}]", p["path"].as_str().unwrap(), p["cause"].as_str().unwrap(), p["remedy"]))
        .collect()
}

#[test]
fn a_broken_file_is_its_servers_problem_and_the_rest_of_the_host_is_still_seen() {
    let host = Host::installed();
    host.start_example("coop-1");
    let spec = host.example_spec("coop-2");
    host.l4d2ctl_ok(&["initialize", "coop-2", "-f", &spec]);

    // A power cut during a write, edits by hand: an empty record, a started.json cut short, an
    // empty override marker, an RCON password file emptied, a digest file that is a folder.
    std::fs::write(host.root_path(&format!("{ROOT}/instances/coop-2/instance.json")), "").unwrap();
    std::fs::write(host.root_path(&format!("{ROOT}/instances/coop-2/rcon_password")), "").unwrap();
    std::fs::write(host.root_path(&format!("{ROOT}/runtime/coop-1/started.json")), "{\"digest\": ").unwrap();
    std::fs::write(host.root_path(&format!("{ROOT}/overrides/coop-1.json")), "").unwrap();
    std::fs::create_dir_all(host.root_path(&format!("{ROOT}/overlays/.digests/tickrate"))).unwrap();

    let observed = host.observe();
    let coop2 = instance(&observed, "coop-2");
    let record = problems_at(&coop2["problems"], "coop-2/instance.json");
    assert!(
        record.len() == 1 && record[0].contains("EOF while parsing") && record[0].contains("initialize"),
        "{coop2}"
    );
    assert_eq!(coop2["digest"], "", "an unreadable record has no render");
    assert_eq!(problems_at(&coop2["problems"], "coop-2/rcon_password").len(), 1, "{coop2}");
    let coop1 = instance(&observed, "coop-1");
    assert_eq!(coop1["active_state"], "active", "the other server is seen as it is: {coop1}");
    assert!(coop1["query"]["map"].is_string(), "and asked for its answer: {coop1}");
    let started = problems_at(&coop1["problems"], "coop-1/started.json");
    assert!(started.len() == 1 && started[0].contains("next-start"), "{coop1}");
    assert!(coop1["started_digest"].is_null(), "what it started with is unknown");
    // An unreadable marker still marks a change by hand.
    assert!(coop1["override"]["what"].as_str().unwrap().contains("cannot be read"), "{coop1}");
    assert_eq!(problems_at(&coop1["problems"], "overrides/coop-1.json").len(), 1, "{coop1}");
    assert_eq!(problems_at(&observed["problems"], ".digests/tickrate").len(), 1, "{observed}");

    // The human table and one server's status say the same, and neither fails.
    let table = host.l4d2ctl_ok(&["status"]);
    assert!(table.contains("coop-2/instance.json: EOF while parsing"), "{table}");
    let one = host.status_json("coop-2");
    assert_eq!(problems_at(&one["problems"], "coop-2/instance.json").len(), 1, "{one}");

    // Rendering again puts the record and the password right, and says what it repaired. (A
    // render reads the digest of each overlay it stacks: that one is the overlay's to put right.)
    std::fs::remove_dir(host.root_path(&format!("{ROOT}/overlays/.digests/tickrate"))).unwrap();
    let out = host.l4d2ctl_ok(&["initialize", "coop-2", "-f", &spec]);
    assert!(out.contains("coop-2: repaired ") && out.contains("instance.json: written again"), "{out}");
    assert!(out.contains("rcon_password: held no password"), "{out}");
    let coop2 = host.status_json("coop-2");
    assert_eq!(coop2["problems"], serde_json::json!([]), "{coop2}");
    assert!(coop2["digest"].as_str().unwrap().starts_with("sha256:"));

    // The web app looks as the game's user: the same look, and it keeps the answers' times too.
    let answers = format!("{ROOT}/answers.json");
    host.ok("rm", &[&answers]);
    let as_game = host.ok("setpriv", &["--reuid=left4me", "--regid=left4me", "--init-groups", "l4d2ctl", "observe"]);
    let seen: serde_json::Value = serde_json::from_str(&as_game).unwrap();
    assert!(instance(&seen, "coop-1")["last_answer"].is_string(), "{seen}");
    assert_eq!(host.ok("stat", &["--format", "%U", &answers]).trim(), "left4me");
    assert!(host.ok("cat", &[&answers]).contains("\"coop-1\":"));
}

#[test]
fn a_start_over_a_missing_upper_says_why_and_a_render_creates_it_again() {
    let host = Host::installed();
    host.put_example_overlays();
    let spec = host.example_spec("coop-1");
    host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    std::fs::remove_dir(host.root_path(&format!("{ROOT}/runtime/coop-1/upper"))).unwrap();

    let problems = instance(&host.observe(), "coop-1")["problems"].clone();
    assert_eq!(problems_at(&problems, "runtime/coop-1/upper").len(), 1, "{problems}");
    let out = host.l4d2ctl(&["start", "coop-1"]);
    assert!(!out.status.success());
    let said = text(&out.stdout);
    assert!(
        said.contains("coop-1: failed to start: cannot mount the overlay of coop-1")
            && said.contains("No such file or directory")
            && said.contains(&format!("upperdir {ROOT}/runtime/coop-1/upper is missing")),
        "the mount's own error: {said}"
    );

    let out = host.l4d2ctl_ok(&["initialize", "coop-1", "-f", &spec]);
    assert!(out.contains(&format!("coop-1: repaired {ROOT}/runtime/coop-1/upper: created again")), "{out}");
    host.l4d2ctl_ok(&["start", "coop-1"]);
    host.wait_for(15, |h| h.answered("coop-1")).expect("coop-1 answers once its upper is back");
}

#[test]
fn a_unit_file_changed_by_hand_is_seen_and_written_again_without_steamcmd() {
    let host = Host::installed();
    let unit = "/usr/local/lib/systemd/system/left4me-server@.service";
    let slice = "/usr/local/lib/systemd/system/left4me-game.slice";
    let installed = host.ok("cat", &[unit]);
    assert_eq!(host.observe()["units"], serde_json::json!([]), "as installed");

    host.ok("sed", &["-i", "s/^RestartSec=2$/RestartSec=30/", unit]);
    host.ok("rm", &[slice]);
    let units = host.observe()["units"].clone();
    assert_eq!(problems_at(&units, "left4me-server@.service").len(), 1, "{units}");
    assert!(problems_at(&units, "left4me-game.slice")[0].contains("is missing"), "{units}");

    let out = host.l4d2ctl_ok(&["install", "--units-only"]);
    assert!(out.contains(&format!("wrote {unit}")) && out.contains(&format!("wrote {slice}")), "{out}");
    assert!(!out.contains("steamcmd"), "only the units: {out}");
    assert_eq!(host.ok("cat", &[unit]), installed);
    assert_eq!(host.observe()["units"], serde_json::json!([]));
    let restart = host.ok("systemctl", &["show", "--property", "RestartUSec", "--value", "left4me-server@x.service"]);
    assert_eq!(restart.trim(), "2s", "systemd was reloaded with the unit as rendered");
    assert!(host.l4d2ctl_ok(&["install", "--units-only"]).contains("units unchanged"));
}

#[test]
fn a_failed_unit_with_no_instance_is_seen_and_cleared_by_delete() {
    let host = Host::installed();
    host.start_example("coop-1");
    let unit = "left4me-server@coop-1.service";
    // The instance goes while its unit stays enabled (a deletion cut short), then the unit
    // starts again: it fails until systemd gives up.
    host.ok("rm", &["-rf", &format!("{ROOT}/instances/coop-1")]);
    host.run("systemctl", &["restart", unit]);
    host.wait_for(60, |h| {
        let state = h.ok("systemctl", &["show", "--property", "ActiveState", "--value", unit]);
        (state.trim() == "failed").then_some(())
    })
    .expect("the unit with no instance failed");

    let observed = host.observe();
    let leftover = observed["leftover_units"].as_array().unwrap();
    assert_eq!(
        leftover
            .iter()
            .map(|l| (l["name"].clone(), l["active_state"].clone(), l["enabled"].clone()))
            .collect::<Vec<_>>(),
        [(serde_json::json!("coop-1"), serde_json::json!("failed"), serde_json::json!(true))],
        "{observed}"
    );
    let out = host.l4d2ctl_ok(&["delete", "coop-1"]);
    assert!(out.contains(&format!("coop-1: {unit} had failed; its failed state is cleared")), "{out}");
    let failed = host.ok("systemctl", &["list-units", "--failed", "--no-legend", "--plain"]);
    assert!(!failed.contains(unit), "{failed}");
    assert_eq!(host.observe()["leftover_units"], serde_json::json!([]));
}
