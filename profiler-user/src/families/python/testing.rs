//! The installed interpreters the tests run against.

use std::path::PathBuf;

/// The installation folder of the image's CPython 3.`minor` (pyenv's, under `$PYENV_ROOT` or
/// `/root/.pyenv`), if there is one.
pub(crate) fn interpreter_dir(minor: u8) -> Option<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("3.{minor}.")))
                && p.join(format!("bin/python3.{minor}")).exists()
        })
        .collect();
    found.sort();
    found.pop()
}

/// The image's CPython 3.`minor` executable; panics naming what is missing.
pub(crate) fn interpreter(minor: u8) -> PathBuf {
    interpreter_dir(minor)
        .unwrap_or_else(|| panic!("no Python 3.{minor} installed under pyenv"))
        .join(format!("bin/python3.{minor}"))
}
