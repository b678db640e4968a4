#!/bin/sh
# Builds the training data of the embedded default model from the King James
# Bible (public domain; Debian package bible-kjv):
#   tmp/kjv.txt                      one verse per line (references stripped),
#                                    chapters separated by a blank line
#   models/dsv3-kjv-tiny/            8192-token byte-level BPE tokenizer
#       tokenizer.json, tokenizer_config.json
#   tmp/kjv.tokens                   token shard: one document per chapter + EOS,
#                                    FIM rate 0.1, seed 0
# Idempotent: installs bible-kjv only when missing; every output is rebuilt
# deterministically (same files on every run). Run from anywhere.
set -e
cd "$(dirname "$0")/.."

now() { date +%s.%N; }
since() { echo "$(now) $1" | awk '{printf "%.2f s", $1 - $2}'; }

if ! command -v bible >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "make_default_data: installing bible-kjv"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bible-kjv
fi

make -s -j2 build/dsv3
mkdir -p tmp models/dsv3-kjv-tiny

# 1. text: "Ge1:1 In the beginning..." -> "In the beginning...", blank line between chapters
t0=$(now)
bible -f "Gen1:1-Rev22:21" | LC_ALL=C awk '
    !/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ / { print "unexpected line " NR ": " $0 > "/dev/stderr"; bad = 1; exit 1 }
    {
        chapter = $1; sub(/:[0-9]+$/, "", chapter)   # "Ge1"
        text = $0; sub(/^[^ ]+ /, "", text)
        if (NR > 1 && chapter != prev) print ""
        print text
        prev = chapter; verses++
    }
    END { if (!bad && verses != 31102) { print "expected 31102 verses, got " verses > "/dev/stderr"; exit 1 } }
' > tmp/kjv.txt.tmp
mv tmp/kjv.txt.tmp tmp/kjv.txt
echo "extract:   $(since "$t0")  tmp/kjv.txt ($(wc -c < tmp/kjv.txt) bytes, $(grep -c '^$' tmp/kjv.txt) chapter breaks)"

# 2. tokenizer
t0=$(now)
build/dsv3 tokenizer-train --input tmp/kjv.txt --vocab-size 8192 --out models/dsv3-kjv-tiny
echo "tokenizer: $(since "$t0")"

# 3. token shard
t0=$(now)
build/dsv3 tokenize-corpus --tokenizer models/dsv3-kjv-tiny --input tmp/kjv.txt --out tmp/kjv.tokens \
    --doc-separator blank-line --fim-rate 0.1 --seed 0
echo "tokenize:  $(since "$t0")  tmp/kjv.tokens ($(wc -c < tmp/kjv.tokens) bytes)"
