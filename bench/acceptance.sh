#!/bin/sh
# Issue #5's acceptance measurements in one run, with their targets:
#   bench/acceptance.sh [-t THREADS=2] [-r REPEAT=5] [--models DIR=tmp]
# Builds nothing (run `make -j2` first). Creates the bench models in DIR when missing (bench-1b BF16,
# bench-1b-fp8 with a BF16 lm_head as DeepSeek-V3 ships it, bench-1b-fp8all with lm_head in FP8 too, and
# both again with power-of-two block scales as DeepSeek-V3.1 ships them (-ue8m0);
# ../shared/bench/bench-1b.json, seed 0; ~6 GB, ~2 min), then runs: bench_membw and bench_fma (the machine
# of the moment), `dsv3 bench -p 512 -n 128` per model, bench_membw again, bench_decode at 64 and 4096
# tokens of context (F32 and BF16 KV cache), bench_mtp (greedy, 1-3 drafts) at -t 1 and -t THREADS, bench_mtp --costs. Prints every
# tool's own output, then a summary. Medians of REPEAT runs throughout. Shared machines' bandwidth and
# FMA throughput move by up to 2x within minutes: compare numbers of one run, and rerun before
# concluding anything from a single one.
set -eu
T=2 R=5 M=tmp
while [ $# -gt 0 ]; do
    case "$1" in
    -t) T="$2"; shift 2 ;;
    -r) R="$2"; shift 2 ;;
    --models) M="$2"; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "acceptance.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
B=build
for p in dsv3 bench_membw bench_fma bench_decode bench_mtp; do
    [ -x "$B/$p" ] || { echo "acceptance.sh: $B/$p missing: run 'make -j2' first" >&2; exit 1; }
done
CFG=../shared/bench/bench-1b.json
mk() { # dir, init-model options
    [ -f "$M/$1/config.json" ] && return 0
    [ -f "$CFG" ] || { echo "acceptance.sh: $CFG missing (the shared bench config)" >&2; exit 1; }
    echo "creating $M/$1 ..."
    d="$1"; shift
    "$B/dsv3" init-model --config "$CFG" --out "$M/$d" --seed 0 "$@" >/dev/null
}
mk bench-1b --dtype bf16
mk bench-1b-fp8 --dtype fp8
mk bench-1b-fp8all --dtype fp8 --fp8-lm-head
mk bench-1b-fp8-ue8m0 --dtype fp8 --scale-fmt ue8m0
mk bench-1b-fp8all-ue8m0 --dtype fp8 --fp8-lm-head --scale-fmt ue8m0

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
run() { echo "\$ $*"; "$@" | tee -a "$LOG"; }
date -u
run "$B/bench_membw" -t "$T"
run "$B/bench_fma" -t "$T"
for m in bench-1b bench-1b-fp8 bench-1b-fp8all bench-1b-fp8-ue8m0 bench-1b-fp8all-ue8m0; do run "$B/dsv3" bench --model "$M/$m" -p 512 -n 128 -t "$T" -r "$R"; done
run "$B/bench_membw" -t "$T"
run "$B/bench_decode" --model "$M/bench-1b" --ctx 64,4096 --gen 32 --repeat "$R" -t "$T"
run "$B/bench_decode" --model "$M/bench-1b" --ctx 64,4096 --gen 32 --repeat "$R" -t "$T" --kv-dtype bf16
run "$B/bench_mtp" --repeat "$R" --drafts 1,2,3 -t 1
[ "$T" = 1 ] || run "$B/bench_mtp" --repeat "$R" --drafts 1,2,3 -t "$T"
run "$B/bench_mtp" --costs --repeat 9 -t 1
date -u

# ---- summary (from the tools' lines kept in $LOG)
med() { # model, test -> median t/s of the dsv3 bench table
    grep "^| $1 |" "$LOG" | grep "| $2 |" | awk -F'|' '{gsub(/ /, "", $9); print $9}' | tail -1
}
membw=$(grep '"bench":"membw"' "$LOG" | sed 's/.*"median_gb_s":\([0-9.]*\).*/\1/' | tr '\n' ' ')
fma=$(grep '"bench":"fma"' "$LOG" | sed 's/.*"median_gmac_s":\([0-9.]*\).*/\1/')
dec=$(grep '"bench":"decode"' "$LOG" | grep '"kv_dtype":"F32"' | tail -1)
decb=$(grep '"bench":"decode"' "$LOG" | grep '"kv_dtype":"BF16"' | tail -1)
d64b=$(echo "$decb" | sed 's/.*"ctx":64,"decode_tok_s":\([0-9.]*\).*/\1/')
d4kb=$(echo "$decb" | sed 's/.*"ctx":4096,"decode_tok_s":\([0-9.]*\).*/\1/')
d64=$(echo "$dec" | sed 's/.*"ctx":64,"decode_tok_s":\([0-9.]*\).*/\1/')
d4k=$(echo "$dec" | sed 's/.*"ctx":4096,"decode_tok_s":\([0-9.]*\).*/\1/')
p64=$(echo "$dec" | sed 's/.*"ctx":64,[^}]*"decode_pct_membw":\([0-9.]*\).*/\1/')
wb=$(echo "$dec" | sed 's/.*"weight_bytes_per_tok":\([0-9]*\).*/\1/')
bw0=$(echo "$membw" | awk '{print $1}')
tg=$(med bench-1b tg128)
echo
echo "summary (-t $T, medians of $R; read bandwidth $membw GB/s before / after the dsv3 bench runs, FMA $fma G/s)"
printf '  %-44s %10s   %s\n' "criterion" "measured" "target"
printf '  %-44s %10s   %s\n' "BF16 tg128 tok/s" "$tg" ">= 63"
printf '  %-44s %10s   %s\n' "  x weight bytes/token: % of bandwidth before" "$(echo "$tg $wb $bw0" | awk '{printf "%.1f", 100 * $1 * $2 / 1e9 / $3}')" ">= 90"
printf '  %-44s %10s   %s\n' "  bench_decode @64: % of bandwidth" "$p64" ">= 90"
printf '  %-44s %10s   %s\n' "FP8 tg128 tok/s (lm_head BF16)" "$(med bench-1b-fp8 tg128)" ">= 107"
printf '  %-44s %10s   %s\n' "FP8 tg128 tok/s (lm_head FP8 too)" "$(med bench-1b-fp8all tg128)" ">= 107"
printf '  %-44s %10s   %s\n' "FP8 ue8m0 scales tg128 (lm_head BF16)" "$(med bench-1b-fp8-ue8m0 tg128)" ">= 107"
printf '  %-44s %10s   %s\n' "FP8 ue8m0 scales tg128 (lm_head FP8 too)" "$(med bench-1b-fp8all-ue8m0 tg128)" ">= 107"
printf '  %-44s %10s   %s\n' "BF16 pp512 tok/s" "$(med bench-1b pp512)" ">= 601"
printf '  %-44s %10s   %s\n' "FP8 pp512 tok/s" "$(med bench-1b-fp8 pp512)" ">= 561"
printf '  %-44s %10s   %s\n' "FP8 ue8m0 scales pp512 tok/s" "$(med bench-1b-fp8-ue8m0 pp512)" ">= 561"
printf '  %-44s %10s   %s\n' "decode @4096 / @64" "$(echo "$d4k $d64" | awk '{printf "%.1f%%", 100 * $1 / $2}')" ">= 70%"
printf '  %-44s %10s   %s\n' "  the same, --kv-dtype bf16" "$(echo "$d4kb $d64b" | awk '{printf "%.1f%%", 100 * $1 / $2}')" "(half the KV bytes)"
grep '"bench":"mtp"' "$LOG" | while read -r l; do
    th=$(echo "$l" | sed 's/.*"threads":\([0-9]*\).*/\1/')
    sp=$(echo "$l" | sed 's/"drafts":/\n/g' | sed -n 's/^\([0-9]\),"median_speedup":\([0-9.]*\),"accepted":\([0-9]*\),"drafted":\([0-9]*\).*/\1:\2x(\3\/\4)/p' | tr '\n' ' ')
    id=$(echo "$l" | sed 's/.*"identical":\([a-z]*\).*/\1/')
    printf '  %-44s %s  identical: %s   target >= 1.5x at >= 75%% accepted\n' "MTP default model -t $th, drafts:speedup" "$sp" "$id"
done
