//! Names and URLs decided before the run: worker, build, pool database names and the template's.

use sha2::{Digest, Sha256};

use crate::plan::Plan;

/// PostgreSQL's limit on identifiers, in bytes.
pub const MAX_IDENT: usize = 63;

/// Name of the template database on an ephemeral cluster.
pub const EPHEMERAL_TEMPLATE: &str = "e2e_template";

/// The template database's name from its URL (or the ephemeral default).
pub fn template_name(plan: &Plan) -> String {
    plan.database
        .template
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| {
            let path = u.path().trim_start_matches('/').to_string();
            percent_decode(&path)
        })
        .unwrap_or_else(|| EPHEMERAL_TEMPLATE.to_string())
}

/// The template's URL as far as it is known before the run: a throwaway cluster's port is not.
pub fn shown_template_url(plan: &Plan, template: &str) -> String {
    plan.database
        .template
        .clone()
        .unwrap_or_else(|| format!("postgresql://postgres@127.0.0.1:<cluster-port>/{template}"))
}

/// A URL path segment decoded (`%20` → space; a `+` stays a `+`).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A worker database name: only `[a-z0-9_]`, at most 63 bytes, unique per run and attempt. A long
/// template name is shortened with a hash of the whole name so that two long names never collide.
pub fn worker_db_name(template: &str, run_id: &str, worker: usize, attempt: u32) -> String {
    let suffix = if attempt == 0 {
        format!("_{run_id}_{worker}")
    } else {
        format!("_{run_id}_{worker}r{attempt}")
    };
    db_name(template, &suffix)
}

/// The fresh database a run prepares before it replaces the template (fingerprinted plans).
pub fn build_db_name(template: &str, run_id: &str) -> String {
    db_name(template, &format!("_next_{run_id}"))
}

/// The name the replaced template has between the swap and its drop.
pub fn old_db_name(template: &str, run_id: &str) -> String {
    db_name(template, &format!("_old_{run_id}"))
}

/// The name of the `i`-th spare copy a run makes ahead of the units its queue has yet to start.
pub fn spare_db_name(template: &str, run_id: &str, i: usize) -> String {
    db_name(template, &format!("_{run_id}_spare{i}"))
}

/// The name of the `i`-th copy a run adds to the template's pool.
pub fn pool_db_name(template: &str, run_id: &str, i: usize) -> String {
    db_name(template, &format!("_pool_{run_id}_{i}"))
}

/// `template` made a safe identifier, with `suffix`, at most 63 bytes (shortened with a hash).
fn db_name(template: &str, suffix: &str) -> String {
    let mut base: String = template
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
        base.insert_str(0, "db_");
    }
    if base.len() + suffix.len() > MAX_IDENT {
        let hash = hex(&Sha256::digest(template.as_bytes()))[..8].to_string();
        let keep = MAX_IDENT - suffix.len() - hash.len() - 1;
        base.truncate(keep);
        base.push('_');
        base.push_str(&hash);
    }
    base + suffix
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh run id: 8 lowercase hex characters from the clock and the process id.
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{nanos}-{}-{:p}", std::process::id(), &nanos);
    hex(&Sha256::digest(seed.as_bytes()))[..8].to_string()
}

/// `url` with only its database name replaced (user, password, host, port, query kept).
pub fn with_database(url: &str, db: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_path(&format!("/{db}"));
            u.to_string()
        }
        // Not parseable (a dry-run stand-in for a port): replace the last path segment as text.
        Err(_) => {
            let (base, query) = url
                .split_once('?')
                .map(|(b, q)| (b, Some(q)))
                .unwrap_or((url, None));
            let head = base.rfind('/').map(|i| &base[..i]).unwrap_or(base);
            match query {
                Some(q) => format!("{head}/{db}?{q}"),
                None => format!("{head}/{db}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names_are_safe_and_bounded() {
        let n = worker_db_name("App-Test", "ab12cd34", 3, 0);
        assert_eq!(n, "app_test_ab12cd34_3");
        let long_a = "a".repeat(60);
        let long_b = format!("{}b", "a".repeat(59));
        let na = worker_db_name(&long_a, "ab12cd34", 123, 2);
        let nb = worker_db_name(&long_b, "ab12cd34", 123, 2);
        assert!(na.len() <= MAX_IDENT && nb.len() <= MAX_IDENT);
        assert_ne!(na, nb, "shortened names must not collide");
        assert!(na
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_eq!(worker_db_name("9lives", "r", 0, 0), "db_9lives_r_0");
    }

    #[test]
    fn replaces_only_the_database() {
        assert_eq!(
            with_database("postgresql://u:p%40ss@h:6543/tmpl?sslmode=disable", "w_1"),
            "postgresql://u:p%40ss@h:6543/w_1?sslmode=disable"
        );
    }
}
