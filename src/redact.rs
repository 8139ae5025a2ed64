//! Passwords never reach a user's eyes: every password found in a database URL of the plan is
//! registered here, and every sink (terminal, report files, dry-run) scrubs its text through
//! [`scrub`]. URLs get their password replaced by `****` where they are built too; this is the net
//! under that, for secrets that travel inside commands, messages and logs.

use std::borrow::Cow;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

fn add(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !s.iter().any(|x| x == secret) {
        s.push(secret.to_string());
        // Longest first, so that a secret containing another is replaced whole.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

/// Registers the password of a URL (user info, or a `password` query parameter), in both its
/// percent-encoded and decoded forms.
pub fn register_url(url: &str) {
    let Ok(u) = url::Url::parse(url) else { return };
    if let Some(p) = u.password() {
        add(p);
        let decoded: String = url::form_urlencoded::parse(format!("p={p}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        add(&decoded);
    }
    for (k, v) in u.query_pairs() {
        if k == "password" {
            add(&v);
            add(&url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>());
        }
    }
}

/// `text` with every registered secret replaced by `****`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in secrets.iter() {
        out = out.replace(s.as_str(), "****");
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_user_info_and_query_passwords_in_every_form() {
        register_url("postgresql://u:p%40ss%2Fword@h/db?sslmode=disable");
        register_url("postgresql://u@h/db?password=q%20secret");
        assert_eq!(
            scrub("url postgresql://u:p%40ss%2Fword@h/x"),
            "url postgresql://u:****@h/x"
        );
        assert_eq!(scrub("decoded p@ss/word here"), "decoded **** here");
        assert_eq!(scrub("q secret and q+secret"), "**** and ****");
        assert_eq!(scrub("nothing to hide"), "nothing to hide");
    }
}
