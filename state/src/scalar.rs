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

/// Reads a string or a non-negative integer, handing `make` the text either way: for values YAML
/// reads as a number when they happen to be one (`cpus: 1`, `memoryMax: 1073741824`).
pub(crate) fn text_or_integer<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    make: fn(String) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(TextOrInteger(Check { expecting, make, marker: PhantomData }))
}

/// Reads an integer of either sign and hands it to `make`.
pub(crate) fn signed<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    make: fn(i64) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_i64(Check { expecting, make, marker: PhantomData })
}

struct TextOrInteger<T>(Check<String, T>);

impl<T> Visitor<'_> for TextOrInteger<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        self.0.visit_str(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        self.0.visit_str(&value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        self.0.visit_str(&value.to_string())
    }
}

impl<T> Visitor<'_> for Check<i64, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        (self.make)(value).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        match i64::try_from(value) {
            Ok(value) => self.visit_i64(value),
            Err(_) => Err(E::invalid_value(de::Unexpected::Unsigned(value), &self)),
        }
    }
}
