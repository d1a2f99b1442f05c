//! Addresses of the target's static data back to their symbols (`lock_a`, `GIL+16`), so that a
//! lock that is a global is named in the report.
//!
//! Each module's data symbols come from its own symbol table; its load bias is where its first
//! mapping starts, less its first loadable segment's address (zero for a fixed-address
//! executable). `.bss` past the file's end is mapped anonymously, so the address is matched
//! against the symbols' ranges, not against the mappings.

use std::{collections::HashMap, fs, path::PathBuf};

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _, SymbolKind};

use super::symbolize::MappingSnapshot;

/// One module's data symbols, sorted by address, and its first segment's address.
#[derive(Debug, Default)]
struct Module {
    first_vaddr: u64,
    fixed: bool,
    symbols: Vec<(u64, u64, String)>,
}

/// Data symbols of the modules seen, parsed once each.
#[derive(Debug, Default)]
pub(crate) struct DataSymbols {
    modules: HashMap<PathBuf, Option<Module>>,
}

impl DataSymbols {
    /// `symbol` or `symbol+offset` for `addr` in the target, when a module defines it.
    pub(crate) fn name(&mut self, maps: &MappingSnapshot, addr: u64) -> Option<String> {
        for (path, base) in maps.module_bases() {
            let module = self
                .modules
                .entry(path.clone())
                .or_insert_with(|| parse(&path))
                .as_ref()?;
            let bias = if module.fixed {
                0
            } else {
                base.wrapping_sub(module.first_vaddr & !0xfff)
            };
            let vaddr = addr.wrapping_sub(bias);
            let i = module.symbols.partition_point(|(a, _, _)| *a <= vaddr);
            if i == 0 {
                continue;
            }
            let (start, size, name) = &module.symbols[i - 1];
            let offset = vaddr - start;
            if offset < (*size).max(1) {
                return Some(if offset == 0 {
                    name.clone()
                } else {
                    format!("{name}+{offset}")
                });
            }
        }
        None
    }
}

fn parse(path: &std::path::Path) -> Option<Module> {
    let data = fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let first_vaddr = file.segments().map(|s| s.address()).min()?;
    let mut symbols: Vec<(u64, u64, String)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Data && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), super::demangle(s.name().ok()?))))
        .collect();
    symbols.sort();
    Some(Module {
        first_vaddr,
        fixed: file.kind() == object::ObjectKind::Executable,
        symbols,
    })
}
