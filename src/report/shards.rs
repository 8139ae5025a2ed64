//! The shard record a sharded run leaves in its `junit.xml`, and `merge`'s check that the shards
//! it is given ran every file of one split exactly once. Without it, shards that computed
//! different splits (different timings on different runners) silently run some files twice and
//! others never.

use std::collections::{BTreeMap, BTreeSet};

use quick_junit::{Property, TestSuite};

use crate::planner::Split;

const SHARD: &str = "e2e-plan.shard";
const SPLIT: &str = "e2e-plan.split";
const FILE: &str = "e2e-plan.split-file";
/// On a worker's suite: its first attempt's duration, as `timings.json` records it.
pub const DURATION: &str = "e2e-plan.duration";

/// A suite with no test cases that records the split: which shard this is, the split's digest,
/// and every file of the split with the shard that runs it.
pub fn record_suite(split: &Split) -> TestSuite {
    let mut suite = TestSuite::new(format!(
        "e2e-plan shard {}/{} (split {})",
        split.index, split.count, split.digest
    ));
    suite.add_property(Property::new(
        SHARD,
        format!("{}/{}", split.index, split.count),
    ));
    suite.add_property(Property::new(SPLIT, split.digest.as_str()));
    for (file, k) in &split.files {
        suite.add_property(Property::new(FILE, format!("{k} {file}")));
    }
    suite
}

/// A suite's property by name.
pub fn property(suite: &TestSuite, name: &str) -> Option<String> {
    suite
        .properties
        .iter()
        .find(|p| p.name.as_str() == name)
        .map(|p| p.value.to_string())
}

/// A shard record read back from a suite; None for an ordinary suite.
pub fn read_record(suite: &TestSuite) -> Option<Split> {
    let prop = |name: &str| property(suite, name);
    let (index, count) = prop(SHARD)?
        .split_once('/')
        .and_then(|(k, n)| Some((k.parse().ok()?, n.parse().ok()?)))?;
    let files = suite
        .properties
        .iter()
        .filter(|p| p.name.as_str() == FILE)
        .filter_map(|p| {
            let (k, file) = p.value.split_once(' ')?;
            Some((file.to_string(), k.parse().ok()?))
        })
        .collect();
    Some(Split {
        index,
        count,
        digest: prop(SPLIT)?,
        files,
    })
}

/// The file a worker's suite ran (its `file` property; the suite's name otherwise).
pub fn suite_file(suite: &TestSuite) -> String {
    suite
        .properties
        .iter()
        .find(|p| p.name.as_str() == "file")
        .map(|p| p.value.to_string())
        .unwrap_or_else(|| suite.name.to_string())
}

/// The duration a worker's suite records for the timings snapshot.
pub fn suite_duration(suite: &TestSuite) -> Option<std::time::Duration> {
    let p = suite
        .properties
        .iter()
        .find(|p| p.name.as_str() == DURATION)?;
    let secs: f64 = p.value.parse().ok()?;
    std::time::Duration::try_from_secs_f64(secs).ok()
}

/// One input of `merge`: its name, its shard record if it has one, and the files it ran.
#[derive(Debug, Default)]
pub struct Shard {
    pub input: String,
    pub record: Option<Split>,
    pub ran: BTreeSet<String>,
}

/// Problems with a set of shards, each naming the files and inputs concerned; empty when the
/// inputs carry no shard record (plain JUnit files) or cover one split exactly once.
pub fn check(shards: &[Shard]) -> Vec<String> {
    let recorded: Vec<(&Shard, &Split)> = shards
        .iter()
        .filter_map(|s| s.record.as_ref().map(|r| (s, r)))
        .collect();
    let Some((_, first)) = recorded.first() else {
        return Vec::new();
    };
    let mut problems = different_splits(&recorded);
    let mut ran_by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in shards {
        for f in &s.ran {
            ran_by.entry(f).or_default().push(&s.input);
        }
    }
    for (file, inputs) in &ran_by {
        if inputs.len() > 1 {
            problems.push(format!(
                "{file} ran in {} shards: {}",
                inputs.len(),
                inputs.join(", ")
            ));
        }
    }
    for (file, k) in &first.files {
        if !ran_by.contains_key(file.as_str()) {
            problems.push(format!(
                "{file} ran in no shard (split {} gives it to shard {k}/{})",
                first.digest, first.count
            ));
        }
    }
    problems
}

/// Shards that computed different splits, and the files the splits place differently.
fn different_splits(recorded: &[(&Shard, &Split)]) -> Vec<String> {
    let (_, first) = recorded[0];
    let differ: Vec<&(&Shard, &Split)> = recorded
        .iter()
        .filter(|(_, r)| r.digest != first.digest || r.count != first.count)
        .collect();
    if differ.is_empty() {
        return Vec::new();
    }
    let describe = |(s, r): &(&Shard, &Split)| {
        format!(
            "{} (shard {}/{} of split {})",
            s.input, r.index, r.count, r.digest
        )
    };
    let mut problems = vec![format!(
        "the shards used different splits (different files, shard counts or timings): {}",
        recorded.iter().map(describe).collect::<Vec<_>>().join(", ")
    )];
    let place = |r: &Split| -> BTreeMap<String, usize> { r.files.iter().cloned().collect() };
    let a = place(first);
    for (s, r) in differ {
        let b = place(r);
        let files: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for f in files {
            let (x, y) = (a.get(f), b.get(f));
            if x != y {
                let shown = |v: Option<&usize>| {
                    v.map(|k| format!("shard {k}"))
                        .unwrap_or_else(|| "no shard".into())
                };
                problems.push(format!(
                    "{f}: {} in {}'s split, {} in {}'s",
                    shown(x),
                    recorded[0].0.input,
                    shown(y),
                    s.input
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(index: usize, digest: &str, files: &[(&str, usize)]) -> Split {
        Split {
            index,
            count: 2,
            digest: digest.into(),
            files: files.iter().map(|(f, k)| (f.to_string(), *k)).collect(),
        }
    }

    fn shard(input: &str, record: Option<Split>, ran: &[&str]) -> Shard {
        Shard {
            input: input.into(),
            record,
            ran: ran.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_record_round_trips() {
        let s = split(2, "abc", &[("a.py", 1), ("b c.py", 2)]);
        assert_eq!(read_record(&record_suite(&s)), Some(s));
        assert_eq!(read_record(&TestSuite::new("plain")), None);
    }

    #[test]
    fn one_split_covered_once_is_fine() {
        let files = [("a", 1), ("b", 2)];
        let shards = [
            shard("1.xml", Some(split(1, "d", &files)), &["a"]),
            shard("2.xml", Some(split(2, "d", &files)), &["b"]),
        ];
        assert_eq!(check(&shards), Vec::<String>::new());
        assert!(check(&[shard("plain.xml", None, &["a"])]).is_empty());
    }

    #[test]
    fn missing_twice_run_and_other_splits_are_named() {
        let files = [("a", 1), ("b", 2), ("c", 2)];
        let other = [("a", 2), ("b", 2), ("c", 1)];
        let shards = [
            shard("1.xml", Some(split(1, "d", &files)), &["a"]),
            shard("2.xml", Some(split(2, "e", &other)), &["a", "b"]),
        ];
        let problems = check(&shards).join("\n");
        assert!(problems.contains("different splits"), "{problems}");
        assert!(
            problems.contains("a: shard 1 in 1.xml's split, shard 2 in 2.xml's"),
            "{problems}"
        );
        assert!(
            problems.contains("a ran in 2 shards: 1.xml, 2.xml"),
            "{problems}"
        );
        assert!(problems.contains("c ran in no shard"), "{problems}");
        assert!(!problems.contains("b ran in no shard"), "{problems}");
    }
}
