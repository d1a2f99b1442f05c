//! Python frames spliced into a native stack: where the native walk passes through the
//! interpreter's eval loop, the Python frames that loop was running.
//!
//! Each native `_PyEval_EvalFrameDefault` frame runs one group of Python frames: in 3.11 the
//! group ends (outermost) with the frame marked `is_entry`, in 3.12 and later just inside the
//! shim frame the loop pushed on entry, and in 3.10 each frame is a group of its own. Both lists
//! are innermost first, so the n-th group belongs to the n-th eval frame; a group goes right
//! inside (before, in this order) its eval frame.

use super::code::Named;

/// The interpreter's eval loop.
pub(crate) const EVAL_FRAME: &str = "_PyEval_EvalFrameDefault";

/// Splits Python frames (innermost first) into the groups of the eval frames that run them;
/// shim frames end a group and are dropped.
pub(crate) fn groups(python: Vec<Named>) -> Vec<Vec<Named>> {
    let mut out = Vec::new();
    let mut group = Vec::new();
    for f in python {
        if f.shim {
            out.push(std::mem::take(&mut group));
            continue;
        }
        let entry = f.entry;
        group.push(f);
        if entry {
            out.push(std::mem::take(&mut group));
        }
    }
    if !group.is_empty() {
        out.push(group);
    }
    // A shim right after an entry frame (3.12 marks both) leaves an empty group: none is
    // meant there.
    out.retain(|g| !g.is_empty());
    out
}

/// `native` with the Python frames spliced in: each group inside its eval frame. Groups beyond
/// the eval frames (a native walk cut short) go inside the outermost eval frame, or at the outer
/// end where the native stack has none.
pub(crate) fn splice<T>(
    native: Vec<T>,
    python: Vec<Named>,
    is_eval: impl Fn(&T) -> bool,
    make: impl Fn(Named) -> T,
) -> Vec<T> {
    if python.is_empty() {
        return native;
    }
    let mut groups = groups(python).into_iter();
    let evals = native.iter().filter(|f| is_eval(f)).count();
    let mut out = Vec::with_capacity(native.len() + 16);
    let mut seen = 0;
    for f in native {
        if is_eval(&f) {
            seen += 1;
            if seen == evals {
                // The outermost eval frame takes what is left.
                for g in groups.by_ref() {
                    out.extend(g.into_iter().map(&make));
                }
            } else if let Some(g) = groups.next() {
                out.extend(g.into_iter().map(&make));
            }
        }
        out.push(f);
    }
    for g in groups {
        out.extend(g.into_iter().map(&make));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Frame;

    fn py(name: &str, entry: bool, shim: bool) -> Named {
        Named {
            frame: Frame {
                function: name.into(),
                module: "m.py".into(),
                offset: "python".into(),
                file: None,
                line: None,
            },
            address: 0,
            entry,
            shim,
        }
    }

    fn names(v: &[String]) -> String {
        v.join(" ")
    }

    fn run(native: &[&str], python: Vec<Named>) -> String {
        let native: Vec<String> = native.iter().map(|s| s.to_string()).collect();
        names(&splice(
            native,
            python,
            |f| f == EVAL_FRAME,
            |n| format!("py:{}", n.frame.function),
        ))
    }

    const E: &str = EVAL_FRAME;

    #[test]
    fn each_group_goes_inside_its_eval_frame() {
        // 3.11: softmax and forward run in the inner eval frame (forward is its entry), main in
        // the outer one, with a native call (PyObject_Call) between them.
        let python = vec![
            py("softmax", false, false),
            py("forward", true, false),
            py("main", true, false),
        ];
        let native = ["sqrt", E, "PyObject_Call", E, "main_c"];
        assert_eq!(
            run(&native, python),
            format!("sqrt py:softmax py:forward {E} PyObject_Call py:main {E} main_c")
        );
    }

    #[test]
    fn shims_end_groups_and_are_dropped() {
        // 3.12: a shim frame outside each group.
        let python = vec![
            py("inner", false, false),
            py("<shim>", false, true),
            py("outer", false, false),
            py("<shim>", false, true),
        ];
        let native = [E, "call", E, "start"];
        assert_eq!(
            run(&native, python),
            format!("py:inner {E} call py:outer {E} start")
        );
    }

    #[test]
    fn extra_groups_go_to_the_outermost_eval_frame_or_the_end() {
        let python = vec![
            py("a", true, false),
            py("b", true, false),
            py("c", true, false),
        ];
        assert_eq!(
            run(&["x", E, "y"], python.clone()),
            format!("x py:a py:b py:c {E} y")
        );
        assert_eq!(run(&["x", "y"], python), "x y py:a py:b py:c");
        // More eval frames than groups: the outer ones get none.
        assert_eq!(
            run(&[E, E], vec![py("a", true, false)]),
            format!("py:a {E} {E}")
        );
    }
}
