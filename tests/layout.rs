//! The shape DESIGN.md asks of the code, checked on the sources: no function over 120 lines, no
//! file over 700 lines of non-test code, no circle among the crate's top-level modules, and
//! nothing below the command boundary importing `crate::cli`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 120;
const MAX_FILE_LINES: usize = 700;

/// Every .rs file under src/, but unit-test files (`tests.rs`, `tests/`).
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "tests" {
                    walk(&p, out);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    out
}

/// The code of a file without its `#[cfg(test)] mod ... { }` block, comments, and the insides of
/// string and char literals (so that braces there do not count), line for line.
fn code_lines(text: &str) -> Vec<String> {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    let b: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                if b[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else if c == 'r' && matches!(next, Some('"') | Some('#')) && raw_string_at(&b, i) {
            let mut j = i + 1;
            let mut hashes = 0;
            while b[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            while j < b.len() && !b[j..].iter().collect::<String>().starts_with(&close) {
                if b[j] == '\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + close.len();
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                if b.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && char_literal_len(&b, i).is_some() {
            out.push_str("''");
            i += char_literal_len(&b, i).unwrap();
        } else {
            out.push(c);
            i += 1;
        }
    }
    out.lines().map(str::to_string).collect()
}

fn raw_string_at(b: &[char], i: usize) -> bool {
    let ident_before = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
    let mut j = i + 1;
    while j < b.len() && b[j] == '#' {
        j += 1;
    }
    !ident_before && b.get(j) == Some(&'"')
}

/// `'x'`, `'\n'`, `'\''`, `'\u{1F600}'`: a char literal's length; `None` for a lifetime.
fn char_literal_len(b: &[char], i: usize) -> Option<usize> {
    if b.get(i + 1) == Some(&'\\') {
        let end = (i + 3..b.len().min(i + 12)).find(|&j| b[j] == '\'')?;
        return Some(end - i + 1);
    }
    (b.get(i + 2) == Some(&'\'')).then_some(3)
}

/// (name, first line, length) of every function with a body.
fn functions(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        let mut depth = 0i64;
        let mut opened = false;
        for (k, l) in lines[start..].iter().enumerate() {
            if !opened && l.contains(';') && !l.contains('{') {
                break;
            }
            depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
            opened |= l.contains('{');
            if opened && depth <= 0 {
                out.push((name.clone(), start + 1, k + 1));
                break;
            }
        }
    }
    out
}

fn fn_name(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "fn")?;
    let before_ok = words[..at].iter().all(|w| {
        w.starts_with("pub")
            || matches!(
                *w,
                "const" | "async" | "unsafe" | "extern" | "\"\"" | "default"
            )
    });
    let name: String = words
        .get(at + 1)?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (before_ok && !name.is_empty()).then_some(name)
}

#[test]
fn no_function_over_120_lines_and_no_file_over_700() {
    let mut over = Vec::new();
    for p in sources() {
        let lines = code_lines(&std::fs::read_to_string(&p).unwrap());
        let n = lines.iter().filter(|l| !l.trim().is_empty()).count();
        if n > MAX_FILE_LINES {
            over.push(format!("{}: {n} lines of non-test code", p.display()));
        }
        for (name, at, len) in functions(&lines) {
            if len > MAX_FN_LINES {
                over.push(format!("{}:{at}: fn {name} is {len} lines", p.display()));
            }
        }
    }
    assert!(over.is_empty(), "split these:\n{}", over.join("\n"));
}

/// The top-level module a source file belongs to (`src/firewall/nft/plan.rs` → `firewall`).
fn top_module(p: &Path) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = p.strip_prefix(&src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Which top-level modules each one names (`crate::x`, `use crate::{x, y}`), outside tests.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|p| top_module(p))
        .filter(|m| !matches!(m.as_str(), "lib" | "main" | "bin"))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &files {
        let from = top_module(p);
        if !modules.contains(&from) {
            continue;
        }
        let code = code_lines(&std::fs::read_to_string(p).unwrap()).join("\n");
        let mut named = BTreeSet::new();
        for part in code.split("crate::").skip(1) {
            let group = part
                .strip_prefix('{')
                .map(|g| g.split('}').next().unwrap_or(""));
            let words: Vec<&str> = match group {
                Some(g) => g.split(',').map(|w| w.trim()).collect(),
                None => vec![part],
            };
            for w in words {
                let m: String = w
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&m) && m != from {
                    named.insert(m);
                }
            }
        }
        graph.entry(from).or_default().extend(named);
    }
    graph
}

#[test]
fn the_module_graph_has_no_circle() {
    let graph = module_graph();
    // Depth-first search; a module met again while still on the path closes a circle.
    fn visit<'a>(
        m: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            let mut circle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m);
        for next in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m);
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(c) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!(
                "the modules import each other in a circle: {}",
                c.join(" -> ")
            );
        }
    }
    assert!(graph.len() > 10, "the graph was read: {graph:?}");
}

#[test]
fn nothing_below_the_command_boundary_imports_cli() {
    let graph = module_graph();
    let importers: Vec<&String> = graph
        .iter()
        .filter(|(_, to)| to.contains("cli"))
        .map(|(from, _)| from)
        .collect();
    assert!(
        importers.is_empty(),
        "these import crate::cli: {importers:?}"
    );
}

#[test]
fn the_checks_see_what_they_check() {
    let lines = code_lines(
        "fn a() {\n    let s = \"}}}\";\n    let c = '}';\n    // }\n}\n\
         pub(crate) fn b<'a>(x: &'a str) -> &'a str {\n    x\n}\n\
         #[cfg(test)]\nmod tests {\n    fn c() {}\n}\n",
    );
    assert_eq!(
        functions(&lines),
        vec![("a".to_string(), 1, 5), ("b".to_string(), 6, 3)]
    );
    let raw = code_lines("fn r() {\n    let j = r#\"{\"a\": {}}\"#;\n}\n");
    assert_eq!(functions(&raw), vec![("r".to_string(), 1, 3)]);
}
