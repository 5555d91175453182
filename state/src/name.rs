//! Validated names for resources and their owners.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

/// The pattern every resource and user name must match.
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// The name of a resource (server, blueprint, overlay) or of a user.
///
/// It can only be built valid: 1 to 64 characters of lower-case ASCII letters, digits, `_` and `-`,
/// starting with a letter or digit. Names become file names, unit instance names and path components
/// on the host, so nothing else is ever allowed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name cannot be empty")]
    Empty,
    #[error("a name has at most 64 characters, this one has {0}")]
    TooLong(usize),
    #[error("a name must start with a lower-case letter or a digit")]
    BadStart,
    #[error("a name may hold only lower-case letters, digits, '_' and '-', not {0:?}")]
    BadChar(char),
}

impl Name {
    pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
        let value = value.into();
        check(&value)?;
        Ok(Name(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(value: &str) -> Result<(), NameError> {
    let Some(first) = value.chars().next() else {
        return Err(NameError::Empty);
    };
    let count = value.chars().count();
    if count > 64 {
        return Err(NameError::TooLong(count));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameError::BadStart);
    }
    match value.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')) {
        Some(bad) => Err(NameError::BadChar(bad)),
        None => Ok(()),
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::scalar::string(deserializer, "a name", |value| match check(&value) {
            Ok(()) => Ok(Name(value)),
            Err(e) => Err(format!("{value:?} is not a valid name: {e}")),
        })
    }
}

impl JsonSchema for Name {
    fn schema_name() -> Cow<'static, str> {
        "Name".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "1 to 64 lower-case letters, digits, '_' or '-', starting with a letter or digit",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        for good in ["a", "coop-1", "0", "vs_2", &"a".repeat(64)] {
            assert!(Name::new(good).is_ok(), "{good}");
        }
        let cases: [(&str, NameError); 6] = [
            ("", NameError::Empty),
            (&"a".repeat(65), NameError::TooLong(65)),
            ("-a", NameError::BadStart),
            ("_a", NameError::BadStart),
            ("Coop", NameError::BadStart),
            ("co op", NameError::BadChar(' ')),
        ];
        for (bad, err) in cases {
            assert_eq!(Name::new(bad).unwrap_err(), err, "{bad:?}");
        }
        assert_eq!(Name::new("a/../b").unwrap_err(), NameError::BadChar('/'));
        assert_eq!(Name::new("é").unwrap_err(), NameError::BadStart);
    }
}
