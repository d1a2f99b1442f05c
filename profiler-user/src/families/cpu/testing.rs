//! What the family's tests share: programs built with gcc at test time, and their symbols.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use object::{Object, ObjectSymbol};

/// Builds `sources` (name and text; `.c`, or `.s` assembly) with gcc and `flags` into the
/// executable or shared object `out`, in a folder of its own; None when gcc is not installed.
pub(super) fn gcc(out: &str, sources: &[(&str, &str)], flags: &[&str]) -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cpu-tables-{}-{out}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut gcc = Command::new("gcc");
    gcc.args(flags).arg("-o").arg(dir.join(out));
    for (name, text) in sources {
        std::fs::write(dir.join(name), text).unwrap();
        gcc.arg(dir.join(name));
    }
    let Ok(status) = gcc.status() else {
        eprintln!("gcc not available; skipping");
        return None;
    };
    assert!(status.success(), "gcc {flags:?} failed for {out}");
    Some(dir.join(out))
}

/// The address and size of the symbol `name` of the object at `path` (its static symbols, then
/// its dynamic ones).
pub(super) fn symbol(path: &Path, name: &str) -> (u64, u64) {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let found = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(name));
    let symbol = found.unwrap_or_else(|| panic!("no symbol {name} in {}", path.display()));
    (symbol.address(), symbol.size())
}
