//! With the `duckdb` feature: compiles `src/store/duckdb/capi_shim.cpp` (DuckDB's own C API
//! calls with what the C API does not expose: an Arrow batch size, error types, temporary Arrow
//! scan views) against the headers of the DuckDB that libduckdb-sys builds (it publishes them as
//! `DEP_DUCKDB_INCLUDE`).
fn main() {
    const SOURCE: &str = "runtime/src/store/duckdb/capi_shim.cpp";
    println!("cargo:rerun-if-changed={SOURCE}");
    if std::env::var_os("CARGO_FEATURE_DUCKDB").is_none() {
        return;
    }
    let include = std::env::var("DEP_DUCKDB_INCLUDE")
        .expect("libduckdb-sys (bundled) publishes its include directory");
    // DuckDB's headers differ between its DEBUG and NDEBUG builds: use the same define as
    // libduckdb-sys, which picks it from the same profile setting (see the workspace profiles).
    let debug = std::env::var("DEBUG").is_ok_and(|v| v != "false" && v != "0");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file(SOURCE)
        .include(&include)
        .flag_if_supported("-std=c++17")
        .warnings(false)
        .flag_if_supported("-w")
        .define(if debug { "DEBUG" } else { "NDEBUG" }, None);
    build.compile("usher_arrow_batch");
}
