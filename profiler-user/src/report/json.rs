//! The JSON report file, mode 0600 (it can hold what the target printed): written to a fresh
//! file and renamed over the path ([`outfile`]), so a report that was already there is replaced,
//! whatever its mode, never reused.

use std::{
    io::{BufWriter, Write},
    path::Path,
};

use super::Report;
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
