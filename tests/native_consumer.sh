#!/usr/bin/env bash
# A Redis-native consumer with nothing but redis-cli and docs/redis-layout.md: acquire,
# conflict, release, expiry, and the event stream. Usage: native_consumer.sh REDIS_CLI PORT
set -euo pipefail
CLI=$1
PORT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
r() { "$CLI" -c -p "$PORT" "$@"; }

# The scripts, with their --!include lines expanded, loaded on every master.
script() { awk -v dir="$ROOT/lua/" '/^--!include /{system("cat " dir $2); next} {print}' \
  "$ROOT/lua/$1.lua"; }
for node in $(r CLUSTER NODES | awk '/master/ {split($2, a, "@"); print a[1]}'); do
  for name in acquire release; do
    "$CLI" -h "${node%:*}" -p "${node#*:}" SCRIPT LOAD "$(script $name)" >/dev/null
  done
done
ACQUIRE=$(r SCRIPT LOAD "$(script acquire)")
RELEASE=$(r SCRIPT LOAD "$(script release)")

# The keys of scope "orders" under prefix "native".
P=native
S=orders
SLOT=$(r CLUSTER KEYSLOT "$P:{$S}:locks")
TAG=$(awk -v s="$SLOT" '$1 == s {print $2}' "$ROOT/docs/slot-tags.txt")
KEYS="$P:{$S}:locks $P:{$S}:res $P:{$S}:own $P:{$S}:exp $P:{$S}:events $P:{$TAG}:ids $P:{$TAG}:idexp $P:{$TAG}:seq"
HEAD="$S 100 60000"

# acquire: type resource owner mode one_per_owner ttl_ms max_ttl_ms metadata slot+1 at ticket
acquire() { r EVALSHA "$ACQUIRE" 8 $KEYS $HEAD job order-7 "$1" exclusive 0 "$2" 0 '{}' $((SLOT + 1)) '' '' 0 0; }

echo "== acquire"
OUT=$(acquire alice 30000)
echo "$OUT"
ID=$(echo "$OUT" | sed -n 's/.*"id":"\([0-9]*\)".*/\1/p' | head -1)
echo "id=$ID"
echo "== conflict"
acquire bob 30000
echo "== release"
r EVALSHA "$RELEASE" 8 $KEYS $HEAD "$ID" alice 0
echo "== expiry"
acquire carol 50 >/dev/null
sleep 0.2
acquire dave 30000
echo "== events"
r XRANGE "$P:{$S}:events" - + | grep -A1 '^event$' | grep -v '^event$\|^--$'
