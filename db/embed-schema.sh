#!/bin/sh
# Regenerates ctld/db_schema_text.cpp from db/schema.sql (angel-ctld --db-init carries the schema
# compiled in, so `angelctl db-init` needs no file at run time). Run after editing schema.sql;
# tests/integration/db_schema_test.cpp fails while the two differ.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT="$SRC/ctld/db_schema_text.cpp"
{
    echo '// Generated from db/schema.sql by db/embed-schema.sh: do not edit by hand.'
    echo '#include "ctld/db_schema.hpp"'
    echo ''
    echo 'namespace angel {'
    echo ''
    echo 'const char* schema_sql() {'
    echo '    return R"ANGELSQL('
    cat "$SRC/db/schema.sql"
    echo ')ANGELSQL";'
    echo '}'
    echo ''
    echo '}  // namespace angel'
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"
