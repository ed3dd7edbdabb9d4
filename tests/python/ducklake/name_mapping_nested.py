"""Ground truth for structs and maps: how the extension names their children in ducklake_column
and maps them by name for a file without field ids (ducklake_add_data_files), and how DESCRIBE
spells nested types. Output: name-mapping-nested-output.txt."""
import duckdb, glob, os, importlib
def ext(name):
    m = importlib.import_module(f"duckdb_extension_{name}")
    return glob.glob(os.path.join(os.path.dirname(m.__file__), "extensions", "*", f"{name}.duckdb_extension"))[0]
os.makedirs("/tmp/usher-nm2", exist_ok=True)
con = duckdb.connect()
con.execute(f"INSTALL '{ext('ducklake')}'"); con.execute("LOAD ducklake")
con.execute("ATTACH 'ducklake:/tmp/usher-nm2/meta.db' AS lake (DATA_PATH '/tmp/usher-nm2/data/')")
con.execute("COPY (SELECT {'b': 'x', 'a': 1::BIGINT} AS st, MAP(['k'], [2::BIGINT]) AS m, [{'q': 1.5::DOUBLE}] AS ls) TO '/tmp/usher-nm2/f.parquet'")
con.execute("CREATE TABLE lake.t (st STRUCT(a BIGINT, b VARCHAR), m MAP(VARCHAR, BIGINT), ls STRUCT(q DOUBLE)[])")
con.execute("CALL ducklake_add_data_files('lake', 't', '/tmp/usher-nm2/f.parquet')")
print(con.execute("FROM lake.t").fetchall())
for t in ["ducklake_column", "ducklake_name_mapping"]:
    print(t)
    for r in con.execute(f"FROM __ducklake_metadata_lake.{t}").fetchall(): print("  ", r)
con.execute("CREATE TABLE lake.u AS SELECT {'b': 'x', 'a': 1::BIGINT} AS st, MAP(['k'], [2::BIGINT]) AS m")
print(con.execute("DESCRIBE SELECT {'b': 'x', 'a': 1::BIGINT} AS st, MAP(['k'], [2::BIGINT]) AS m, [{'q r': 1.5::DOUBLE}] AS ls").fetchall())
