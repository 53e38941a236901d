//! Compile-time behaviour of `#[distributed_lock]`: what compiles, and the messages for what
//! does not. Regenerate snapshots with `TRYBUILD=overwrite cargo test --test ui` and read the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
