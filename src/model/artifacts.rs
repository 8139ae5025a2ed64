//! What a test tool leaves in an attempt's `{artifacts_dir}` (screenshots, traces, videos), each
//! tied to its test where the tool's layout names it. pytest-playwright writes one folder per
//! test, named after the test id as a slug (`tests/ui/test_x.py::test_y[chromium]` →
//! `tests-ui-test-x-py-test-y-chromium`); the slug is of the id pytest prints, relative to its
//! rootdir, which may be above or below the plan's root, so a folder and an id match when one
//! ends with the other at a `-`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What an artifact is, by its name: what the reports show inline, link or just list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    Screenshot,
    Trace,
    Video,
    Other,
}

impl ArtifactKind {
    /// `*.png`/`*.jpg`/`*.jpeg`/`*.webp` are screenshots, `*.webm`/`*.mp4` videos, a `*.zip`
    /// whose name says trace (Playwright's `trace.zip`) a trace.
    pub fn of(path: &Path) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext {
            "png" | "jpg" | "jpeg" | "webp" => ArtifactKind::Screenshot,
            "webm" | "mp4" => ArtifactKind::Video,
            "zip" if name.contains("trace") => ArtifactKind::Trace,
            _ => ArtifactKind::Other,
        }
    }
}

/// One file an attempt's test tool left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Relative to the report folder (absolute only when it lies outside it), so the folder
    /// opens anywhere once uploaded.
    pub path: PathBuf,
    pub kind: ArtifactKind,
    /// The test it belongs to (pytest's node id, as the failures name it); None: the attempt's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// The attempt that wrote it (1 = the first pass).
    pub attempt: u32,
}

/// A name as pytest-playwright (python-slugify) makes a folder name of it: lower case, every run
/// of other characters than ASCII letters and digits one `-`, none at either end.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    out
}

/// A folder name less what says which rerun wrote it (pytest-rerunfailures: `-retry1`).
fn without_rerun(name: &str) -> &str {
    match name.rsplit_once("-retry") {
        Some((head, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => head,
        _ => name,
    }
}

/// Whether `a` ends with `b` at a word boundary (`b` whole, or after a `-`).
fn ends_at_word(a: &str, b: &str) -> bool {
    a == b || (a.ends_with(b) && a[..a.len() - b.len()].ends_with('-'))
}

/// The test (index into `ids`) a folder or file of an artifacts folder is named after, if one
/// is: the longest id that matches, when only one matches that well.
pub fn test_of(name: &str, ids: &[String]) -> Option<usize> {
    let stem = slug(without_rerun(name));
    if stem.is_empty() {
        return None;
    }
    let scored: Vec<(usize, usize)> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let s = slug(id);
            let hit = !s.is_empty() && (ends_at_word(&stem, &s) || ends_at_word(&s, &stem));
            // A folder shorter than the id (a rootdir below the plan's root) must still hold
            // the file's name and the test's: at least `file-py-test`.
            let enough = stem.len() >= s.len() || stem.contains("-py-");
            (hit && enough).then_some((i, s.len().min(stem.len())))
        })
        .collect();
    unique_best(&scored)
}

/// The file (index into `files`, paths relative to the root) a folder or file of a pack's
/// artifacts folder belongs to: the one whose path, from the most folders down to its name
/// alone, the name starts with (or holds, after a `-`, for a rootdir above the root).
pub fn file_of(name: &str, files: &[&str]) -> Option<usize> {
    let stem = slug(name);
    let scored: Vec<(usize, usize)> = files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let parts: Vec<&str> = f.split('/').filter(|p| !p.is_empty()).collect();
            (0..parts.len()).find_map(|from| {
                let s = slug(&parts[from..].join("/"));
                let hit = !s.is_empty()
                    && (stem.starts_with(&format!("{s}-")) || stem.contains(&format!("-{s}-")));
                hit.then_some((i, parts.len() - from))
            })
        })
        .collect();
    unique_best(&scored)
}

/// The index with the highest score, when no other has it.
fn unique_best(scored: &[(usize, usize)]) -> Option<usize> {
    let top = scored.iter().map(|(_, s)| *s).max()?;
    let mut best = scored.iter().filter(|(_, s)| *s == top);
    let (i, _) = best.next()?;
    best.next().is_none().then_some(*i)
}

/// Every file under `dir` (an attempt's artifacts folder), sorted, each tied to the test its
/// top-level folder or file is named after (`ids`), its path relative to `report_dir`.
pub fn list(dir: &Path, report_dir: &Path, attempt: u32, ids: &[String]) -> Vec<Artifact> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(dir) else {
            continue;
        };
        let top = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        // A file on its own (not in a test's folder) is named after its test without its type.
        let top = if rel.components().count() == 1 {
            top.rsplit_once('.')
                .map(|(s, _)| s.to_string())
                .unwrap_or(top)
        } else {
            top
        };
        out.push(Artifact {
            path: path
                .strip_prefix(report_dir)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| path.to_path_buf()),
            kind: ArtifactKind::of(path),
            test: test_of(&top, ids).map(|i| ids[i].clone()),
            attempt,
        });
    }
    out
}

/// Whether `dir` holds any file.
pub fn any(dir: &Path) -> bool {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .any(|e| e.file_type().is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_as_pytest_playwright() {
        assert_eq!(
            slug("tests/browser/test_ui_page.py::test_ui_is_html[chromium]"),
            "tests-browser-test-ui-page-py-test-ui-is-html-chromium"
        );
        assert_eq!(slug("--A__b--"), "a-b");
    }

    #[test]
    fn folders_find_their_test_from_any_rootdir() {
        let ids = vec![
            "examples/notes/tests/browser/test_ui.py::test_a[chromium]".to_string(),
            "examples/notes/tests/browser/test_ui.py::test_b_a[chromium]".to_string(),
            "examples/notes/tests/browser/test_ui.py::TestX::test_a[chromium]".to_string(),
        ];
        // rootdir below the root, at the root, above it; a rerun's folder.
        assert_eq!(
            test_of("tests-browser-test-ui-py-test-a-chromium", &ids),
            Some(0)
        );
        assert_eq!(
            test_of(
                "examples-notes-tests-browser-test-ui-py-test-b-a-chromium",
                &ids
            ),
            Some(1)
        );
        assert_eq!(
            test_of(
                "wt-examples-notes-tests-browser-test-ui-py-testx-test-a-chromium",
                &ids
            ),
            Some(2)
        );
        assert_eq!(test_of("test-ui-py-test-a-chromium-retry1", &ids), Some(0));
        // Too little of the id to tell, or nothing like it.
        assert_eq!(test_of("test-a-chromium", &ids), None);
        assert_eq!(test_of("trace", &ids), None);
    }

    #[test]
    fn pack_folders_find_their_file() {
        let files = [
            "tests/a/test_x.py",
            "tests/b/test_x.py",
            "tests/a/test_y.py",
        ];
        assert_eq!(
            file_of("tests-a-test-x-py-test-one-chromium", &files),
            Some(0)
        );
        assert_eq!(file_of("b-test-x-py-test-one-chromium", &files), Some(1));
        assert_eq!(file_of("test-y-py-test-one-chromium", &files), Some(2));
        // Either test_x.py: neither.
        assert_eq!(file_of("test-x-py-test-one-chromium", &files), None);
        assert_eq!(file_of("root-tests-a-test-y-py-t", &files), Some(2));
        assert_eq!(file_of("har", &files), None);
    }

    #[test]
    fn kinds_by_name() {
        for (name, kind) in [
            ("test-failed-1.png", ArtifactKind::Screenshot),
            ("trace.zip", ArtifactKind::Trace),
            ("video.webm", ArtifactKind::Video),
            ("page.har", ArtifactKind::Other),
            ("other.zip", ArtifactKind::Other),
        ] {
            assert_eq!(ArtifactKind::of(Path::new(name)), kind, "{name}");
        }
    }
}
