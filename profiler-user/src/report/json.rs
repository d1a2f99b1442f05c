//! The JSON report file, mode 0600 (it can hold what the target printed): written to a fresh
//! file and renamed over the path ([`outfile`]), so a report that was already there is replaced,
//! whatever its mode, never reused; and read back (`profiler report FILE.json`).

use std::{
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use super::{Report, SCHEMA_VERSION};
use crate::outfile::{self, Replacement};

/// Checks, before profiling starts, that the report can be written.
pub(crate) fn check_writable(path: &Path) -> std::io::Result<()> {
    outfile::check_replaceable(path)
}

pub(crate) fn write(report: &Report, path: &Path) -> std::io::Result<()> {
    let mut file = Replacement::create(path)?;
    let mut out = BufWriter::new(&mut file);
    serde_json::to_writer_pretty(&mut out, report)?;
    out.write_all(b"\n")?;
    out.flush()?;
    drop(out);
    file.commit()
}

/// A saved report file, read: its text, the JSON value it holds, and its `schema_version`.
pub(crate) struct Saved {
    pub path: PathBuf,
    pub text: String,
    pub value: serde_json::Value,
    pub version: String,
}

impl Saved {
    /// Reads `path`. Why not, in one line: unreadable, not JSON, or JSON without a
    /// `schema_version` (not a report).
    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the report {}: {e}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a JSON report: {e}", path.display()))?;
        let version = value
            .get("schema_version")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                format!(
                    "{} is JSON but not a profiler report (it has no schema_version)",
                    path.display()
                )
            })?
            .to_string();
        Ok(Self {
            path: path.to_path_buf(),
            text,
            value,
            version,
        })
    }

    /// Whether the report has the major schema version this profiler writes.
    pub(crate) fn same_major(&self) -> bool {
        major(&self.version) == major(SCHEMA_VERSION)
    }

    /// The report as the model: one of this major version only (fields a later minor version
    /// added are ignored, those an earlier one lacks are empty). Why not, in one line.
    pub(crate) fn report(&self) -> Result<Report, String> {
        let path = self.path.display();
        if !self.same_major() {
            return Err(format!(
                "{path} has schema {}, and this profiler reads schema {}.x only (it writes \
                 {SCHEMA_VERSION}): print its summary with the profiler that wrote it, or render \
                 it with --html alone",
                self.version,
                major(SCHEMA_VERSION),
            ));
        }
        serde_json::from_str(&self.text)
            .map_err(|e| format!("{path} is not a profiler report this version can read: {e}"))
    }
}

/// The major version of schema version `version` ("3" of "3.1").
fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or("")
}
