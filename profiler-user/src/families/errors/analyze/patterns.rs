//! The pattern database: known errors with their category, severity, solutions and
//! prevention, as data. The built-in set is compiled into the binary from
//! `patterns/builtin.toml`; a user file in the same format adds patterns or replaces built-in
//! ones by id. The format is documented in `docs/patterns.md`.
//!
//! Matching order: user patterns before built-in ones; then higher `priority` first; then
//! rules with more matchers first; then file order. The first rule whose matchers all match
//! decides.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

use crate::linux;
use crate::report::errors::{Category, Level, Severity};

/// The built-in database.
pub(crate) const BUILTIN_SOURCE: &str = include_str!("../../../../patterns/builtin.toml");
const BUILTIN_ORIGIN: &str = "builtin.toml";
const REGEX_SIZE_LIMIT: usize = 64 << 20;
/// The priority of a pattern that gives none.
pub(crate) const DEFAULT_PRIORITY: i32 = 0;

/// A malformed pattern file: where and what, rendered on one line as
/// `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct PatternError {
    pub origin: String,
    /// 1-based; 0 when the position is unknown.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.origin, self.line, self.column, self.message
            )
        }
    }
}

/// An errno or signal given by name (`ENOENT`, `SIGSEGV`) or number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NameOrNumber {
    Name(String),
    Number(i64),
}

impl<'de> Deserialize<'de> for NameOrNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = NameOrNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NameOrNumber, E> {
                Ok(NameOrNumber::Name(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NameOrNumber, E> {
                Ok(NameOrNumber::Number(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchDef {
    text: Option<Spanned<String>>,
    exception: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    #[serde(default)]
    errno: Vec<Spanned<NameOrNumber>>,
    #[serde(default)]
    syscall: Vec<String>,
    #[serde(default)]
    signal: Vec<Spanned<NameOrNumber>>,
    #[serde(default)]
    exit_code: Vec<i32>,
    #[serde(default)]
    level: Vec<Level>,
    oom: Option<bool>,
}

impl MatchDef {
    fn count(&self) -> usize {
        [
            self.text.is_some(),
            self.exception.is_some(),
            self.path.is_some(),
            !self.errno.is_empty(),
            !self.syscall.is_empty(),
            !self.signal.is_empty(),
            !self.exit_code.is_empty(),
            !self.level.is_empty(),
            self.oom.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternDef {
    id: Spanned<String>,
    category: Option<Category>,
    severity: Option<Severity>,
    description: Option<String>,
    #[serde(default)]
    benign: bool,
    priority: Option<Spanned<i64>>,
    #[serde(default)]
    solutions: Vec<String>,
    #[serde(default)]
    prevention: Vec<String>,
    text: Option<Spanned<String>>,
    exception: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    #[serde(default)]
    errno: Vec<Spanned<NameOrNumber>>,
    #[serde(default)]
    syscall: Vec<String>,
    #[serde(default)]
    signal: Vec<Spanned<NameOrNumber>>,
    #[serde(default)]
    exit_code: Vec<i32>,
    #[serde(default)]
    level: Vec<Level>,
    oom: Option<bool>,
    #[serde(default, rename = "match")]
    rules: Vec<MatchDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternFile {
    #[allow(dead_code)]
    version: Option<u32>,
    #[serde(default)]
    pattern: Vec<PatternDef>,
}

/// One pattern of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pub id: String,
    /// For a benign pattern: `system`.
    pub category: Category,
    /// For a benign pattern: `low`.
    pub severity: Severity,
    pub description: Option<String>,
    pub solutions: Vec<String>,
    pub prevention: Vec<String>,
    /// An expected failure: counted, not reported as an error (failed syscalls only).
    pub benign: bool,
    /// Higher is tried first (within user or built-in patterns).
    pub priority: i32,
    /// Loaded from the user file.
    pub user: bool,
}

/// A row of `profiler patterns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PatternInfo {
    pub id: String,
    pub category: Category,
    pub severity: Severity,
    pub benign: bool,
    pub priority: i32,
    /// `builtin` or `user`.
    pub source: &'static str,
    pub description: Option<String>,
}

/// What a rule is matched against. Output events leave `syscall` empty and may carry an
/// errno and path inferred from their text.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Subject<'a> {
    pub text: &'a str,
    pub syscall: Option<&'a str>,
    pub errno: Option<i32>,
    pub signal: Option<i32>,
    pub exit_code: Option<i32>,
    /// The syscall's path or argument, or a path named in an error message.
    pub path: Option<&'a str>,
    pub exception: Option<&'a str>,
    pub level: Option<Level>,
    pub oom: bool,
    /// Benign patterns apply to failed syscalls only.
    pub syscall_failure: bool,
}

/// Matching order: user first, higher priority, more matchers, then file order (pattern,
/// match table).
type SortKey = (bool, Reverse<i32>, Reverse<usize>, usize, usize);

#[derive(Debug, Clone)]
struct Rule {
    pattern: usize,
    sort_key: SortKey,
    text: Option<usize>,
    exception: Option<Regex>,
    path: Option<Regex>,
    errno: Vec<i32>,
    syscall: Vec<String>,
    signal: Vec<i32>,
    exit_code: Vec<i32>,
    level: Vec<Level>,
    oom: Option<bool>,
}

/// The compiled database.
#[derive(Debug, Clone)]
pub(crate) struct PatternDb {
    patterns: Vec<Pattern>,
    rules: Vec<Rule>,
    texts: RegexSet,
}

impl PatternDb {
    /// The built-in patterns only (compiled once per process).
    pub(crate) fn builtin() -> PatternDb {
        static BUILTIN: LazyLock<PatternDb> =
            LazyLock::new(|| PatternDb::load(None).expect("the built-in pattern file is valid"));
        BUILTIN.clone()
    }

    /// The built-in patterns plus, if given, a user file (`(name shown in errors, contents)`)
    /// whose patterns come first and replace built-in ones with the same id.
    pub(crate) fn load(user: Option<(&str, &str)>) -> Result<PatternDb, PatternError> {
        Self::load_with(BUILTIN_SOURCE, user)
    }

    /// [`PatternDb::load`] with `builtin` in place of the built-in file.
    fn load_with(builtin: &str, user: Option<(&str, &str)>) -> Result<PatternDb, PatternError> {
        let mut defs: Vec<(bool, usize, Compiled)> = Vec::new();
        let mut user_ids = Vec::new();
        if let Some((origin, source)) = user {
            for (i, c) in parse(origin, source)?.into_iter().enumerate() {
                user_ids.push(c.pattern.id.clone());
                defs.push((true, i, c));
            }
        }
        for (i, c) in parse(BUILTIN_ORIGIN, builtin)?.into_iter().enumerate() {
            if !user_ids.contains(&c.pattern.id) {
                defs.push((false, i, c));
            }
        }
        let mut patterns = Vec::new();
        let mut rules = Vec::new();
        let mut texts = Vec::new();
        for (user, index, mut c) in defs {
            c.pattern.user = user;
            let pattern = patterns.len();
            let priority = c.pattern.priority;
            patterns.push(c.pattern);
            for (r, (mut rule, text, specificity)) in c.rules.into_iter().enumerate() {
                rule.pattern = pattern;
                rule.sort_key = (!user, Reverse(priority), Reverse(specificity), index, r);
                if let Some(t) = text {
                    rule.text = Some(texts.len());
                    texts.push(t);
                }
                rules.push(rule);
            }
        }
        rules.sort_by_key(|r| r.sort_key);
        let texts = RegexSetBuilder::new(&texts)
            .multi_line(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| PatternError {
                origin: user.map_or(BUILTIN_ORIGIN, |u| u.0).to_string(),
                line: 0,
                column: 0,
                message: format!("text regexes: {}", regex_message(&e)),
            })?;
        Ok(PatternDb {
            patterns,
            rules,
            texts,
        })
    }

    /// The pattern with this id.
    #[cfg(test)]
    pub(crate) fn get(&self, id: &str) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.id == id)
    }

    /// The rows of `profiler patterns`.
    pub(crate) fn list(&self) -> Vec<PatternInfo> {
        self.patterns
            .iter()
            .map(|p| PatternInfo {
                id: p.id.clone(),
                category: p.category,
                severity: p.severity,
                benign: p.benign,
                priority: p.priority,
                source: if p.user { "user" } else { "builtin" },
                description: p.description.clone(),
            })
            .collect()
    }

    /// The first pattern whose rule matches, in matching order.
    pub(crate) fn classify(&self, s: &Subject) -> Option<&Pattern> {
        let hits = if s.text.is_empty() {
            None
        } else {
            Some(self.texts.matches(s.text))
        };
        let text_hit = |i: usize| hits.as_ref().is_some_and(|h| h.matched(i));
        if !hits.as_ref().is_some_and(|h| h.matched_any())
            && s.errno.is_none()
            && s.signal.is_none()
            && s.exit_code.is_none()
            && s.exception.is_none()
            && s.level.is_none()
            && !s.oom
        {
            return None;
        }
        self.rules
            .iter()
            .find(|r| {
                let p = &self.patterns[r.pattern];
                (!p.benign || s.syscall_failure)
                    && r.text.is_none_or(text_hit)
                    && (r.errno.is_empty() || s.errno.is_some_and(|e| r.errno.contains(&e)))
                    && (r.syscall.is_empty()
                        || s.syscall.is_some_and(|c| r.syscall.iter().any(|x| x == c)))
                    && (r.signal.is_empty() || s.signal.is_some_and(|x| r.signal.contains(&x)))
                    && (r.exit_code.is_empty()
                        || s.exit_code.is_some_and(|x| r.exit_code.contains(&x)))
                    && (r.level.is_empty() || s.level.is_some_and(|x| r.level.contains(&x)))
                    && r.oom.is_none_or(|o| o == s.oom)
                    && r.path
                        .as_ref()
                        .is_none_or(|re| s.path.is_some_and(|p| re.is_match(p)))
                    && r.exception
                        .as_ref()
                        .is_none_or(|re| s.exception.is_some_and(|e| exception_matches(re, e)))
            })
            .map(|r| &self.patterns[r.pattern])
    }
}

/// An exception regex must match the whole name, or its last dotted component.
fn exception_matches(re: &Regex, name: &str) -> bool {
    re.is_match(name)
        || name
            .rsplit_once('.')
            .is_some_and(|(_, last)| re.is_match(last))
}

struct Compiled {
    pattern: Pattern,
    /// (rule, its text regex source, its number of matchers)
    rules: Vec<(Rule, Option<String>, usize)>,
}

fn parse(origin: &str, source: &str) -> Result<Vec<Compiled>, PatternError> {
    let at = |span: Option<Range<usize>>, message: String| {
        let (line, column) = span.map_or((0, 0), |s| line_col(source, s.start));
        PatternError {
            origin: origin.to_string(),
            line,
            column,
            message,
        }
    };
    let file: PatternFile =
        toml::from_str(source).map_err(|e| at(e.span(), e.message().replace('\n', " ")))?;
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    let mut out = Vec::new();
    for def in file.pattern {
        let id = def.id.get_ref().clone();
        let id_span = def.id.span();
        let err = |message: String| at(Some(id_span.clone()), format!("pattern `{id}`: {message}"));
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(err("an id is letters, digits, `_`, `.` and `-`".into()));
        }
        if let Some(first) = seen.get(&id) {
            let (line, _) = line_col(source, first.start);
            return Err(err(format!("duplicate id (first defined on line {line})")));
        }
        seen.insert(id.clone(), id_span.clone());
        let (category, severity) = match (def.category, def.severity, def.benign) {
            (Some(c), Some(s), _) => (c, s),
            (c, s, true) => (c.unwrap_or(Category::System), s.unwrap_or(Severity::Low)),
            (None, _, false) => return Err(err("missing field `category`".into())),
            (_, None, false) => return Err(err("missing field `severity`".into())),
        };
        let priority = match def.priority {
            None => DEFAULT_PRIORITY,
            Some(p) => i32::try_from(*p.get_ref()).map_err(|_| {
                at(
                    Some(p.span()),
                    format!(
                        "pattern `{id}`: priority {} out of range ({} to {})",
                        p.get_ref(),
                        i32::MIN,
                        i32::MAX
                    ),
                )
            })?,
        };
        let top = MatchDef {
            text: def.text,
            exception: def.exception,
            path: def.path,
            errno: def.errno,
            syscall: def.syscall,
            signal: def.signal,
            exit_code: def.exit_code,
            level: def.level,
            oom: def.oom,
        };
        let defs = match (top.count(), def.rules.is_empty()) {
            (0, true) => return Err(err("no matchers: give text, exception, path, errno, syscall, signal, exit_code, level or oom, or [[pattern.match]] tables".into())),
            (_, true) => vec![top],
            (0, false) => def.rules,
            (_, false) => return Err(err("give matchers either on the pattern or in [[pattern.match]] tables, not both".into())),
        };
        let mut rules = Vec::new();
        for (i, m) in defs.into_iter().enumerate() {
            let specificity = m.count();
            if specificity == 0 {
                return Err(err(format!(
                    "[[pattern.match]] table {} has no matchers",
                    i + 1
                )));
            }
            rules.push(compile_rule(m, &at, &id)?);
        }
        out.push(Compiled {
            pattern: Pattern {
                id,
                category,
                severity,
                description: def.description,
                solutions: def.solutions,
                prevention: def.prevention,
                benign: def.benign,
                priority,
                user: false,
            },
            rules,
        });
    }
    Ok(out)
}

fn compile_rule(
    m: MatchDef,
    at: &impl Fn(Option<Range<usize>>, String) -> PatternError,
    id: &str,
) -> Result<(Rule, Option<String>, usize), PatternError> {
    let specificity = m.count();
    let regex = |field: &str, src: &Spanned<String>, anchored: bool| {
        let text = if anchored {
            format!("^(?:{})$", src.get_ref())
        } else {
            src.get_ref().clone()
        };
        RegexBuilder::new(&text)
            .multi_line(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                let msg = format!(
                    "pattern `{id}`: invalid `{field}` regex: {}",
                    regex_message(&e)
                );
                at(Some(src.span()), msg)
            })
    };
    if let Some(t) = &m.text {
        regex("text", t, false)?;
    }
    let exception = m
        .exception
        .as_ref()
        .map(|e| regex("exception", e, true))
        .transpose()?;
    let path = m
        .path
        .as_ref()
        .map(|p| regex("path", p, false))
        .transpose()?;
    let errno = m
        .errno
        .iter()
        .map(|e| match e.get_ref() {
            NameOrNumber::Name(n) => linux::errno_value(n).ok_or_else(|| {
                at(
                    Some(e.span()),
                    format!("pattern `{id}`: unknown errno `{n}`"),
                )
            }),
            NameOrNumber::Number(n) => i32::try_from(*n).ok().filter(|n| *n > 0).ok_or_else(|| {
                at(
                    Some(e.span()),
                    format!("pattern `{id}`: errno {n} out of range"),
                )
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signal = m
        .signal
        .iter()
        .map(|s| {
            let value = match s.get_ref() {
                NameOrNumber::Name(n) => linux::signal_value(n),
                NameOrNumber::Number(n) => i32::try_from(*n).ok().filter(|n| (1..=64).contains(n)),
            };
            value.ok_or_else(|| at(Some(s.span()), format!("pattern `{id}`: unknown signal")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rule = Rule {
        pattern: 0,
        sort_key: (false, Reverse(DEFAULT_PRIORITY), Reverse(0), 0, 0),
        text: None,
        exception,
        path,
        errno,
        syscall: m.syscall,
        signal,
        exit_code: m.exit_code,
        level: m.level,
        oom: m.oom,
    };
    Ok((rule, m.text.map(Spanned::into_inner), specificity))
}

/// The one-line core of a regex error (its `error: ...` line).
fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_string)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The `profiler patterns` table.
pub(crate) fn format_table(rows: &[PatternInfo]) -> String {
    let width = |f: &dyn Fn(&PatternInfo) -> usize, title: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let id_w = width(&|r| r.id.len(), "ID");
    let cat_w = width(&|r| r.category.as_str().len(), "CATEGORY");
    let sev_w = "SEVERITY".len();
    let pri_w = width(&|r| r.priority.to_string().len(), "PRIORITY");
    let mut out = format!(
        "{:id_w$}  {:cat_w$}  {:sev_w$}  {:>pri_w$}  DESCRIPTION\n",
        "ID", "CATEGORY", "SEVERITY", "PRIORITY"
    );
    for r in rows {
        let severity = if r.benign {
            "benign"
        } else {
            r.severity.as_str()
        };
        let category = if r.benign { "-" } else { r.category.as_str() };
        let mut description = r.description.clone().unwrap_or_default();
        if r.source == "user" {
            description.insert_str(0, "[user] ");
        }
        out.push_str(
            format!(
                "{:id_w$}  {:cat_w$}  {:sev_w$}  {:>pri_w$}  {description}",
                r.id, category, severity, r.priority
            )
            .trim_end(),
        );
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[path = "patterns_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "patterns_matchers_tests.rs"]
mod matcher_tests;
