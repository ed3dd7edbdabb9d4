//! With the `duckdb` feature: compiles `src/store/duckdb/capi_shim.cpp` (DuckDB's own C API
//! calls with what the C API does not expose: an Arrow batch size, error types, temporary Arrow
//! scan views) against the headers of the DuckDB that libduckdb-sys builds (it publishes them as
//! `DEP_DUCKDB_INCLUDE`).
use std::fs::File;
use std::io::Read;
use std::path::Path;

fn main() {
    const SOURCE: &str = "runtime/src/store/duckdb/capi_shim.cpp";
    println!("cargo:rerun-if-changed={SOURCE}");
    if std::env::var_os("CARGO_FEATURE_DUCKDB").is_none() {
        return;
    }
    let include = std::env::var("DEP_DUCKDB_INCLUDE")
        .expect("libduckdb-sys (bundled) publishes its include directory");
    let define = duckdb_define(Path::new(&include));
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file(SOURCE)
        .include(&include)
        .flag_if_supported("-std=c++17")
        .warnings(false)
        .flag_if_supported("-w")
        .define(define, None);
    build.compile("usher_arrow_batch");
}

// DuckDB's headers differ between its DEBUG and NDEBUG builds (class layouts, inline code), so the
// shim must see the define DuckDB itself was compiled with, or the two disagree silently (undefined
// behaviour). libduckdb-sys picks it from *its* profile's debug setting, which a dependent crate's
// `[profile.*.package.libduckdb-sys]` can set apart from ours (the profile sections of this
// repository do not apply there), so the define is read from DuckDB's built library instead.
//
// The evidence is one function of DuckDB's PEG transformer: `TransformStack::FormatStack` is
// declared and defined only under `#ifdef DEBUG`, in the same file as
// `TransformStack::ExecuteFrame`, which every build defines. The library's symbol index (the
// archive's first member, read without scanning the objects) holds `ExecuteFrame` in every build
// and `FormatStack` only in a DEBUG one. The first shows that the index is readable and covers that
// file, so the absence of the second is evidence of NDEBUG, not a guess. The header is checked
// too, so a DuckDB upgrade that moves the `#ifdef` fails here instead of choosing wrongly.
fn duckdb_define(include: &Path) -> &'static str {
    const HEADER: &str = "duckdb/parser/peg/transformer/peg_transformer.hpp";
    // Itanium C++ ABI (Linux, macOS, MinGW: `_ZN6duckdb…`, `_ZNK6duckdb…` for a const member, a
    // further `_` on macOS) and MSVC manglings.
    const DEFINED_IN_EVERY_BUILD: [&str; 2] = [
        "6duckdb14TransformStack12ExecuteFrame",
        "?ExecuteFrame@TransformStack@duckdb@@",
    ];
    const DEFINED_IN_DEBUG_BUILDS: [&str; 2] = [
        "6duckdb14TransformStack11FormatStack",
        "?FormatStack@TransformStack@duckdb@@",
    ];

    let header = include.join(HEADER);
    let text = std::fs::read_to_string(&header)
        .unwrap_or_else(|e| panic!("reading DuckDB's header {}: {e}", header.display()));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let debug_only = lines
        .windows(3)
        .filter(|w| w[1] == "string FormatStack() const;")
        .map(|w| w[0] == "#ifdef DEBUG" && w[2] == "#endif")
        .collect::<Vec<_>>();
    if debug_only != [true] {
        panic!(
            "DuckDB's {} no longer declares `TransformStack::FormatStack` only under \
             `#ifdef DEBUG`: runtime/build.rs tells DuckDB's DEBUG and NDEBUG builds apart by that \
             function, so it must be given another DEBUG-only symbol for this DuckDB version",
            header.display()
        );
    }

    let lib_dir = std::env::var("DEP_DUCKDB_LIB_DIR")
        .expect("libduckdb-sys (bundled) publishes the directory of the DuckDB library it built");
    let archive = [
        "libduckdb.a",
        "duckdb.lib",
        "libduckdb_static.a",
        "duckdb_static.lib",
    ]
    .iter()
    .map(|name| Path::new(&lib_dir).join(name))
    .find(|path| path.is_file())
    .unwrap_or_else(|| panic!("no DuckDB static library in {lib_dir} (DEP_DUCKDB_LIB_DIR)"));
    println!("cargo:rerun-if-changed={}", archive.display());
    let index = symbol_index(&archive);
    let has = |names: [&str; 2]| names.iter().any(|name| index.contains(name));
    let define = match (has(DEFINED_IN_EVERY_BUILD), has(DEFINED_IN_DEBUG_BUILDS)) {
        (true, true) => "DEBUG",
        (true, false) => "NDEBUG",
        (false, _) => panic!(
            "cannot tell whether DuckDB was built with DEBUG or NDEBUG: the symbol index of {} \
             does not define `duckdb::TransformStack::ExecuteFrame`, which every DuckDB build \
             defines. The C++ shim must be compiled with DuckDB's own define (the headers' class \
             layouts differ), so runtime/build.rs stops here rather than guess. With LTO flags in \
             CXXFLAGS the objects may not list their symbols: build DuckDB without them. For \
             another DuckDB version, give runtime/build.rs a symbol that it defines in every \
             build",
            archive.display()
        ),
    };
    // Not a cargo directive: a note in the build script's `output` file.
    println!(
        "usher-pipeline: {} was built with {define}",
        archive.display()
    );
    define
}

/// The symbol index of a static library: the bytes of its first member, `/` (GNU, System V and
/// MSVC `lib`), `/SYM64/` or `__.SYMDEF…` (BSD, macOS), where the archiver lists the names of all
/// the symbols that the objects define. Only that member is read, not the library's objects. As
/// text: `str::contains` skips ahead where a byte-by-byte search in an unoptimised build script
/// takes ten times as long (0.5 s for DuckDB's 11 MB index).
fn symbol_index(archive: &Path) -> String {
    let fail =
        |why: &str| -> ! { panic!("reading the symbol index of {}: {why}", archive.display()) };
    let mut file = File::open(archive).unwrap_or_else(|e| fail(&e.to_string()));
    let mut head = [0u8; 8 + 60];
    file.read_exact(&mut head)
        .unwrap_or_else(|e| fail(&e.to_string()));
    if &head[..8] != b"!<arch>\n" {
        fail("not an ar archive");
    }
    let member = &head[8..];
    let name = std::str::from_utf8(&member[..16]).unwrap_or("").trim_end();
    let size: u64 = std::str::from_utf8(&member[48..58])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| fail("malformed member header"));
    let mut data = Vec::with_capacity(size as usize);
    file.take(size)
        .read_to_end(&mut data)
        .unwrap_or_else(|e| fail(&e.to_string()));
    // BSD long names (`#1/<length>`) precede the member's data.
    let long_name = name
        .strip_prefix("#1/")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| data.get(..n));
    let is_index = match long_name {
        Some(long) => long.starts_with(b"__.SYMDEF"),
        None => name == "/" || name == "/SYM64/" || name.starts_with("__.SYMDEF"),
    };
    if !is_index {
        fail("its first member is not a symbol index (archive written without `ranlib`/`ar s`?)");
    }
    String::from_utf8_lossy(&data).into_owned()
}
