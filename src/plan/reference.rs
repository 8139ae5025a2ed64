//! The plan reference, `docs/plan.md`, generated from the format's doc comments: the same text
//! the JSON Schema's descriptions come from (`format.rs`), the placeholders' table
//! (`template.rs`), and the annotated plan that uses every key (`docs/every-key.toml`, which a
//! test loads). `e2e-plan schema --format markdown` prints it; a test fails when the committed
//! file differs, so the reference cannot drift from the code.

use std::fmt::Write;

use serde_json::{Map, Value};

/// The annotated plan that uses every key, as the reference shows it.
pub const EVERY_KEY: &str = include_str!("../../docs/every-key.toml");

/// The whole reference, as markdown.
pub fn markdown() -> String {
    let schema: Value =
        serde_json::to_value(schemars::schema_for!(super::format::RawPlan)).unwrap_or_default();
    let defs = schema
        .get("definitions")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut o = String::new();
    let _ = writeln!(o, "# The plan file: reference\n");
    let _ = writeln!(
        o,
        "<!-- Generated from the code's doc comments by `e2e-plan schema --format markdown`; do not edit. -->\n"
    );
    if let Some(d) = description(&schema) {
        let _ = writeln!(o, "{d}\n");
    }
    let _ = writeln!(o, "## Every key\n");
    let _ = writeln!(
        o,
        "This plan uses every key (it is `docs/every-key.toml`, which the tests load). Comments give the defaults.\n"
    );
    let _ = writeln!(o, "```toml\n{}```\n", EVERY_KEY);
    let props = properties(&schema);
    let required = required(&schema);
    let _ = writeln!(o, "## Top-level keys\n");
    for (name, p) in &props {
        if table_of(p, &defs).is_none() {
            key(&mut o, name, p, required.contains(name), &defs);
        }
    }
    for (name, p) in &props {
        let Some((def, many)) = table_of(p, &defs) else {
            continue;
        };
        let heading = if many {
            format!("[[{name}]]")
        } else {
            format!("[{name}]")
        };
        let need = if required.contains(name) {
            " (required)"
        } else {
            ""
        };
        let _ = writeln!(o, "## `{heading}`{need}\n");
        for d in [description(p), description(def)].into_iter().flatten() {
            let _ = writeln!(o, "{d}\n");
        }
        let inner = required_of(def);
        for (k, v) in properties(def) {
            key(&mut o, &k, &v, inner.contains(&k), &defs);
        }
    }
    let _ = writeln!(o, "## Placeholders\n");
    let _ = writeln!(o, "{}\n", super::template::PLACEHOLDERS_INTRO);
    let _ = writeln!(o, "| placeholder | value |\n| --- | --- |");
    for (name, what) in super::template::PLACEHOLDER_DOCS {
        let _ = writeln!(o, "| `{{{name}}}` | {what} |");
    }
    let _ = writeln!(o, "\n{}\n", super::template::WHERE_PLACEHOLDERS);
    let _ = writeln!(o, "## Environment variables and durations\n");
    let _ = writeln!(o, "{}\n", super::template::INTERPOLATION);
    let _ = writeln!(o, "{}", super::duration::DURATIONS);
    o
}

fn description(v: &Value) -> Option<&str> {
    v.get("description").and_then(Value::as_str)
}

fn properties(v: &Value) -> Vec<(String, Value)> {
    v.get("properties")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn required(v: &Value) -> Vec<String> {
    required_of(v)
}

fn required_of(v: &Value) -> Vec<String> {
    v.get("required")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The definition a `$ref` names, directly or through `allOf`/`anyOf` (an optional value).
fn referenced<'a>(v: &Value, defs: &'a Map<String, Value>) -> Option<(&'a Value, String)> {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next()?.to_string();
        return defs.get(&name).map(|d| (d, name));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(found) = v
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find_map(|s| referenced(s, defs)))
        {
            return Some(found);
        }
    }
    None
}

/// A key that is a table (`[x]`) or an array of tables (`[[x]]`): its definition, and whether
/// it is an array.
fn table_of<'a>(v: &Value, defs: &'a Map<String, Value>) -> Option<(&'a Value, bool)> {
    let is_table = |d: &Value| d.get("properties").is_some();
    if let Some(items) = v.get("items") {
        return referenced(items, defs)
            .filter(|(d, _)| is_table(d))
            .map(|(d, _)| (d, true));
    }
    referenced(v, defs)
        .filter(|(d, _)| is_table(d))
        .map(|(d, _)| (d, false))
}

/// A key's kind in words: "string", "array of strings", "command", "`a` | `b`".
fn kind(v: &Value, defs: &Map<String, Value>) -> String {
    if let Some((d, name)) = referenced(v, defs) {
        if name == "CommandSpec" {
            return "a command: an array of strings, or one string".into();
        }
        let words = enum_words(d);
        if !words.is_empty() {
            return words
                .iter()
                .map(|(w, _)| format!("`\"{w}\"`"))
                .collect::<Vec<_>>()
                .join(" | ");
        }
        return name;
    }
    let types: Vec<&str> = match v.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let t = types.iter().find(|t| **t != "null").copied().unwrap_or("");
    match t {
        "array" => {
            let item = v
                .get("items")
                .map(|i| kind(i, defs))
                .unwrap_or_else(|| "values".into());
            let item = match item.as_str() {
                "string" => "strings".to_string(),
                "integer" => "integers".to_string(),
                command if command.starts_with("a command") => {
                    "commands (each an array of strings, or one string)".to_string()
                }
                other => other.to_string(),
            };
            format!("array of {item}")
        }
        "object" => "table of strings".into(),
        "" => "value".into(),
        other => other.into(),
    }
}

/// An enum's words, each with its own description.
fn enum_words(d: &Value) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut take = |v: &Value| {
        for w in v
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(w) = w.as_str() {
                out.push((w.to_string(), description(v).map(str::to_string)));
            }
        }
    };
    take(d);
    for s in d
        .get("oneOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        take(s);
    }
    out
}

fn key(o: &mut String, name: &str, v: &Value, required: bool, defs: &Map<String, Value>) {
    let need = if required { "required" } else { "optional" };
    let _ = writeln!(o, "### `{name}`\n");
    let _ = writeln!(o, "*{}, {need}.*\n", kind(v, defs));
    if let Some(d) = description(v) {
        let _ = writeln!(o, "{d}\n");
    }
    if let Some((d, _)) = referenced(v, defs) {
        let words: Vec<(String, Option<String>)> = enum_words(d)
            .into_iter()
            .filter(|(_, what)| what.is_some())
            .collect();
        for (w, what) in &words {
            let _ = writeln!(o, "- `\"{w}\"`: {}", what.as_deref().unwrap_or_default());
        }
        if !words.is_empty() {
            o.push('\n');
        }
    }
}
