//! Deserializing scalars through a check.
//!
//! The check runs inside the YAML reader's visit of the scalar, so a refused value is reported at
//! the value's own line and column rather than at its enclosing mapping.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// Reads a string and hands it to `make`, whose error becomes the reader's error.
pub(crate) fn string<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    make: fn(String) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_str(Check { expecting, make, marker: PhantomData })
}

/// Reads a non-negative integer and hands it to `make`.
pub(crate) fn integer<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    make: fn(u64) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_u64(Check { expecting, make, marker: PhantomData })
}

struct Check<I, T> {
    expecting: &'static str,
    make: fn(I) -> Result<T, String>,
    marker: PhantomData<T>,
}

impl<T> Visitor<'_> for Check<String, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.make)(value.to_owned()).map_err(E::custom)
    }
}

impl<T> Visitor<'_> for Check<u64, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        (self.make)(value).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        match u64::try_from(value) {
            Ok(value) => self.visit_u64(value),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(value), &self)),
        }
    }
}
