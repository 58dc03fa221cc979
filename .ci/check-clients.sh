#!/usr/bin/env bash
# Generates clients from openapi.yaml with three generators and lists every warning they
# print: openapi-generator (its python, typescript-fetch and rust clients),
# openapi-python-client and openapi-typescript. `just check-clients` runs it; CI does not
# (it downloads the generators). It fails on any warning that is not one of the known
# ones below, each explained in docs/architecture.md ("Generated clients").
#
# The generators are installed, pinned, outside the source tree under
# ${XDG_CACHE_HOME:-$HOME/.cache}/seatkeeper/: openapi-generator (PyPI's
# openapi-generator-cli, which bundles the jar; needs java 11+) and openapi-python-client
# in a virtualenv, openapi-typescript with npm. The clients and the logs go to
# $CLIENTS_OUT, default /tmp/seatkeeper-clients.
set -euo pipefail
cd "$(dirname "$0")/.."

oag_version=7.26.0
opc_version=0.29.1
ot_version=7.13.0
cache=${XDG_CACHE_HOME:-$HOME/.cache}/seatkeeper
venv=$cache/clients-venv-$oag_version-$opc_version
npm_prefix=$cache/openapi-typescript-$ot_version
out=${CLIENTS_OUT:-/tmp/seatkeeper-clients}
spec=$PWD/openapi.yaml

# What the generators say whatever the document (see the docs for the evidence).
known=(
  # openapi-generator, for any OpenAPI 3.1 document (utoipa writes only 3.1.0).
  'WARN  o.o.codegen.DefaultCodegen - OpenAPI 3.1 support is still in beta. To report an issue related to 3.1 spec, please kindly open an issue in the Github repo: https://github.com/openAPITools/openapi-generator.'
  # openapi-generator's python client, for any schema with a property.
  'WARN  o.o.codegen.utils.ModelUtils - Failed to get the schema name: null'
  # openapi-generator's rust client: the name it derives from each media type, and the
  # `type` member every RFC 9457 problem has.
  'WARN  o.o.c.languages.AbstractRustCodegen - ApplicationJson cannot be used as a model name. Renamed to ApplicationSlashJson'
  'WARN  o.o.c.languages.AbstractRustCodegen - ApplicationProblem+json cannot be used as a model name. Renamed to ApplicationSlashProblemPlusJson'
  'WARN  o.o.c.languages.AbstractRustCodegen - TextPlain;Version=004 cannot be used as a model name. Renamed to TextSlashPlainSemicolonVersionEqual004'
  'WARN  o.o.c.languages.AbstractRustCodegen - type cannot be used as a field/variable name. Renamed to r#type'
)

if [ ! -x "$venv/bin/openapi-generator-cli" ] || [ ! -x "$venv/bin/openapi-python-client" ]; then
  echo "== installing openapi-generator-cli $oag_version and openapi-python-client $opc_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "openapi-generator-cli==$oag_version" "openapi-python-client==$opc_version"
fi
if [ ! -x "$npm_prefix/node_modules/.bin/openapi-typescript" ]; then
  echo "== installing openapi-typescript $ot_version into $npm_prefix"
  npm install -s --no-fund --no-audit --prefix "$npm_prefix" "openapi-typescript@$ot_version"
fi

rm -rf "$out"
mkdir -p "$out"
unknown=0
# report NAME LOG PATTERN: counts LOG's lines matching PATTERN, and the unknown ones.
report() {
  local name=$1 log=$2 pattern=$3 total unexplained
  total=$(grep -cE "$pattern" "$log" || true)
  unexplained=$(grep -E "$pattern" "$log" | sed 's/^\[main\] //' \
    | grep -vxF -f <(printf '%s\n' "${known[@]}") || true)
  printf '%-44s %3s warnings, %s unexplained\n' "$name" "$total" \
    "$(printf '%s' "$unexplained" | grep -c . || true)"
  if [ -n "$unexplained" ]; then
    printf '%s\n' "$unexplained" | sed 's/^/    /'
    unknown=1
  fi
}

for g in python typescript-fetch rust; do
  "$venv/bin/openapi-generator-cli" generate -i "$spec" -g "$g" -o "$out/openapi-generator-$g" \
    >"$out/openapi-generator-$g.log" 2>&1
  report "openapi-generator $oag_version -g $g" "$out/openapi-generator-$g.log" '\bWARN\b'
done

# Its ruff post-hook needs ruff, which the virtualenv has, on PATH.
PATH=$venv/bin:$PATH openapi-python-client generate --path "$spec" --output-path "$out/openapi-python-client" \
  >"$out/openapi-python-client.log" 2>&1
report "openapi-python-client $opc_version" "$out/openapi-python-client.log" '[Ww]arning|WARN'

"$npm_prefix/node_modules/.bin/openapi-typescript" "$spec" -o "$out/openapi-typescript/schema.d.ts" \
  >"$out/openapi-typescript.log" 2>&1
report "openapi-typescript $ot_version" "$out/openapi-typescript.log" '[Ww]arn|⚠'

echo "clients and logs in $out"
exit "$unknown"
