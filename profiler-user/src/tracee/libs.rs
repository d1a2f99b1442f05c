//! The shared libraries an executable will load, found before it runs (for `profiler run`, whose
//! probes are attached before the dynamic loader maps anything), the way ld.so searches for them:
//! DT_RPATH, LD_LIBRARY_PATH, DT_RUNPATH, the ld.so cache, then the default directories.

use std::{
    collections::{HashSet, VecDeque},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use object::{
    Endianness,
    elf::{DT_NEEDED, DT_RPATH, DT_RUNPATH, FileHeader64},
    read::elf::{Dyn, FileHeader},
};

/// The `DT_NEEDED`, `DT_RPATH` and `DT_RUNPATH` entries of an ELF file.
#[derive(Debug, Default)]
struct Dynamic {
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

fn read_dynamic(path: &Path) -> Option<Dynamic> {
    let data = fs::read(path).ok()?;
    let header = FileHeader64::<Endianness>::parse(&*data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, &*data).ok()?;
    let (entries, link) = sections.dynamic(endian, &*data).ok()??;
    let strings = sections.strings(endian, &*data, link).ok()?;
    let mut dynamic = Dynamic::default();
    for entry in entries {
        let tag = entry.d_tag(endian);
        let Ok(value) = entry.string(endian, strings) else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match tag {
            DT_NEEDED => dynamic.needed.push(value),
            DT_RPATH => dynamic.rpath.extend(value.split(':').map(str::to_string)),
            DT_RUNPATH => dynamic.runpath.extend(value.split(':').map(str::to_string)),
            _ => {}
        }
    }
    Some(dynamic)
}

/// Library name -> path, from `ldconfig -p` (the ld.so cache).
fn ld_cache() -> Vec<(String, PathBuf)> {
    let output = ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]
        .iter()
        .find_map(|ldconfig| Command::new(ldconfig).arg("-p").output().ok());
    let Some(output) = output else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (left, path) = line.split_once("=>")?;
            let name = left.split_whitespace().next()?;
            // Only 64-bit x86 libraries are of use to a 64-bit target.
            let x86_64 = left.contains("x86-64");
            x86_64.then(|| (name.to_string(), PathBuf::from(path.trim())))
        })
        .collect()
}

/// The system library directories the dynamic linker searches last.
pub(crate) const DEFAULT_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

fn expand_origin(dir: &str, origin: &Path) -> PathBuf {
    let origin = origin.to_string_lossy();
    PathBuf::from(
        dir.replace("$ORIGIN", &origin)
            .replace("${ORIGIN}", &origin),
    )
}

/// Every library `exe` needs, directly or through other libraries, as paths (what could not be
/// found is left out: the loader will fail on it anyway).
pub(crate) fn needed_libraries(exe: &Path) -> Vec<PathBuf> {
    let cache = ld_cache();
    let ld_library_path: Vec<String> = std::env::var("LD_LIBRARY_PATH")
        .map(|v| {
            v.split(':')
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    let mut seen_names = HashSet::new();
    let mut queue = VecDeque::from([exe.to_path_buf()]);
    while let Some(object) = queue.pop_front() {
        let Some(dynamic) = read_dynamic(&object) else {
            continue;
        };
        let origin = object.parent().unwrap_or(Path::new("/")).to_path_buf();
        for name in dynamic.needed {
            if !seen_names.insert(name.clone()) {
                continue;
            }
            let path = if name.contains('/') {
                Some(expand_origin(&name, &origin))
            } else {
                let rpath = if dynamic.runpath.is_empty() {
                    &dynamic.rpath[..]
                } else {
                    &[]
                };
                rpath
                    .iter()
                    .chain(&ld_library_path)
                    .chain(&dynamic.runpath)
                    .map(|dir| expand_origin(dir, &origin).join(&name))
                    .find(|p| p.is_file())
                    .or_else(|| {
                        cache
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, p)| p.clone())
                    })
                    .or_else(|| {
                        DEFAULT_DIRS
                            .iter()
                            .map(|d| Path::new(d).join(&name))
                            .find(|p| p.is_file())
                    })
            };
            if let Some(path) = path.filter(|p| p.is_file()) {
                queue.push_back(path.clone());
                found.push(path);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libc_of_a_system_binary() {
        let libs = needed_libraries(Path::new("/bin/ls"));
        assert!(
            libs.iter().any(|p| p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libc.so")),
            "{libs:?}"
        );
    }

    #[test]
    fn expands_origin() {
        assert_eq!(
            expand_origin("$ORIGIN/../lib", Path::new("/opt/app/bin")),
            PathBuf::from("/opt/app/bin/../lib")
        );
    }
}
