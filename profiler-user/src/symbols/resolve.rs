//! `--func` specs: `GLOB` (main executable) or `LIB:GLOB` (a library by file-name prefix, by
//! path, or every module a glob names), resolved to the functions to trace.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use globset::{GlobBuilder, GlobMatcher};

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
        [] => Err(not_mapped(
            &format!("library {lib:?} is not mapped by the target"),
            modules,
        )),
        many => Err(ProfilerError::Spec(format!(
            "library {lib:?} is ambiguous: {}",
            many.iter()
                .map(|m| m.file_name())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The modules a `LIB` part names: with glob characters, every module whose file name, name
/// without its `.so` suffix (`libpython3.11`), or (for a glob with a `/`) path the glob matches;
/// otherwise the one module [`find_library`] picks.
pub(crate) fn find_libraries<'a>(
    lib: &str,
    modules: &'a [Module],
) -> Result<Vec<&'a Module>, ProfilerError> {
    if !lib.contains(['*', '?', '[', '{']) {
        return find_library(lib, modules).map(|m| vec![m]);
    }
    let matcher = GlobBuilder::new(lib)
        .literal_separator(false)
        .build()
        .map_err(|e| ProfilerError::Spec(format!("library glob {lib:?}: {e}")))?
        .compile_matcher();
    let matched: Vec<&Module> = modules
        .iter()
        .filter(|m| {
            let name = m.file_name();
            matcher.is_match(&name)
                || matcher.is_match(library_stem(&name))
                || (lib.contains('/') && matcher.is_match(&m.path))
        })
        .collect();
    if matched.is_empty() {
        return Err(not_mapped(
            &format!("library glob {lib:?} matches nothing the target maps"),
            modules,
        ));
    }
    Ok(matched)
}

/// `why` a `LIB` part names nothing, with the file names the target maps.
fn not_mapped(why: &str, modules: &[Module]) -> ProfilerError {
    let mut names: Vec<String> = modules.iter().map(Module::file_name).collect();
    names.sort();
    names.dedup();
    ProfilerError::Spec(format!("{why} (mapped: {})", names.join(", ")))
}

/// A library's file name without its `.so` suffix and version (`libc.so.6` -> `libc`); other
/// names as they are.
fn library_stem(name: &str) -> &str {
    name.find(".so").map_or(name, |i| &name[..i])
}

/// The `LIB` part that names `module`: its name without the `.so` suffix when that picks it,
/// else its path.
fn library_part(module: &Module, modules: &[Module]) -> String {
    let name = module.file_name();
    let stem = library_stem(&name);
    match find_library(stem, modules) {
        Ok(found) if found.path == module.path => stem.to_string(),
        _ => module.path.display().to_string(),
    }
}

/// The functions of the modules, read once each.
#[derive(Default)]
struct SymbolCache(HashMap<PathBuf, Vec<FuncSym>>);

impl SymbolCache {
    fn of(&mut self, module: &Module) -> Result<&[FuncSym], ProfilerError> {
        if !self.0.contains_key(&module.open_path) {
            let syms = functions(&module.open_path).map_err(|e| {
                ProfilerError::Spec(format!(
                    "cannot read symbols of {}: {e}",
                    module.path.display()
                ))
            })?;
            self.0.insert(module.open_path.clone(), syms);
        }
        Ok(&self.0[&module.open_path])
    }
}

/// Whether `sym` matches a `--func` glob (by its demangled or its raw name).
fn matches(matcher: &GlobMatcher, sym: &FuncSym) -> bool {
    matcher.is_match(&sym.name) || matcher.is_match(&sym.raw)
}

/// Resolves every spec against the executable (`modules[0]`) and the libraries; each spec must
/// match at least one function. The result has no duplicates.
pub(crate) fn resolve(
    specs: &[FuncSpec],
    modules: &[Module],
    max_funcs: usize,
) -> Result<Vec<TracedFunction>, ProfilerError> {
    let mut cache = SymbolCache::default();
    let mut traced: Vec<TracedFunction> = Vec::new();
    for spec in specs {
        let searched = match &spec.library {
            Some(lib) => find_libraries(lib, modules)?,
            None => vec![
                modules
                    .first()
                    .ok_or_else(|| ProfilerError::Spec("the target has no executable".into()))?,
            ],
        };
        let matcher = GlobBuilder::new(&spec.glob)
            .literal_separator(false)
            .build()
            .map_err(|e| ProfilerError::Spec(format!("--func {:?}: {e}", spec.glob)))?
            .compile_matcher();
        let mut matched = false;
        for module in &searched {
            for sym in cache.of(module)? {
                if !matches(&matcher, sym) {
                    continue;
                }
                matched = true;
                let duplicate = traced.iter().any(|t| {
                    t.module.open_path == module.open_path && t.sym.file_offset == sym.file_offset
                });
                if !duplicate {
                    traced.push(TracedFunction {
                        module: (*module).clone(),
                        sym: sym.clone(),
                    });
                }
            }
        }
        if !matched {
            let elsewhere = found_elsewhere(&matcher, &searched, modules, &mut cache);
            let msg = match elsewhere.as_slice() {
                [] => no_match_message(spec, &searched, &mut cache)?,
                libs => format!(
                    "--func {:?}: no function in {} matches; did you mean {}?",
                    spec.glob,
                    file_names(&searched),
                    libs.iter()
                        .map(|lib| format!("{lib}:{}", spec.glob))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            };
            return Err(ProfilerError::Spec(msg));
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

/// The `LIB` parts of the modules outside `searched` that have a function `matcher` matches (at
/// most three): where a spec that matched nothing would have. A module whose symbols cannot be
/// read is passed over.
fn found_elsewhere(
    matcher: &GlobMatcher,
    searched: &[&Module],
    modules: &[Module],
    cache: &mut SymbolCache,
) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for module in modules {
        if found.len() == 3 || searched.iter().any(|m| m.path == module.path) {
            continue;
        }
        let has = cache
            .of(module)
            .is_ok_and(|syms| syms.iter().any(|s| matches(matcher, s)));
        let part = library_part(module, modules);
        if has && !found.contains(&part) {
            found.push(part);
        }
    }
    found
}

/// The file names of `modules`, joined.
fn file_names(modules: &[&Module]) -> String {
    modules
        .iter()
        .map(|m| m.file_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// "no function matches", with the closest names in the modules searched.
fn no_match_message(
    spec: &FuncSpec,
    searched: &[&Module],
    cache: &mut SymbolCache,
) -> Result<String, ProfilerError> {
    let mut syms: Vec<FuncSym> = Vec::new();
    for module in searched {
        syms.extend_from_slice(cache.of(module)?);
    }
    if syms.is_empty() {
        return Ok(format!(
            "--func {:?}: {} has no function symbols (stripped); trace a library function \
             (LIB:GLOB) or install its debug symbols",
            spec.glob,
            file_names(searched)
        ));
    }
    Ok(format!(
        "--func {:?}: no function in {} matches; closest: {}",
        spec.glob,
        file_names(searched),
        closest(&spec.glob, &syms).join(", ")
    ))
}

/// The five names closest to `glob` (its glob characters left out).
fn closest<'a>(glob: &str, syms: &'a [FuncSym]) -> Vec<&'a str> {
    let needle: String = glob.chars().filter(|c| !"*?[]{}".contains(*c)).collect();
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
    closest
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
        let syms = [sym("compute"), sym("main"), sym("compute_all")];
        assert_eq!(closest("compte", &syms)[0], "compute");
        assert_eq!(closest("compute_*", &syms)[0], "compute_all");
    }

    #[test]
    fn library_globs_match_names_stems_and_paths() {
        let modules = [
            module("/usr/bin/python3.11"),
            module("/lib/libpython3.11.so.1.0"),
            module("/lib/libc.so.6"),
            module("/lib/libcrypto.so.3"),
        ];
        let paths = |lib: &str| -> Vec<String> {
            find_libraries(lib, &modules)
                .unwrap()
                .iter()
                .map(|m| m.path.display().to_string())
                .collect()
        };
        assert_eq!(paths("python3*"), ["/usr/bin/python3.11"]);
        assert_eq!(paths("libpython3*"), ["/lib/libpython3.11.so.1.0"]);
        assert_eq!(paths("libpython3.1?"), ["/lib/libpython3.11.so.1.0"]);
        assert_eq!(paths("libc*"), ["/lib/libc.so.6", "/lib/libcrypto.so.3"]);
        assert_eq!(paths("/lib/*.so.6"), ["/lib/libc.so.6"]);
        // Without glob characters, one library by prefix, as before.
        assert_eq!(paths("libc"), ["/lib/libc.so.6"]);
        let err = find_libraries("libz*", &modules).unwrap_err().to_string();
        assert!(
            err.starts_with("library glob \"libz*\" matches nothing the target maps (mapped: ")
                && err.contains("libc.so.6"),
            "{err}"
        );
    }

    #[test]
    fn a_library_is_named_by_its_stem_when_that_picks_it() {
        let modules = [
            module("/usr/bin/app"),
            module("/lib/libc.so.6"),
            module("/lib/libpython3.11.so.1.0"),
            module("/opt/a/libfoo.so"),
            module("/opt/b/libfoo.so"),
        ];
        assert_eq!(library_part(&modules[1], &modules), "libc");
        assert_eq!(library_part(&modules[2], &modules), "libpython3.11");
        // Two of the same name: only the path says which.
        assert_eq!(library_part(&modules[4], &modules), "/opt/b/libfoo.so");
    }

    #[test]
    fn a_bare_name_found_only_in_a_library_is_suggested_with_it() {
        let libc = crate::symbols::system_libc();
        // This test program, which defines no such function, stands for the executable.
        let exe = std::env::current_exe().unwrap();
        let modules = [module(exe.to_str().unwrap()), module(libc)];
        let spec = FuncSpec::parse("malloc_usable_siz?").unwrap();
        let err = resolve(&[spec], &modules, 10).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "--func \"malloc_usable_siz?\": no function in {} matches; did you mean \
                 libc:malloc_usable_siz??",
                modules[0].file_name()
            )
        );
    }
}
