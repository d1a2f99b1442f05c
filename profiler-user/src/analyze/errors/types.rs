//! Small vocabulary types shared by the pattern database, the grouping and the report.

use serde::{Deserialize, Serialize};

/// What area an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    InputValidation,
    ModelLoading,
    Inference,
    Memory,
    Network,
    System,
    Unknown,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::InputValidation => "input_validation",
            Category::ModelLoading => "model_loading",
            Category::Inference => "inference",
            Category::Memory => "memory",
            Category::Network => "network",
            Category::System => "system",
            Category::Unknown => "unknown",
        }
    }
}

/// How bad an error is; ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The level of an error log line. `critical` covers CRITICAL/CRIT, `fatal` covers
/// FATAL/PANIC/EMERG/ALERT, `error` covers ERROR/ERR/SEVERE and glog `E` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Error,
    Critical,
    Fatal,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Fatal => "fatal",
        }
    }
}

/// Where an error event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Syscall,
    Signal,
    Output,
    Exit,
}

/// One frame of a printed stack trace (Python, Rust, Go, Java).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function: Option<String>,
    /// The source line Python prints under the frame.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
}

/// An earlier exception of a chain ("During handling of the above exception...", Java
/// "Caused by:"), or a sub-exception of a Python exception group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedException {
    pub exception: String,
    pub message: String,
}
