"""Ground truth for by-name mapping of list columns: a Parquet file without field ids, columns in
another order than the table's, added with ducklake_add_data_files; prints the rows the extension
writes (ducklake_column, ducklake_name_mapping). Output: name-mapping-lists-output.txt."""
import duckdb, glob, os, importlib
def ext(name):
    m = importlib.import_module(f"duckdb_extension_{name}")
    return glob.glob(os.path.join(os.path.dirname(m.__file__), "extensions", "*", f"{name}.duckdb_extension"))[0]
os.makedirs("/tmp/usher-nm", exist_ok=True)
con = duckdb.connect()
con.execute(f"INSTALL '{ext('ducklake')}'"); con.execute("LOAD ducklake")
con.execute("ATTACH 'ducklake:/tmp/usher-nm/meta.db' AS lake (DATA_PATH '/tmp/usher-nm/data/')")
con.execute("COPY (SELECT 'a' AS name, [1,2]::BIGINT[] AS xs, 3.5::DOUBLE AS score, ['u','v'] AS tags) TO '/tmp/usher-nm/f.parquet'")
con.execute("CREATE TABLE lake.t (xs BIGINT[], name VARCHAR, tags VARCHAR[], score DOUBLE)")
con.execute("CALL ducklake_add_data_files('lake', 't', '/tmp/usher-nm/f.parquet')")
print(con.execute("FROM lake.t").fetchall())
for t in ["ducklake_column", "ducklake_name_mapping", "ducklake_column_mapping", "ducklake_data_file"]:
    print(t)
    for r in con.execute(f"FROM __ducklake_metadata_lake.{t}").fetchall(): print("  ", r)
