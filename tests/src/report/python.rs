//! The `python` section (the interpreter, the walks, the exceptions raised per site) and the
//! errors section's exact `python_exceptions`, looked at through accessors that panic with
//! context. Field names are those of `profiler-user/src/report/python.rs`.

use serde_json::Value;

use super::{Node, Report};

impl Report {
    /// The `python` section; panics when the report has none.
    pub fn python(&self) -> Python<'_> {
        Python(Node::new(self.at("/python"), "the python section"))
    }

    /// The errors section's exact counts of raised exceptions, as sites.
    pub fn python_exception_counts(&self) -> Vec<Site> {
        self.at("/errors/python_exceptions")
            .as_array()
            .expect("errors.python_exceptions is an array")
            .iter()
            .map(Site::of)
            .collect()
    }
}

/// The `python` section.
#[derive(Debug, Clone, Copy)]
pub struct Python<'a>(Node<'a>);

/// One exception type raised at one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub exception: String,
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub raised: u64,
    pub uncaught: u64,
    pub message: Option<String>,
}

impl Site {
    fn of(v: &Value) -> Self {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        Self {
            exception: s("exception").unwrap_or_default(),
            function: s("function").unwrap_or_default(),
            file: s("file"),
            line: n("line"),
            raised: n("raised").unwrap_or_else(|| panic!("a site without raised: {v}")),
            uncaught: n("uncaught").unwrap_or_default(),
            message: s("message"),
        }
    }
}

impl<'a> Python<'a> {
    /// The section, with the site list cut short, for failure messages.
    pub fn context(&self) -> String {
        let mut short = self.0.json.clone();
        if let Some(a) = short
            .pointer_mut("/exceptions/sites")
            .and_then(Value::as_array_mut)
        {
            a.truncate(8);
        }
        format!("{short:#}")
    }

    /// The interpreter's version (`3.11.2`); panics when none was found.
    pub fn version(&self) -> &'a str {
        self.0.str("/interpreter/version")
    }

    /// Where the offsets came from.
    pub fn offsets(&self) -> &'a str {
        self.0.str("/interpreter/offsets")
    }

    pub fn raised(&self) -> u64 {
        self.0.u64("/exceptions/raised")
    }

    pub fn uncaught(&self) -> u64 {
        self.0.u64("/exceptions/uncaught")
    }

    pub fn threads(&self) -> u64 {
        self.0.u64("/threads")
    }

    pub fn sites(&self) -> Vec<Site> {
        self.0
            .field("/exceptions/sites")
            .as_array()
            .expect("sites is an array")
            .iter()
            .map(Site::of)
            .collect()
    }

    /// The sites of `exception` raised in `function`.
    pub fn sites_of(&self, exception: &str, function: &str) -> Vec<Site> {
        self.sites()
            .into_iter()
            .filter(|s| s.exception == exception && s.function == function)
            .collect()
    }
}
