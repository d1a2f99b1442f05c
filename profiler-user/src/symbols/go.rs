//! Go code, told by the section every Go binary carries (`.go.buildinfo`, the build information
//! the Go linker writes since Go 1.13).
//!
//! A return probe is unsafe in Go code: the kernel's uretprobe swaps the return address on the
//! stack for its trampoline, and the Go runtime, which copies goroutine stacks to grow them and
//! walks them for the garbage collector and for panics, then finds an address it does not know
//! and aborts the program (bcc issue 1320). The families that need return probes do not place
//! them in such a file.

use std::{fs, path::Path};

use object::{Object as _, read::File};

/// The name of the section the Go linker writes.
const BUILDINFO: &str = ".go.buildinfo";

/// Whether the ELF file at `path` is Go code; false when it cannot be read.
pub(crate) fn is_go(path: &Path) -> bool {
    let Ok(data) = fs::read(path) else {
        return false;
    };
    File::parse(&*data).is_ok_and(|file| file.section_by_name(BUILDINFO).is_some())
}

/// Why a function of a Go file is not traced.
pub(crate) const NOT_TRACED: &str = "Go code (the file has a .go.buildinfo section): a return \
     probe there corrupts the goroutine stacks the Go runtime copies and walks, and crashes the \
     program, so the profiler does not trace Go functions";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordinary_elf_file_is_not_go() {
        let exe = std::env::current_exe().unwrap();
        assert!(!is_go(&exe));
        assert!(!is_go(Path::new("/nonexistent")));
    }
}
