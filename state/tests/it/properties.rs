//! Laws that hold for any input: validation never panics, whatever bytes a file holds.

use proptest::prelude::*;

use left4me_state::{Tree, validate};

const SERVER: &str = "apiVersion: left4me/v1\nkind: Server\nmetadata:\n  name: a\n  owner: alice\nspec:\n  \
                      blueprint: coop\n  port: 27015\n  hostname: \"alice's coop\"\n";
const BLUEPRINT: &str = "apiVersion: left4me/v1\nkind: Blueprint\nmetadata: {name: coop, owner: alice}\nspec:\n  \
                         overlays: [maps]\n  arguments: [\"+map\", c1m1_hotel]\n  config: [sv_cheats 0]\n";
const OVERLAY: &str = "apiVersion: left4me/v1\nkind: Overlay\nmetadata:\n  name: maps\nspec:\n  type: workshop\n  \
                       items: [1, 2]\n";

/// The paths a file can take, each read as a different kind of resource.
const PATHS: &[&str] = &["servers/a.yaml", "blueprints/coop.yaml", "overlays/maps/overlay.yaml", "left4me.yaml"];

fn tree_with(path: &str, data: Vec<u8>) -> Tree {
    let mut tree = Tree::default();
    tree.insert_file("servers/a.yaml", SERVER.into());
    tree.insert_file("blueprints/coop.yaml", BLUEPRINT.into());
    tree.insert_file("overlays/maps/overlay.yaml", OVERLAY.into());
    tree.insert_file(path, data);
    tree
}

/// A valid document with a stretch of it replaced by arbitrary bytes: near-valid input reaches
/// deeper into the reader than noise does.
fn mutated() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (0..PATHS.len(), any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 0..16)).prop_map(
        |(which, at, noise)| {
            let doc = [SERVER, BLUEPRINT, OVERLAY, "apiVersion: left4me/v1\nkind: Settings\n"][which].as_bytes();
            let at = at.index(doc.len());
            let mut data = doc[..at].to_vec();
            data.extend(noise);
            data.extend(&doc[(at + 3).min(doc.len())..]);
            (which, data)
        },
    )
}

/// Text made of YAML's own punctuation, to exercise the pre-check's scanner.
fn yamlish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a", ":", " ", "\n", "- ", "[", "]", "{", "}", ",", "'", "\"", "\\", "#", "&x", "*x", "|", ">", "!t", "  ",
            "?", "---\n", "é", "\t",
        ]),
        0..64,
    )
    .prop_map(|parts| parts.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validation_never_panics_on_arbitrary_bytes(which in 0..PATHS.len(), data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = validate(&tree_with(PATHS[which], data));
    }

    #[test]
    fn validation_never_panics_on_damaged_documents((which, data) in mutated()) {
        let _ = validate(&tree_with(PATHS[which], data));
    }

    #[test]
    fn validation_never_panics_on_yaml_punctuation(which in 0..PATHS.len(), data in yamlish()) {
        let _ = validate(&tree_with(PATHS[which], data));
    }
}

#[test]
fn the_property_fixture_is_valid() {
    // Otherwise the properties above would only ever exercise the error paths.
    let tree = tree_with("left4me.yaml", b"apiVersion: left4me/v1\nkind: Settings\n".to_vec());
    validate(&tree).expect("the fixture is valid");
}
