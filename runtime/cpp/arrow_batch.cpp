// duckdb_execute_prepared_arrow with a chosen Arrow batch size.
//
// DuckDB's v1 C API materialises Arrow results in 2,048-row arrays (STANDARD_VECTOR_SIZE);
// Python's duckdb asks for 1,000,000-row arrays. Small arrays make the engine slower and force a
// copy to merge them afterwards. This is DuckDB's own `duckdb_execute_prepared_arrow`
// (src/main/capi/v1/arrow-c.cpp, v2.0.0) with the batch size as a parameter; the result is an
// ordinary `duckdb_arrow`, read with `duckdb_query_arrow_array` and freed with
// `duckdb_destroy_arrow`.
#include "duckdb/common/arrow/arrow_format.hpp"
#include "duckdb/main/capi/capi_internal.hpp"
#include "duckdb/main/connection.hpp"
#include "duckdb/main/query_parameters.hpp"

extern "C" duckdb_state usher_execute_prepared_arrow_batched(duckdb_prepared_statement prepared_statement,
                                                             idx_t batch_size, duckdb_arrow *out_result) {
	auto wrapper = reinterpret_cast<duckdb::PreparedStatementWrapper *>(prepared_statement);
	if (!wrapper || !wrapper->statement || wrapper->statement->HasError() || !out_result) {
		return DuckDBError;
	}
	auto arrow_wrapper = new duckdb::ArrowResultWrapper();
	try {
		duckdb::QueryParameters parameters(duckdb::make_shared_ptr<duckdb::ArrowFormat>(batch_size));
		arrow_wrapper->result = wrapper->statement->Execute(wrapper->values, parameters);
	} catch (...) {
		delete arrow_wrapper;
		return DuckDBError;
	}
	*out_result = reinterpret_cast<duckdb_arrow>(arrow_wrapper);
	return !arrow_wrapper->result->HasError() ? DuckDBSuccess : DuckDBError;
}

// The same for a statement that is not prepared. DuckDB 2.0.0 runs a prepared statement under a
// PhysicalExecute operator, which hides the table scan's batch index from the result collector:
// with insertion order preserved, the result sink then runs on one thread. A plain query keeps
// the scan visible, and the Arrow arrays are built by every thread (2x faster loads on 2 cores).
// The caller passes one statement of its own making (quoted identifiers, no parameters).
extern "C" duckdb_state usher_query_arrow_batched(duckdb_connection connection, const char *query,
                                                  idx_t batch_size, duckdb_arrow *out_result) {
	if (!connection || !query || !out_result) {
		return DuckDBError;
	}
	auto conn = reinterpret_cast<duckdb::Connection *>(connection);
	auto arrow_wrapper = new duckdb::ArrowResultWrapper();
	try {
		arrow_wrapper->result = conn->Query(query, duckdb::make_shared_ptr<duckdb::ArrowFormat>(batch_size));
	} catch (...) {
		delete arrow_wrapper;
		return DuckDBError;
	}
	*out_result = reinterpret_cast<duckdb_arrow>(arrow_wrapper);
	return !arrow_wrapper->result->HasError() ? DuckDBSuccess : DuckDBError;
}
