//! Files the profiler writes: the JSON report (`--json`), the calibration cache
//! (`/run/profiler-calibration`) and the calibration workload's timings (a file in the temp
//! directory). Each is written to a fresh file with mode 0600 in the same directory, then renamed
//! over its path: a file already there is replaced, never reused, so neither its mode, nor its
//! owner (who could read what is written into a file they own), nor where it pointed (a symlink)
//! carry over to what is written. In a sticky directory the kernel lets only the entry's owner,
//! the directory's owner or `CAP_FOWNER` rename over an entry: a path the profiler may not
//! replace is refused up front ([`check_replaceable`]), in words.

use std::{
    fs::{self, File, OpenOptions, Permissions},
    io::{self, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use crate::tracee::own_capabilities;

/// The mode of every file the profiler writes: what it writes can hold what the target printed.
const MODE: u32 = 0o600;

/// The capability that lifts the sticky bit's rule (`CAP_FOWNER`).
const CAP_FOWNER: u32 = 3;

/// Why another user's file in a sticky directory cannot be replaced.
const STICKY: &str = "another user's file is there, in a sticky directory (such as /tmp) that is \
                      not the profiler's, and only its owner may replace it: choose another path";

/// A file being written in place of `path`: [`Replacement::commit`] renames it over the path;
/// dropped without that, it is removed and the path is left as it was.
pub(crate) struct Replacement {
    file: File,
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Replacement {
    /// Creates the fresh file (mode 0600, in `path`'s directory) that will replace `path`.
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
        let dir = directory(path);
        let mut attempt = 0u32;
        loop {
            let temp = dir.join(format!(
                ".{}.{}.{attempt}.tmp",
                name.to_string_lossy(),
                std::process::id()
            ));
            // create_new: never an existing file, nor the target of a symlink planted there.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(MODE)
                .open(&temp)
            {
                Ok(file) => {
                    let replacement = Self {
                        file,
                        temp,
                        path: path.to_path_buf(),
                        committed: false,
                    };
                    // The umask can only take bits away; this makes the mode exactly 0600.
                    replacement
                        .file
                        .set_permissions(Permissions::from_mode(MODE))?;
                    return Ok(replacement);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Flushes the file to disk and renames it over the path.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.temp, &self.path).map_err(|e| {
            if sticky_refuses(&self.path) {
                io::Error::new(io::ErrorKind::PermissionDenied, STICKY)
            } else {
                e
            }
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Write for Replacement {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `contents` in place of `path` (see the module's documentation).
pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let mut file = Replacement::create(path)?;
    file.write_all(contents.as_ref())?;
    file.commit()
}

/// Checks, before anything is written, that `path` can be replaced: it is no directory, and its
/// directory takes a new file. Leaves nothing behind.
pub(crate) fn check_replaceable(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a directory",
        ));
    }
    if sticky_refuses(path) {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, STICKY));
    }
    // Dropped uncommitted: removed again.
    Replacement::create(path).map(drop)
}

/// The directory `path` is in.
fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Whether the sticky bit keeps the profiler from replacing what is at `path` (a file or a
/// symlink, say one planted in /tmp): in a sticky directory, only the entry's owner, the
/// directory's owner or a process with `CAP_FOWNER` (root has it) may rename over an entry.
fn sticky_refuses(path: &Path) -> bool {
    let Ok(entry) = fs::symlink_metadata(path) else {
        return false;
    };
    let Ok(dir) = fs::metadata(directory(path)) else {
        return false;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    dir.mode() & libc::S_ISVTX != 0
        && entry.uid() != me
        && dir.uid() != me
        && own_capabilities() & (1 << CAP_FOWNER) == 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh directory for one test, removed at the end.
    pub(crate) struct Dir(pub(crate) PathBuf);

    impl Dir {
        pub(crate) fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("outfile-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// The names in the directory, sorted.
        pub(crate) fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn a_new_file_is_0600() {
        let dir = Dir::new("new");
        let path = dir.0.join("report.json");
        write(&path, "{}\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(dir.names(), ["report.json"]);
    }

    #[test]
    fn an_existing_file_is_replaced_not_reused() {
        let dir = Dir::new("existing");
        let path = dir.0.join("report.json");
        fs::write(&path, "old contents, longer than the new\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let old_inode = fs::metadata(&path).unwrap().ino();
        write(&path, "new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(mode(&path), 0o600);
        assert_ne!(fs::metadata(&path).unwrap().ino(), old_inode);
        assert_eq!(dir.names(), ["report.json"]);
    }

    #[test]
    fn a_symlink_is_replaced_not_followed() {
        let dir = Dir::new("symlink");
        let target = dir.0.join("elsewhere");
        fs::write(&target, "untouched\n").unwrap();
        let path = dir.0.join("report.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write(&path, "new\n").unwrap();
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched\n");
    }

    #[test]
    fn an_uncommitted_file_leaves_the_path_as_it_was() {
        let dir = Dir::new("uncommitted");
        let path = dir.0.join("report.json");
        fs::write(&path, "old\n").unwrap();
        let mut file = Replacement::create(&path).unwrap();
        file.write_all(b"half").unwrap();
        drop(file);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(dir.names(), ["report.json"]);
    }

    #[test]
    fn check_replaceable_says_why_not_and_leaves_nothing() {
        let dir = Dir::new("check");
        check_replaceable(&dir.0.join("report.json")).unwrap();
        assert!(dir.names().is_empty());
        let err = check_replaceable(&dir.0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
        let err = check_replaceable(&dir.0.join("missing/report.json")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
