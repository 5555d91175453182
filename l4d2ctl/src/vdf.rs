//! A reader for Valve's KeyValues text (VDF), as steamcmd prints (`app_info_print`) and writes
//! (`appmanifest_*.acf`): quoted or bare tokens, `\"`-style escapes, `//` comments, nested blocks, and
//! `[$WIN32]`-style conditionals (read and dropped: nothing left4me reads carries one).
//!
//! Bounded by design: input over [`MAX_INPUT`] bytes or nested deeper than [`MAX_DEPTH`] is refused with
//! an error before any work grows with it, so hostile or broken output cannot exhaust the stack or memory.

use thiserror::Error;

/// Far above what steamcmd prints for one app (tens of KiB), far below what could hurt.
pub const MAX_INPUT: usize = 4 * 1024 * 1024;
/// steamcmd's own output nests five deep; Valve's parsers stop near this depth too.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VdfError {
    #[error("the text is {len} bytes, more than the {MAX_INPUT} a steamcmd answer can be")]
    TooLarge { len: usize },
    #[error("line {line}: blocks nest deeper than {MAX_DEPTH} levels")]
    TooDeep { line: usize },
    #[error("line {line}: {cause}")]
    Syntax { line: usize, cause: &'static str },
}

/// A value: a string, or a block of entries in their order (keys may repeat, as in Valve's own files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Block(Vec<(String, Value)>),
}

impl Value {
    /// The first entry named `key` (keys compare without case, as Valve's KeyValues do).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Block(entries) => entries.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(_, v)| v),
            Value::Str(_) => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            Value::Block(_) => None,
        }
    }

    /// The keys of a block, in order; none for a string.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Value::Block(entries) => entries.iter().map(|(name, _)| name.as_str()).collect(),
            Value::Str(_) => Vec::new(),
        }
    }
}

/// Reads a whole document: its top-level entries as one block.
pub fn parse(text: &str) -> Result<Value, VdfError> {
    let mut reader = Reader::new(text)?;
    let entries = reader.entries(0)?;
    match reader.token()? {
        None => Ok(Value::Block(entries)),
        Some(_) => Err(reader.syntax("a '}' closes no block")),
    }
}

/// Reads the first entry of `text` (`"key" { … }` or `"key" "value"`) and ignores what follows it.
pub fn parse_entry(text: &str) -> Result<(String, Value), VdfError> {
    let mut reader = Reader::new(text)?;
    match reader.token()? {
        Some(Token::Str(key)) => Ok((key, reader.value(0)?)),
        Some(_) => Err(reader.syntax("expected a key")),
        None => Err(reader.syntax("the text holds no entry")),
    }
}

enum Token {
    Str(String),
    Open,
    Close,
}

struct Reader<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Result<Self, VdfError> {
        if text.len() > MAX_INPUT {
            return Err(VdfError::TooLarge { len: text.len() });
        }
        Ok(Reader { rest: text, line: 1 })
    }

    fn syntax(&self, cause: &'static str) -> VdfError {
        VdfError::Syntax { line: self.line, cause }
    }

    /// Entries up to a `}` (consumed) or the end of the text (only at the top level).
    fn entries(&mut self, depth: usize) -> Result<Vec<(String, Value)>, VdfError> {
        let mut entries = Vec::new();
        loop {
            match self.token()? {
                Some(Token::Str(key)) => {
                    let value = self.value(depth)?;
                    entries.push((key, value));
                }
                Some(Token::Close) if depth > 0 => return Ok(entries),
                None if depth == 0 => return Ok(entries),
                Some(Token::Close) => return Err(self.syntax("a '}' closes no block")),
                Some(Token::Open) => return Err(self.syntax("a '{' where a key belongs")),
                None => return Err(self.syntax("a block is not closed before the end of the text")),
            }
        }
    }

    /// The value after a key: a string or a `{ … }` block, then an optional conditional.
    fn value(&mut self, depth: usize) -> Result<Value, VdfError> {
        let value = match self.token()? {
            Some(Token::Str(text)) => Value::Str(text),
            Some(Token::Open) if depth + 1 > MAX_DEPTH => return Err(VdfError::TooDeep { line: self.line }),
            Some(Token::Open) => Value::Block(self.entries(depth + 1)?),
            Some(Token::Close) => return Err(self.syntax("a key without a value before '}'")),
            None => return Err(self.syntax("a key without a value at the end of the text")),
        };
        self.skip_conditional()?;
        Ok(value)
    }

    fn skip_space(&mut self) {
        loop {
            let trimmed = self.rest.trim_start();
            self.line += self.rest[..self.rest.len() - trimmed.len()].matches('\n').count();
            self.rest = trimmed;
            match self.rest.strip_prefix("//") {
                Some(comment) => self.rest = comment.find('\n').map_or("", |end| &comment[end..]),
                None => return,
            }
        }
    }

    /// `[$WIN32]`, `[!$X360 && $PC]`: a platform condition on the entry before it, on the same line.
    fn skip_conditional(&mut self) -> Result<(), VdfError> {
        let spaces = self.rest.len() - self.rest.trim_start_matches([' ', '\t']).len();
        let Some(condition) = self.rest[spaces..].strip_prefix('[') else { return Ok(()) };
        match condition.find([']', '\n']) {
            Some(end) if condition.as_bytes()[end] == b']' => {
                self.rest = &condition[end + 1..];
                Ok(())
            }
            _ => Err(self.syntax("a '[' condition is not closed on its line")),
        }
    }

    fn token(&mut self) -> Result<Option<Token>, VdfError> {
        self.skip_space();
        let mut chars = self.rest.chars();
        let token = match chars.next() {
            None => return Ok(None),
            Some('{') => Token::Open,
            Some('}') => Token::Close,
            Some('"') => return self.quoted().map(|text| Some(Token::Str(text))),
            Some(_) => return Ok(Some(Token::Str(self.bare()))),
        };
        self.rest = chars.as_str();
        Ok(Some(token))
    }

    /// A quoted string; `\"`, `\\`, `\n`, `\t` are escapes, any other backslash stands for itself.
    fn quoted(&mut self) -> Result<String, VdfError> {
        let start_line = self.line;
        let mut text = String::new();
        let mut chars = self.rest[1..].chars();
        loop {
            match chars.next() {
                None => return Err(VdfError::Syntax { line: start_line, cause: "a quoted string is not closed" }),
                Some('"') => break,
                Some('\\') => match chars.clone().next() {
                    Some(escaped @ ('"' | '\\' | 'n' | 't')) => {
                        chars.next();
                        text.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                    _ => text.push('\\'),
                },
                Some(other) => {
                    if other == '\n' {
                        self.line += 1;
                    }
                    text.push(other);
                }
            }
        }
        self.rest = chars.as_str();
        Ok(text)
    }

    /// A bare token runs to white space, a brace or a quote.
    fn bare(&mut self) -> String {
        let end =
            self.rest.find(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | '"')).unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        token.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_and_bare_tokens_comments_escapes_and_conditionals() {
        let text = "// a comment\n\"root\"\n{\n\tbare value // trailing\n\t\"quoted\" \"say \\\"hi\\\" \\\\ \\q\"\n\
                    \t\"win\" \"1\" [$WIN32]\n\t\"nested\" { \"k\" \"v\" }\n\t\"dup\" \"1\"\n\t\"DUP\" \"2\"\n}\n";
        let doc = parse(text).unwrap();
        let root = doc.get("root").unwrap();
        assert_eq!(root.get("bare").and_then(Value::as_str), Some("value"));
        assert_eq!(root.get("quoted").and_then(Value::as_str), Some("say \"hi\" \\ \\q"));
        assert_eq!(root.get("win").and_then(Value::as_str), Some("1"));
        assert_eq!(root.get("nested").and_then(|n| n.get("K")).and_then(Value::as_str), Some("v"));
        assert_eq!(root.get("dup").and_then(Value::as_str), Some("1"), "the first of repeated keys counts");
        assert_eq!(root.keys(), ["bare", "quoted", "win", "nested", "dup", "DUP"]);
    }

    #[test]
    fn an_unterminated_string_is_an_error_naming_its_line() {
        let err = parse("\"a\"\n{\n\t\"b\" \"never closed\n}\n").unwrap_err();
        assert_eq!(err, VdfError::Syntax { line: 3, cause: "a quoted string is not closed" });
    }

    #[test]
    fn unbalanced_braces_and_missing_values_are_errors() {
        assert!(matches!(parse("\"a\" { \"b\" \"c\""), Err(VdfError::Syntax { .. })));
        assert!(matches!(parse("\"a\" \"b\" }"), Err(VdfError::Syntax { .. })));
        assert!(matches!(parse("\"a\""), Err(VdfError::Syntax { .. })));
        assert!(matches!(parse("{ }"), Err(VdfError::Syntax { .. })));
        assert!(matches!(parse("\"a\" \"b\" [$WIN32"), Err(VdfError::Syntax { .. })));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_through_it() {
        let depth = 100_000;
        let text = format!("{}{}", "\"k\" {".repeat(depth), "}".repeat(depth));
        assert!(matches!(parse(&text), Err(VdfError::TooDeep { .. })));
        let allowed = format!("{}{}", "\"k\" {".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(parse(&allowed).is_ok());
    }

    #[test]
    fn huge_input_is_refused_before_reading() {
        let text = format!("\"k\" \"{}\"", "x".repeat(MAX_INPUT));
        assert_eq!(parse(&text), Err(VdfError::TooLarge { len: MAX_INPUT + 6 }));
    }

    #[test]
    fn parse_entry_stops_after_the_first_entry() {
        let (key, value) = parse_entry("\"222860\"\n{\n\t\"a\" \"b\"\n}\nsteamcmd goes on: { unbalanced\n").unwrap();
        assert_eq!(key, "222860");
        assert_eq!(value.get("a").and_then(Value::as_str), Some("b"));
    }
}
