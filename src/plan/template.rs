//! `{placeholder}` templates filled per worker, and `${VAR}` environment interpolation at load time.

use std::collections::HashMap;

/// Every placeholder a plan may use (`args` last: see [`WORKER_PLACEHOLDERS`]).
pub const PLACEHOLDERS: &[&str] = &[
    "root",
    "run",
    "worker",
    "file",
    "file_stem",
    "port",
    "db_name",
    "db_url",
    "junit",
    "log_dir",
    "artifacts_dir",
    "args",
];

/// What each placeholder stands for (the reference's table, `docs/plan.md`).
pub const PLACEHOLDER_DOCS: &[(&str, &str)] = &[
    ("root", "the absolute root folder"),
    ("run", "the run id (8 hex characters)"),
    ("worker", "the worker's index (0 is the file predicted to take longest)"),
    ("file", "the test file, relative to root (in a pack's test command: each of its files, as words of their own; in a part's: each of its test ids)"),
    ("file_stem", "the file name without its extension, prefixed with parent folders when two files share a name"),
    ("port", "a free port on 127.0.0.1, kept for this worker"),
    ("db_name", "the worker's database (in `prepare`: the database being prepared)"),
    ("db_url", "the template's URL with the database swapped for the worker's; user, password, host, port and query are kept (in `prepare`: that of the database being prepared)"),
    ("junit", "`{log_dir}/junit.xml`. The test command must write JUnit here: the counts and the merged report come from it"),
    ("log_dir", "`{report.dir}/workers/{file_stem}`: the worker's folder, kept when it fails"),
    ("artifacts_dir", "`{log_dir}/artifacts`: a folder of the attempt's own for what the test tool writes besides its JUnit (pytest-playwright's `--output`: screenshots, traces, videos). Made empty before the attempt; kept by `[report] artifacts`, each retry's under `attempt-<n>/`, each packed file's own"),
    ("args", "the words after `--` on the command line, each as its own word (none without `--`)"),
    ("port.NAME", "a free port on 127.0.0.1 for the worker's `[[service]]` named NAME (each attempt its own)"),
];

/// The reference's words before the placeholders' table.
pub const PLACEHOLDERS_INTRO: &str = "Commands and environment values are templates: `{name}` is filled for each worker (or, in `[[setup]]` and `[database]`, for the run). Write `{{` and `}}` for literal braces. An unknown placeholder is a load error that suggests the closest name; a placeholder used where it is not available is a load error that lists the ones that are.";

/// Which fields take which placeholders (what `load.rs` enforces).
pub const WHERE_PLACEHOLDERS: &str = "Which placeholders a field accepts:

- `[server]` `command`, `env` and `ready`, and `[test]` `command` and `env`: every placeholder.
- `[[service]]` `command`, `env` and `ready`, and `[[resource]]` `create`, `destroy` and `env`: every placeholder but `{args}`.
- `[test] collect`: only `{root}`, `{file}` (required, as a whole word) and `{args}`.
- `{args}`: only as a whole word of `[server] command`, `[test] command` or `[test] collect`: an array element `\"{args}\"`, or a separate word of a string command. Writing `\"--x={args}\"` is an error.
- `[[setup]]` `command` and `env`: only `{root}` and `{run}`.
- `[database]` `prepare` and `env`: only `{root}`, `{run}`, `{db_name}` and `{db_url}`, which name the database being prepared.
- Other strings (`root`, globs, `creates`, `template`, `report.dir`) take no placeholders.";

/// How `${VAR}` is read when a plan is loaded.
pub const INTERPOLATION: &str = "`${VAR}` and `${VAR:-default}` are replaced with the environment variable's value when the plan is loaded, in any string. A variable that is unset and has no default is an error, and `$$` is a literal `$`. `$VAR` without braces is left as it is. Braces that come from a variable's value stay literal (a JSON value in a variable is not a placeholder). Durations and words such as `keep` take `${VAR}` too: `keep = \"${E2E_KEEP:-failed}\"`.";

/// What a worker's fields may use: every placeholder; `{args}` only as a whole command word.
pub const WORKER_PLACEHOLDERS: &[&str] = PLACEHOLDERS.split_at(PLACEHOLDERS.len() - 1).0;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

/// A string with placeholders, checked at load time so that filling it cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template problem, with the byte offset (within the string) where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub message: String,
    pub help: Option<String>,
    pub offset: usize,
    pub len: usize,
}

impl Template {
    /// Parses `text`; `allowed` lists the placeholders valid in this field (`args` never is: a
    /// standalone `{args}` word is recognised before this by [`Word::parse`]).
    pub fn parse(text: &str, allowed: &[&str]) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if matches!(chars.peek(), Some((_, '{'))) => {
                    chars.next();
                    lit.push('{');
                }
                '}' if matches!(chars.peek(), Some((_, '}'))) => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let close = text[i..].find('}').ok_or_else(|| TemplateError {
                        message: "unclosed `{` in template".into(),
                        help: Some("write `{{` for a literal brace".into()),
                        offset: i,
                        len: text.len() - i,
                    })?;
                    let name = &text[i + 1..i + close];
                    let err = |message: String, help: Option<String>| TemplateError {
                        message,
                        help,
                        offset: i,
                        len: close + 1,
                    };
                    if let Some((message, help)) = check_name(name, allowed) {
                        return Err(err(message, help));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(name.to_string()));
                    for _ in 0..close {
                        chars.next();
                    }
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Fills the template; placeholders missing from `vars` are left as `{name}`.
    pub fn fill(&self, vars: &HashMap<&str, String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => match vars.get(name.as_str()) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                },
            }
        }
        out
    }

    /// Fills the placeholders found in `vars` and keeps the others: the planner resolves what it
    /// knows and leaves the run-time values (`{port}`, `{db_url}`) for one fill at run time.
    pub fn resolve(&self, vars: &HashMap<&str, String>) -> Template {
        let mut parts: Vec<Part> = Vec::new();
        for part in &self.parts {
            let lit = match part {
                Part::Var(name) => match vars.get(name.as_str()) {
                    Some(v) => v.clone(),
                    None => {
                        parts.push(part.clone());
                        continue;
                    }
                },
                Part::Lit(s) => s.clone(),
            };
            match parts.last_mut() {
                Some(Part::Lit(prev)) => prev.push_str(&lit),
                _ => parts.push(Part::Lit(lit)),
            }
        }
        Template { parts }
    }

    /// A template that is exactly one placeholder, `{name}`.
    pub fn var(name: &str) -> Template {
        Template {
            parts: vec![Part::Var(name.to_string())],
        }
    }

    /// A template with no placeholders.
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Lit(text.to_string())],
        }
    }

    /// The template as it would be written in a plan (literal braces doubled).
    pub fn source(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.replace('{', "{{").replace('}', "}}"),
                Part::Var(n) => format!("{{{n}}}"),
            })
            .collect()
    }

    /// The template is exactly the placeholder `{name}`, nothing around it.
    pub fn is_only(&self, name: &str) -> bool {
        matches!(self.parts.as_slice(), [Part::Var(n)] if n == name)
    }

    pub fn uses(&self, name: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(n) if n == name))
    }
}

/// Shown as written (`dry-run --format json` of a planned action).
impl serde::Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source())
    }
}

/// In a field's allowed placeholders: the field may use `{port.NAME}` for the plan's services
/// (which are listed beside it as `port.NAME`).
pub const SERVICE_PORTS: &str = "port.*";

/// What is wrong with placeholder `name` in a field that may use `allowed`, with a hint.
fn check_name(name: &str, allowed: &[&str]) -> Option<(String, Option<String>)> {
    if let Some(service) = name.strip_prefix("port.") {
        if allowed.contains(&name) {
            return None;
        }
        if !allowed.contains(&SERVICE_PORTS) {
            return Some((
                format!("placeholder `{{{name}}}` is not available here"),
                Some(
                    "a service's port is known to a worker's server, tests, services and resources only"
                        .into(),
                ),
            ));
        }
        let services: Vec<&str> = allowed
            .iter()
            .filter_map(|a| a.strip_prefix("port."))
            .filter(|s| *s != "*")
            .collect();
        let help = match super::suggest(service, services.iter().copied()) {
            Some(s) => format!("did you mean `{{port.{s}}}`?"),
            None if services.is_empty() => {
                "the plan has no [[service]]: add one with this name".to_string()
            }
            None => format!("the plan's services: {}", services.join(", ")),
        };
        return Some((format!("`{{{name}}}` names no [[service]]"), Some(help)));
    }
    if name == "args" {
        return Some((
            "`{args}` must stand alone as one word of a command".into(),
            Some(
                "write it as its own array element, e.g. [\"pytest\", \"{file}\", \"{args}\"]"
                    .into(),
            ),
        ));
    }
    if !PLACEHOLDERS.contains(&name) {
        let help = super::suggest(name, PLACEHOLDERS.iter().copied())
            .map(|s| format!("did you mean `{{{s}}}`?"))
            .or_else(|| {
                Some(format!(
                    "known placeholders: {}",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
            });
        return Some((format!("unknown placeholder `{{{name}}}`"), help));
    }
    if !allowed.contains(&name) {
        return Some((
            format!("placeholder `{{{name}}}` is not available here"),
            Some(format!(
                "this field may use: {}",
                if allowed.is_empty() {
                    "no placeholders".to_string()
                } else {
                    allowed
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            )),
        ));
    }
    None
}

/// One word of a command: a template, or the standalone `{args}` that expands to zero or more words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    Args,
    Text(Template),
}

impl Word {
    pub fn parse(text: &str, allowed: &[&str], args_allowed: bool) -> Result<Self, TemplateError> {
        if text == "{args}" {
            if args_allowed {
                return Ok(Word::Args);
            }
            return Err(TemplateError {
                message: "`{args}` is only available in the server and test commands".into(),
                help: None,
                offset: 0,
                len: text.len(),
            });
        }
        Template::parse(text, allowed).map(Word::Text)
    }
}

/// Fills a command's words; `{args}` becomes the extra arguments, each its own word.
pub fn fill_command(words: &[Word], vars: &HashMap<&str, String>, args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for word in words {
        match word {
            Word::Args => out.extend(args.iter().cloned()),
            Word::Text(t) => out.push(t.fill(vars)),
        }
    }
    out
}

/// Resolves a command's words: `{args}` becomes the extra arguments, each its own literal word.
pub fn resolve_command(
    words: &[Word],
    vars: &HashMap<&str, String>,
    args: &[String],
) -> Vec<Template> {
    resolve_command_files(words, vars, args, None)
}

/// As [`resolve_command`]; with `files`, a word that is exactly `{file}` becomes those files, each
/// its own word (a pack's test process runs them all).
pub fn resolve_command_files(
    words: &[Word],
    vars: &HashMap<&str, String>,
    args: &[String],
    files: Option<&[String]>,
) -> Vec<Template> {
    let mut out = Vec::new();
    for word in words {
        match (word, files) {
            (Word::Args, _) => out.extend(args.iter().map(|a| Template::literal(a))),
            (Word::Text(t), Some(files)) if t.is_only("file") => {
                out.extend(files.iter().map(|f| Template::literal(f)))
            }
            (Word::Text(t), _) => out.push(t.resolve(vars)),
        }
    }
    out
}

/// The source of a command's words, for a fingerprint that does not change from run to run.
pub fn command_source(words: &[Word]) -> Vec<String> {
    words
        .iter()
        .map(|w| match w {
            Word::Args => "{args}".to_string(),
            Word::Text(t) => t.source(),
        })
        .collect()
}

/// A `${VAR}` problem: the byte offset of the reference within the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub var: String,
    pub offset: usize,
    pub len: usize,
    pub message: String,
}

/// Replaces `${VAR}` and `${VAR:-default}` using `lookup`; `$$` is a literal `$`. With
/// `escape_braces`, braces in the values are doubled so that a later placeholder parse keeps them
/// literal (a JSON value in an environment variable is not a placeholder).
pub fn interpolate_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape_braces: bool,
) -> Result<String, EnvError> {
    let esc = |v: &str| {
        if escape_braces {
            v.replace('{', "{{").replace('}', "}}")
        } else {
            v.to_string()
        }
    };
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'$') {
            out.push('$');
            i += 2;
        } else if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            let close = text[i..].find('}').ok_or_else(|| EnvError {
                var: String::new(),
                offset: i,
                len: text.len() - i,
                message: "unclosed `${` in environment reference".into(),
            })?;
            let inner = &text[i + 2..i + close];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(EnvError {
                    var: name.into(),
                    offset: i,
                    len: close + 1,
                    message: format!("`${{{inner}}}` is not a valid environment reference"),
                });
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&esc(&v)),
                (None, Some(d)) => out.push_str(&esc(d)),
                (None, None) => {
                    return Err(EnvError {
                        var: name.into(),
                        offset: i,
                        len: close + 1,
                        message: format!("environment variable `{name}` is not set"),
                    })
                }
            }
            i += close + 1;
        } else {
            let ch = text[i..].chars().next().unwrap_or('$');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    Ok(out)
}

/// `${VAR}` interpolation for values that serde parses itself (durations, enum words): the plan's
/// promise is "anywhere in a string".
pub fn interpolate_value(v: &str) -> Result<String, String> {
    if !v.contains('$') {
        return Ok(v.to_string());
    }
    interpolate_env(v, &|n| std::env::var(n).ok(), false).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = WORKER_PLACEHOLDERS;

    #[test]
    fn fills_placeholders_and_escapes() {
        let t = Template::parse("http://127.0.0.1:{port}/x{{y}}", ALL).unwrap();
        let vars = HashMap::from([("port", "8080".to_string())]);
        assert_eq!(t.fill(&vars), "http://127.0.0.1:8080/x{y}");
        assert!(t.uses("port"));
    }

    #[test]
    fn resolves_what_is_known_and_keeps_the_rest() {
        let t = Template::parse("{root}/x{{y}}:{port}/{db_url}", ALL).unwrap();
        let r = t.resolve(&HashMap::from([("root", "/r".to_string())]));
        assert_eq!(r.source(), "/r/x{{y}}:{port}/{db_url}");
        assert!(r.uses("port") && !r.uses("root"));
        let vars = HashMap::from([("port", "1".to_string()), ("db_url", "u".to_string())]);
        assert_eq!(r.fill(&vars), "/r/x{y}:1/u");
        assert_eq!(Template::parse(&r.source(), ALL).unwrap(), r);
    }

    #[test]
    fn unknown_placeholder_suggests() {
        let e = Template::parse("--x={prot}", ALL).unwrap_err();
        assert_eq!(e.message, "unknown placeholder `{prot}`");
        assert_eq!(e.help.as_deref(), Some("did you mean `{port}`?"));
        assert_eq!((e.offset, e.len), (4, 6));
    }

    #[test]
    fn args_only_alone() {
        assert_eq!(Word::parse("{args}", ALL, true).unwrap(), Word::Args);
        assert!(Word::parse("--{args}", ALL, true)
            .unwrap_err()
            .message
            .contains("alone"));
        assert!(Word::parse("{args}", ALL, false).is_err());
        let words = vec![Word::parse("a", ALL, true).unwrap(), Word::Args];
        assert_eq!(fill_command(&words, &HashMap::new(), &[]), vec!["a"]);
        assert_eq!(
            fill_command(&words, &HashMap::new(), &["-k".into(), "x y".into()]),
            vec!["a", "-k", "x y"]
        );
    }

    #[test]
    fn not_allowed_here() {
        let e = Template::parse("{port}", &["root"]).unwrap_err();
        assert!(e.message.contains("not available here"));
    }

    #[test]
    fn env_interpolation() {
        let lookup = |n: &str| (n == "HOME_X").then(|| "/h".to_string());
        assert_eq!(
            interpolate_env("a${HOME_X}b", &lookup, false).unwrap(),
            "a/hb"
        );
        assert_eq!(interpolate_env("${NOPE:-d}", &lookup, false).unwrap(), "d");
        assert_eq!(interpolate_env("${NOPE:-}", &lookup, false).unwrap(), "");
        assert_eq!(interpolate_env("$$5 $x", &lookup, false).unwrap(), "$5 $x");
        let e = interpolate_env("x ${NOPE}", &lookup, false).unwrap_err();
        let json = |_: &str| Some("{\"a\": 1}".to_string());
        assert_eq!(
            interpolate_env("${J}", &json, true).unwrap(),
            "{{\"a\": 1}}"
        );
        assert_eq!((e.offset, e.len, e.var.as_str()), (2, 7, "NOPE"));
    }
}
