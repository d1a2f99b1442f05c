//! Which allocator the target uses: the allocator functions defined in its executable and
//! libraries, and where their probes go.
//!
//! A module that defines `malloc` provides the standard names (glibc, musl, and jemalloc,
//! tcmalloc or mimalloc when they replace it); a module without it may still carry an allocator
//! under a prefix (`je_malloc`, tikv-jemallocator's `_rjem_malloc`, `mi_malloc`). Every module
//! found is probed: a process can use two allocators (a Rust binary with a static jemalloc next to
//! the libc `malloc` its C libraries call), and one that is never called costs nothing.

use std::path::Path;

use blazesym::{
    SymType,
    inspect::{Inspector, source::Elf},
};
use profiler_common::memory::AllocClass;

use crate::{
    placement::{self, Placement},
    symbols::go,
    tracee::{Module, libs::DEFAULT_DIRS},
};

/// Prefixes under which an allocator may define its functions, with the allocator they imply.
const PREFIXES: [(&str, Option<&str>); 4] = [
    ("", None),
    ("je_", Some("jemalloc")),
    ("_rjem_", Some("jemalloc")),
    ("mi_", Some("mimalloc")),
];

/// The functions probed, by name after the prefix, and how each takes its arguments.
const FUNCTIONS: [(&str, AllocClass); 16] = [
    ("malloc", AllocClass::SizeFirst),
    ("calloc", AllocClass::Calloc),
    ("realloc", AllocClass::Realloc),
    ("free", AllocClass::Free),
    ("posix_memalign", AllocClass::PosixMemalign),
    ("aligned_alloc", AllocClass::SizeSecond),
    ("memalign", AllocClass::SizeSecond),
    ("valloc", AllocClass::SizeFirst),
    ("pvalloc", AllocClass::SizeFirst),
    ("reallocarray", AllocClass::ReallocArray),
    ("free_sized", AllocClass::Free),
    ("free_aligned_sized", AllocClass::Free),
    // jemalloc's extended API (tikv-jemallocator releases with sdallocx).
    ("mallocx", AllocClass::SizeFirst),
    ("rallocx", AllocClass::Realloc),
    ("dallocx", AllocClass::Free),
    ("sdallocx", AllocClass::Free),
];

/// mimalloc's own names beyond the standard ones.
const MIMALLOC_EXTRA: [(&str, AllocClass); 6] = [
    ("mi_zalloc", AllocClass::SizeFirst),
    ("mi_malloc_aligned", AllocClass::SizeFirst),
    ("mi_zalloc_aligned", AllocClass::SizeFirst),
    ("mi_realloc_aligned", AllocClass::Realloc),
    ("mi_free_size", AllocClass::Free),
    ("mi_free_aligned", AllocClass::Free),
];

/// C++ `operator new`/`delete`, probed only in a module that is itself the allocator (jemalloc,
/// tcmalloc and mimalloc define them; libstdc++'s call `malloc` and are seen through it).
const CXX: [(&str, AllocClass); 16] = [
    ("_Znwm", AllocClass::SizeFirst),
    ("_Znam", AllocClass::SizeFirst),
    ("_ZnwmRKSt9nothrow_t", AllocClass::SizeFirst),
    ("_ZnamRKSt9nothrow_t", AllocClass::SizeFirst),
    ("_ZnwmSt11align_val_t", AllocClass::SizeFirst),
    ("_ZnamSt11align_val_t", AllocClass::SizeFirst),
    ("_ZnwmSt11align_val_tRKSt9nothrow_t", AllocClass::SizeFirst),
    ("_ZnamSt11align_val_tRKSt9nothrow_t", AllocClass::SizeFirst),
    ("_ZdlPv", AllocClass::Free),
    ("_ZdaPv", AllocClass::Free),
    ("_ZdlPvm", AllocClass::Free),
    ("_ZdaPvm", AllocClass::Free),
    ("_ZdlPvSt11align_val_t", AllocClass::Free),
    ("_ZdaPvSt11align_val_t", AllocClass::Free),
    ("_ZdlPvmSt11align_val_t", AllocClass::Free),
    ("_ZdaPvmSt11align_val_t", AllocClass::Free),
];

/// One probed allocator function.
#[derive(Debug, Clone)]
pub(crate) struct AllocFn {
    /// The symbol name (`malloc`, `je_free`, ...).
    pub name: String,
    pub class: AllocClass,
    /// File offset of the probe (symbol start plus the placement offset).
    pub probe_offset: u64,
    pub placement: Placement,
}

/// An allocator found in one module.
#[derive(Debug, Clone)]
pub(crate) struct Allocator {
    /// "glibc", "musl", "jemalloc", "tcmalloc", "mimalloc", or "unknown".
    pub name: &'static str,
    pub module: Module,
    /// Whether the module is the target's executable (a statically linked allocator).
    pub executable: bool,
    pub functions: Vec<AllocFn>,
}

/// What was found in the target's modules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Detection {
    /// In the order the dynamic linker resolves `malloc`: the executable, then replacement
    /// allocators, then the C library.
    pub allocators: Vec<Allocator>,
    /// Why none was found, when none was.
    pub none_because: Option<String>,
}

/// Finds the allocators in `modules` (the executable first).
pub(crate) fn detect(modules: &[Module]) -> Detection {
    let inspector = Inspector::new();
    let mut allocators = Vec::new();
    let mut in_go = Vec::new();
    for (index, module) in modules.iter().enumerate() {
        if let Some(allocator) = in_module(&inspector, module, index == 0) {
            // No return probe in Go code (see `symbols::go`).
            if go::is_go(&module.open_path) {
                in_go.push(module.file_name());
            } else {
                allocators.push(allocator);
            }
        }
    }
    // The executable interposes first, then anything that replaces the C library's allocator.
    allocators.sort_by_key(|a| match a.name {
        _ if a.executable => 0,
        "glibc" | "musl" => 2,
        _ => 1,
    });
    let none_because = allocators.is_empty().then(|| match in_go.first() {
        Some(file) => format!(
            "the allocator is in {file}, which is Go code (it has a .go.buildinfo section): the \
             memory family places no return probe there, as it would crash the program"
        ),
        None => explain_none(&inspector, modules),
    });
    Detection {
        allocators,
        none_because,
    }
}

/// The libraries an `LD_PRELOAD` value names (separated by spaces or colons), as the dynamic
/// linker finds them: a name with a slash is a path, others are looked up in the system library
/// directories. Those not found are left out (the loader skips them too).
pub(crate) fn preloaded(value: &str) -> Vec<Module> {
    value
        .split([' ', ':'])
        .filter(|s| !s.is_empty())
        .filter_map(|name| {
            let path = if name.contains('/') {
                Some(std::path::PathBuf::from(name))
            } else {
                DEFAULT_DIRS
                    .iter()
                    .map(|d| Path::new(d).join(name))
                    .find(|p| p.exists())
            }?;
            path.exists().then(|| Module {
                open_path: path.clone(),
                path,
            })
        })
        .collect()
}

/// The allocator functions `module` defines, if any.
fn in_module(inspector: &Inspector, module: &Module, executable: bool) -> Option<Allocator> {
    let src = elf(&module.open_path);
    let probe: Vec<String> = PREFIXES.iter().map(|(p, _)| format!("{p}malloc")).collect();
    let names: Vec<&str> = probe.iter().map(String::as_str).collect();
    let found = inspector.lookup(&src, &names).ok()?;
    let (prefix, implied) = PREFIXES
        .iter()
        .zip(&found)
        .find(|(_, syms)| syms.iter().any(is_function))
        .map(|((p, implied), _)| (*p, *implied))?;

    let mut wanted: Vec<(String, AllocClass)> = FUNCTIONS
        .iter()
        .map(|(n, c)| (format!("{prefix}{n}"), *c))
        .collect();
    let file = module.file_name();
    let name = implied.unwrap_or_else(|| identify(inspector, module, &file, executable));
    if prefix == "mi_" {
        wanted.extend(MIMALLOC_EXTRA.iter().map(|(n, c)| (n.to_string(), *c)));
    }
    if prefix.is_empty() && matches!(name, "jemalloc" | "tcmalloc" | "mimalloc") {
        wanted.extend(CXX.iter().map(|(n, c)| (n.to_string(), *c)));
    }
    let names: Vec<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
    let syms = inspector.lookup(&src, &names).ok()?;
    let placed = placement::place_symbols(&module.open_path, syms, |i| {
        if wanted[i].1 == AllocClass::Free {
            placement::Role::Release
        } else {
            placement::Role::Plain
        }
    });
    let functions: Vec<AllocFn> = (wanted.iter().zip(placed))
        .filter_map(|((fname, class), p)| {
            let p = p?;
            Some(AllocFn {
                name: fname.clone(),
                class: *class,
                probe_offset: p.probe_offset,
                placement: p.placement,
            })
        })
        .collect();
    let has = |class: AllocClass| functions.iter().any(|f| f.class == class);
    if !(has(AllocClass::SizeFirst) && has(AllocClass::Free)) {
        return None;
    }
    Some(Allocator {
        name,
        module: module.clone(),
        executable,
        functions,
    })
}

/// The file's own symbol tables (a separate debug file has no file offsets).
fn elf(path: &Path) -> blazesym::inspect::source::Source {
    let mut src = Elf::new(path);
    src.debug_syms = false;
    src.into()
}

fn is_function(sym: &blazesym::inspect::SymInfo<'_>) -> bool {
    sym.sym_type == SymType::Function && sym.addr != 0
}

/// Names the allocator of a module that defines the standard names.
fn identify(inspector: &Inspector, module: &Module, file: &str, executable: bool) -> &'static str {
    let lower = file.to_ascii_lowercase();
    for (needle, name) in [
        ("jemalloc", "jemalloc"),
        ("tcmalloc", "tcmalloc"),
        ("mimalloc", "mimalloc"),
        ("musl", "musl"),
    ] {
        if lower.contains(needle) {
            return name;
        }
    }
    let src = elf(&module.open_path);
    let markers = [
        "__libc_malloc",
        "mallocx",
        "tc_malloc",
        "mi_malloc",
        "__malloc_donate",
    ];
    let found = inspector.lookup(&src, &markers).unwrap_or_default();
    let has = |i: usize| found.get(i).is_some_and(|s| s.iter().any(is_function));
    if has(0) {
        "glibc"
    } else if has(1) {
        "jemalloc"
    } else if has(2) {
        "tcmalloc"
    } else if has(3) {
        "mimalloc"
    } else if has(4) || (!executable && lower.starts_with("libc.")) {
        "musl"
    } else {
        "unknown"
    }
}

/// Why no allocator was found, in one sentence.
fn explain_none(inspector: &Inspector, modules: &[Module]) -> String {
    let Some(exe) = modules.first() else {
        return "no executable or library of the target could be read".into();
    };
    let src = elf(&exe.open_path);
    let go = inspector
        .lookup(&src, &["runtime.mallocgc"])
        .map(|s| s.iter().flatten().any(is_function))
        .unwrap_or(false);
    if go {
        return format!(
            "{} allocates with the Go runtime (runtime.mallocgc), not a malloc-family allocator",
            exe.file_name()
        );
    }
    let (has_symbols, dynamic) = elf_facts(&exe.open_path);
    let searched = format!(
        "none of malloc, je_malloc, _rjem_malloc or mi_malloc is defined in {} or its {} \
         libraries",
        exe.file_name(),
        modules.len() - 1
    );
    match (dynamic, has_symbols) {
        (false, false) => format!(
            "{} is statically linked and stripped: its allocator cannot be found by name",
            exe.file_name()
        ),
        (false, true) => format!("{searched}; it is statically linked with its own allocator"),
        _ => searched,
    }
}

/// Whether the file has a symbol table, and whether it is dynamically linked.
fn elf_facts(path: &Path) -> (bool, bool) {
    use object::Object;
    let Ok(data) = std::fs::read(path) else {
        return (false, true);
    };
    let Ok(file) = object::File::parse(&*data) else {
        return (false, true);
    };
    let symbols =
        file.section_by_name(".symtab").is_some() || file.section_by_name(".dynsym").is_some();
    let dynamic =
        file.section_by_name(".interp").is_some() || file.section_by_name(".dynamic").is_some();
    (symbols, dynamic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc() -> Module {
        let path = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .expect("libc.so.6");
        Module {
            open_path: path.clone(),
            path,
        }
    }

    #[test]
    fn finds_glibc_and_probes_each_address_once() {
        let exe = Module {
            path: "/bin/true".into(),
            open_path: "/bin/true".into(),
        };
        let found = detect(&[exe, libc()]);
        assert!(found.none_because.is_none());
        let [glibc] = &found.allocators[..] else {
            panic!("{:?}", found.allocators);
        };
        assert_eq!(glibc.name, "glibc");
        let names: Vec<&str> = glibc.functions.iter().map(|f| f.name.as_str()).collect();
        for want in [
            "malloc",
            "calloc",
            "realloc",
            "free",
            "posix_memalign",
            "valloc",
        ] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
        let mut addrs: Vec<u64> = glibc.functions.iter().map(|f| f.probe_offset).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), glibc.functions.len(), "{names:?}");
    }

    #[test]
    fn explains_a_target_without_allocator() {
        let exe = Module {
            path: "/nonexistent/prog".into(),
            open_path: "/nonexistent/prog".into(),
        };
        let found = detect(&[exe]);
        assert!(found.allocators.is_empty());
        let why = found.none_because.unwrap();
        assert!(why.contains("none of malloc"), "{why}");
    }
}
