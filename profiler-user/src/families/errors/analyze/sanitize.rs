//! The sanitizer: every string captured from the target passes through [`sanitize`] before it
//! is stored in an event or shown, and the target's command line through [`sanitize_argv`]. It
//! redacts credentials and keeps enough around them (the key name, the token's well-known
//! prefix) to tell what was there.
//!
//! Choices: a key/value pair (`KEY=value`, `KEY: value`, `"KEY": "value"`, `--KEY value`) is
//! redacted by what its key ends in:
//! - password-like keys (`password`, `passwd`, `passphrase`, `secret`, `api_key`/`apikey`,
//!   `access_key`, `private_key`, `secret_key`, `account_key`, `credential(s)`, and `pass` or
//!   `pwd` after a word boundary, so not `bypass`): any non-empty value, even in prose such as
//!   `invalid password: too short` (redacting one word too many is cheaper than leaking one).
//!   Two exceptions: a bare `pass` key needs `=` or quotes (`PASS: test_x` is a test result),
//!   and a bare `PWD` whose value is a path (`PWD=/home/user`) is the working directory.
//! - `token` and `auth` keys: a value that looks like a secret: 8+ characters; or 3+ with both
//!   letters and digits; or 3+ when assigned (`=`, quotes, a flag's argument) and not a word
//!   such as `none`, `basic` or `oauth2`. Never a number or a special token (`<pad>`, `[CLS]`),
//!   so `unexpected token: EOF` and `--max-new-token 256` survive.
//! - other keys ending in `key` after a word boundary (`ENCRYPTION_KEY`, `encryptionKey`, but
//!   not `monkey`, `public_key` or `primary_key`), `signature` and `sig`: 8+ characters, not a
//!   number.
//!
//! So `max_tokens=5`, `tokenizer=bert`, `author=x` and `num_workers=4` are left alone.
//!
//! A URL's userinfo ends at the last `@` before its host, so a password holding `@` or `/` is
//! redacted whole; where the text after `host:` is a port and a path (`host:8080/@scope`) there
//! is no password. `-p` is a password option only for the programs that read it so (`mysql`,
//! `mariadb`..., `sshpass`; `-a` for `redis-cli`): glued (`-pPW`) or as the next argument
//! (which mysql reads as the database: redacted too, as a password typed there by mistake is the
//! likelier loss). Elsewhere `-p 8080` is a port.

use std::{borrow::Cow, sync::LazyLock};

use regex::{Captures, Regex, RegexSet};

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("sanitizer regex")
}

const PEM: &str = r"(?s)(-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----).*?(-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)";
/// `scheme://user:password@host`, the password up to the last `@` in the run (it may hold `@`,
/// `/` and `:`); the user may hold `@` (an e-mail address).
const URL_CREDS: &str = r#"\b([A-Za-z][A-Za-z0-9+.\-]*://)([^\s/:'"<>]*):([^\s'"<>?#]+)@"#;
const AUTH_HEADER: &str = r#"(?i)\b((?:proxy-)?authorization(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)(?:(bearer|basic|token|digest|negotiate|apikey|aws4-hmac-sha256)\s+)?([^"'\s,;\\]+)"#;
const COOKIE: &str = r#"(?i)\b((?:set-)?cookie(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)([^"'\r\n\\]+)"#;
const BEARER: &str = r"\b([Bb]earer|BEARER)\s+([A-Za-z0-9\-._~+/]{16,}=*)";
const BASIC: &str = r"\b([Bb]asic|BASIC)\s+([A-Za-z0-9+/]{8,}={0,2})";
/// An AWS access key id, what separates it from the next word, and that word when it has the
/// 40 characters of a secret access key (the last group must be empty: no longer word).
const AWS_PAIR: &str = r#"\b((?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})([\s,:;=|'"]{1,6})([A-Za-z0-9/+]{40})([A-Za-z0-9/+=]*)"#;
/// Tokens with a recognisable shape; the first group is the prefix kept in the output.
const TOKENS: [&str; 15] = [
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
    r"\b(SG\.)[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
    r"\b(pypi-)Ag[A-Za-z0-9_\-]{30,}",
    r"\b(ya29\.)[A-Za-z0-9_\-]{20,}",
    r"\b(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/\-]+",
    r"\b(discord(?:app)?\.com/api/webhooks/)[0-9]+/[A-Za-z0-9_\-]+",
];
/// OpenAI-style keys (`sk-`, `sk-proj-`, `sk-ant-`): checked for a digit so that prose such
/// as `sk-learn-compatible-estimators` survives.
const SK_KEY: &str = r"\b(sk-)[A-Za-z0-9_\-]{20,}";
/// A command of a program with a password option, up to the end of the command.
const PASSWORD_PROGRAM: &str = r"\b(mysql[a-z]*|mariadb[a-z\-]*|sshpass|redis-cli)(\s[^\n;|&]*)";

/// What a key may end in to be looked at; [`key_kind`] decides.
const SECRET_WORDS: &str =
    r"password|passwd|passphrase|pass|pwd|secret|token|key|credentials?|signature|sig|auth";

/// A flag naming a secret, then its argument. The flag starts a word (`id-token expired` is
/// prose).
fn cli_flag() -> String {
    format!(r#"(?i)(^|[\s"'(\[=,;])(--?[A-Za-z0-9_\-]*(?:{SECRET_WORDS}))(\s+)([^\s\-][^\s]*)"#)
}

fn key_value() -> String {
    format!(
        r#"(?i)([A-Za-z0-9_.\-]*(?:{SECRET_WORDS}))((?:\\?["'])?\s*[:=]\s*)(\\"[^"\\]*\\"|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&'"}}\])]+)"#
    )
}

/// What a match of a rule becomes.
type Rewrite = fn(&Captures) -> String;

/// The rules in the order they apply, and all their patterns in one set, so that one pass over a
/// string says which rules can match it: most strings match none and are returned as they are.
static RULES: LazyLock<(RegexSet, Vec<(Regex, Rewrite)>)> = LazyLock::new(|| {
    let mut rules: Vec<(String, Rewrite)> = vec![
        (PEM.into(), pem),
        (URL_CREDS.into(), url_creds),
        (AUTH_HEADER.into(), auth_header),
        (COOKIE.into(), keep_first),
        (BEARER.into(), bearer),
        (BASIC.into(), basic),
        (AWS_PAIR.into(), aws_pair),
    ];
    rules.extend(
        TOKENS
            .iter()
            .map(|&t| (t.to_string(), keep_first as Rewrite)),
    );
    rules.extend([
        (SK_KEY.to_string(), sk_key as Rewrite),
        (PASSWORD_PROGRAM.into(), password_program),
        (cli_flag(), cli_flag_value),
        (key_value(), key_value_value),
    ]);
    let set = RegexSet::new(rules.iter().map(|(p, _)| p)).expect("sanitizer regex set");
    let rules = rules.into_iter().map(|(p, f)| (re(&p), f)).collect();
    (set, rules)
});

/// The same as [`URL_CREDS`] with a password that holds none of `/@`: what it falls back to
/// where its password is a port and a path.
static URL_CREDS_PLAIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)([^\s/:@]*):([^\s/@]+)@"));
static PORT_AND_PATH: LazyLock<Regex> = LazyLock::new(|| re(r"^[0-9]{1,5}/"));
/// A short option, then the space and the argument that follows it (one that is no option), or
/// the argument glued to it.
static SHORT_OPTION: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\s-[A-Za-z])(?:(\s+)([^\s\-]\S*)|(\S+))?"));
static PASSWORD_PROGRAM_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:mysql[a-z]*|mariadb[a-z\-]*|sshpass|redis-cli)$"));

/// Redacts secrets in one string (which may span several lines).
pub(crate) fn sanitize(input: &str) -> String {
    let (set, rules) = &*RULES;
    let mut s = input.to_string();
    for i in set.matches(input).iter() {
        let (rule, rewrite) = &rules[i];
        apply(&mut s, rule, rewrite);
    }
    s
}

/// Applies one rule to `s`, which is rewritten only where the rule matched.
fn apply(s: &mut String, rule: &Regex, rewrite: impl FnMut(&Captures) -> String) {
    if let Cow::Owned(out) = rule.replace_all(s, rewrite) {
        *s = out;
    }
}

/// The first group kept, the rest redacted.
fn keep_first(c: &Captures) -> String {
    format!("{}{REDACTED}", &c[1])
}

fn pem(c: &Captures) -> String {
    format!("{}{REDACTED}{}", &c[1], &c[2])
}

fn url_creds(c: &Captures) -> String {
    let password = &c[3];
    if PORT_AND_PATH.is_match(password) || password.contains("://") {
        // Not one password: a port and a path, or a second URL.
        let mut plain = c[0].to_string();
        apply(&mut plain, &URL_CREDS_PLAIN, |p: &Captures| {
            format!("{}{}:{REDACTED}@", &p[1], &p[2])
        });
        plain
    } else {
        format!("{}{}:{REDACTED}@", &c[1], &c[2])
    }
}

fn auth_header(c: &Captures) -> String {
    match c.get(2) {
        Some(scheme) => format!("{}{} {REDACTED}", &c[1], scheme.as_str()),
        None => format!("{}{REDACTED}", &c[1]),
    }
}

fn bearer(c: &Captures) -> String {
    if c[2].bytes().any(|b| b.is_ascii_digit()) {
        format!("{} {REDACTED}", &c[1])
    } else {
        c[0].to_string()
    }
}

fn basic(c: &Captures) -> String {
    if looks_like_basic_credentials(&c[2]) {
        format!("{} {REDACTED}", &c[1])
    } else {
        c[0].to_string()
    }
}

fn aws_pair(c: &Captures) -> String {
    let secret = &c[3];
    let mixed = secret.bytes().any(|b| b.is_ascii_uppercase())
        && secret.bytes().any(|b| b.is_ascii_lowercase());
    if c[4].is_empty() && mixed {
        format!("{}{}{REDACTED}", &c[1], &c[2])
    } else {
        c[0].to_string()
    }
}

fn sk_key(c: &Captures) -> String {
    if c[0].bytes().any(|b| b.is_ascii_digit()) {
        format!("{}{REDACTED}", &c[1])
    } else {
        c[0].to_string()
    }
}

/// The program's first password option only: a later one is another program's (`sshpass -p PW
/// ssh -p 2222 host`).
fn password_program(c: &Captures) -> String {
    let option = password_option(&c[1]);
    let mut seen = false;
    let mut args = c[2].to_string();
    apply(&mut args, &SHORT_OPTION, |o: &Captures| {
        if seen || o[1].trim_start() != option {
            return o[0].to_string();
        }
        seen = true;
        match o.get(3).or(o.get(4)) {
            Some(value) if !value.as_str().contains(REDACTED) => {
                let space = o.get(2).map_or("", |m| m.as_str());
                format!("{}{space}{REDACTED}", &o[1])
            }
            _ => o[0].to_string(),
        }
    });
    format!("{}{args}", &c[1])
}

fn cli_flag_value(c: &Captures) -> String {
    if is_secret_value(&c[2], &c[4], true) {
        format!("{}{}{}{REDACTED}", &c[1], &c[2], &c[3])
    } else {
        c[0].to_string()
    }
}

fn key_value_value(c: &Captures) -> String {
    let (open, inner, close) = split_quotes(&c[3]);
    let assigned = c[2].contains(['=', '"', '\'']) || !open.is_empty();
    if is_secret_value(&c[1], inner, assigned) {
        format!("{}{}{open}{REDACTED}{close}", &c[1], &c[2])
    } else {
        c[0].to_string()
    }
}

/// Redacts secrets in a command line: each argument as [`sanitize`] does, the argument after a
/// flag that names a secret (`--api-key KEY`, `--password PW`), and the password option of the
/// programs that take one (`mysql -pPW`, `sshpass -p PW`, `redis-cli -a PW`), anywhere in the
/// line (`sudo mysql -pPW`).
pub(crate) fn sanitize_argv(argv: &[String]) -> Vec<String> {
    /// What the previous argument says of this one.
    enum Next<'a> {
        Plain,
        /// The argument of a program's password option.
        Password,
        /// The argument of a flag naming a secret.
        ValueOf(&'a str),
    }
    let mut out = Vec::with_capacity(argv.len());
    let mut option: Option<&str> = None;
    let mut next = Next::Plain;
    for arg in argv {
        let redact = match std::mem::replace(&mut next, Next::Plain) {
            Next::Plain => false,
            Next::Password => !arg.starts_with('-'),
            Next::ValueOf(flag) => !arg.starts_with('-') && is_secret_value(flag, arg, true),
        };
        if redact {
            out.push(REDACTED.to_string());
            continue;
        }
        if let Some(opt) = option
            && let Some(glued) = arg.strip_prefix(opt)
        {
            // A program's password option is given once: a later `-p` is another program's.
            option = None;
            if glued.is_empty() {
                next = Next::Password;
                out.push(arg.clone());
            } else {
                out.push(format!("{opt}{REDACTED}"));
            }
            continue;
        }
        let name = arg.rsplit('/').next().unwrap_or(arg);
        if PASSWORD_PROGRAM_NAME.is_match(name) {
            option = Some(password_option(name));
        } else if arg.starts_with('-') && !arg.contains('=') && key_kind(arg).is_some() {
            next = Next::ValueOf(arg);
        }
        out.push(sanitize(arg));
    }
    out
}

/// The short option that takes a password in `program` (one [`PASSWORD_PROGRAM`] names).
fn password_option(program: &str) -> &'static str {
    if program == "redis-cli" { "-a" } else { "-p" }
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

/// How a key's value is judged (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// Any value.
    Password,
    /// A value that looks like a secret, short ones included.
    Token,
    /// A value of 8+ characters.
    Key,
}

/// Endings that make a key password-like whatever precedes them, in lower case without `_-.`.
const PASSWORD_ENDINGS: [&str; 11] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
    "accountkey",
    "credential",
    "credentials",
];
/// Endings that name no secret although they end in `key`.
const PUBLIC_KEYS: [&str; 6] = [
    "publickey",
    "pubkey",
    "primarykey",
    "foreignkey",
    "sortkey",
    "partitionkey",
];
/// Short endings that count only after a word boundary (`db_pass`, `dbPass`; not `bypass`).
const BOUNDED_ENDINGS: [(&str, KeyKind); 4] = [
    ("pass", KeyKind::Password),
    ("pwd", KeyKind::Password),
    ("key", KeyKind::Key),
    ("sig", KeyKind::Key),
];

/// What `key` (a key, or a flag with its dashes) names, or None for no secret.
fn key_kind(key: &str) -> Option<KeyKind> {
    let key = key.trim_start_matches('-');
    let norm: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if PASSWORD_ENDINGS.iter().any(|w| norm.ends_with(w)) {
        return Some(KeyKind::Password);
    }
    if ["token", "auth"].iter().any(|w| norm.ends_with(w)) {
        return Some(KeyKind::Token);
    }
    if norm.ends_with("signature") {
        return Some(KeyKind::Key);
    }
    if PUBLIC_KEYS.iter().any(|w| norm.ends_with(w)) {
        return None;
    }
    BOUNDED_ENDINGS
        .iter()
        .find(|(w, _)| ends_with_word(key, w))
        .map(|&(_, kind)| kind)
}

/// Whether `key` ends in `word` (lower case) that begins a word: the whole key, after `_-.`, or
/// a capital after a lower-case letter or digit (`dbPass`).
fn ends_with_word(key: &str, word: &str) -> bool {
    let (k, w) = (key.as_bytes(), word.as_bytes());
    if k.len() < w.len() || !k[k.len() - w.len()..].eq_ignore_ascii_case(w) {
        return false;
    }
    let Some(&before) = k.len().checked_sub(w.len() + 1).map(|i| &k[i]) else {
        return true;
    };
    let first = k[k.len() - w.len()];
    matches!(before, b'_' | b'-' | b'.')
        || (first.is_ascii_uppercase() && (before.is_ascii_lowercase() || before.is_ascii_digit()))
}

/// Values of `token`/`auth` keys that name a scheme or a setting, not a secret.
const TOKEN_WORDS: [&str; 24] = [
    "none",
    "basic",
    "bearer",
    "digest",
    "ntlm",
    "negotiate",
    "kerberos",
    "oauth",
    "oauth1",
    "oauth2",
    "ldap",
    "saml",
    "sso",
    "jwt",
    "hmac",
    "local",
    "off",
    "on",
    "yes",
    "no",
    "required",
    "optional",
    "disabled",
    "enabled",
];

/// Whether `value` given for `key` should be redacted; `assigned` when the pair is written as
/// an assignment (`=`, a quoted key or value, a flag's argument) rather than as prose.
fn is_secret_value(key: &str, value: &str, assigned: bool) -> bool {
    let Some(kind) = key_kind(key) else {
        return false;
    };
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
    let bare = key.trim_start_matches('-');
    let numeric = v.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let special =
        (v.starts_with('<') && v.ends_with('>')) || (v.starts_with('[') && v.ends_with(']'));
    let long = v.len() >= 8 && !numeric && !special;
    match kind {
        KeyKind::Password if bare.eq_ignore_ascii_case("pass") => assigned,
        KeyKind::Password if bare.eq_ignore_ascii_case("pwd") => !v.starts_with(['/', '~']),
        KeyKind::Password => true,
        KeyKind::Key => long,
        KeyKind::Token => {
            if long {
                return true;
            }
            if v.len() < 3 || numeric || special || TOKEN_WORDS.contains(&lower.as_str()) {
                return false;
            }
            let letters = v.bytes().any(|b| b.is_ascii_alphabetic());
            let digits = v.bytes().any(|b| b.is_ascii_digit());
            (letters && digits) || assigned
        }
    }
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
#[path = "sanitize_tests.rs"]
mod tests;
