//! Many hosts in one repo: what each host is given by `DesiredState::placed_on`, and the refusals
//! when the host's name and the revision's hosts disagree.

use std::path::Path;

use left4me_state::{DesiredState, Name, PlacementError};

fn fleet() -> DesiredState {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet");
    left4me_state::load_dir(&dir).unwrap().unwrap_or_else(|d| panic!("examples/fleet is valid:\n{d}"))
}

fn name(text: &str) -> Name {
    Name::new(text).unwrap()
}

fn servers(state: &DesiredState) -> Vec<&str> {
    state.servers.keys().map(Name::as_str).collect()
}

#[test]
fn each_host_is_given_only_the_servers_placed_on_it_with_its_own_ports() {
    let fleet = fleet();
    assert_eq!(fleet.hosts.keys().map(Name::as_str).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(fleet.servers["coop-b"].host, Some(name("b")));
    // Three servers on port 27015, each on a host of its own.
    assert_eq!(fleet.servers.values().filter(|s| s.port.number() == 27015).count(), 3);

    let b = fleet.clone().placed_on(Some(&name("b"))).unwrap();
    assert_eq!(servers(&b), ["coop-b"]);
    assert_eq!((b.settings.ports.last.number(), b.settings.max_servers), (27034, 20), "hosts/b.yaml's own");
    let c = fleet.clone().placed_on(Some(&name("c"))).unwrap();
    assert_eq!(servers(&c), ["coop-c", "coop-c2"]);
    assert_eq!((c.settings.ports.last.number(), c.settings.max_servers), (27025, 10), "left4me.yaml's");
    assert_eq!(c.blueprints.len(), fleet.blueprints.len(), "blueprints are shared");
    assert_eq!(c.hosts, fleet.hosts, "every host still knows the others");
}

#[test]
fn a_host_whose_name_the_revision_does_not_match_is_given_nothing_to_act_on() {
    let fleet = fleet();
    let unnamed = fleet.clone().placed_on(None).unwrap_err();
    assert_eq!(unnamed, PlacementError::Unnamed { known: "a, b, c".into() });
    assert!(unnamed.to_string().contains("set LEFT4ME_HOST"), "{unnamed}");
    let undeclared = fleet.clone().placed_on(Some(&name("d"))).unwrap_err();
    assert!(matches!(&undeclared, PlacementError::Undeclared { host, .. } if host.as_str() == "d"));
    assert!(undeclared.to_string().contains("hosts/d.yaml"), "{undeclared}");

    let one_host =
        left4me_state::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/state")).unwrap().unwrap();
    assert!(one_host.hosts.is_empty());
    let named = one_host.clone().placed_on(Some(&name("a"))).unwrap_err();
    assert!(named.to_string().contains("declares no hosts/"), "{named}");
    assert_eq!(one_host.clone().placed_on(None).unwrap(), one_host, "a repo of one host is all for it");
}

#[test]
fn a_schedule_goes_only_to_the_hosts_of_its_servers() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet"), dir.path());
    std::fs::create_dir(dir.path().join("schedules")).unwrap();
    std::fs::write(
        dir.path().join("schedules/nightly.yaml"),
        "apiVersion: left4me/v1\nkind: Schedule\nmetadata: {name: nightly, owner: alice}\nspec:\n  servers: \
         [coop-c, coop-b]\n  at: \"*-*-* 06:00:00\"\n  action: restart\n",
    )
    .unwrap();
    let fleet = left4me_state::load_dir(dir.path()).unwrap().unwrap();
    let c = fleet.clone().placed_on(Some(&name("c"))).unwrap();
    let on_c: Vec<&str> = c.schedule_servers(&c.schedules["nightly"]).iter().map(|s| s.name.as_str()).collect();
    assert_eq!(on_c, ["coop-c"], "c acts on its own server of the schedule only");
    let a = fleet.placed_on(Some(&name("a"))).unwrap();
    assert!(a.schedules.is_empty(), "no server of the schedule is on a: {:?}", a.schedules.keys());
}
