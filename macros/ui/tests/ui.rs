//! Misuse of `#[checkpointed]` is a compile error at the offending token: one case per file in
//! `cases/`, named for the misuse, expected output in the `.stderr` next to it.
//!
//! Regenerate the expected output after an intended change with
//! `TRYBUILD=overwrite cargo test --workspace --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("cases/*.rs");
}
