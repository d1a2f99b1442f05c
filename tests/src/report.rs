//! The JSON report, read with serde_json and looked at through accessors that panic with context.

use std::path::Path;

use serde_json::Value;

/// A report the profiler wrote.
#[derive(Debug)]
pub struct Report {
    pub json: Value,
}

impl Report {
    /// Reads and parses the report at `path`.
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("report {} is not JSON: {e}\n{text}", path.display()));
        Self { json }
    }

    /// The value at a JSON pointer (`/target/exit_status/code`).
    pub fn at(&self, pointer: &str) -> &Value {
        self.json
            .pointer(pointer)
            .unwrap_or_else(|| panic!("the report has no {pointer}:\n{:#}", self.json))
    }

    pub fn str_at(&self, pointer: &str) -> &str {
        self.at(pointer)
            .as_str()
            .unwrap_or_else(|| panic!("{pointer} is not a string: {}", self.at(pointer)))
    }

    pub fn end_reason(&self) -> &str {
        self.str_at("/profiler/end_reason")
    }

    pub fn functions(&self) -> Vec<Func<'_>> {
        self.at("/functions")
            .as_array()
            .expect("functions is an array")
            .iter()
            .map(Func)
            .collect()
    }

    /// The traced function named `name`; panics with the names there are when it is missing.
    pub fn function(&self, name: &str) -> Func<'_> {
        let functions = self.functions();
        if let Some(f) = functions.iter().find(|f| f.name() == name) {
            return *f;
        }
        let names: Vec<&str> = functions.iter().map(|f| f.name()).collect();
        panic!("no function {name:?} in the report; it has {names:?}");
    }
}

/// One entry of `functions`.
#[derive(Debug, Clone, Copy)]
pub struct Func<'a>(pub &'a Value);

impl<'a> Func<'a> {
    fn field(&self, pointer: &str) -> &'a Value {
        self.0
            .pointer(pointer)
            .unwrap_or_else(|| panic!("function has no {pointer}: {:#}", self.0))
    }

    fn u64(&self, pointer: &str) -> u64 {
        let v = self.field(pointer);
        v.as_u64()
            .unwrap_or_else(|| panic!("{pointer} is not a count: {v} in {:#}", self.0))
    }

    fn f64(&self, pointer: &str) -> f64 {
        let v = self.field(pointer);
        v.as_f64()
            .unwrap_or_else(|| panic!("{pointer} is not a number: {v} in {:#}", self.0))
    }

    fn str(&self, pointer: &str) -> &'a str {
        let v = self.field(pointer);
        v.as_str()
            .unwrap_or_else(|| panic!("{pointer} is not a string: {v} in {:#}", self.0))
    }

    pub fn name(&self) -> &'a str {
        self.str("/function_name")
    }

    pub fn module(&self) -> &'a str {
        self.str("/module")
    }

    pub fn total_calls(&self) -> u64 {
        self.u64("/total_calls")
    }

    pub fn timed_calls(&self) -> u64 {
        self.u64("/timed_calls")
    }

    pub fn in_flight(&self) -> u64 {
        self.u64("/in_flight")
    }

    pub fn abandoned(&self) -> u64 {
        self.u64("/abandoned")
    }

    pub fn total_time(&self) -> f64 {
        self.f64("/total_time")
    }

    pub fn min_time(&self) -> f64 {
        self.f64("/min_time")
    }

    pub fn max_time(&self) -> f64 {
        self.f64("/max_time")
    }

    /// `(tid, calls)` for each thread.
    pub fn threads(&self) -> Vec<(u64, u64)> {
        let threads = self
            .field("/threads")
            .as_array()
            .expect("threads is an array");
        threads
            .iter()
            .map(|t| {
                let t = Func(t);
                (t.u64("/tid"), t.u64("/calls"))
            })
            .collect()
    }

    /// `(function, calls)` for each call site.
    pub fn callers(&self) -> Vec<(&'a str, u64)> {
        let callers = self
            .field("/callers")
            .as_array()
            .expect("callers is an array");
        callers
            .iter()
            .map(|c| {
                let c = Func(c);
                (c.str("/function"), c.u64("/calls"))
            })
            .collect()
    }

    pub fn probe_offset(&self) -> u64 {
        self.u64("/probe/offset")
    }

    pub fn probe_class(&self) -> &'a str {
        self.str("/probe/class")
    }

    pub fn probe_instruction(&self) -> &'a str {
        self.str("/probe/instruction")
    }

    pub fn probe_hits(&self) -> u64 {
        self.u64("/probe/hits")
    }
}
