#!/usr/bin/env bash
# compare.sh REV [ROUNDS] [-- flags of bench/queue]: builds bench/queue at
# git revision REV and at the working tree, then runs the two binaries
# back to back ROUNDS times (default 2), alternating which goes first, so
# a drifting machine favours neither. Compare the onebox scenarios'
# jobs/s (and their ratios against goqite, which both measure) between
# the "before" and "after" blocks of the same round.
#
#   bench/queue/compare.sh main 2 -- -n 5000 -runs 3 -postgres "$ONEBOX_TEST_POSTGRES_URL" -nats "$ONEBOX_TEST_NATS_URL"
set -euo pipefail
rev=${1:?usage: compare.sh REV [ROUNDS] [-- bench flags]}
shift
rounds=2
if [[ $# -gt 0 && $1 != -- ]]; then rounds=$1; shift; fi
[[ ${1:-} == -- ]] && shift
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/src" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$root" worktree add --detach "$tmp/src" "$rev" >/dev/null 2>&1
(cd "$tmp/src" && go build -o "$tmp/before" ./bench/queue)
(cd "$root" && go build -o "$tmp/after" ./bench/queue)
echo "before: $rev ($(git -C "$root" rev-parse --short "$rev")); after: working tree of $(git -C "$root" rev-parse --short HEAD)"
for ((i = 1; i <= rounds; i++)); do
  order=(before after)
  ((i % 2 == 0)) && order=(after before)
  for which in "${order[@]}"; do
    echo "=== round $i: $which"
    "$tmp/$which" "$@"
  done
done
