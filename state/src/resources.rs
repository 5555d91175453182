//! A blueprint's `spec.resources`: what systemd holds each of its servers to, each value checked
//! as systemd reads it (systemd.resource-control(5), systemd.exec(5)), so a value that
//! deserializes is one the unit takes.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `spec.resources` of a blueprint, and the same in the spec its servers render to. Every field
/// is optional; one left out is systemd's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceLimits {
    /// The CPUs its servers may run on (`AllowedCPUs=`): `"1"`, `"2-3"`, `"0,2-3"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<CpuList>,
    /// Its servers' share of CPU time against other units (`CPUWeight=`, 1 to 10000; systemd's
    /// default is 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<CpuWeight>,
    /// The most memory a server may use (`MemoryMax=`): bytes, or a number with K, M, G or T
    /// (powers of 1024); 64M to 1T.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<MemorySize>,
    /// The servers' scheduling priority (`Nice=`, -20 to 19; lower runs first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nice: Option<Nice>,
}

impl ResourceLimits {
    /// No limit set: the unit runs as systemd's defaults have it.
    pub fn is_empty(&self) -> bool {
        self == &ResourceLimits::default()
    }
}

/// A set of CPUs as systemd and the kernel write them: numbers and ranges `a-b`, separated by
/// commas or spaces. Kept sorted with overlapping and adjacent ranges joined, so `2,3` and `2-3`
/// are one list (and render alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<(u32, u32)>);

impl CpuList {
    /// The highest CPU number taken: the kernel's own bound (`NR_CPUS` at most 8192).
    pub const MAX_CPU: u32 = 8191;
    const MAX_LEN: usize = 1024;

    /// Reads a CPU list, saying what is wrong with one that is not.
    pub fn parse(text: &str) -> Result<CpuList, String> {
        if text.len() > Self::MAX_LEN {
            return Err(format!("the CPU list has {} bytes; at most {} are taken", text.len(), Self::MAX_LEN));
        }
        let mut ranges = Vec::new();
        for item in text.split(|c: char| c == ',' || c.is_ascii_whitespace()).filter(|item| !item.is_empty()) {
            let (first, last) = match item.split_once('-') {
                Some((first, last)) => (cpu_number(first, text)?, cpu_number(last, text)?),
                None => {
                    let cpu = cpu_number(item, text)?;
                    (cpu, cpu)
                }
            };
            if first > last {
                return Err(format!("CPU list {text:?}: the range {item} is reversed; write {last}-{first}"));
            }
            ranges.push((first, last));
        }
        if ranges.is_empty() {
            return Err("the CPU list names no CPU; write one such as \"1\", \"2-3\" or \"0,2-3\"".into());
        }
        ranges.sort_unstable();
        let mut joined: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (first, last) in ranges {
            match joined.last_mut() {
                Some(previous) if first <= previous.1.saturating_add(1) => previous.1 = previous.1.max(last),
                _ => joined.push((first, last)),
            }
        }
        Ok(CpuList(joined))
    }

    /// The CPUs of this list that `other` does not hold, if any.
    pub fn missing_from(&self, other: &CpuList) -> Option<CpuList> {
        let mut missing = Vec::new();
        for &(first, last) in &self.0 {
            let mut from = first;
            for &(o_first, o_last) in &other.0 {
                if o_last < from || o_first > last {
                    continue;
                }
                if o_first > from {
                    missing.push((from, o_first - 1));
                }
                from = o_last.saturating_add(1);
                if from > last {
                    break;
                }
            }
            if from <= last {
                missing.push((from, last));
            }
        }
        (!missing.is_empty()).then_some(CpuList(missing))
    }
}

fn cpu_number(word: &str, text: &str) -> Result<u32, String> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "CPU list {text:?}: {word:?} is not a CPU number; write numbers and ranges such as \"1\", \"2-3\" or \"0,2-3\""
        ));
    }
    match word.parse::<u32>() {
        Ok(cpu) if cpu <= CpuList::MAX_CPU => Ok(cpu),
        _ => Err(format!("CPU list {text:?}: CPU {word} is beyond {}, the most any kernel has", CpuList::MAX_CPU)),
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (first, last)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match first == last {
                true => write!(f, "{first}")?,
                false => write!(f, "{first}-{last}")?,
            }
        }
        Ok(())
    }
}

impl Serialize for CpuList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CpuList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::scalar::text_or_integer(deserializer, "a CPU list such as \"2-3\"", |text| CpuList::parse(&text))
    }
}

impl JsonSchema for CpuList {
    fn schema_name() -> Cow<'static, str> {
        "CpuList".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "type": "string", "maxLength": 1024, "pattern": "^[0-9, -]+$" },
                { "type": "integer", "minimum": 0, "maximum": CpuList::MAX_CPU }
            ]
        })
    }
}

/// `CPUWeight=`: 1 to 10000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CpuWeight(u16);

impl CpuWeight {
    pub const MAX: u16 = 10_000;

    pub fn get(self) -> u16 {
        self.0
    }
}

impl<'de> Deserialize<'de> for CpuWeight {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::scalar::integer(deserializer, "a CPU weight from 1 to 10000", |weight| match weight {
            1..=10_000 => Ok(CpuWeight(weight as u16)),
            _ => Err(format!("CPU weight {weight} is outside 1 to 10000 (systemd's default is 100)")),
        })
    }
}

impl JsonSchema for CpuWeight {
    fn schema_name() -> Cow<'static, str> {
        "CpuWeight".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 1, "maximum": 10000 })
    }
}

/// `MemoryMax=`, in bytes: 64 MiB to 1 TiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MemorySize(u64);

impl MemorySize {
    /// Below this the game cannot even load its first map.
    pub const MIN: u64 = 64 << 20;
    /// Far beyond what a game server uses: a larger figure is a typo, and no limit is written by
    /// leaving the field out.
    pub const MAX: u64 = 1 << 40;

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Reads bytes, or a whole number with K, M, G or T (powers of 1024, as systemd reads them).
    pub fn parse(text: &str) -> Result<MemorySize, String> {
        let how = "write bytes or a whole number with K, M, G or T, such as 2G or 1536M";
        let (digits, shift) = match text.char_indices().last() {
            Some((at, 'K')) => (&text[..at], 10),
            Some((at, 'M')) => (&text[..at], 20),
            Some((at, 'G')) => (&text[..at], 30),
            Some((at, 'T')) => (&text[..at], 40),
            _ => (text, 0),
        };
        if text == "infinity" {
            return Err("memory size infinity: leave memoryMax out for no limit".into());
        }
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("memory size {text:?} is not a size; {how}"));
        }
        let bytes = digits.parse::<u64>().ok().and_then(|n| n.checked_mul(1 << shift));
        match bytes {
            Some(bytes) if bytes < Self::MIN => {
                Err(format!("memory size {text} is less than 64M, in which the game cannot start"))
            }
            Some(bytes) if bytes <= Self::MAX => Ok(MemorySize(bytes)),
            _ => Err(format!("memory size {text} is more than 1T, far beyond a game server's need")),
        }
    }
}

/// The size as a person writes it: the largest unit it is a whole number of (`2G`, `1536M`).
impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit =
            [(40, "T"), (30, "G"), (20, "M"), (10, "K")].into_iter().find(|(shift, _)| self.0 % (1 << shift) == 0);
        match unit {
            Some((shift, unit)) => write!(f, "{}{unit}", self.0 >> shift),
            None => write!(f, "{}", self.0),
        }
    }
}

impl<'de> Deserialize<'de> for MemorySize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::scalar::text_or_integer(deserializer, "a memory size such as 2G", |text| MemorySize::parse(&text))
    }
}

impl JsonSchema for MemorySize {
    fn schema_name() -> Cow<'static, str> {
        "MemorySize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "type": "string", "pattern": "^[0-9]{1,20}[KMGT]?$" },
                { "type": "integer", "minimum": MemorySize::MIN, "maximum": MemorySize::MAX }
            ]
        })
    }
}

/// `Nice=`: -20 to 19.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Nice(i8);

impl Nice {
    pub fn get(self) -> i8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Nice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::scalar::signed(deserializer, "a nice value from -20 to 19", |nice| match nice {
            -20..=19 => Ok(Nice(nice as i8)),
            _ => Err(format!("nice {nice} is outside -20 to 19")),
        })
    }
}

impl JsonSchema for Nice {
    fn schema_name() -> Cow<'static, str> {
        "Nice".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": -20, "maximum": 19 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_read_as_systemd_reads_them_and_written_alike() {
        for (text, written) in
            [("0", "0"), ("2-3", "2-3"), ("0,2-3", "0,2-3"), ("3,2", "2-3"), ("0 1", "0-1"), ("1-2,2-4,6", "1-4,6")]
        {
            assert_eq!(CpuList::parse(text).map(|list| list.to_string()), Ok(written.to_owned()), "{text}");
        }
        for text in ["", ",", "a", "3-2", "1-", "-1", "8192", "1.5", "0x1", "99999999999999", "1--2", "1-2-3"] {
            assert!(CpuList::parse(text).is_err(), "{text:?} passed");
        }
        // A list a thousand times too long is refused by its length, before it is read.
        let long = "1,".repeat(1000);
        assert_eq!(CpuList::parse(&long), Err("the CPU list has 2000 bytes; at most 1024 are taken".into()));
        // The widest range is two numbers, never a list of every CPU.
        assert_eq!(CpuList::parse("0-8191").map(|list| list.0.len()), Ok(1));
    }

    #[test]
    fn the_cpus_a_list_misses_are_those_the_other_lacks() {
        let list = |text| CpuList::parse(text).unwrap();
        assert_eq!(list("0-1").missing_from(&list("0-1")), None);
        assert_eq!(list("1").missing_from(&list("0-3")), None);
        assert_eq!(list("2-3").missing_from(&list("0-1")).map(|l| l.to_string()), Some("2-3".into()));
        assert_eq!(list("0-5,63").missing_from(&list("1,3-4")).map(|l| l.to_string()), Some("0,2,5,63".into()));
    }

    #[test]
    fn memory_sizes_are_powers_of_1024() {
        assert_eq!(MemorySize::parse("2G").map(MemorySize::bytes), Ok(2 << 30));
        assert_eq!(MemorySize::parse("1536M").map(MemorySize::bytes), Ok(1536 << 20));
        assert_eq!(MemorySize::parse("67108864").map(MemorySize::bytes), Ok(64 << 20));
        assert_eq!(MemorySize::parse("1T").map(MemorySize::bytes), Ok(1 << 40));
        for text in ["2G", "1536M", "1T", "67108865"] {
            assert_eq!(MemorySize::parse(text).map(|size| size.to_string()), Ok(text.to_owned()), "written back");
        }
        for text in ["63M", "1025G", "2g", "1.5G", "G", "infinity", "50%", "-1G", "99999999999999999999T"] {
            assert!(MemorySize::parse(text).is_err(), "{text:?} passed");
        }
    }
}
