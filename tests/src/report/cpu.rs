//! The `cpu` section (samples, shares per function and thread, unwind failures), looked at
//! through accessors that panic with context. Field names are those of
//! `profiler-user/src/report/cpu.rs`.

use serde_json::Value;

use super::{Node, Report};

impl Report {
    /// The `cpu` section; panics when the report has none.
    pub fn cpu(&self) -> Cpu<'_> {
        Cpu(Node::new(self.at("/cpu"), "the cpu section"))
    }
}

/// The `cpu` section.
#[derive(Debug, Clone, Copy)]
pub struct Cpu<'a>(Node<'a>);

impl<'a> Cpu<'a> {
    /// The whole section, for failure messages.
    pub fn json(&self) -> &'a Value {
        self.0.json
    }

    /// A summary for failure messages: everything but the long lists cut short.
    pub fn context(&self) -> String {
        let mut short = self.0.json.clone();
        for list in ["top_self", "top_total"] {
            if let Some(a) = short.get_mut(list).and_then(Value::as_array_mut) {
                a.truncate(12);
            }
        }
        format!("{short:#}")
    }

    pub fn samples(&self) -> u64 {
        self.0.u64("/samples")
    }

    pub fn frequency(&self) -> u64 {
        self.0.u64("/frequency")
    }

    pub fn complete_percent(&self) -> f64 {
        self.0.f64("/complete_stacks_percent")
    }

    /// `unwind_failures.<kind>`.
    pub fn failures(&self, kind: &str) -> u64 {
        self.0.u64(&format!("/unwind_failures/{kind}"))
    }

    /// `frames.<kind>`.
    pub fn frames(&self, kind: &str) -> u64 {
        self.0.u64(&format!("/frames/{kind}"))
    }

    /// `tables.<field>` as a count.
    pub fn tables(&self, field: &str) -> u64 {
        self.0.u64(&format!("/tables/{field}"))
    }

    /// Samples with `function` anywhere on the stack (`top_total`; 0 when not listed).
    pub fn total_samples(&self, function: &str) -> u64 {
        self.share("/top_total", function)
            .map_or(0, |f| f.u64("/samples"))
    }

    /// Samples with `function` innermost (`top_self`; 0 when not listed).
    pub fn self_samples(&self, function: &str) -> u64 {
        self.share("/top_self", function)
            .map_or(0, |f| f.u64("/samples"))
    }

    fn share(&self, list: &str, function: &str) -> Option<Node<'a>> {
        self.0
            .list(list, "function")
            .into_iter()
            .find(|f| f.str("/function") == function)
    }

    /// `(tid, name, samples)` per thread.
    pub fn threads(&self) -> Vec<(u64, String, u64)> {
        self.0
            .list("/threads", "thread")
            .into_iter()
            .map(|t| (t.u64("/tid"), t.str("/name").to_string(), t.u64("/samples")))
            .collect()
    }

    /// The samples of the thread called `name`.
    pub fn thread_samples(&self, name: &str) -> u64 {
        self.threads()
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(_, _, s)| s)
            .sum()
    }

    /// `(format, path)` of each file written.
    pub fn outputs(&self) -> Vec<(String, String)> {
        self.0
            .list("/outputs", "output")
            .into_iter()
            .map(|o| (o.str("/format").to_string(), o.str("/path").to_string()))
            .collect()
    }
}
