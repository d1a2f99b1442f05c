//! The sanitizer: every string captured from the target passes through [`sanitize`] before it
//! is stored in an event or shown. It redacts credentials and keeps enough around them (the
//! key name, the token's well-known prefix) to tell what was there.
//!
//! Choices: a key/value pair is redacted when the key *ends* in a secret word (`password`,
//! `passwd`, `passphrase`, `secret`, `token`, `api_key`/`apikey`, `access_key`, `private_key`,
//! `credential(s)`, `signature`, `auth`), so `max_tokens=5`, `tokenizer=bert` and
//! `author=x` are left alone. For `token`, `auth` and `signature` keys a value must look like a
//! secret (8+ characters, not a number, not a special token such as `<pad>` or `[CLS]`); for
//! the other keys any non-empty value is redacted, even in prose such as `invalid password: too short`
//! (redacting one word too many is cheaper than leaking one).

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("sanitizer regex")
}

static PEM: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?s)(-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----).*?(-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
    )
});
static URL_CREDS: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)([^\s/:@]*):([^\s/@]+)@"));
static AUTH_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)\b((?:proxy-)?authorization(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)(?:(bearer|basic|token|digest|negotiate|apikey|aws4-hmac-sha256)\s+)?([^"'\s,;\\]+)"#,
    )
});
static COOKIE: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"(?i)\b((?:set-)?cookie(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)([^"'\r\n\\]+)"#)
});
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([Bb]earer|BEARER)\s+([A-Za-z0-9\-._~+/]{16,}=*)"));
static BASIC: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([Bb]asic|BASIC)\s+([A-Za-z0-9+/]{8,}={0,2})"));
/// Tokens with a recognisable shape; the first group is the prefix kept in the output.
static TOKENS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"\b(AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
        r"\b(gh[pousr]_)[A-Za-z0-9]{30,}\b",
        r"\b(github_pat_)[A-Za-z0-9_]{20,}",
        r"\b(glpat-)[A-Za-z0-9_\-]{20,}",
        r"\b(xox[baprs]-)[A-Za-z0-9\-]{10,}",
        r"\b(hf_)[A-Za-z0-9]{30,}\b",
        r"\b(npm_)[A-Za-z0-9]{36}\b",
        r"\b(AIza)[0-9A-Za-z_\-]{35}",
        r"\b([rs]k_(?:live|test)_)[A-Za-z0-9]{10,}",
        r"\b()eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
    ]
    .iter()
    .map(|p| re(p))
    .collect()
});
/// OpenAI-style keys (`sk-`, `sk-proj-`, `sk-ant-`): checked for a digit so that prose such
/// as `sk-learn-compatible-estimators` survives.
static SK_KEY: LazyLock<Regex> = LazyLock::new(|| re(r"\b(sk-)[A-Za-z0-9_\-]{20,}"));

const SECRET_WORDS: &str = r"password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credentials?|signature|auth";

static CLI_FLAG: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?i)(--?[A-Za-z0-9_\-]*(?:{SECRET_WORDS}))(\s+)([^\s\-][^\s]*)"
    ))
});
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r#"(?i)([A-Za-z0-9_.\-]*(?:{SECRET_WORDS}))((?:\\?["'])?\s*[:=]\s*)(\\"[^"\\]*\\"|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&'"}}\])]+)"#
    ))
});

/// Every rule below needs one of these words; most strings have none and are returned as
/// they are after this one pass.
static TRIGGER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)private key|://|auth|cookie|bearer|basic|akia|asia|abia|acca|gh[pousr]_|github_pat_|glpat-|xox|hf_|npm_|aiza|k_live_|k_test_|eyj|sk-|pass|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|signature",
    )
});

/// Redacts secrets in one string (which may span several lines).
pub(crate) fn sanitize(input: &str) -> String {
    if !TRIGGER.is_match(input) {
        return input.to_string();
    }
    let mut s = PEM
        .replace_all(input, format!("${{1}}{REDACTED}${{2}}"))
        .into_owned();
    s = URL_CREDS
        .replace_all(&s, format!("${{1}}${{2}}:{REDACTED}@"))
        .into_owned();
    s = AUTH_HEADER
        .replace_all(&s, |c: &Captures| match c.get(2) {
            Some(scheme) => format!("{}{} {REDACTED}", &c[1], scheme.as_str()),
            None => format!("{}{REDACTED}", &c[1]),
        })
        .into_owned();
    s = COOKIE
        .replace_all(&s, format!("${{1}}{REDACTED}"))
        .into_owned();
    s = BEARER
        .replace_all(&s, |c: &Captures| {
            if c[2].bytes().any(|b| b.is_ascii_digit()) {
                format!("{} {REDACTED}", &c[1])
            } else {
                c[0].to_string()
            }
        })
        .into_owned();
    s = BASIC
        .replace_all(&s, |c: &Captures| {
            if looks_like_basic_credentials(&c[2]) {
                format!("{} {REDACTED}", &c[1])
            } else {
                c[0].to_string()
            }
        })
        .into_owned();
    for token in TOKENS.iter() {
        s = token
            .replace_all(&s, format!("${{1}}{REDACTED}"))
            .into_owned();
    }
    s = SK_KEY
        .replace_all(&s, |c: &Captures| {
            if c[0].bytes().any(|b| b.is_ascii_digit()) {
                format!("{}{REDACTED}", &c[1])
            } else {
                c[0].to_string()
            }
        })
        .into_owned();
    s = CLI_FLAG
        .replace_all(&s, |c: &Captures| {
            if is_secret_value(&c[1], &c[3]) {
                format!("{}{}{REDACTED}", &c[1], &c[2])
            } else {
                c[0].to_string()
            }
        })
        .into_owned();
    KEY_VALUE
        .replace_all(&s, |c: &Captures| {
            let value = &c[3];
            let (open, inner, close) = split_quotes(value);
            if is_secret_value(&c[1], inner) {
                format!("{}{}{open}{REDACTED}{close}", &c[1], &c[2])
            } else {
                c[0].to_string()
            }
        })
        .into_owned()
}

/// Redacts secrets in the lines of one multi-line error, looking at them together so that a
/// private key printed across several lines is caught; returns the sanitized lines.
pub(crate) fn sanitize_lines(lines: &[String]) -> Vec<String> {
    if lines.is_empty() {
        return Vec::new();
    }
    sanitize(&lines.join("\n"))
        .split('\n')
        .map(str::to_string)
        .collect()
}

fn split_quotes(value: &str) -> (&str, &str, &str) {
    for q in ["\\\"", "\"", "'"] {
        if value.len() >= 2 * q.len() && value.starts_with(q) && value.ends_with(q) {
            return (q, &value[q.len()..value.len() - q.len()], q);
        }
    }
    ("", value, "")
}

/// Whether `value` given for `key` should be redacted.
fn is_secret_value(key: &str, value: &str) -> bool {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    if v.is_empty()
        || v.contains("REDACTED")
        || ["null", "none", "nil", "undefined", "true", "false"].contains(&lower.as_str())
        || v.chars().all(|c| c == '*')
        || (v.len() >= 3 && v.chars().all(|c| c == 'x' || c == 'X'))
    {
        return false;
    }
    let key: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let password_like = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "apikey",
        "accesskey",
        "privatekey",
        "credential",
        "credentials",
    ]
    .iter()
    .any(|w| key.ends_with(w));
    if password_like {
        return true;
    }
    let special_token =
        (v.starts_with('<') && v.ends_with('>')) || (v.starts_with('[') && v.ends_with(']'));
    v.len() >= 8 && !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !special_token
}

/// Whether a `Basic` credential decodes to `user:password`.
fn looks_like_basic_credentials(b64: &str) -> bool {
    base64_decode(b64).is_some_and(|bytes| {
        bytes.contains(&b':') && bytes.iter().all(|b| (0x20..0x7f).contains(b))
    })
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        sanitize(x)
    }

    #[test]
    fn private_key_blocks() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabcDEF==\n-----END RSA PRIVATE KEY-----";
        let out = s(&format!("loaded {key} ok"));
        assert_eq!(
            out,
            "loaded -----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY----- ok"
        );
        // Escaped newlines inside a repr, and a block cut before its end.
        let out =
            s(r"ValueError: '-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n'");
        assert!(!out.contains("MIIEvQ"), "{out}");
        let out = s("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk");
        assert_eq!(out, "-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]");
    }

    #[test]
    fn private_key_across_lines() {
        let lines: Vec<String> = [
            "ValueError: bad key",
            "-----BEGIN EC PRIVATE KEY-----",
            "MHcCAQEEIBkg",
            "-----END EC PRIVATE KEY-----",
        ]
        .map(String::from)
        .to_vec();
        let out = sanitize_lines(&lines);
        assert_eq!(out.len(), 2);
        assert!(!out.join("\n").contains("MHcCAQEEIBkg"));
        assert!(sanitize_lines(&[]).is_empty());
    }

    #[test]
    fn authorization_headers() {
        assert_eq!(
            s("Authorization: Bearer abc.def-123"),
            "Authorization: Bearer [REDACTED]"
        );
        assert_eq!(
            s(r#"{"authorization": "Basic dXNlcjpwYXNz"}"#),
            r#"{"authorization": "Basic [REDACTED]"}"#
        );
        assert_eq!(s("Authorization=s3cr3t"), "Authorization=[REDACTED]");
        assert_eq!(
            s("sent header Bearer eyABCDEFGH12345678"),
            "sent header Bearer [REDACTED]"
        );
        assert_eq!(s("using basic dXNlcjpwYXNz"), "using basic [REDACTED]");
        assert_eq!(s("Cookie: session=abc; id=42"), "Cookie: [REDACTED]");
    }

    #[test]
    fn bearer_and_basic_in_prose_survive() {
        for text in [
            "the bearer of bad news",
            "Bearer authentication is configured",
            "basic functionality works",
            "Basic Auth enabled",
        ] {
            assert_eq!(s(text), text);
        }
    }

    #[test]
    fn url_credentials() {
        assert_eq!(
            s("connect postgres://admin:hunter2@db:5432/x failed"),
            "connect postgres://admin:[REDACTED]@db:5432/x failed"
        );
        assert_eq!(
            s("redis://:p4ss@cache:6379"),
            "redis://:[REDACTED]@cache:6379"
        );
        assert_eq!(s("https://example.com/a:b"), "https://example.com/a:b");
    }

    #[test]
    fn token_formats() {
        let cases = [
            ("key AKIAIOSFODNN7EXAMPLE used", "key AKIA[REDACTED] used"),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_[REDACTED]"),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
                "github_pat_[REDACTED]",
            ),
            ("sk-proj-abc123DEF456ghi789JKL0", "sk-[REDACTED]"),
            ("xoxb-123456789012-abcdefghij", "xoxb-[REDACTED]"),
            ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "hf_[REDACTED]"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_-123 end",
                "jwt [REDACTED] end",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(s(input), want, "{input}");
        }
        assert_eq!(
            s("use sk-learn-compatible-estimators"),
            "use sk-learn-compatible-estimators"
        );
    }

    #[test]
    fn key_value_forms() {
        let cases = [
            ("password=hunter2", "password=[REDACTED]"),
            ("db_password: hunter2 next", "db_password: [REDACTED] next"),
            ("passwd: x", "passwd: [REDACTED]"),
            ("secret=abc", "secret=[REDACTED]"),
            ("token=abcdef123456", "token=[REDACTED]"),
            ("API_KEY=abcdefgh1234", "API_KEY=[REDACTED]"),
            ("apikey: 'abcdefgh1234'", "apikey: '[REDACTED]'"),
            (
                r#"{"api_key": "abcdefgh1234", "n": 1}"#,
                r#"{"api_key": "[REDACTED]", "n": 1}"#,
            ),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_access_key=[REDACTED]",
            ),
            (
                "{'access_token': 'abcd1234efgh'}",
                "{'access_token': '[REDACTED]'}",
            ),
            (
                "url?x=1&token=abcdefgh99&y=2",
                "url?x=1&token=[REDACTED]&y=2",
            ),
            (
                "run --password hunter2 --v",
                "run --password [REDACTED] --v",
            ),
            (
                "HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
                "HF_TOKEN=hf_[REDACTED]",
            ),
            (
                r#"body "{\"password\": \"pw\"}""#,
                r#"body "{\"password\": \"[REDACTED]\"}""#,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(s(input), want, "{input}");
        }
    }

    #[test]
    fn ordinary_words_survive() {
        for text in [
            "tokenizer loaded",
            "tokenizer=bert-base-uncased",
            "max_tokens=512",
            "num_tokens: 12",
            "password field is empty",
            "token count 5",
            "pad_token=<pad> cls_token: [CLS]",
            "max_new_token=256",
            "author=someone",
            "PWD=/home/user",
            "password=null",
            "secret: ***",
        ] {
            assert_eq!(s(text), text);
        }
    }

    #[test]
    fn debatable_prose_is_redacted() {
        // A password-like key followed by `: word` is taken as a value.
        assert_eq!(
            s("invalid password: too short"),
            "invalid password: [REDACTED] short"
        );
    }

    #[test]
    fn idempotent() {
        for text in [
            "password=hunter2 Authorization: Bearer abc123456789abcdef",
            "postgres://u:p@h/db sk-abcdefghij0123456789xyz",
        ] {
            let once = s(text);
            assert_eq!(s(&once), once);
        }
    }
}
