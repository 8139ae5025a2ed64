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

/// Registers a secret in every form a sink may write it in: as is, percent-encoded (URL and
/// form style), escaped for XML/HTML (each way of writing quotes) and inside a JSON string. Sinks
/// scrub before they escape; the encoded forms are the net for text escaped elsewhere (a log that
/// a test wrote as HTML, say).
fn add_every_form(secret: &str) {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    add(secret);
    add(&utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string());
    add(&url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>());
    let markup = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    for (dq, sq) in [
        ("&quot;", "&#39;"),
        ("&quot;", "&apos;"),
        ("&quot;", "&#x27;"),
        ("&#34;", "&#39;"),
        ("\"", "'"),
    ] {
        add(&markup.replace('"', dq).replace('\'', sq));
    }
    if let Ok(json) = serde_json::to_string(secret) {
        add(&json[1..json.len() - 1]);
    }
}

/// Registers the password of a URL (user info, or a `password` query parameter): as written in
/// the URL and decoded, each in every form.
pub fn register_url(url: &str) {
    let Ok(u) = url::Url::parse(url) else { return };
    if let Some(p) = u.password() {
        add_every_form(p);
        add_every_form(&percent_encoding::percent_decode_str(p).decode_utf8_lossy());
        let form_decoded: String = url::form_urlencoded::parse(format!("p={p}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        add_every_form(&form_decoded);
    }
    for (k, v) in u.query_pairs() {
        if k == "password" {
            add_every_form(&v);
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

    #[test]
    fn scrubs_markup_json_and_percent_forms() {
        // p&<>"'%q, percent-encoded in the URL.
        register_url("postgresql://u:p%26%3C%3E%22%27%25q@h/db");
        for leaked in [
            r#"p&<>"'%q"#,
            "p&amp;&lt;&gt;&quot;&#39;%q",
            "p&amp;&lt;&gt;&quot;&apos;%q",
            r#"p&<>\"'%q"#,
            "p%26%3C%3E%22%27%25q",
        ] {
            assert_eq!(scrub(&format!("[{leaked}]")), "[****]", "{leaked}");
        }
    }
}
