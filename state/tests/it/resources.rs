//! A blueprint's `spec.resources`: each value read as systemd reads it, a bad one refused at its
//! own line and column with what is wrong, and the limits part of the servers' render.

use left4me_state::{Limits, Tree, read_dir, validate};

use crate::support::examples;

/// alice's coop blueprint of the examples, with `resources` as its last field (line 17).
fn coop_with(resources: &str) -> String {
    format!(
        "apiVersion: left4me/v1\nkind: Blueprint\nmetadata:\n  name: coop\n  owner: alice\nspec:\n  overlays: [tickrate]\n  \
         arguments: [\"+map\", \"c1m1_hotel\"]\n  resources:\n{resources}"
    )
}

fn checked(resources: &str) -> Result<left4me_state::DesiredState, String> {
    let mut tree: Tree = read_dir(&examples(), Limits::DEFAULT).expect("the examples are readable");
    tree.insert_file("blueprints/coop.yaml", coop_with(resources).into_bytes());
    validate(&tree).map_err(|diagnostics| diagnostics.to_string())
}

#[test]
fn good_limits_validate_and_render_in_systemd_terms() {
    let state = checked("    cpus: \"0,2-3\"\n    cpuWeight: 200\n    memoryMax: 2G\n    nice: -5\n").unwrap();
    let spec = state.servers["coop-1"].spec();
    let json: serde_json::Value = serde_json::from_str(&spec.to_json()).unwrap();
    assert_eq!(
        json["resources"],
        serde_json::json!({"cpus": "0,2-3", "cpuWeight": 200, "memoryMax": 2_147_483_648_u64, "nice": -5})
    );
    // Written differently, the same limits are the same render.
    let same = checked("    cpus: 3,2,0\n    cpuWeight: 200\n    memoryMax: 2048M\n    nice: -5\n").unwrap();
    assert_eq!(same.servers["coop-1"].spec().digest(), spec.digest());
    // One CPU may be written as a number, a size as bytes.
    let plain = checked("    cpus: 1\n    memoryMax: 1073741824\n    nice: 19\n").unwrap();
    let json: serde_json::Value = serde_json::from_str(&plain.servers["coop-1"].spec().to_json()).unwrap();
    assert_eq!(json["resources"], serde_json::json!({"cpus": "1", "memoryMax": 1_073_741_824_u64, "nice": 19}));
}

#[test]
fn no_limits_leave_the_render_as_it_was() {
    let empty = checked("    {}\n").unwrap();
    let spec = empty.servers["coop-1"].spec();
    assert!(spec.resources.is_empty());
    assert!(!spec.to_json().contains("resources"), "{}", spec.to_json());
    let limited = checked("    cpuWeight: 50\n").unwrap();
    assert_ne!(limited.servers["coop-1"].spec().digest(), spec.digest(), "limits are part of the render");
}

#[test]
fn a_bad_value_is_refused_at_its_place_with_its_cause() {
    let at = "blueprints/coop.yaml";
    let cases = [
        ("    cpus: \"2-x\"\n", "10:11: spec.resources.cpus: CPU list \"2-x\": \"x\" is not a CPU number"),
        ("    cpus: 3-2\n", "10:11: spec.resources.cpus: CPU list \"3-2\": the range 3-2 is reversed; write 2-3"),
        ("    cpus: 9999\n", "10:11: spec.resources.cpus: CPU list \"9999\": CPU 9999 is beyond 8191"),
        ("    cpus: \"\"\n", "10:11: spec.resources.cpus: the CPU list names no CPU"),
        ("    cpuWeight: 0\n", "10:16: spec.resources.cpuWeight: CPU weight 0 is outside 1 to 10000"),
        ("    cpuWeight: 10001\n", "10:16: spec.resources.cpuWeight: CPU weight 10001 is outside 1 to 10000"),
        (
            "    memoryMax: 32M\n",
            "10:16: spec.resources.memoryMax: memory size 32M is less than 64M, in which the game cannot start",
        ),
        ("    memoryMax: 2T\n", "10:16: spec.resources.memoryMax: memory size 2T is more than 1T"),
        ("    memoryMax: 1.5G\n", "10:16: spec.resources.memoryMax: memory size \"1.5G\" is not a size"),
        ("    memoryMax: 2g\n", "10:16: spec.resources.memoryMax: memory size \"2g\" is not a size"),
        ("    memoryMax: infinity\n", "10:16: spec.resources.memoryMax: memory size infinity: leave memoryMax out"),
        ("    nice: -21\n", "10:11: spec.resources.nice: nice -21 is outside -20 to 19"),
        ("    nice: 20\n", "10:11: spec.resources.nice: nice 20 is outside -20 to 19"),
        (
            "    cpuWeight: 100\n    nice: x\n",
            "11:11: spec.resources.nice: invalid type: string \"x\", expected a nice value",
        ),
        ("    memory: 2G\n", "10:5: spec.resources: unknown field `memory`, expected one of"),
    ];
    for (resources, expected) in cases {
        let found = checked(resources).expect_err(resources);
        assert!(found.starts_with(&format!("{at}:{expected}")), "{resources:?} gave {found}");
        // The blueprint is refused and its servers with it, not reported again.
        assert_eq!(found.lines().count(), 1, "{resources:?} gave {found}");
    }
}
