#!/usr/bin/env bash
# A real lakeFS server on this machine, built from its Go module.
#   tools/lakefs.sh build            build once per machine (cached by version); print the path
#   tools/lakefs.sh serve DIR PORT [HOST]
#                                    run it in the foreground: metadata and objects under DIR,
#                                    on HOST:PORT (127.0.0.1), installation user keys from
#                                    LAKEFS_ACCESS_KEY_ID / LAKEFS_SECRET_ACCESS_KEY
# Exit status 3: no Go here to build with.
set -euo pipefail
VERSION="${LAKEFS_VERSION:-v1.86.0}"
CACHE="${TIDELINE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tideline}/lakefs-$VERSION"
BIN="$CACHE/lakefs"

build() {
  if [ -x "$BIN" ]; then echo "$BIN"; return; fi
  command -v go >/dev/null || {
    echo "the real-lakeFS tests need Go to build lakeFS $VERSION (go not found): skipping them" >&2
    exit 3; }
  mkdir -p "$CACHE"
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  echo "building lakeFS $VERSION from its Go module (once per machine; 10-20 minutes cold)" >&2
  (
    cd "$work"
    local module="github.com/treeverse/lakefs"
    local dir
    dir="$(go mod download -json "$module@$VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
    # `go install module@version` refuses a go.mod with replace directives (lakeFS has one,
    # for delta-go): a wrapper module requires lakeFS, repeats its replaces and builds it
    go mod init tideline.local/lakefs-build >/dev/null 2>&1
    grep '^replace ' "$dir/go.mod" >>go.mod || true
    go mod edit -go="$(sed -n 's/^go //p' "$dir/go.mod")" -require="$module@$VERSION" \
      -tool="$module/cmd/lakefs"
    cp "$dir/go.sum" go.sum
    { GOFLAGS=-mod=mod go mod tidy && CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" \
        -ldflags "-X $module/pkg/version.Version=${VERSION#v}" "$module/cmd/lakefs"; } >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
  )
  mv "$BIN.tmp" "$BIN"
  echo "$BIN"
}

serve() {
  local dir="${1:?usage: tools/lakefs.sh serve DIR PORT [HOST]}" port="${2:?usage: tools/lakefs.sh serve DIR PORT [HOST]}"
  local host="${3:-127.0.0.1}"
  local bin; bin="$(build)"
  mkdir -p "$dir"
  export LAKEFS_LISTEN_ADDRESS="$host:$port"
  export LAKEFS_DATABASE_TYPE=local LAKEFS_DATABASE_LOCAL_PATH="$dir/metadata"
  export LAKEFS_BLOCKSTORE_TYPE=local LAKEFS_BLOCKSTORE_LOCAL_PATH="$dir/block"
  export LAKEFS_COMMITTED_LOCAL_CACHE_DIR="$dir/cache"
  export LAKEFS_AUTH_ENCRYPT_SECRET_KEY="${LAKEFS_AUTH_ENCRYPT_SECRET_KEY:-local-only-$(hostname)}"
  export LAKEFS_INSTALLATION_USER_NAME="${LAKEFS_INSTALLATION_USER_NAME:-tideline}"
  export LAKEFS_INSTALLATION_ACCESS_KEY_ID="${LAKEFS_ACCESS_KEY_ID:?set LAKEFS_ACCESS_KEY_ID}"
  export LAKEFS_INSTALLATION_SECRET_ACCESS_KEY="${LAKEFS_SECRET_ACCESS_KEY:?set LAKEFS_SECRET_ACCESS_KEY}"
  # no internet here: no usage reports
  export LAKEFS_STATS_ENABLED=false LAKEFS_USAGE_REPORT_ENABLED=false
  export LAKEFS_LOGGING_LEVEL="${LAKEFS_LOGGING_LEVEL:-WARN}"
  exec "$bin" run --local-settings
}

case "${1:-}" in
  build) build ;;
  serve) shift; serve "$@" ;;
  *) echo "usage: tools/lakefs.sh build | serve DIR PORT [HOST]" >&2; exit 2 ;;
esac
