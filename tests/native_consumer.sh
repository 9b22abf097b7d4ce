#!/usr/bin/env bash
# A Redis-native consumer with nothing but redis-cli and docs/redis-layout.md: acquire,
# conflict, release by id, expiry, and the event stream. Usage: native_consumer.sh REDIS_CLI PORT
set -euo pipefail
CLI=$1
PORT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
r() { "$CLI" -c -p "$PORT" "$@"; }

# A script ready for EVAL, as lua/_lib.lua's header says: _lib.lua down to its line
# `--!helpers`, the line `begin()`, then the script's own file without its --!include line,
# with the rest of _lib.lua (the helpers) where the script has the line `--!helpers` (or
# first). The same as what `python -m lockcore.scripts dump` writes. Loaded on every master.
script() {
  local lib="$ROOT/lua/_lib.lua" body="$ROOT/lua/$1.lua"
  sed '/^--!helpers$/,$d' "$lib"
  echo 'begin()'
  if grep -q '^--!helpers$' "$body"; then
    sed -e '/^--!include /d' -e '/^--!helpers$/,$d' "$body"
    sed '1,/^--!helpers$/d' "$lib"
    sed '1,/^--!helpers$/d' "$body"
  else
    sed '1,/^--!helpers$/d' "$lib"
    grep -v '^--!include ' "$body"
  fi
}
for node in $(r CLUSTER NODES | awk '/master/ {split($2, a, "@"); print a[1]}'); do
  for name in acquire release; do
    "$CLI" -h "${node%:*}" -p "${node#*:}" SCRIPT LOAD "$(script $name)" >/dev/null
  done
done
ACQUIRE=$(r SCRIPT LOAD "$(script acquire)")
RELEASE=$(r SCRIPT LOAD "$(script release)")

# The keys of scope "orders" under prefix "native": its hash, its event stream, and the
# directory of its slot (under the slot's tag: docs/redis-layout.md, *The tag of a slot*;
# here from the table lockcore ships, the n of every slot on its one line of numbers).
P=native
S=orders
L="$P:{$S}:L"
SLOT=$(r CLUSTER KEYSLOT "$L")
TAG="#$(awk -v s="$SLOT" '!/^#/ {print $(s + 1)}' "$ROOT/lockcore/slot-tags.txt")"
D="$P:{$TAG}:D"
RETAIN=60000

# acquire: <type>:<resource> owner ttl_ms flags(x exclusive, e events) metadata max_ttl_ms
# expires_at retention_ms handoff_ms id_prefix maxlen (then waiting and request id: left off)
acquire() { r EVALSHA "$ACQUIRE" 2 "$L" "$D" job:order-7 "$1" "$2" xe '' 0 '' $RETAIN 5 \
  $((SLOT + 1)) 1000; }

echo "== acquire"
OUT=$(acquire alice 30000)
echo "$OUT"
TOKEN=$(echo "$OUT" | sed -n 4p)
# A new lock made as asked gets the short reply {OK, now, expired, token}: its record is
# the field <token> of the scope's hash.
r HGET "$L" "$TOKEN"
ID=$(printf '%d%014d' $((SLOT + 1)) "$TOKEN")
echo "id=$ID"
echo "== conflict"
acquire bob 30000
echo "== release"
# by id alone: the token is the id's last 14 digits, the directory gives the scope
r EVALSHA "$RELEASE" 1 "$D" $((10#${ID: -14})) '' alice 0 $RETAIN 5 $((SLOT + 1)) 1000
echo "== expiry"
acquire carol 50 >/dev/null
sleep 0.2
acquire dave 30000
echo "== events"
r XRANGE "$P:{$S}:E" - + | grep -A1 '^event$' | grep -v '^event$\|^--$'
