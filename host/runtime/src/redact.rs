//! Credentials taken out of URLs before people see them: the flows
//! repository's remote, database URLs, and URLs in flow errors.

use reqwest::Url;

/// What stands in for a hidden credential.
const HIDDEN: &str = "***";

/// Query parameters that carry a credential (`?password=…`).
const SECRET_PARAMETERS: [&str; 8] = [
    "password",
    "passwd",
    "pwd",
    "sslpassword",
    "token",
    "access_token",
    "api_key",
    "secret",
];

/// `url` with its password, any credential query parameter and, for HTTP
/// (where a lone user name is often a token), its user name replaced by
/// `***`. Text that does not parse as a URL is returned unchanged.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.to_owned();
    };
    let mut changed = false;
    if parsed.password().is_some() {
        changed |= parsed.set_password(Some(HIDDEN)).is_ok();
    } else if !parsed.username().is_empty() && matches!(parsed.scheme(), "http" | "https") {
        changed |= parsed.set_username(HIDDEN).is_ok();
    }
    let secret = |key: &str| {
        SECRET_PARAMETERS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(key))
    };
    if parsed.query_pairs().any(|(key, _)| secret(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if secret(&key) {
                    HIDDEN.into()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed {
        parsed.to_string()
    } else {
        url.to_owned()
    }
}

/// `text` with every URL in it (a word with `://`) passed through
/// [`redact_url`]; for sentences such as flow errors.
pub fn redact_text(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(|c: char| !c.is_whitespace()) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        // A URL ends before closing punctuation that wraps it in a sentence.
        let url_end = word
            .trim_end_matches([')', ']', ',', ';', '.', '"', '\''])
            .len();
        let start = word.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0);
        if word[start..url_end].contains("://") {
            out.push_str(&word[..start]);
            out.push_str(&redact_url(&word[start..url_end]));
            out.push_str(&word[url_end..]);
        } else {
            out.push_str(word);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_hidden() {
        for (url, shown) in [
            (
                "postgres://baton:secret@db:5432/baton",
                "postgres://baton:***@db:5432/baton",
            ),
            (
                "postgres://baton:p%40ss@word@db/baton",
                "postgres://baton:***@db/baton",
            ),
            (
                "postgres://baton@db/baton?sslmode=require&password=secret",
                "postgres://baton@db/baton?sslmode=require&password=***",
            ),
            (
                "https://ghp_token@github.com/org/flows.git",
                "https://***@github.com/org/flows.git",
            ),
            (
                "ssh://git@github.com/org/flows.git",
                "ssh://git@github.com/org/flows.git",
            ),
            (
                "postgres://root@127.0.0.1/test",
                "postgres://root@127.0.0.1/test",
            ),
            ("sqlite:///tmp/x/baton.db", "sqlite:///tmp/x/baton.db"),
            (
                "git@github.com:org/flows.git",
                "git@github.com:org/flows.git",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("secret"));
        }
    }

    #[test]
    fn urls_in_sentences_are_hidden() {
        assert_eq!(
            redact_text("POST https://u:secret@api.example.com/x: connection refused"),
            "POST https://u:***@api.example.com/x: connection refused"
        );
        assert_eq!(
            redact_text("calling (https://u:secret@api.example.com/x), then"),
            "calling (https://u:***@api.example.com/x), then"
        );
        assert_eq!(redact_text("no url here\nat all"), "no url here\nat all");
    }
}
