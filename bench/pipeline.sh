#!/usr/bin/env bash
# pipeline.sh compares onebox's photo pipeline (imaging.Decode, then
# imaging.Variants: widths 2048..128 and a 256x256 centre-cropped
# thumbnail, JPEG quality 82) with libvips producing the same six outputs
# as six sequential vipsthumbnail runs.
#
#   bench/pipeline.sh [FILE] [REPS]
#
# Without FILE it benchmarks a 12-MP (4032x3024) photo-like JPEG that
# bench/pipeline generates (-generate), so nothing outside the repository
# is needed; pass FILE for a real photo, e.g. a camera JPEG of your own.
#
# Each repetition starts fresh processes on both sides, onebox first in odd
# repetitions and libvips first in even ones. onebox makes all six outputs
# in one process, libvips in six, so libvips pays five process start-ups
# more: every repetition also times vipsthumbnail on a 1x1 JPEG three times
# (start-up, library initialisation, a trivial decode and encode) and
# takes five times the median of those off libvips' time. Both sides then
# pay one start-up. The wall time is measured around the processes, the
# peak RSS by /usr/bin/time.
#
# Needs Go, vipsthumbnail and GNU time. On Debian or Ubuntu:
#   apt-get update && apt-get install -y libvips-tools time
# (the script runs that itself when either is missing and it is root).
set -euo pipefail
cd "$(dirname "$0")/.."

file=${1:-}
reps=${2:-5}
quality=82
widths=(2048 1024 512 256 128)

need=()
command -v vipsthumbnail >/dev/null || need+=(libvips-tools)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "pipeline.sh: missing ${need[*]}: apt-get update && apt-get install -y ${need[*]}" >&2
		exit 1
	fi
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/pipeline" ./bench/pipeline
if [[ -z $file ]]; then
	file="$work/generated_4032x3024.jpg"
	"$work/pipeline" -generate 4032x3024 -save "$file"
fi
file=$(realpath "$file")
"$work/pipeline" -generate 1x1 -save "$work/1x1.jpg"

# run CMD...: runs it under /usr/bin/time, adds its peak RSS (KB) to the
# file "$work/rss" as one line.
run() { /usr/bin/time -f %M -a -o "$work/rss" "$@" >/dev/null; }
us() { echo "${EPOCHREALTIME/./}"; }
peak() { sort -n "$work/rss" | tail -1; }
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

measure_onebox() {
	: >"$work/rss"
	local t0 t1
	t0=$(us)
	run "$work/pipeline" -n 1 -q "$quality" "$file"
	t1=$(us)
	onebox_ms+=($(((t1 - t0) / 1000)))
	onebox_rss=$(($(peak) > onebox_rss ? $(peak) : onebox_rss))
}
measure_vips() {
	: >"$work/rss"
	local t0 t1 w
	t0=$(us)
	for w in "${widths[@]}"; do
		run vipsthumbnail "$file" -s "${w}x" -o "$work/vips_w$w.jpg[Q=$quality,strip]"
	done
	run vipsthumbnail "$file" -s 256x256 --smartcrop centre -o "$work/vips_thumb.jpg[Q=$quality,strip]"
	t1=$(us)
	vips_ms+=($(((t1 - t0) / 1000)))
	vips_rss=$(($(peak) > vips_rss ? $(peak) : vips_rss))
}
measure_startup() {
	local t0 t1 s=() i
	for i in 1 2 3; do
		t0=$(us)
		vipsthumbnail "$work/1x1.jpg" -s 1x -o "$work/vips_1x1.jpg[Q=$quality,strip]" >/dev/null
		t1=$(us)
		s+=($((t1 - t0)))
	done
	startup+=($(median3 "${s[@]}"))
}

onebox_ms=() vips_ms=() startup=() onebox_rss=0 vips_rss=0
for ((i = 1; i <= reps; i++)); do
	if ((i % 2)); then
		measure_onebox
		measure_vips
	else
		measure_vips
		measure_onebox
	fi
	measure_startup
done

# stats DECIMALS LIST...: "median (min-max)" of numbers.
stats() {
	local d=$1
	shift
	printf '%s\n' "$@" | sort -g | awk -v d="$d" '{v[NR] = $1} END {
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		f = "%." d "f"
		printf f " (" f "-" f ")", m, v[1], v[NR] }'
}

echo "file: $(basename "$file") ($(stat -c %s "$file") bytes), $(nproc) cores, $reps repetitions, JPEG quality $quality, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "libvips: $(vips --version)"
printf '%-4s %9s %10s %12s %15s %9s %9s\n' rep onebox_ms libvips_ms startup_ms libvips-5su_ms raw adjusted
raw=() adj=()
for ((i = 0; i < reps; i++)); do
	o=${onebox_ms[i]} v=${vips_ms[i]} s=${startup[i]}
	a=$((v - 5 * s / 1000))
	raw+=("$(awk "BEGIN{print $o/$v}")")
	adj+=("$(awk "BEGIN{print $o/$a}")")
	printf '%-4s %9d %10d %12.1f %15d %8.2fx %8.2fx\n' $((i + 1)) "$o" "$v" "$(awk "BEGIN{print $s/1000}")" "$a" "${raw[i]}" "${adj[i]}"
done
echo "onebox/libvips, median (min-max) of the per-repetition ratios:"
echo "  as measured (libvips pays six start-ups): $(stats 2 "${raw[@]}")"
echo "  libvips less five start-ups:              $(stats 2 "${adj[@]}")"
echo "  ms: onebox $(stats 0 "${onebox_ms[@]}"), libvips $(stats 0 "${vips_ms[@]}"), one libvips start-up $(stats 1 $(printf '%s\n' "${startup[@]}" | awk '{print $1/1000}'))"
printf 'peak RSS: onebox %d KB, libvips %d KB (largest single process), %.2fx\n' "$onebox_rss" "$vips_rss" "$(awk "BEGIN{print $onebox_rss/$vips_rss}")"
echo
echo "onebox in one warm process (no start-up, heap already grown):"
"$work/pipeline" -n "$reps" -q "$quality" "$file"
