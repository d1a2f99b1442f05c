// Until the family (`kernel.rs` and the `Family` impl here) is merged, only the tests call the
// analyzer; remove this when the expectation goes unfulfilled.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        unused_imports,
        reason = "the analyzer's caller, the family, is merged separately"
    )
)]
pub(crate) mod analyze;
