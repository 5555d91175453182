//! The house stays straight: no two modules of one crate import each other.
//!
//! Every crate root of the workspace (a `lib.rs`, a `main.rs`, a binary's file) is read with the
//! modules it declares. A top-level module, with every file below it, is one unit. A unit uses
//! another when it names it: `use crate::x…`, `use crate::{x, y::z}`, a path `crate::x::f()` in
//! code, or `super::…` climbing out to the crate root. A name the root binds with `use x::Name`
//! (a re-export) stands for `x`; an item defined in the root itself stands for the root, whose own
//! uses of modules (beyond its `mod` lines) are the root's. Comments and literals are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let workspace = left4me_sim::workspace();
    let roots = crate_roots(&workspace);
    assert!(roots.len() >= 5, "the workspace's crate roots were not found: {roots:?}");
    let mut found = Vec::new();
    for root in &roots {
        // Paths relative to the workspace, so the failure names files as a reader finds them.
        let root = root.strip_prefix(&workspace).unwrap_or(root);
        let graph = Graph::read(root, &|path| fs::read_to_string(workspace.join(path)).ok());
        found.extend(graph.mutual_pairs().iter().map(|pair| format!("{}: {pair}", root.display())));
    }
    assert!(found.is_empty(), "{} pairs of modules import each other:\n{}", found.len(), found.join("\n"));
}

/// `src/lib.rs`, `src/main.rs`, `src/bin/*.rs` and `src/bin/*/main.rs` of every crate folder.
fn crate_roots(workspace: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for entry in sorted_entries(workspace) {
        let src = entry.join("src");
        if !entry.join("Cargo.toml").is_file() || !src.is_dir() {
            continue;
        }
        roots.extend([src.join("lib.rs"), src.join("main.rs")].into_iter().filter(|p| p.is_file()));
        for bin in sorted_entries(&src.join("bin")) {
            if bin.extension().is_some_and(|e| e == "rs") {
                roots.push(bin);
            } else if bin.join("main.rs").is_file() {
                roots.push(bin.join("main.rs"));
            }
        }
    }
    roots
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> =
        fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    entries.sort();
    entries
}

/// Which unit of one crate uses which, with where each use was first seen.
#[derive(Debug, Default)]
struct Graph {
    /// The root's unit name: its file name, which no module can have.
    root: String,
    edges: BTreeMap<(String, String), (PathBuf, usize)>,
}

/// Two units that use each other, each with the place of one of its uses.
#[derive(Debug, PartialEq)]
struct Pair {
    units: (String, String),
    first_uses_second: (PathBuf, usize),
    second_uses_first: (PathBuf, usize),
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ((a, b), (a_file, a_line), (b_file, b_line)) =
            (&self.units, &self.first_uses_second, &self.second_uses_first);
        write!(
            f,
            "`{a}` and `{b}` import each other ({}:{a_line} uses `{b}`; {}:{b_line} uses `{a}`)",
            a_file.display(),
            b_file.display()
        )
    }
}

/// One file of the crate, scanned.
struct Scanned {
    path: PathBuf,
    unit: String,
    facts: Facts,
}

impl Graph {
    /// Reads the crate rooted at `root`, its files through `read` (None: no such file).
    fn read(root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Graph {
        let root_name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = read(root).unwrap_or_else(|| panic!("{} cannot be read", root.display()));
        let root_facts = scan(&tokens(&text), 0);
        let modules: BTreeSet<String> = root_facts.declared.iter().cloned().collect();
        let mut files = vec![Scanned { path: root.to_owned(), unit: root_name.clone(), facts: root_facts }];
        for module in &modules {
            let path = module_file(root, module, read);
            collect_module(path, module, 1, read, &mut files);
        }
        let root_facts = &files[0].facts;
        let mut graph = Graph { root: root_name, edges: BTreeMap::new() };
        for file in &files {
            for (path, line) in &file.facts.references {
                let Some(to) = graph.unit_of(path, &modules, root_facts) else { continue };
                if to != file.unit {
                    graph.edges.entry((file.unit.clone(), to)).or_insert_with(|| (file.path.clone(), *line));
                }
            }
        }
        graph
    }

    /// The unit a path from the crate root names: a module, what a name the root binds stands
    /// for, or the root for an item defined there. None for anything else (std, another crate).
    fn unit_of(&self, path: &[String], modules: &BTreeSet<String>, root: &Facts) -> Option<String> {
        let first = path.first()?;
        if modules.contains(first) {
            return Some(first.clone());
        }
        if let Some(target) = root.bindings.get(first) {
            return target.first().filter(|m| modules.contains(*m)).cloned();
        }
        (root.items.contains(first) || root.inline.contains(first)).then(|| self.root.clone())
    }

    fn mutual_pairs(&self) -> Vec<Pair> {
        self.edges
            .iter()
            .filter(|((a, b), _)| a < b)
            .filter_map(|((a, b), at)| {
                let back = self.edges.get(&(b.clone(), a.clone()))?;
                Some(Pair {
                    units: (a.clone(), b.clone()),
                    first_uses_second: at.clone(),
                    second_uses_first: back.clone(),
                })
            })
            .collect()
    }
}

/// Scans a module's file and, through its `mod` lines, every file below it.
fn collect_module(
    path: PathBuf,
    unit: &str,
    depth: usize,
    read: &dyn Fn(&Path) -> Option<String>,
    files: &mut Vec<Scanned>,
) {
    let text = read(&path).unwrap_or_else(|| panic!("{} cannot be read", path.display()));
    let facts = scan(&tokens(&text), depth);
    for child in &facts.declared {
        collect_module(module_file(&path, child, read), unit, depth + 1, read, files);
    }
    files.push(Scanned { path, unit: unit.to_owned(), facts });
}

/// Where `mod name;` in `parent` lives: beside a `lib.rs`, `main.rs` or `mod.rs`, else in the
/// folder named after the parent's file; as `name.rs` or `name/mod.rs`.
fn module_file(parent: &Path, name: &str, read: &dyn Fn(&Path) -> Option<String>) -> PathBuf {
    let folder = parent.parent().unwrap_or(Path::new(""));
    let stem = parent.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = if matches!(stem.as_str(), "lib" | "main" | "mod") { folder.to_owned() } else { folder.join(stem) };
    let candidates = [dir.join(format!("{name}.rs")), dir.join(name).join("mod.rs")];
    candidates.iter().find(|path| read(path).is_some()).cloned().unwrap_or_else(|| {
        panic!(
            "{} declares `mod {name};`, but neither {} nor {} exists",
            parent.display(),
            candidates[0].display(),
            candidates[1].display()
        )
    })
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    line: usize,
}

/// What a file says about the crate's namespace.
#[derive(Debug, Default)]
struct Facts {
    /// `mod name;` at the top of the file: modules in files of their own.
    declared: Vec<String>,
    /// `mod name { … }` at the top of the file: part of this file's unit.
    inline: BTreeSet<String>,
    /// Names defined at the top of the file (`fn`, `struct`, `const`, …).
    items: BTreeSet<String>,
    /// Names bound by `use` at the top of the file, and the path (from the crate root) each stands for.
    bindings: BTreeMap<String, Vec<String>>,
    /// Paths from the crate root this file names, with their lines.
    references: Vec<(Vec<String>, usize)>,
}

const ITEM_KEYWORDS: [&str; 8] = ["fn", "struct", "enum", "trait", "type", "const", "static", "union"];

/// Scans the tokens of a file whose module lies `depth` below the crate root (0: the root).
fn scan(tokens: &[Token], depth: usize) -> Facts {
    let text = |k: usize| tokens.get(k).map_or("", |t| t.text.as_str());
    let mut facts = Facts::default();
    let mut braces = 0usize;
    // The brace level each inline module of this file opened at.
    let mut inline: Vec<usize> = Vec::new();
    let mut k = 0;
    while k < tokens.len() {
        let here = depth + inline.len();
        let top = braces == 0;
        match text(k) {
            "{" => braces += 1,
            "}" => {
                braces = braces.saturating_sub(1);
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
            }
            "use" => {
                let line = tokens[k].line;
                let mut leaves = Vec::new();
                k = use_tree(tokens, k + 1, &[], &mut leaves);
                for (path, name) in leaves {
                    let Some(from_root) = from_root(&path, here) else { continue };
                    if top && let Some(name) = name {
                        facts.bindings.insert(name, from_root.to_vec());
                    }
                    facts.references.push((from_root.to_vec(), line));
                }
                continue;
            }
            "mod" if is_ident(text(k + 1)) && matches!(text(k + 2), ";" | "{") => {
                let name = text(k + 1).to_owned();
                if text(k + 2) == "{" {
                    if top {
                        facts.inline.insert(name);
                    }
                    inline.push(braces);
                    braces += 1;
                } else if top {
                    facts.declared.push(name);
                }
                k += 3;
                continue;
            }
            "macro_rules" if top && text(k + 1) == "!" && is_ident(text(k + 2)) => {
                facts.items.insert(text(k + 2).to_owned());
            }
            keyword if top && ITEM_KEYWORDS.contains(&keyword) && is_ident(text(k + 1)) && text(k + 1) != "fn" => {
                facts.items.insert(text(k + 1).to_owned());
            }
            word if is_ident(word) && text(k.wrapping_sub(1)) != "::" => {
                // A path of one word is a local name, not a use of a module.
                let (path, end) = code_path(tokens, k);
                if path.len() >= 2
                    && let Some(from_root) = from_root(&path, here).filter(|p| !p.is_empty())
                {
                    facts.references.push((from_root.to_vec(), tokens[k].line));
                }
                k = end;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    facts
}

/// The path `a::b::c` starting at `k` (its segments; generic arguments end it), and the index after it.
fn code_path(tokens: &[Token], mut k: usize) -> (Vec<String>, usize) {
    let mut path = vec![tokens[k].text.clone()];
    k += 1;
    while tokens.get(k).is_some_and(|t| t.text == "::") && tokens.get(k + 1).is_some_and(|t| is_ident(&t.text)) {
        path.push(tokens[k + 1].text.clone());
        k += 2;
    }
    (path, k)
}

/// The part of `path` that names something from the crate root, for code `depth` modules below
/// it: after `crate`, after enough `super`s, after `self` or as written in the root itself. None
/// for a path that stays inside the module (a `super::` to its own parent) or leaves the crate.
fn from_root(path: &[String], depth: usize) -> Option<&[String]> {
    match path.first()?.as_str() {
        "crate" => Some(&path[1..]),
        "self" => (depth == 0).then(|| &path[1..]),
        "super" => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            (supers >= depth).then(|| &path[supers..])
        }
        "::" => None,
        _ => (depth == 0).then_some(path),
    }
}

/// Parses the use tree at `k` (after `use`), adding each leaf's path and the name it binds (None
/// for a glob) to `leaves`; returns the index after the tree (at its `;`, or past a group's `}`).
fn use_tree(
    tokens: &[Token],
    mut k: usize,
    prefix: &[String],
    leaves: &mut Vec<(Vec<String>, Option<String>)>,
) -> usize {
    let text = |k: usize| tokens.get(k).map_or("", |t| t.text.as_str());
    let mut path = prefix.to_vec();
    if text(k) == "::" && prefix.is_empty() {
        path.push("::".to_owned());
        k += 1;
    }
    loop {
        match text(k) {
            "$" => k += 1,
            "{" => {
                k += 1;
                while !matches!(text(k), "}" | "" | ";") {
                    let next = use_tree(tokens, k, &path, leaves);
                    k = if next == k { k + 1 } else { next };
                    if text(k) == "," {
                        k += 1;
                    }
                }
                return if text(k) == "}" { k + 1 } else { k };
            }
            "*" => {
                leaves.push((path, None));
                return k + 1;
            }
            word if is_ident(word) => {
                path.push(word.to_owned());
                k += 1;
                if text(k) == "::" {
                    k += 1;
                    continue;
                }
                if path.last().is_some_and(|s| s == "self") {
                    path.pop();
                }
                let name = if text(k) == "as" {
                    k += 2;
                    text(k - 1).to_owned()
                } else {
                    path.last().cloned().unwrap_or_default()
                };
                leaves.push((path, Some(name)));
                return k;
            }
            _ => return k,
        }
    }
}

fn is_ident(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The file as tokens: identifiers, `::` and single punctuation; comments dropped, each literal
/// one `<literal>` token, lifetimes dropped.
fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let start = line;
        let c = chars[i];
        let literal = |out: &mut Vec<Token>| out.push(Token { text: "<literal>".to_owned(), line: start });
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            i = skip_block_comment(&chars, i, &mut line);
        } else if c == '"' {
            i = skip_string(&chars, i + 1, &mut line);
            literal(&mut out);
        } else if c == '\'' {
            let (end, is_char) = skip_quote(&chars, i);
            i = end;
            if is_char {
                literal(&mut out);
            }
        } else if let Some(end) = prefixed_literal(&chars, i, &mut line) {
            i = end;
            literal(&mut out);
        } else if c.is_alphanumeric() || c == '_' {
            let mut word_start = i;
            if c == 'r' && at(i + 1) == '#' && (at(i + 2).is_alphabetic() || at(i + 2) == '_') {
                word_start = i + 2;
                i += 2;
            }
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[word_start..i].iter().collect();
            if c.is_ascii_digit() {
                literal(&mut out);
            } else {
                out.push(Token { text: word, line: start });
            }
        } else if c == ':' && at(i + 1) == ':' {
            out.push(Token { text: "::".to_owned(), line: start });
            i += 2;
        } else {
            out.push(Token { text: c.to_string(), line: start });
            i += 1;
        }
    }
    out
}

/// Past a (nested) block comment starting at `i`.
fn skip_block_comment(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1).copied().unwrap_or('\0')) {
            ('/', '*') => {
                depth += 1;
                i += 2;
            }
            ('*', '/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            (c, _) => {
                *line += usize::from(c == '\n');
                i += 1;
            }
        }
    }
    i
}

/// Past a string whose text starts at `i`, escapes honoured.
fn skip_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                *line += usize::from(chars.get(i + 1) == Some(&'\n'));
                i += 2;
            }
            '"' => return i + 1,
            c => {
                *line += usize::from(c == '\n');
                i += 1;
            }
        }
    }
    i
}

/// Past a character literal at `i` (true), or past the quote of a lifetime or label (false).
fn skip_quote(chars: &[char], i: usize) -> (usize, bool) {
    if chars.get(i + 1) == Some(&'\\') {
        let close = (i + 3..chars.len()).find(|&j| chars[j] == '\'').unwrap_or(chars.len() - 1);
        return (close + 1, true);
    }
    if chars.get(i + 2) == Some(&'\'') {
        return (i + 3, true);
    }
    (i + 1, false)
}

/// Past a literal with a prefix at `i` (`r"…"`, `r#"…"#`, `b"…"`, `br"…"`, `c"…"`, `b'x'`), or
/// None when `i` starts a plain identifier.
fn prefixed_literal(chars: &[char], i: usize, line: &mut usize) -> Option<usize> {
    let at = |j: usize| chars.get(j).copied().unwrap_or('\0');
    let (prefix, raw) = match (at(i), at(i + 1)) {
        ('b' | 'c', 'r') => (2, true),
        ('r', _) => (1, true),
        ('b' | 'c', _) => (1, false),
        _ => return None,
    };
    let mut j = i + prefix;
    if !raw {
        return match at(j) {
            '"' => Some(skip_string(chars, j + 1, line)),
            '\'' if at(i) == 'b' => Some(skip_quote(chars, j).0),
            _ => None,
        };
    }
    let mut hashes = 0;
    while at(j) == '#' {
        hashes += 1;
        j += 1;
    }
    if at(j) != '"' {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"' && (1..=hashes).all(|h| at(j + h) == '#') {
            return Some(j + 1 + hashes);
        }
        *line += usize::from(chars[j] == '\n');
        j += 1;
    }
    Some(j)
}

/// A crate held in memory: `(path, text)` pairs, the first its root.
fn graph_of(files: &[(&str, &str)]) -> Graph {
    let map: BTreeMap<PathBuf, String> = files.iter().map(|(p, t)| (PathBuf::from(p), (*t).to_owned())).collect();
    Graph::read(Path::new(files[0].0), &|path| map.get(path).cloned())
}

fn edges(graph: &Graph) -> Vec<String> {
    graph.edges.keys().map(|(a, b)| format!("{a} -> {b}")).collect()
}

#[test]
fn layout_finds_two_modules_that_use_each_other() {
    let graph = graph_of(&[
        ("src/lib.rs", "mod a;\nmod b;\n"),
        ("src/a.rs", "use crate::b::f;\npub fn h() {}\n"),
        ("src/b.rs", "pub fn f() {}\n\nfn g() {\n    crate::a::h();\n}\n"),
    ]);
    let pairs = graph.mutual_pairs();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert_eq!(pairs[0].to_string(), "`a` and `b` import each other (src/a.rs:1 uses `b`; src/b.rs:4 uses `a`)");
}

#[test]
fn layout_takes_groups_and_nested_files_as_their_top_level_module() {
    let graph = graph_of(&[
        ("src/lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("src/a.rs", "mod inner;\n"),
        ("src/a/inner.rs", "use crate::{b, c::d::E};\n"),
        ("src/b.rs", ""),
        ("src/c/mod.rs", "mod d;\n"),
        ("src/c/d.rs", "pub struct E;\nfn f() -> crate::a::X { todo!() }\n"),
    ]);
    assert_eq!(edges(&graph), ["a -> b", "a -> c", "c -> a"]);
    assert_eq!(graph.mutual_pairs().len(), 1);
}

#[test]
fn layout_ignores_super_inside_a_folder_module_and_in_test_modules() {
    let graph = graph_of(&[
        // The root defines `f` and `h` and has a module `b`, so a `super::` taken for the root's
        // would show as a use of the root or of `b`.
        ("src/lib.rs", "mod a;\nmod b;\npub fn f() {}\npub fn h() {}\n"),
        ("src/a.rs", "mod b;\nmod inner;\npub fn f() {}\n"),
        ("src/a/b.rs", "pub fn x() {}\n"),
        ("src/a/inner.rs", "use super::f;\nuse super::b::x;\nfn g() {\n    super::f();\n    super::b::x();\n}\n"),
        (
            "src/b.rs",
            "pub fn h() {\n    crate::a::f()\n}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    fn t() { super::h() }\n}\n",
        ),
    ]);
    assert_eq!(edges(&graph), ["b -> a"]);
    assert!(graph.mutual_pairs().is_empty());
}

#[test]
fn layout_resolves_a_name_the_root_re_exports_to_its_module() {
    let graph = graph_of(&[
        ("src/lib.rs", "mod a;\nmod b;\n\npub use a::{Config, load as read};\n"),
        ("src/a.rs", "use crate::b::run;\npub struct Config;\npub fn load() {}\n"),
        ("src/b.rs", "use crate::Config;\npub fn run() { crate::read() }\n"),
    ]);
    assert_eq!(edges(&graph), ["a -> b", "b -> a", "lib.rs -> a"]);
    let pairs = graph.mutual_pairs();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert_eq!(pairs[0].units, ("a".to_owned(), "b".to_owned()));
}

#[test]
fn layout_finds_a_module_that_needs_an_item_of_the_root_the_root_needs_it_for() {
    let graph = graph_of(&[
        ("src/main.rs", "mod cli;\nmod db;\n\nconst VERSION: &str = \"1\";\n\nfn main() {\n    cli::run();\n}\n"),
        ("src/cli.rs", "pub fn run() {\n    println!(\"{}\", super::VERSION);\n}\n"),
        ("src/db.rs", "pub fn open() {}\n"),
    ]);
    assert_eq!(edges(&graph), ["cli -> main.rs", "main.rs -> cli"]);
    assert_eq!(
        graph.mutual_pairs()[0].to_string(),
        "`cli` and `main.rs` import each other (src/cli.rs:2 uses `main.rs`; src/main.rs:7 uses `cli`)"
    );
}

#[test]
fn layout_is_not_misled_by_comments_strings_and_lifetimes() {
    let a = r##"
// use crate::b;
/* crate::b::f() /* nested */ crate::b */
/// Calls `crate::b::f`.
fn f<'a>(x: &'a str) -> &'a str {
    let _ = "use crate::b::f; \" crate::b";
    let _ = r#"crate::b::g"#;
    let _ = b"crate::b";
    let _ = ('"', '\'', b'{');
    'outer: loop { break 'outer; }
    x
}
"##;
    let graph = graph_of(&[("src/lib.rs", "mod a;\nmod b;\n"), ("src/a.rs", a), ("src/b.rs", "use crate::a;\n")]);
    assert_eq!(edges(&graph), ["b -> a"]);
}
