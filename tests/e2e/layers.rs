//! The tree's layers, checked: every module uses only the layers below it (or its own).
//! model (with events, redact, sys) ← plan ← planner ← engine ← steps ← report ← cli.

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

/// The `crate::x` references of one file's code (comments left out) to a layer above `module`'s.
fn upward(module: &str, text: &str) -> Vec<String> {
    let Some(mine) = layer(module) else {
        return vec![format!(
            "{module} has no layer: add it to tests/e2e/layers.rs"
        )];
    };
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("crate::") {
            let target: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if layer(&target).is_some_and(|t| t > mine) {
                found.push(format!("line {}: {module} uses crate::{target}", n + 1));
            }
        }
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
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        let text = std::fs::read_to_string(path).unwrap();
        for p in upward(module, &text) {
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
    assert_eq!(
        upward(
            "steps",
            "use crate::report::summary::Verdict;\n/// crate::cli in a comment"
        ),
        ["line 1: steps uses crate::report"]
    );
    assert!(upward("report", "use crate::steps::RunCx;").is_empty());
    assert_eq!(
        upward("newthing", ""),
        ["newthing has no layer: add it to tests/e2e/layers.rs"]
    );
}
