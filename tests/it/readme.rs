//! The README's first code block is `examples/quickstart.rs` (without its header), which
//! `cargo test` compiles: the quickstart a newcomer copies always builds.

#[test]
fn the_readme_quickstart_is_the_compiled_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme
        .find("```rust\n")
        .expect("a rust block in the README")
        + "```rust\n".len();
    let end = start + readme[start..].find("```\n").expect("the block ends");
    let example = std::fs::read_to_string(root.join("examples/quickstart.rs")).unwrap();
    let body: String = example
        .lines()
        .skip_while(|line| line.starts_with("//!"))
        .skip_while(|line| line.is_empty())
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        &readme[start..end],
        body,
        "the README's first code block must be examples/quickstart.rs below its header"
    );
}
