//! The tree's layers, checked: every module uses only the layers below it (or its own).
//! model (with events, redact, sys) ← plan ← planner ← engine ← steps ← report ← cli.
//! Paths are read as the compiler would reach them: `crate::x`, grouped `crate::{x, y::z}`, and
//! `super::` climbs that reach the crate's root (`super::super::report` from `steps/worker.rs`).

use std::path::Path;

/// A module's layer by its top-level name under `src/`.
fn layer(module: &str) -> Option<usize> {
    Some(match module {
        "model" | "events" | "redact" | "sys" => 0,
        "plan" => 1,
        "planner" => 2,
        "engine" => 3,
        "steps" => 4,
        "report" => 5,
        "cli" | "lib" | "main" => 6,
        _ => return None,
    })
}

/// The module path of a file under `src/`: `steps/per_worker/database.rs` → steps, per_worker,
/// database; `steps/mod.rs` → steps; `lib.rs` → nothing.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.as_slice() == ["lib"] || parts.as_slice() == ["main"] {
        parts.clear();
    }
    parts
}

/// The first segment of every path in `{a, b::c, d::{e, f}}` starting at `text` (just after the
/// `{`): a, b, d.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut item) = (0usize, String::new());
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            item.push(c);
        }
    }
    heads.push(item);
    heads
        .iter()
        .map(|i| {
            i.trim()
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .collect()
}

/// The top-level modules a path reaches when it names the crate's root right before `rest`.
fn heads_at_root(rest: &str) -> Vec<String> {
    match rest.strip_prefix('{') {
        Some(group) => group_heads(group),
        None => vec![rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect()],
    }
}

/// The references of one file's code (comment lines left out) to a layer above its own.
fn upward(path: &[String], text: &str) -> Vec<String> {
    let module = path.first().map(String::as_str).unwrap_or("lib");
    let Some(mine) = layer(module) else {
        return vec![format!(
            "{module} has no layer: add it to tests/e2e/layers.rs"
        )];
    };
    let code: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut check = |at: usize, targets: Vec<String>, how: &str| {
        for target in targets {
            if layer(&target).is_some_and(|t| t > mine) {
                found.push(format!("line {}: {module} uses {how}{target}", line_of(at)));
            }
        }
    };
    for (i, _) in code.match_indices("crate::") {
        // `e2e_plan::crate::` is no path; `$crate::` in a macro is ours too.
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        check(i, heads_at_root(&code[i + 7..]), "crate::");
    }
    let mut i = 0;
    while let Some(pos) = code[i..].find("super::") {
        let at = i + pos;
        let before = code[..at].chars().last();
        let mut climbs = 0;
        let mut rest = &code[at..];
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r;
        }
        let starts_path =
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if starts_path && climbs >= path.len() {
            let how = "super::".repeat(climbs);
            check(at, heads_at_root(rest), &how);
        }
        i = at + 7 * climbs.max(1);
    }
    found
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for entry in walkdir::WalkDir::new(&src).into_iter().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        for p in upward(&module_path(rel), &text) {
            problems.push(format!("{}: {p}", rel.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "imports that point up:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_catches_an_upward_import() {
    let at = |p: &str| module_path(Path::new(p));
    assert_eq!(
        upward(
            &at("steps/worker.rs"),
            "use crate::report::summary::Verdict;\n/// crate::cli in a comment"
        ),
        ["line 1: steps uses crate::report"]
    );
    assert!(upward(&at("report/mod.rs"), "use crate::steps::RunCx;").is_empty());
    assert_eq!(
        upward(&at("newthing.rs"), ""),
        ["newthing has no layer: add it to tests/e2e/layers.rs"]
    );
    // Grouped imports, over several lines.
    assert_eq!(
        upward(
            &at("steps/worker.rs"),
            "use crate::{\n    model::Verdict,\n    report::{files, terminal::Reporter},\n};"
        ),
        ["line 1: steps uses crate::report"]
    );
    // `super::` climbs that reach the crate's root, from any depth.
    assert_eq!(
        upward(&at("steps/worker.rs"), "x\nuse super::super::cli::Error;"),
        ["line 2: steps uses super::super::cli"]
    );
    assert_eq!(
        upward(&at("steps/mod.rs"), "use super::{model::Verdict, report};"),
        ["line 1: steps uses super::report"]
    );
    assert_eq!(
        upward(
            &at("steps/per_worker/database.rs"),
            "use super::super::super::report::x;"
        ),
        ["line 1: steps uses super::super::super::report"]
    );
    // Climbs that stay inside the module, and lower layers, are fine.
    assert!(upward(
        &at("steps/per_worker/database.rs"),
        "use super::super::owner::RunEvent;"
    )
    .is_empty());
    assert!(upward(&at("steps/mod.rs"), "use super::{model::Verdict, plan};").is_empty());
    assert!(upward(&at("lib.rs"), "pub mod cli;").is_empty());
}

/// The run's state has one writer: `RunState` is private to the owner's module, with private
/// fields, so that no step can hold or change it.
#[test]
fn only_the_owner_holds_the_run_state() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let owner = std::fs::read_to_string(src.join("steps/owner.rs")).unwrap();
    let decl = owner
        .split("struct RunState {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("steps/owner.rs declares struct RunState");
    assert!(
        !owner.contains("pub struct RunState") && !decl.contains("pub "),
        "RunState and its fields must stay private to steps/owner.rs"
    );
    for entry in walkdir::WalkDir::new(&src).into_iter().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("steps/owner.rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            !text.contains("RunState"),
            "{} names RunState: only the owner may",
            path.display()
        );
    }
}
