# Scratch databases for the benchmark scripts (sourced, not run): a fresh database per
# run, made and dropped the same way everywhere. Needs $pg_admin_url, $mongo_url and
# $mongobench (the seatkeeper-mongobench binary, which drops MongoDB databases whose name
# starts with `seatkeeper_`).

# store_url STORE NAME: the URL of a fresh database NAME of STORE (memory, postgres or
# mongo), created here for PostgreSQL; MongoDB creates it on first write.
store_url() {
  case $1 in
    memory) echo "memory://" ;;
    postgres)
      psql -q -v ON_ERROR_STOP=1 "$pg_admin_url" -c "CREATE DATABASE $2" >/dev/null
      echo "${pg_admin_url%/*}/$2"
      ;;
    mongo)
      local hosts query
      hosts=$(sed -E 's#^(mongodb(\+srv)?://[^/?]*).*#\1#' <<<"$mongo_url")
      query=$(sed -n -E 's#^[^?]*(\?.*)$#\1#p' <<<"$mongo_url")
      echo "$hosts/$2$query"
      ;;
    *)
      echo "unknown store '$1' (memory, postgres or mongo)" >&2
      return 2
      ;;
  esac
}

# drop_store STORE NAME: drops database NAME of STORE, if it is there.
drop_store() {
  case $1 in
    postgres) psql -q "$pg_admin_url" -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" >/dev/null 2>&1 || true ;;
    mongo) "$mongobench" --url "$mongo_url" --drop-database "$2" >/dev/null 2>&1 || true ;;
  esac
}
