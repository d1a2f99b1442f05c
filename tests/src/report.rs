//! The JSON report, read with serde_json and looked at through accessors that panic with context.

pub mod cpu;
pub mod python;
pub mod threads;

use std::{fmt, path::Path};

use serde_json::Value;

/// A report the profiler wrote.
#[derive(Debug)]
pub struct Report {
    pub json: Value,
}

/// The signals a test's command may die of, by the name the report gives them.
const SIGNALS: [(&str, i32); 18] = [
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGSYS", libc::SIGSYS),
];

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

    /// The exit status `profiler run` must end with, from what the report says of its command:
    /// the command's exit code, 128 + N when signal N ended it; None when it did not exit.
    pub fn run_status(&self) -> Option<i32> {
        if self.at("/target/exited").as_bool() != Some(true) {
            return None;
        }
        if let Some(code) = self.at("/target/exit_status/code").as_i64() {
            return Some(i32::try_from(code).expect("an exit code"));
        }
        let name = self.str_at("/target/exit_status/signal");
        let signal = SIGNALS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no number for signal {name}"))
            .1;
        Some(128 + signal)
    }

    pub fn functions(&self) -> Vec<Func<'_>> {
        self.at("/functions")
            .as_array()
            .expect("functions is an array")
            .iter()
            .map(Func)
            .collect()
    }

    pub fn families(&self) -> Vec<Family<'_>> {
        Node::new(&self.json, "the report")
            .list("/families", "family")
            .into_iter()
            .map(Family)
            .collect()
    }

    /// The entry of family `name`; panics with the names there are when it is missing.
    pub fn family(&self, name: &str) -> Family<'_> {
        named(&self.families(), "family", name, |f| f.name())
    }

    /// The `errors` section, or None when the report has none (or it is null).
    pub fn errors_section(&self) -> Option<Errors<'_>> {
        self.json
            .get("errors")
            .filter(|e| !e.is_null())
            .map(|json| Errors(Node::new(json, "the errors section")))
    }

    /// The `errors` section; panics when the report has none.
    pub fn errors(&self) -> Errors<'_> {
        self.errors_section()
            .unwrap_or_else(|| panic!("the report has no errors section:\n{:#}", self.json))
    }

    /// The traced function named `name`; panics with the names there are when it is missing.
    pub fn function(&self, name: &str) -> Func<'_> {
        named(&self.functions(), "function", name, |f| f.name())
    }

    /// `skipped_functions[]`: (function name, reason) of each matched function not traced.
    pub fn skipped_functions(&self) -> Vec<(String, String)> {
        Node::new(&self.json, "the report")
            .list("/skipped_functions", "skipped function")
            .into_iter()
            .map(|s| {
                let name = s.str("/function_name").to_string();
                (name, s.str("/reason").to_string())
            })
            .collect()
    }

    /// `processes[]`: the target first, then the children seen, in fork order.
    pub fn processes(&self) -> Vec<Proc> {
        Node::new(&self.json, "the report")
            .list("/processes", "process")
            .into_iter()
            .map(|p| Proc {
                pid: p.u64("/pid") as u32,
                parent_pid: p.field("/parent_pid").as_u64().map(|v| v as u32),
                command: strings(p, "/command"),
                exit_code: p.json.pointer("/exit_status/code").and_then(Value::as_i64),
                exited: p.json.get("exit_status").is_some(),
                followed: p.bool("/followed"),
            })
            .collect()
    }
}

/// One entry of `processes[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub parent_pid: Option<u32>,
    pub command: Vec<String>,
    /// `exit_status.code`, when it exited normally while profiled.
    pub exit_code: Option<i64>,
    /// Whether it has an `exit_status`.
    pub exited: bool,
    pub followed: bool,
}

/// The strings of the array at `pointer` of `node`.
fn strings(node: Node<'_>, pointer: &str) -> Vec<String> {
    node.list(pointer, "string")
        .into_iter()
        .map(|s| s.str("").to_string())
        .collect()
}

/// The one of `entries` (each a `kind`) that `name_of` calls `name`; panics with the names there
/// are when none is.
fn named<T: Copy>(entries: &[T], kind: &str, name: &str, name_of: impl Fn(&T) -> &str) -> T {
    if let Some(entry) = entries.iter().find(|e| name_of(e) == name) {
        return *entry;
    }
    let names: Vec<&str> = entries.iter().map(name_of).collect();
    panic!("no {kind} {name:?} in the report; it has {names:?}");
}

/// A JSON object in the report, `what` naming it in the messages of accessors that panic.
#[derive(Debug, Clone, Copy)]
struct Node<'a> {
    json: &'a Value,
    what: &'static str,
}

impl<'a> Node<'a> {
    fn new(json: &'a Value, what: &'static str) -> Self {
        Self { json, what }
    }

    fn field(self, pointer: &str) -> &'a Value {
        self.json
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{} has no {pointer}: {:#}", self.what, self.json))
    }

    fn u64(self, pointer: &str) -> u64 {
        let v = self.field(pointer);
        v.as_u64()
            .unwrap_or_else(|| panic!("{pointer} is not a count: {v} in {:#}", self.json))
    }

    fn f64(self, pointer: &str) -> f64 {
        let v = self.field(pointer);
        v.as_f64()
            .unwrap_or_else(|| panic!("{pointer} is not a number: {v} in {:#}", self.json))
    }

    fn bool(self, pointer: &str) -> bool {
        let v = self.field(pointer);
        v.as_bool()
            .unwrap_or_else(|| panic!("{pointer} is not a bool: {v} in {:#}", self.json))
    }

    fn str(self, pointer: &str) -> &'a str {
        let v = self.field(pointer);
        v.as_str()
            .unwrap_or_else(|| panic!("{pointer} is not a string: {v} in {:#}", self.json))
    }

    /// A string that may be missing or null (None); any other value panics.
    fn opt_str(self, pointer: &str) -> Option<&'a str> {
        match self.json.pointer(pointer) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .unwrap_or_else(|| panic!("{pointer} is not a string: {v} in {:#}", self.json)),
            ),
        }
    }

    /// The array at `pointer`, each element seen as a `what`.
    fn list(self, pointer: &str, what: &'static str) -> Vec<Node<'a>> {
        let v = self.field(pointer);
        v.as_array()
            .unwrap_or_else(|| panic!("{pointer} is not an array: {v} in {:#}", self.json))
            .iter()
            .map(|json| Node::new(json, what))
            .collect()
    }
}

/// One entry of `functions`.
#[derive(Debug, Clone, Copy)]
pub struct Func<'a>(pub &'a Value);

impl<'a> Func<'a> {
    fn node(&self) -> Node<'a> {
        Node::new(self.0, "function")
    }

    fn u64(&self, pointer: &str) -> u64 {
        self.node().u64(pointer)
    }

    fn f64(&self, pointer: &str) -> f64 {
        self.node().f64(pointer)
    }

    fn str(&self, pointer: &str) -> &'a str {
        self.node().str(pointer)
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

    pub fn average_time(&self) -> f64 {
        self.f64("/average_time")
    }

    pub fn net_average_time(&self) -> f64 {
        self.f64("/net_average_time")
    }

    pub fn net_total_time(&self) -> f64 {
        self.f64("/net_total_time")
    }

    pub fn probe_dominated(&self) -> bool {
        self.node().bool("/probe_dominated")
    }

    pub fn probe_hits_within(&self) -> u64 {
        self.u64("/probe_hits_within")
    }

    pub fn min_time(&self) -> f64 {
        self.f64("/min_time")
    }

    pub fn max_time(&self) -> f64 {
        self.f64("/max_time")
    }

    /// `(tid, calls)` for each thread.
    pub fn threads(&self) -> Vec<(u64, u64)> {
        self.node()
            .list("/threads", "thread")
            .into_iter()
            .map(|t| (t.u64("/tid"), t.u64("/calls")))
            .collect()
    }

    /// `(function, calls)` for each call site.
    pub fn callers(&self) -> Vec<(&'a str, u64)> {
        self.node()
            .list("/callers", "caller")
            .into_iter()
            .map(|c| (c.str("/function"), c.u64("/calls")))
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

    /// The calls' `memory`, when the memory family's allocator probes ran (None without it).
    pub fn memory(&self) -> Option<FuncMemory> {
        let m = Node::new(self.0.get("memory")?, "function memory");
        Some(FuncMemory {
            allocations: m.u64("/allocations"),
            allocated_bytes: m.u64("/allocated_bytes"),
            frees: m.u64("/frees"),
            freed_bytes: m.u64("/freed_bytes"),
            net_bytes_per_call: m.f64("/net_bytes_per_call"),
            average_memory_peak: m.f64("/average_memory_peak"),
            max_memory_peak: m.u64("/max_memory_peak"),
        })
    }
}

/// A traced function's `memory` object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FuncMemory {
    pub allocations: u64,
    pub allocated_bytes: u64,
    pub frees: u64,
    pub freed_bytes: u64,
    pub net_bytes_per_call: f64,
    pub average_memory_peak: f64,
    pub max_memory_peak: u64,
}

/// One entry of `families`.
#[derive(Debug, Clone, Copy)]
pub struct Family<'a>(Node<'a>);

impl<'a> Family<'a> {
    pub fn name(&self) -> &'a str {
        self.0.str("/name")
    }

    pub fn status(&self) -> &'a str {
        self.0.str("/status")
    }

    pub fn probes(&self) -> u64 {
        self.0.u64("/probes")
    }

    /// Why the family is idle, left out or failed, or what an attached one put where.
    pub fn note(&self) -> Option<&'a str> {
        self.0.opt_str("/note")
    }
}

impl fmt::Display for Family<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.json)
    }
}

/// The `errors` section.
#[derive(Debug, Clone, Copy)]
pub struct Errors<'a>(Node<'a>);

impl<'a> Errors<'a> {
    pub fn events(&self) -> Vec<Event<'a>> {
        self.0
            .list("/events", "event")
            .into_iter()
            .map(Event)
            .collect()
    }

    /// The events that matched pattern `id`.
    pub fn with_pattern(&self, id: &str) -> Vec<Event<'a>> {
        self.events()
            .into_iter()
            .filter(|e| e.pattern() == Some(id))
            .collect()
    }

    /// `(syscall, errno, count)` for every kind of failed syscall, benign or not.
    pub fn syscall_failures(&self) -> Vec<(&'a str, &'a str, u64)> {
        self.0
            .list("/syscall_failures", "syscall failure")
            .into_iter()
            .map(|f| (f.str("/syscall"), f.str("/errno"), f.u64("/count")))
            .collect()
    }

    /// Incidents: a failure and its consequences count once.
    pub fn total(&self) -> u64 {
        self.0.u64("/total")
    }

    /// Whether every count of the section is exact.
    pub fn exact(&self) -> bool {
        self.0.bool("/exact")
    }

    /// The error events of `source` (`syscall`, `output`, `signal`, `exit`), counted.
    pub fn by_source(&self, source: &str) -> u64 {
        self.0.u64(&format!("/by_source/{source}"))
    }

    /// The entry of pattern `id` in `patterns`; panics with the ids there are when it is
    /// missing.
    pub fn pattern(&self, id: &str) -> PatternStat<'a> {
        let all: Vec<PatternStat> = self
            .0
            .list("/patterns", "pattern")
            .into_iter()
            .map(PatternStat)
            .collect();
        named(&all, "pattern", id, |p| p.id())
    }

    /// `(syscall, errno, pattern, count)` for every kind of expected failure.
    pub fn benign(&self) -> Vec<(&'a str, &'a str, &'a str, u64)> {
        self.0
            .list("/benign", "benign failure")
            .into_iter()
            .map(|b| {
                (
                    b.str("/syscall"),
                    b.str("/errno"),
                    b.str("/pattern"),
                    b.u64("/count"),
                )
            })
            .collect()
    }

    /// The exact count of failures of `syscall` with `errno` (0: none).
    pub fn failures_of(&self, syscall: &str, errno: &str) -> u64 {
        self.syscall_failures()
            .iter()
            .find(|&&(s, e, _)| s == syscall && e == errno)
            .map_or(0, |f| f.2)
    }

    /// The events, one line each (pattern, type, source, message), for failure messages.
    pub fn describe(&self) -> String {
        self.events()
            .iter()
            .map(|e| {
                ["pattern", "error_type", "source", "message"].map(|k| e.0.json[k].to_string())
            })
            .map(|fields| fields.join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One entry of `errors.patterns`.
#[derive(Debug, Clone, Copy)]
pub struct PatternStat<'a>(Node<'a>);

impl<'a> PatternStat<'a> {
    pub fn id(&self) -> &'a str {
        self.0.str("/id")
    }

    /// Incidents with an event of the pattern.
    pub fn count(&self) -> u64 {
        self.0.u64("/count")
    }

    /// Events of the pattern.
    pub fn occurrences(&self) -> u64 {
        self.0.u64("/occurrences")
    }

    pub fn exact(&self) -> bool {
        self.0.bool("/exact")
    }

    /// `increasing`, `stable`, `decreasing` or `single`.
    pub fn trend(&self) -> &'a str {
        self.0.str("/trend")
    }
}

impl fmt::Display for PatternStat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.json)
    }
}

/// One entry of `errors.events`.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a>(Node<'a>);

impl<'a> Event<'a> {
    /// The value at a JSON pointer in the event (`/context/frames`).
    pub fn at(&self, pointer: &str) -> &'a Value {
        self.0.field(pointer)
    }

    /// The id of the pattern it matched, None when it matched none.
    pub fn pattern(&self) -> Option<&'a str> {
        self.0.opt_str("/pattern")
    }

    pub fn error_type(&self) -> &'a str {
        self.0.str("/error_type")
    }

    pub fn category(&self) -> &'a str {
        self.0.str("/category")
    }

    pub fn severity(&self) -> &'a str {
        self.0.str("/severity")
    }

    /// `syscall`, `signal`, `output` or `exit`.
    pub fn source(&self) -> &'a str {
        self.0.str("/source")
    }

    pub fn message(&self) -> &'a str {
        self.0.str("/message")
    }

    pub fn solutions(&self) -> Vec<&'a str> {
        self.0
            .list("/solutions", "solution")
            .into_iter()
            .map(|s| s.str(""))
            .collect()
    }

    /// Unique in the report; incident links name events by it.
    pub fn id(&self) -> u64 {
        self.0.u64("/id")
    }

    /// The root cause of the incident the event is a consequence of; None for a root.
    pub fn caused_by(&self) -> Option<u64> {
        match self.0.field("/caused_by") {
            Value::Null => None,
            v => Some(
                v.as_u64()
                    .unwrap_or_else(|| panic!("/caused_by is not an id: {v}")),
            ),
        }
    }

    /// For a root: the events of its incident.
    pub fn led_to(&self) -> Vec<u64> {
        self.0
            .list("/led_to", "event id")
            .into_iter()
            .map(|id| id.u64(""))
            .collect()
    }

    /// The pid of the process the event happened in.
    pub fn pid(&self) -> u32 {
        self.0.u64("/pid") as u32
    }

    /// That process's command line.
    pub fn command(&self) -> Vec<String> {
        strings(self.0, "/command")
    }

    /// A string of `context` (`path`, `exception`, `signal`, ...), None when it has none.
    pub fn context(&self, key: &str) -> Option<&'a str> {
        self.0.opt_str(&format!("/context/{key}"))
    }
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.json)
    }
}
