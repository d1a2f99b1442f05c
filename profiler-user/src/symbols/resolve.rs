//! `--func` specs: `GLOB` (main executable) or `LIB:GLOB` (a library by file-name prefix or by
//! path), resolved to the functions to trace.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use globset::GlobBuilder;

use super::{FuncSym, functions};
use crate::{error::ProfilerError, tracee::Module};

/// A parsed `--func` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FuncSpec {
    /// The library part, if any.
    pub library: Option<String>,
    pub glob: String,
}

impl FuncSpec {
    /// Splits at the first single `:` (a `::` belongs to a Rust or C++ path).
    pub(crate) fn parse(spec: &str) -> Result<Self, ProfilerError> {
        let bytes = spec.as_bytes();
        let split = (0..bytes.len()).find(|&i| {
            bytes[i] == b':' && bytes.get(i + 1) != Some(&b':') && (i == 0 || bytes[i - 1] != b':')
        });
        let (library, glob) = match split {
            Some(i) => (Some(spec[..i].to_string()), spec[i + 1..].to_string()),
            None => (None, spec.to_string()),
        };
        if glob.is_empty() || library.as_deref() == Some("") {
            return Err(ProfilerError::Spec(format!(
                "--func {spec:?}: expected GLOB or LIB:GLOB"
            )));
        }
        Ok(Self { library, glob })
    }
}

/// One function to trace.
#[derive(Debug, Clone)]
pub(crate) struct TracedFunction {
    pub module: Module,
    pub sym: FuncSym,
}

/// Picks the module a `LIB` part names: a path, or a file-name prefix. Among prefix matches, a
/// name that continues with `.so`, `-` or `.` after the prefix wins (`libc` is `libc.so.6`, not
/// `libcrypto.so.3`).
pub(crate) fn find_library<'a>(
    lib: &str,
    modules: &'a [Module],
) -> Result<&'a Module, ProfilerError> {
    if lib.contains('/') {
        return modules
            .iter()
            .find(|m| m.path == Path::new(lib))
            .ok_or_else(|| {
                ProfilerError::Spec(format!("library {lib} is not mapped by the target"))
            });
    }
    let prefixed: Vec<&Module> = modules
        .iter()
        .filter(|m| m.file_name().starts_with(lib))
        .collect();
    let exact: Vec<&Module> = prefixed
        .iter()
        .copied()
        .filter(|m| {
            let rest = &m.file_name()[lib.len()..];
            rest.is_empty()
                || rest.starts_with(".so")
                || rest.starts_with('-')
                || rest.starts_with('.')
        })
        .collect();
    let candidates = if exact.is_empty() { prefixed } else { exact };
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut names: Vec<String> = modules.iter().map(Module::file_name).collect();
            names.sort();
            names.dedup();
            Err(ProfilerError::Spec(format!(
                "library {lib:?} is not mapped by the target (mapped: {})",
                names.join(", ")
            )))
        }
        many => Err(ProfilerError::Spec(format!(
            "library {lib:?} is ambiguous: {}",
            many.iter()
                .map(|m| m.file_name())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Resolves every spec against the executable (`modules[0]`) and the libraries; each spec must
/// match at least one function. The result has no duplicates.
pub(crate) fn resolve(
    specs: &[FuncSpec],
    modules: &[Module],
    max_funcs: usize,
) -> Result<Vec<TracedFunction>, ProfilerError> {
    let mut symbol_cache: HashMap<PathBuf, Vec<FuncSym>> = HashMap::new();
    let mut traced: Vec<TracedFunction> = Vec::new();
    for spec in specs {
        let module = match &spec.library {
            Some(lib) => find_library(lib, modules)?,
            None => modules
                .first()
                .ok_or_else(|| ProfilerError::Spec("the target has no executable".into()))?,
        };
        if !symbol_cache.contains_key(&module.open_path) {
            let syms = functions(&module.open_path).map_err(|e| {
                ProfilerError::Spec(format!(
                    "cannot read symbols of {}: {e}",
                    module.path.display()
                ))
            })?;
            symbol_cache.insert(module.open_path.clone(), syms);
        }
        let syms = &symbol_cache[&module.open_path];
        let matcher = GlobBuilder::new(&spec.glob)
            .literal_separator(false)
            .build()
            .map_err(|e| ProfilerError::Spec(format!("--func {:?}: {e}", spec.glob)))?
            .compile_matcher();
        let before = traced.len();
        for sym in syms {
            if matcher.is_match(&sym.name) || matcher.is_match(&sym.raw) {
                let duplicate = traced.iter().any(|t| {
                    t.module.open_path == module.open_path && t.sym.file_offset == sym.file_offset
                });
                if !duplicate {
                    traced.push(TracedFunction {
                        module: module.clone(),
                        sym: sym.clone(),
                    });
                }
            }
        }
        let matched_before = traced[..before]
            .iter()
            .any(|t| t.module.open_path == module.open_path && matcher.is_match(&t.sym.name));
        if traced.len() == before && !matched_before {
            return Err(ProfilerError::Spec(no_match_message(spec, module, syms)));
        }
        if traced.len() > max_funcs {
            return Err(ProfilerError::Spec(format!(
                "--func {:?} brings the traced functions to {} (more than --max-funcs {max_funcs}): narrow the glob",
                spec.glob,
                traced.len()
            )));
        }
    }
    Ok(traced)
}

/// "no function matches", with the closest names.
fn no_match_message(spec: &FuncSpec, module: &Module, syms: &[FuncSym]) -> String {
    if syms.is_empty() {
        return format!(
            "--func {:?}: {} has no function symbols (stripped); trace a library function \
             (LIB:GLOB) or install its debug symbols",
            spec.glob,
            module.file_name()
        );
    }
    let needle: String = spec
        .glob
        .chars()
        .filter(|c| !"*?[]{}".contains(*c))
        .collect();
    let needle_lower = needle.to_lowercase();
    let mut scored: Vec<(f64, &str)> = syms
        .iter()
        .map(|s| {
            let lower = s.name.to_lowercase();
            let mut score = strsim::jaro_winkler(&needle_lower, &lower);
            if !needle_lower.is_empty() && lower.contains(&needle_lower) {
                score += 1.0;
            }
            (score, s.name.as_str())
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let mut closest: Vec<&str> = Vec::new();
    for (_, name) in scored {
        if !closest.contains(&name) {
            closest.push(name);
        }
        if closest.len() == 5 {
            break;
        }
    }
    format!(
        "--func {:?}: no function in {} matches; closest: {}",
        spec.glob,
        module.file_name(),
        if closest.is_empty() {
            "(no functions)".to_string()
        } else {
            closest.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            FuncSpec::parse("libc:malloc").unwrap(),
            FuncSpec {
                library: Some("libc".into()),
                glob: "malloc".into()
            }
        );
        assert_eq!(
            FuncSpec::parse("victim::compute").unwrap(),
            FuncSpec {
                library: None,
                glob: "victim::compute".into()
            }
        );
        assert_eq!(
            FuncSpec::parse("libfoo:ns::f*").unwrap(),
            FuncSpec {
                library: Some("libfoo".into()),
                glob: "ns::f*".into()
            }
        );
        assert!(FuncSpec::parse("libc:").is_err());
        assert!(FuncSpec::parse(":x").is_err());
    }

    fn module(path: &str) -> Module {
        Module {
            path: path.into(),
            open_path: path.into(),
        }
    }

    #[test]
    fn library_prefix_prefers_so_names() {
        let modules = [
            module("/usr/bin/app"),
            module("/lib/libcrypto.so.3"),
            module("/lib/libc.so.6"),
            module("/lib/libsqlite3.so.0"),
        ];
        assert_eq!(
            find_library("libc", &modules).unwrap().path,
            PathBuf::from("/lib/libc.so.6")
        );
        assert_eq!(
            find_library("libsqlite3", &modules).unwrap().path,
            PathBuf::from("/lib/libsqlite3.so.0")
        );
        assert!(find_library("libz", &modules).is_err());
        assert!(find_library("lib", &modules).is_err(), "ambiguous");
    }

    #[test]
    fn unmatched_glob_lists_closest_names() {
        let sym = |name: &str| FuncSym {
            raw: name.into(),
            name: name.into(),
            addr: 1,
            size: 1,
            file_offset: 1,
        };
        let msg = no_match_message(
            &FuncSpec::parse("compte").unwrap(),
            &module("/bin/victim"),
            &[sym("compute"), sym("main"), sym("compute_all")],
        );
        assert!(msg.contains("closest: compute"), "{msg}");
    }
}
