//! Reading YAML documents with every problem placed at its line and column.
//!
//! The YAML reader is `serde_norway` (see docs/ARCHITECTURE.md). Errors it raises while
//! deserializing carry their position. Rules checked later, across files, find the position of
//! the value they are about with [`locate`], which walks the same document with the same reader,
//! so the two can never disagree about where a value is.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::{Diagnostic, Position};

/// Flow collections (`[...]`, `{...}`) nested deeper than this are refused before parsing.
const MAX_FLOW_DEPTH: usize = 32;

/// Parses the one YAML document of `path` into `T`.
pub(crate) fn parse<T: DeserializeOwned>(path: &str, data: &[u8]) -> Result<T, Diagnostic> {
    let text = std::str::from_utf8(data).map_err(|e| {
        let valid = &data[..e.valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let column = valid.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        Diagnostic::at(path, Position { line, column }, "file is not valid UTF-8")
    })?;
    if text.lines().all(|line| line.trim().is_empty() || line.trim_start().starts_with('#')) {
        return Err(Diagnostic::file(path, "file is empty; it should hold one resource"));
    }
    precheck(text).map_err(|(position, message)| Diagnostic::at(path, position, message))?;
    serde_norway::from_str(text).map_err(|e| diagnostic(path, text, &e))
}

fn diagnostic(path: &str, text: &str, error: &serde_norway::Error) -> Diagnostic {
    let mut message = error.to_string();
    if message.contains("more than one document") {
        let second = text
            .lines()
            .enumerate()
            .skip_while(|(_, line)| !is_content(line))
            .find(|(_, line)| line.starts_with("---"))
            .map(|(index, _)| Position { line: index + 1, column: 1 });
        let message = "holds more than one YAML document; put each resource in a file of its own";
        return match second {
            Some(position) => Diagnostic::at(path, position, message),
            None => Diagnostic::file(path, message),
        };
    }
    match error.location() {
        Some(location) => {
            // The reader appends the place to its message; it is in the diagnostic's prefix instead.
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message.truncate(stripped.len());
            }
            let position = Position { line: location.line(), column: location.column() };
            Diagnostic::at(path, position, message)
        }
        None => Diagnostic::file(path, message),
    }
}

fn is_content(line: &str) -> bool {
    let line = line.trim();
    !(line.is_empty() || line.starts_with('#') || line == "---")
}

/// Refuses, before the YAML reader sees them, the two shapes it cannot read within bounds:
///
/// - anchors and aliases (`&name`, `*name`): a few kilobytes of aliases to one long string
///   expand to gigabytes, and the reader has no limit on that;
/// - flow collections nested deeply: the reader's time grows with the square of the depth
///   (a 200 KB file of `[` took 39 s).
///
/// A small scanner of YAML's token starts; it tracks quotes, comments and block scalars so that
/// `&`, `*`, `[` and `{` inside text are left alone.
pub(crate) fn precheck(text: &str) -> Result<(), (Position, String)> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    // Lines indented more than this belong to a block scalar (`|`, `>`) and are text.
    let mut block_scalar: Option<usize> = None;
    for (index, line) in text.split('\n').enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some(parent) = block_scalar {
            if line.trim().is_empty() || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        // At a line start outside quotes a new node may begin.
        let mut expect_node = quote.is_none();
        let mut previous = ' ';
        let mut chars = line.char_indices().peekable();
        while let Some((offset, c)) = chars.next() {
            let at = || Position { line: index + 1, column: line[..offset].chars().count() + 1 };
            let next = chars.peek().map(|(_, n)| *n);
            let spaced = matches!(next, None | Some(' ' | '\t' | '\r'));
            if let Some(open) = quote {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if open == '"' => escaped = true,
                    _ if c == open => quote = None,
                    _ => {}
                }
                previous = c;
                continue;
            }
            match c {
                ' ' | '\t' | '\r' => {}
                '#' if previous == ' ' || previous == '\t' => break,
                '[' | '{' if expect_node || depth > 0 => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err((at(), format!("nested more than {MAX_FLOW_DEPTH} levels deep")));
                    }
                    expect_node = true;
                }
                ']' | '}' if depth > 0 => {
                    depth -= 1;
                    expect_node = false;
                }
                ',' if depth > 0 => expect_node = true,
                ':' if spaced || (depth > 0 && matches!(next, Some(',' | ']' | '}'))) => expect_node = true,
                _ if !expect_node => {}
                '\'' | '"' => {
                    quote = Some(c);
                    expect_node = false;
                }
                '&' | '*' => {
                    return Err((
                        at(),
                        "YAML anchors and aliases (&name, *name) are not supported in the state repo; \
                         write the value out, or quote it if it is text"
                            .to_owned(),
                    ));
                }
                '-' | '?' if spaced => {}
                '|' | '>' if depth == 0 => {
                    block_scalar = Some(indent);
                    break;
                }
                '!' => {
                    // A tag: skip to its end; the node follows.
                    while chars.next_if(|(_, n)| !n.is_whitespace()).is_some() {}
                }
                _ => expect_node = false,
            }
            previous = c;
        }
    }
    Ok(())
}

/// One step of a path into a YAML document: a mapping key or a sequence index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Finds where the value at `path` starts in `text`, a document that has already parsed.
///
/// Walks to the value and raises an error there; the reader stamps that error with the value's
/// position. It costs one parse, so it is only used for diagnostics, never on the valid path.
pub(crate) fn locate(text: &str, path: &[Seg<'_>]) -> Option<Position> {
    let error = match Walk(path).deserialize(serde_norway::Deserializer::from_str(text)) {
        Err(error) => error,
        Ok(()) => return None,
    };
    if error.to_string().contains(HERE) {
        error.location().map(|l| Position { line: l.line(), column: l.column() })
    } else {
        None
    }
}

const HERE: &str = "\u{0}left4me-locate-here\u{0}";

struct Walk<'p, 'a>(&'p [Seg<'a>]);

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.0.is_empty() { deserializer.deserialize_any(Here) } else { deserializer.deserialize_any(self) }
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or a sequence")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Seg::Key(wanted) = self.0[0] else {
            return Ok(());
        };
        while let Some(key) = map.next_key::<KeyText>()? {
            if key.0.as_deref() == Some(wanted) {
                return map.next_value_seed(Walk(&self.0[1..]));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Seg::Index(wanted) = self.0[0] else {
            return Ok(());
        };
        for _ in 0..wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Walk(&self.0[1..])).map(|_| ())
    }

    // Any scalar on the way means the path does not exist.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A mapping key as text when it is a string, so that non-string keys are skipped, not errors.
struct KeyText(Option<String>);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// Raises the marker error at whatever value it is given.
struct Here;

impl<'de> Visitor<'de> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_and_items() {
        let text = "kind: Server\nspec:\n  blueprint: coop\n  port:   27015\nlist:\n  - a\n  -   b\n";
        let at = |path: &[Seg]| locate(text, path).map(|p| (p.line, p.column));
        assert_eq!(at(&[Seg::Key("spec"), Seg::Key("port")]), Some((4, 11)));
        assert_eq!(at(&[Seg::Key("spec"), Seg::Key("blueprint")]), Some((3, 14)));
        assert_eq!(at(&[Seg::Key("list"), Seg::Index(1)]), Some((7, 7)));
        assert_eq!(at(&[Seg::Key("kind")]), Some((1, 7)));
        assert_eq!(at(&[Seg::Key("missing")]), None);
        assert_eq!(at(&[Seg::Key("list"), Seg::Index(5)]), None);
    }

    #[test]
    fn places_reader_errors() {
        let err =
            parse::<crate::model::ServerDocument>("s.yaml", b"apiVersion: left4me/v1\nkind: Server\nx: [").unwrap_err();
        assert_eq!(err.path, "s.yaml");
        assert!(err.position.is_some());
        let err = parse::<crate::model::ServerDocument>("s.yaml", b"a: 1\nb: \xff\n").unwrap_err();
        assert_eq!(err.to_string(), "s.yaml:2:4: file is not valid UTF-8");
    }

    #[test]
    fn precheck_finds_anchors_and_deep_flows_but_not_text() {
        let check = |text: &str| precheck(text).map_err(|(p, m)| format!("{}:{} {}", p.line, p.column, &m[..12]));
        let fine = [
            "hostname: alice's coop & friends *\n",
            "config:\n  - sm_cvar x [a] {b}\n  - 'it''s & *'\n  - \"say \\\"*\\\" & [\"\n",
            "description: |\n  * one\n  & two\n  [[[[\nkind: Server\n",
            "a: b # &comment *too\n",
            "a: !!str 1\nb: [x, 'y', \"z\", {c: d}]\n",
            "a: x*y&z\n",
        ];
        for text in fine {
            assert_eq!(check(text), Ok(()), "{text:?}");
        }
        assert_eq!(check("a: &x 1\nb: *x\n"), Err("1:4 YAML anchors".into()));
        assert_eq!(check("a:\n  - *x\n"), Err("2:5 YAML anchors".into()));
        assert_eq!(check("a: [1, *x]\n"), Err("1:8 YAML anchors".into()));
        assert_eq!(check("a: !!str &x 1\n"), Err("1:10 YAML anchors".into()));
        assert_eq!(check(&format!("a: {}", "[".repeat(33))), Err("1:36 nested more ".into()));
        assert_eq!(check(&format!("a: {}{}\n", "[".repeat(32), "]".repeat(32))), Ok(()));
    }
}
