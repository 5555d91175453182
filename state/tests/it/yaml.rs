//! The YAML reader's own errors, placed where the reader stopped.

use left4me_state::model::ServerDocument;
use left4me_state::parse_yaml as parse;

#[test]
fn places_reader_errors() {
    let err = parse::<ServerDocument>("s.yaml", b"apiVersion: left4me/v1\nkind: Server\nx: [").unwrap_err();
    assert_eq!(err.path, "s.yaml");
    assert!(err.position.is_some());
    let err = parse::<ServerDocument>("s.yaml", b"a: 1\nb: \xff\n").unwrap_err();
    assert_eq!(err.to_string(), "s.yaml:2:4: file is not valid UTF-8");
    // Columns count characters, as the reader does, not bytes.
    let err =
        parse::<ServerDocument>("s.yaml", "a: 1\nb: \u{e9}\u{e9}".bytes().chain([0xff]).collect::<Vec<_>>().as_slice())
            .unwrap_err();
    assert_eq!(err.to_string(), "s.yaml:2:6: file is not valid UTF-8");
}
