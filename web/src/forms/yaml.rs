//! Writing YAML the way people write it: what the forms save reads like a file typed by hand.

/// A YAML scalar: plain when it reads back as the same string, JSON-quoted (valid YAML) otherwise.
pub fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "_.-+/".contains(c))
        && text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "nan" | "inf"
        );
    if plain { text.to_owned() } else { serde_json::to_string(text).expect("a string always serializes") }
}

/// A number field: as typed when it is digits, else quoted so validation names the field.
pub fn number(text: &str) -> String {
    let text = text.trim();
    if !text.is_empty() && text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = text.trim_start_matches('0');
        if trimmed.is_empty() { "0".into() } else { trimmed.into() }
    } else {
        scalar(text)
    }
}

/// A list under `spec`: `[]` when empty, else one item a line.
pub fn list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        out.push_str(&format!("  {key}: []\n"));
        return;
    }
    out.push_str(&format!("  {key}:\n"));
    for item in items {
        out.push_str(&format!("    - {}\n", scalar(item)));
    }
}

/// The non-empty lines of a text area, trimmed.
pub fn lines_of(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}
