//! The names by which the user side finds the kernel programs and their maps in the eBPF object.
//!
//! Each module of a family (and `counters` and `event`, for the maps every family shares) has a
//! `maps` and a `programs` module with one constant per name, and lists them in its `MAPS` and
//! `PROGRAMS`; [`FAMILIES`] gathers those lists.
//!
//! On the kernel side aya-ebpf names a map after the identifier of its static and a program after
//! its function's (`#[map(name = "...")]` takes only a literal), so a name cannot come from a
//! constant there: profiler-ebpf spells each identifier exactly as its constant here, and checks
//! at compile time with [`same`] that it does.

use crate::{
    control, counters, cpu, errors, event, functions, gpu, memory, process, python, threads,
};

/// The maps and programs of one module.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    /// The module of this crate that names them.
    pub module: &'static str,
    pub maps: &'static [&'static str],
    pub programs: &'static [&'static str],
}

/// Every map and program of the eBPF object, by the module that names it.
pub const FAMILIES: &[Family] = &[
    Family {
        module: "control",
        maps: control::MAPS,
        programs: control::PROGRAMS,
    },
    Family {
        module: "counters",
        maps: counters::MAPS,
        programs: counters::PROGRAMS,
    },
    Family {
        module: "event",
        maps: event::MAPS,
        programs: event::PROGRAMS,
    },
    Family {
        module: "functions",
        maps: functions::MAPS,
        programs: functions::PROGRAMS,
    },
    Family {
        module: "cpu",
        maps: cpu::MAPS,
        programs: cpu::PROGRAMS,
    },
    Family {
        module: "memory",
        maps: memory::MAPS,
        programs: memory::PROGRAMS,
    },
    Family {
        module: "errors",
        maps: errors::MAPS,
        programs: errors::PROGRAMS,
    },
    Family {
        module: "process",
        maps: process::MAPS,
        programs: process::PROGRAMS,
    },
    Family {
        module: "python",
        maps: python::MAPS,
        programs: python::PROGRAMS,
    },
    Family {
        module: "gpu",
        maps: gpu::MAPS,
        programs: gpu::PROGRAMS,
    },
    Family {
        module: "threads",
        maps: threads::MAPS,
        programs: threads::PROGRAMS,
    },
];

/// Every map name of the eBPF object.
pub fn all_maps() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().flat_map(|f| f.maps.iter().copied())
}

/// Every program name of the eBPF object.
pub fn all_programs() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().flat_map(|f| f.programs.iter().copied())
}

/// Whether `a` and `b` are the same string (usable in constants).
pub const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `list` has `name` (usable in constants).
pub const fn contains(list: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < list.len() {
        if same(list[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An identifier aya-ebpf can take a name from: ASCII letters, digits and `_`, not starting
    /// with a digit.
    fn is_identifier(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    #[test]
    fn every_name_is_an_identifier_used_once() {
        let all: std::vec::Vec<&str> = all_maps().chain(all_programs()).collect();
        for (i, name) in all.iter().enumerate() {
            assert!(is_identifier(name), "{name} is not an identifier");
            assert!(!all[..i].contains(name), "{name} is named twice");
        }
        // Statics are upper case, functions lower case.
        assert!(all_maps().all(|m| !m.chars().any(|c| c.is_ascii_lowercase())));
        assert!(all_programs().all(|p| !p.chars().any(|c| c.is_ascii_uppercase())));
    }

    #[test]
    fn const_comparisons() {
        assert!(same("EVENTS", "EVENTS"));
        assert!(!same("EVENTS", "EVENT"));
        assert!(!same("EVENTS", "EVENTZ"));
        assert!(contains(functions::MAPS, functions::maps::FUNC_STATS));
        assert!(!contains(functions::MAPS, memory::maps::MEM_ALLOCS));
    }
}
