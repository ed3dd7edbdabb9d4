//! Compiles `cpp/arrow_batch.cpp` (DuckDB's `duckdb_execute_prepared_arrow` with a configurable
//! Arrow batch size, and the same for an unprepared query) against the headers of the DuckDB
//! that libduckdb-sys builds (it publishes them as `DEP_DUCKDB_INCLUDE`).
fn main() {
    println!("cargo:rerun-if-changed=cpp/arrow_batch.cpp");
    let include = std::env::var("DEP_DUCKDB_INCLUDE")
        .expect("libduckdb-sys (bundled) publishes its include directory");
    // DuckDB's headers differ between its DEBUG and NDEBUG builds: use the same define as
    // libduckdb-sys, which picks it from the same profile setting (see the workspace profiles).
    let debug = std::env::var("DEBUG").is_ok_and(|v| v != "false" && v != "0");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("cpp/arrow_batch.cpp")
        .include(&include)
        .flag_if_supported("-std=c++17")
        .warnings(false)
        .flag_if_supported("-w")
        .define(if debug { "DEBUG" } else { "NDEBUG" }, None);
    build.compile("usher_arrow_batch");
}
