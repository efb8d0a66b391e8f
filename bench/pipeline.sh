#!/usr/bin/env bash
# pipeline.sh compares onebox's photo pipeline (imaging.Decode, then
# imaging.Variants: widths 128..2048 and a 256x256 centre-cropped
# thumbnail, JPEG quality 82) with libvips producing the same six outputs
# as six sequential vipsthumbnail runs. Each repetition starts fresh
# processes on both sides, so both pay their start-up; the wall time is
# measured around the processes, the peak RSS by /usr/bin/time.
#
#   bench/pipeline.sh [FILE] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."

file=${1:-../shared/testdata/images/large/photo_12mp_olympus_4032x3024.jpg}
reps=${2:-5}
quality=82
widths=(2048 1024 512 256 128)

if ! command -v vipsthumbnail >/dev/null; then
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libvips-tools
fi
if [[ ! -x /usr/bin/time ]]; then
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y time
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/pipeline" ./bench/pipeline
file=$(realpath "$file")

# run CMD...: runs it under /usr/bin/time, adds its peak RSS (KB) to the
# file "$work/rss" as one line.
run() { /usr/bin/time -f %M -a -o "$work/rss" "$@" >/dev/null; }
us() { echo "${EPOCHREALTIME/./}"; }
peak() { sort -n "$work/rss" | tail -1; }

onebox_ms=() vips_ms=() onebox_rss=0 vips_rss=0
for ((i = 1; i <= reps; i++)); do
	: >"$work/rss"
	t0=$(us)
	run "$work/pipeline" -n 1 -q "$quality" "$file"
	t1=$(us)
	onebox_ms+=($(((t1 - t0) / 1000)))
	onebox_rss=$(( $(peak) > onebox_rss ? $(peak) : onebox_rss ))

	: >"$work/rss"
	t0=$(us)
	for w in "${widths[@]}"; do
		run vipsthumbnail "$file" -s "${w}x" -o "$work/vips_w$w.jpg[Q=$quality,strip]"
	done
	run vipsthumbnail "$file" -s 256x256 --smartcrop centre -o "$work/vips_thumb.jpg[Q=$quality,strip]"
	t1=$(us)
	vips_ms+=($(((t1 - t0) / 1000)))
	vips_rss=$(( $(peak) > vips_rss ? $(peak) : vips_rss ))
done

echo "file: $(basename "$file"), $(nproc) cores, $reps repetitions, JPEG quality $quality"
echo "libvips: $(vips --version)"
printf '%-6s %12s %12s %8s\n' rep onebox_ms libvips_ms ratio
sum_o=0 sum_v=0
for ((i = 0; i < reps; i++)); do
	o=${onebox_ms[i]} v=${vips_ms[i]}
	sum_o=$((sum_o + o)) sum_v=$((sum_v + v))
	printf '%-6s %12d %12d %8s\n' $((i + 1)) "$o" "$v" "$(awk "BEGIN{printf \"%.2f\", $o/$v}")"
done
printf '%-6s %12d %12d %8s\n' mean $((sum_o / reps)) $((sum_v / reps)) "$(awk "BEGIN{printf \"%.2f\", $sum_o/$sum_v}")"
printf '%-6s %9d KB %9d KB %8s\n' peakRSS "$onebox_rss" "$vips_rss" "$(awk "BEGIN{printf \"%.2f\", $onebox_rss/$vips_rss}")"
echo
echo "onebox in one warm process (no start-up, heap already grown):"
"$work/pipeline" -n "$reps" -q "$quality" "$file"
