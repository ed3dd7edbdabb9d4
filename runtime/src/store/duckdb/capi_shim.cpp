// DuckDB's own C API calls (src/main/capi/v1, v2.0.0), each changed in one respect the C API does
// not offer: Arrow results with a chosen batch size, the error *type* of an open, a prepare or an
// Arrow result (so failures are told apart without reading their text), and an Arrow scan
// registered as a temporary view (connection-local, in-memory: no catalog switching around it).
//
// duckdb_execute_prepared_arrow with a chosen Arrow batch size.
//
// DuckDB's v1 C API materialises Arrow results in 2,048-row arrays (STANDARD_VECTOR_SIZE);
// Python's duckdb asks for 1,000,000-row arrays. Small arrays make the engine slower and force a
// copy to merge them afterwards. This is DuckDB's own `duckdb_execute_prepared_arrow`
// (src/main/capi/v1/arrow-c.cpp, v2.0.0) with the batch size as a parameter; the result is an
// ordinary `duckdb_arrow`, read with `duckdb_query_arrow_array` and freed with
// `duckdb_destroy_arrow`.
#include "duckdb/common/arrow/arrow_format.hpp"
#include "duckdb/function/table/arrow.hpp"
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

// The error type of a failed Arrow result (DUCKDB_ERROR_INVALID when there is none).
extern "C" duckdb_error_type usher_arrow_error_type(duckdb_arrow result) {
	auto wrapper = reinterpret_cast<duckdb::ArrowResultWrapper *>(result);
	if (!wrapper || !wrapper->result || !wrapper->result->HasError()) {
		return DUCKDB_ERROR_INVALID;
	}
	return duckdb::ErrorTypeToC(wrapper->result->GetErrorType());
}

// The error type of a failed prepare (DUCKDB_ERROR_INVALID when there is none).
extern "C" duckdb_error_type usher_prepare_error_type(duckdb_prepared_statement prepared_statement) {
	auto wrapper = reinterpret_cast<duckdb::PreparedStatementWrapper *>(prepared_statement);
	if (!wrapper || !wrapper->statement || !wrapper->statement->HasError()) {
		return DUCKDB_ERROR_INVALID;
	}
	return duckdb::ErrorTypeToC(wrapper->statement->GetErrorObject().Type());
}

// duckdb_get_or_create_from_cache, also giving the error's type.
extern "C" duckdb_state usher_open_from_cache(duckdb_instance_cache instance_cache, const char *path,
                                              duckdb_database *out_database, duckdb_config config,
                                              char **out_error, duckdb_error_type *out_error_type) {
	*out_error_type = DUCKDB_ERROR_INVALID;
	if (!instance_cache || !path || !out_database) {
		*out_error = strdup("invalid arguments");
		return DuckDBError;
	}
	auto cache = reinterpret_cast<duckdb::DBInstanceCacheWrapper *>(instance_cache);
	auto wrapper = new duckdb::DatabaseWrapper();
	try {
		duckdb::DBConfig default_config;
		default_config.SetOptionByName("duckdb_api", "capi");
		duckdb::DBConfig *db_config = &default_config;
		if (config) {
			db_config = reinterpret_cast<duckdb::DBConfig *>(config);
		}
		wrapper->database = cache->instance_cache->GetOrCreateInstance(duckdb::string(path), *db_config);
	} catch (std::exception &ex) {
		duckdb::ErrorData parsed_error(ex);
		*out_error = strdup(parsed_error.Message().c_str());
		*out_error_type = duckdb::ErrorTypeToC(parsed_error.Type());
		delete wrapper;
		return DuckDBError;
	} catch (...) {
		*out_error = strdup("unknown error");
		delete wrapper;
		return DuckDBError;
	}
	*out_database = reinterpret_cast<duckdb_database>(wrapper);
	return DuckDBSuccess;
}

namespace {

// DuckDB's CArrowScanFactory (arrow-c.cpp, file-local there): the caller keeps ownership of the
// stream and of the arrays it hands out.
void EmptyStreamRelease(ArrowArrayStream *stream) {
	stream->release = nullptr;
}

class BorrowedStreamFactory : public duckdb::ArrowScanFactory {
public:
	explicit BorrowedStreamFactory(ArrowArrayStream &stream_p) : stream(stream_p) {
	}

	void GetSchema(ArrowSchema &schema) override {
		stream.get().get_schema(&stream.get(), &schema);
		// The root schema stays the caller's (see duckdb_arrow_scan for the children).
		schema.release = nullptr;
	}

	duckdb::unique_ptr<duckdb::ArrowArrayStreamWrapper>
	ProduceStream(duckdb::ArrowStreamParameters &parameters) override {
		auto result = duckdb::make_uniq<duckdb::ArrowArrayStreamWrapper>();
		result->arrow_array_stream = stream.get();
		result->arrow_array_stream.release = EmptyStreamRelease;
		return result;
	}

private:
	duckdb::reference<ArrowArrayStream> stream;
};

void EmptySchemaRelease(ArrowSchema *schema) {
	schema->release = nullptr;
}

} // namespace

// duckdb_arrow_scan, registering a *temporary* view (DuckDB's own registers a persistent one in the
// connection's default catalog, which a database file cannot serialise). The caller keeps the
// stream alive, unreleased, until the view is dropped.
extern "C" duckdb_state usher_arrow_scan_temporary(duckdb_connection connection, const char *view_name,
                                                   duckdb_arrow_stream arrow) {
	if (!connection || !view_name || !arrow) {
		return DuckDBError;
	}
	auto stream = reinterpret_cast<ArrowArrayStream *>(arrow);
	ArrowSchema schema;
	if (stream->get_schema(stream, &schema) != 0) {
		return DuckDBError;
	}
	// As duckdb_arrow_scan: the children's release functions are nulled while the view binds, so
	// DuckDB never releases what the caller owns, and restored afterwards.
	std::vector<void (*)(ArrowSchema *)> release_fns(duckdb::NumericCast<idx_t>(schema.n_children));
	for (idx_t i = 0; i < duckdb::NumericCast<idx_t>(schema.n_children); i++) {
		release_fns[i] = schema.children[i]->release;
		schema.children[i]->release = EmptySchemaRelease;
	}
	duckdb_state state = DuckDBSuccess;
	try {
		auto conn = reinterpret_cast<duckdb::Connection *>(connection);
		auto factory = duckdb::make_shared_ptr<BorrowedStreamFactory>(*stream);
		conn->TableFunction("arrow_scan", {}, {}, std::move(factory))
		    ->CreateView(duckdb::Identifier(view_name), true, true);
	} catch (...) {
		state = DuckDBError;
	}
	for (idx_t i = 0; i < duckdb::NumericCast<idx_t>(schema.n_children); i++) {
		schema.children[i]->release = release_fns[i];
	}
	return state;
}
