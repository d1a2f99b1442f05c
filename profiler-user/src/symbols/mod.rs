//! Symbols: the functions of an ELF file (to resolve `--func`), and addresses back to names.

pub(crate) mod data;
pub(crate) mod go;
pub(crate) mod kernel;
pub(crate) mod resolve;
pub(crate) mod symbolize;
pub(crate) mod unwind;

use std::{ops::ControlFlow, path::Path};

use blazesym::{
    SymType,
    inspect::{Inspector, source::Elf},
};

/// A function defined in an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FuncSym {
    /// The name in the symbol table.
    pub raw: String,
    /// Demangled (Rust hash suffix dropped), or the raw name for C.
    pub name: String,
    /// Virtual address in the file.
    pub addr: u64,
    /// Size in bytes (0 when unknown).
    pub size: u64,
    /// Offset of the first byte in the file: where a uprobe attaches.
    pub file_offset: u64,
}

/// Demangles a Rust (legacy or v0) or C++ symbol; other names are returned as they are.
pub(crate) fn demangle(raw: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(raw) {
        return format!("{d:#}");
    }
    if raw.starts_with("_Z")
        && let Ok(sym) = cpp_demangle::Symbol::new(raw)
        && let Ok(d) = sym.demangle()
    {
        return d;
    }
    raw.to_string()
}

/// Every function symbol of the file with a file offset, one per address (aliases keep the
/// shortest name, as the canonical one usually is).
pub(crate) fn functions(path: &Path) -> Result<Vec<FuncSym>, blazesym::Error> {
    let inspector = Inspector::new();
    let mut src = Elf::new(path);
    src.debug_syms = false;
    let mut out: Vec<FuncSym> = Vec::new();
    inspector.for_each(&src.into(), |sym| {
        if sym.sym_type == SymType::Function
            && let Some(file_offset) = sym.file_offset
            && sym.addr != 0
        {
            out.push(FuncSym {
                raw: sym.name.to_string(),
                name: demangle(&sym.name),
                addr: sym.addr,
                size: sym.size.unwrap_or(0) as u64,
                file_offset,
            });
        }
        ControlFlow::Continue(())
    })?;
    out.sort_by(|a, b| {
        (a.file_offset, a.raw.len(), &a.raw).cmp(&(b.file_offset, b.raw.len(), &b.raw))
    });
    out.dedup_by_key(|f| f.file_offset);
    Ok(out)
}

/// The system's libc, for tests that read a real library.
#[cfg(test)]
pub(crate) fn system_libc() -> &'static str {
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libc.so.6")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_rust_and_cpp() {
        assert_eq!(
            demangle("_ZN6victim7compute17h0123456789abcdefE"),
            "victim::compute"
        );
        assert_eq!(demangle("_ZN3foo3barEi"), "foo::bar(int)");
        assert_eq!(demangle("malloc"), "malloc");
    }

    #[test]
    fn lists_functions_of_libc() {
        let funcs = functions(Path::new(system_libc())).unwrap();
        let malloc = funcs.iter().find(|f| f.name == "malloc").expect("malloc");
        assert!(malloc.size > 0 && malloc.file_offset > 0);
    }
}
