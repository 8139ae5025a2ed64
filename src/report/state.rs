//! Timings from outside the run (`--timings FILE`): a timings file, or a JUnit report.

use crate::planner::Timings;

/// `--timings FILE`: durations from a `timings.json`, or from a JUnit file (the merged
/// `junit.xml` a previous CI run uploaded): each suite's `e2e-plan.duration` or its time, by its
/// `file` property, or by the file its test cases' classnames name (plain pytest).
pub fn timings_from_file(path: &std::path::Path) -> Result<Timings, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(t) = serde_json::from_str::<Timings>(&text) {
        return Ok(t);
    }
    let report = super::junit::read(path).map_err(|e| {
        format!(
            "{}: neither a timings.json nor a JUnit file ({e})",
            path.display()
        )
    })?;
    let mut per_file: std::collections::BTreeMap<String, f64> = Default::default();
    for suite in &report.test_suites {
        if super::shards::read_record(suite).is_some() {
            continue;
        }
        match super::shards::property(suite, "file") {
            Some(file) => {
                let secs = super::shards::suite_duration(suite)
                    .or(suite.time)
                    .unwrap_or_default()
                    .as_secs_f64();
                *per_file.entry(file).or_default() += secs;
            }
            None => {
                for case in &suite.test_cases {
                    let Some(class) = case.classname.as_deref() else {
                        continue;
                    };
                    let file = module_file(class);
                    let secs = case.time.unwrap_or_default().as_secs_f64();
                    *per_file.entry(file).or_default() += secs;
                }
            }
        }
    }
    if per_file.is_empty() {
        return Err(format!("{}: no test durations in it", path.display()));
    }
    let mut t = Timings::default();
    for (file, secs) in per_file {
        t.record(&file, Some(std::time::Duration::from_secs_f64(secs)), None);
    }
    Ok(t)
}

/// The file of a pytest classname: `tests.e2e.test_x.TestA` → `tests/e2e/test_x.py`.
fn module_file(classname: &str) -> String {
    let parts: Vec<&str> = classname.split('.').collect();
    // Classes are capitalised; modules are not.
    let module: Vec<&str> = parts
        .iter()
        .take_while(|p| !p.starts_with(|c: char| c.is_ascii_uppercase()))
        .copied()
        .collect();
    format!("{}.py", module.join("/"))
}
