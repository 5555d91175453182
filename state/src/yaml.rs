//! Reading YAML documents with every problem placed at its line and column.
//!
//! The YAML reader is `serde_norway` (see docs/ARCHITECTURE.md). Errors it raises while
//! deserializing carry their position. Rules checked later, across files, find the position of
//! the value they are about with [`locate`], which walks the same document with the same reader,
//! so the two can never disagree about where a value is.

use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use unsafe_libyaml_norway as unsafe_libyaml;

use crate::{Diagnostic, Position};

/// Collections nested deeper than this are refused before parsing; a resource needs four.
const MAX_DEPTH: usize = 32;

/// Parses the one YAML document of `path` into `T`: the only way text reaches the YAML reader.
///
/// [`precheck`] runs first, so no text can make the reader expand aliases or nest without bound;
/// every problem is a [`Diagnostic`] placed in `path`. Whoever reads a document of the state repo
/// (validation, the web app's owner check) reads it through here, so all read it alike.
pub fn parse<T: DeserializeOwned>(path: &str, data: &[u8]) -> Result<T, Diagnostic> {
    let text = std::str::from_utf8(data).map_err(|e| {
        let valid = &data[..e.valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        // The valid prefix is UTF-8, so its characters can be counted as the reader counts them.
        let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
        Diagnostic::at(path, Position { line, column }, "file is not valid UTF-8")
    })?;
    match precheck(text) {
        Ok(Shape::Empty) => return Err(Diagnostic::file(path, "file is empty; it should hold one resource")),
        Ok(Shape::Documents) => {}
        Err((position, message)) => return Err(Diagnostic::at(path, position, message)),
    }
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

/// What [`precheck`] found in a text that has nothing the YAML reader cannot take.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// No document at all: empty, or only comments.
    Empty,
    Documents,
}

/// Refuses, before the YAML reader builds anything, the two shapes it cannot read within bounds:
///
/// - aliases (`*name`): the reader has no limit on what aliases to one long string expand to
///   (130 KB of `*s` referring to a 100 KB string became a gigabyte);
/// - collections nested deeper than [`MAX_DEPTH`]: the reader's time grows with the square of the
///   depth (a 200 KB file of `[` took 39 s).
///
/// It walks the reader's own event parser (libyaml, as `serde_norway` uses it) one event at a
/// time and stops at the first offence, so it sees exactly what the reader will see and its cost
/// stays linear. Syntax errors are left for the reader to report in its own words.
pub(crate) fn precheck(text: &str) -> Result<Shape, (Position, String)> {
    let mut parser = EventParser::new(text);
    let mut depth = 0usize;
    let mut shape = Shape::Empty;
    while let Some((kind, mark)) = parser.next() {
        let at = || Position { line: mark.line as usize + 1, column: mark.column as usize + 1 };
        match kind {
            unsafe_libyaml::YAML_DOCUMENT_START_EVENT => shape = Shape::Documents,
            unsafe_libyaml::YAML_ALIAS_EVENT => {
                return Err((
                    at(),
                    "YAML aliases (*name) are not supported in the state repo; write the value out".to_owned(),
                ));
            }
            unsafe_libyaml::YAML_SEQUENCE_START_EVENT | unsafe_libyaml::YAML_MAPPING_START_EVENT => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err((at(), format!("nested more than {MAX_DEPTH} levels deep")));
                }
            }
            unsafe_libyaml::YAML_SEQUENCE_END_EVENT | unsafe_libyaml::YAML_MAPPING_END_EVENT => {
                depth = depth.saturating_sub(1)
            }
            unsafe_libyaml::YAML_STREAM_END_EVENT => break,
            _ => {}
        }
    }
    Ok(shape)
}

/// libyaml's pull parser over a text, yielding each event's type and start.
struct EventParser<'t> {
    parser: Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>>,
    done: bool,
    _text: PhantomData<&'t str>,
}

impl<'t> EventParser<'t> {
    fn new(text: &'t str) -> Self {
        let mut parser = Box::new(MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit());
        let raw = parser.as_mut_ptr();
        // SAFETY: `raw` points to memory the Box owns and never moves; initialisation only fails
        // when memory is exhausted. The input outlives the parser, which borrows it for 't.
        unsafe {
            assert!(unsafe_libyaml::yaml_parser_initialize(raw).ok, "libyaml could not allocate a parser");
            unsafe_libyaml::yaml_parser_set_encoding(raw, unsafe_libyaml::YAML_UTF8_ENCODING);
            unsafe_libyaml::yaml_parser_set_input_string(raw, text.as_ptr(), text.len() as u64);
        }
        EventParser { parser, done: false, _text: PhantomData }
    }

    /// The next event, or None at a syntax error or after the end of the stream.
    fn next(&mut self) -> Option<(unsafe_libyaml::yaml_event_type_t, unsafe_libyaml::yaml_mark_t)> {
        if self.done {
            return None;
        }
        let mut event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new`; a successful parse initialises `event`,
        // which is read for plain values and then freed exactly once.
        unsafe {
            if !unsafe_libyaml::yaml_parser_parse(self.parser.as_mut_ptr(), event.as_mut_ptr()).ok {
                self.done = true;
                return None;
            }
            let (kind, mark) = ((*event.as_ptr()).type_, (*event.as_ptr()).start_mark);
            unsafe_libyaml::yaml_event_delete(event.as_mut_ptr());
            if kind == unsafe_libyaml::YAML_STREAM_END_EVENT {
                self.done = true;
            }
            Some((kind, mark))
        }
    }
}

impl Drop for EventParser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, deleted once.
        unsafe { unsafe_libyaml::yaml_parser_delete(self.parser.as_mut_ptr()) }
    }
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
    fn precheck_refuses_aliases_and_depth_but_never_text() {
        let check = |text: &str| match precheck(text) {
            Ok(shape) => format!("{shape:?}"),
            Err((p, m)) => format!("{}:{} {}", p.line, p.column, &m[..12]),
        };
        let fine = [
            "hostname: alice's coop & friends *\n",
            "config:\n  - sm_cvar x [a] {b}\n  - 'it''s & *'\n  - \"say \\\"*\\\" & [\"\n",
            "description: |\n  * one\n  & two\n  [[[[\nkind: Server\n",
            "a: b # &comment *too\n",
            "a: !!str 1\nb: [x, 'y', \"z\", {c: d}]\n",
            "a: x*y&z\n",
            "hostname: 'Bob''s: *Expert* coop'\n",
            "description: Adds admin menu,\n    * requires sourcemod\n    & friends\n",
            "config: ['it''s, *great*']\n",
            "a: &anchor 1\n",
        ];
        for text in fine {
            assert_eq!(check(text), "Documents", "{text:?}");
        }
        assert_eq!(check(""), "Empty");
        assert_eq!(check("# only a comment\r# and another\r"), "Empty");
        assert_eq!(check("a: &x 1\nb: *x\n"), "2:4 YAML aliases");
        assert_eq!(check("a:\n  - *x\n"), "2:5 YAML aliases");
        assert_eq!(check("- 'sm_say ''Rules: '\n- &s x\n- *s\n"), "3:3 YAML aliases");
        assert_eq!(check("kind: Server # x\u{2028}metadata: {name: &n s1, owner: *n}\n"), "2:32 YAML aliases");
        assert_eq!(check("metadata: {\"name\":&n s1, \"owner\":*n}\n"), "1:34 YAML aliases");
        assert_eq!(check(&format!("a: {}", "[".repeat(40))), "1:35 nested more ");
        assert_eq!(check(&format!("--- {{\"a\":{}", "[".repeat(40))), "1:41 nested more ");
        assert_eq!(check(&format!("a: {}{}\n", "[".repeat(31), "]".repeat(31))), "Documents");
    }
}
