//! A minimal YAML reader for the repository's deployment files (compose,
//! provisioning, Prometheus): enough to check what they reference without a
//! YAML crate in the tests; `deployment::compose_file_parses_the_same_with_pyyaml`
//! checks it against PyYAML.

/// A minimal YAML reader for the deployment files of this repository (block
/// mappings and sequences, flow sequences of scalars, `|` block scalars,
/// quoted scalars, comments): `(path, scalar)` pairs in file order, where a
/// path joins mapping keys with `.` and marks a sequence item with `[]`
/// (`scrape_configs[]static_configs[]targets[]`); an empty value is `""`.
/// `compose_file_parses_the_same_with_pyyaml` checks it against PyYAML.
pub(crate) fn flatten_yaml(text: &str) -> Vec<(String, String)> {
    fn unquote(s: &str) -> String {
        let s = s.trim();
        let quoted =
            s.len() >= 2 && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')));
        if quoted {
            s[1..s.len() - 1].to_owned()
        } else {
            s.to_owned()
        }
    }
    fn strip_comment(line: &str) -> &str {
        let mut quote = None;
        for (i, c) in line.char_indices() {
            match (c, quote) {
                ('"' | '\'', None) => quote = Some(c),
                (q, Some(open)) if q == open => quote = None,
                ('#', None) if i == 0 || line[..i].ends_with(' ') => return &line[..i],
                _ => {}
            }
        }
        line
    }
    /// `(key, rest)` when the text starts with a mapping key.
    fn key_value(s: &str) -> Option<(String, &str)> {
        if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let end = s[1..].find(q)? + 1;
            let rest = s[end + 1..].strip_prefix(':')?;
            return Some((s[1..end].to_owned(), rest));
        }
        let i = s.find(": ").or_else(|| s.strip_suffix(':').map(str::len))?;
        let key = &s[..i];
        (!key.is_empty() && !key.contains(' ')).then(|| (key.to_owned(), &s[i + 1..]))
    }
    fn indent_of(l: &str) -> usize {
        l.len() - l.trim_start().len()
    }
    /// The literal block after a `|` whose owner sits at column `owner`.
    fn block(lines: &[&str], i: &mut usize, owner: usize, keep: bool) -> String {
        let mut out = Vec::new();
        let mut at = None;
        while *i < lines.len() {
            let l = lines[*i];
            if !l.trim().is_empty() && indent_of(l) <= owner {
                break;
            }
            let n = *at.get_or_insert(indent_of(l));
            out.push(l.get(n..).unwrap_or(""));
            *i += 1;
        }
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        let mut s = out.join("\n");
        if keep {
            s.push('\n');
        }
        s
    }
    fn join(parent: &str, key: &str) -> String {
        if parent.is_empty() || parent.ends_with("[]") {
            format!("{parent}{key}")
        } else {
            format!("{parent}.{key}")
        }
    }

    let lines: Vec<&str> = text.lines().collect();
    let next_indent =
        |from: usize| lines[from..].iter().map(|l| strip_comment(l)).find(|l| !l.trim().is_empty()).map(indent_of);
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new(); // (column of the key or dash, path)
    let mut i = 0;
    while i < lines.len() {
        let raw = strip_comment(lines[i]).trim_end();
        i += 1;
        if raw.trim().is_empty() || raw.trim() == "---" {
            continue;
        }
        let mut col = indent_of(raw);
        let mut body = raw.trim_start();
        while stack.last().is_some_and(|(n, _)| *n >= col) {
            stack.pop();
        }
        let mut parent = stack.last().map(|(_, p)| p.clone()).unwrap_or_default();
        if let Some(item) = body.strip_prefix("- ").or_else(|| (body == "-").then_some("")) {
            parent.push_str("[]");
            stack.push((col, parent.clone()));
            let item = item.trim_start();
            if item == "|" || item == "|-" {
                out.push((parent, block(&lines, &mut i, col, item == "|")));
                continue;
            }
            if key_value(item).is_none() {
                out.push((parent, unquote(item)));
                continue;
            }
            col = raw.len() - item.len();
            body = item;
        }
        let Some((key, rest)) = key_value(body) else { panic!("cannot read YAML line {i}: {raw:?}") };
        let path = join(&parent, &key);
        let rest = rest.trim();
        if rest == "|" || rest == "|-" {
            out.push((path, block(&lines, &mut i, col, rest == "|")));
        } else if rest.is_empty() {
            if next_indent(i).is_some_and(|n| n > col) {
                stack.push((col, path));
            } else {
                out.push((path, String::new()));
            }
        } else if rest.starts_with('[') && rest.ends_with(']') {
            for item in rest[1..rest.len() - 1].split(',').map(str::trim).filter(|s| !s.is_empty()) {
                out.push((format!("{path}[]"), unquote(item)));
            }
        } else {
            out.push((path, unquote(rest)));
        }
    }
    out
}

/// The flattened values at `path`.
pub(crate) fn at<'a>(flat: &'a [(String, String)], path: &str) -> Vec<&'a str> {
    flat.iter().filter(|(k, _)| k == path).map(|(_, v)| v.as_str()).collect()
}
