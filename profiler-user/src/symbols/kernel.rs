//! Kernel addresses back to function names (`/proc/kallsyms`), and the functions of the `[vdso]`,
//! the kernel's code mapped into every process (from its ELF image, read out of the target).

use std::collections::HashMap;

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Kernel, Source},
};
use object::{Object as _, ObjectSymbol as _};

use crate::report::Frame;

/// The module name of kernel frames.
pub(crate) const KERNEL_MODULE: &str = "[kernel]";

/// Symbolizes kernel addresses, each once.
pub(crate) struct KernelSymbols {
    symbolizer: Symbolizer,
    cache: HashMap<u64, Frame>,
}

impl KernelSymbols {
    pub(crate) fn new() -> Self {
        Self {
            symbolizer: Symbolizer::new(),
            cache: HashMap::new(),
        }
    }

    /// The frame of kernel address `addr` (`??` when kallsyms does not name it, e.g. when
    /// `kptr_restrict` hides the addresses).
    pub(crate) fn frame(&mut self, addr: u64) -> Frame {
        if let Some(f) = self.cache.get(&addr) {
            return f.clone();
        }
        let src = Source::Kernel(Kernel {
            vmlinux: blazesym::MaybeDefault::None,
            ..Kernel::default()
        });
        let function = match self.symbolizer.symbolize_single(&src, Input::AbsAddr(addr)) {
            Ok(Symbolized::Sym(sym)) => sym.name.into_owned(),
            _ => "??".into(),
        };
        let frame = Frame {
            function,
            module: KERNEL_MODULE.into(),
            offset: format!("{addr:#x}"),
            file: None,
            line: None,
        };
        self.cache.insert(addr, frame.clone());
        frame
    }
}

/// The frame of `offset` in an ELF image held in memory (the `[vdso]`): the function of its
/// symbol table that holds it.
pub(crate) fn image_frame(image: &[u8], offset: u64, module: &str) -> Frame {
    let function = object::File::parse(image)
        .ok()
        .and_then(|file| {
            // The image is mapped from its start: an address in it is its offset plus the
            // lowest segment's address (0 for the vDSO).
            let base = file.segments().next().map_or(0, |s| {
                use object::ObjectSegment as _;
                s.address()
            });
            let addr = base + offset;
            file.dynamic_symbols()
                .chain(file.symbols())
                .filter(|s| s.is_definition() && s.size() > 0)
                .find(|s| (s.address()..s.address() + s.size()).contains(&addr))
                .and_then(|s| s.name().ok().map(str::to_string))
        })
        .unwrap_or_else(|| "??".into());
    Frame {
        function,
        module: module.into(),
        offset: format!("{offset:#x}"),
        file: None,
        line: None,
    }
}
