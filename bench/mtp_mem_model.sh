#!/bin/sh
# MTP speculative decoding where decode is bound by memory bandwidth, as on real DeepSeek-V3 serving:
# trains bench/kjv-mtp-f32.json (DeepSeek-V3 architecture, 6 layers, hidden 512, 8 routed experts top-2
# + a 4-wide shared expert, one MTP module; 14.7M parameters activated per token) on the default model's
# data (scripts/make_default_data.sh), exports it in F32 (59 MB of weights per decoded token: out of a
# 32 MB L3, so a decode step reads its weights from memory, while the default model's 12 MB of BF16 stay
# in cache and its steps are compute bound), then runs bench_mtp on it.
#   bench/mtp_mem_model.sh [train|bench|all]      (default all; training ~45 min on 2 cores)
set -e
cd "$(dirname "$0")/.."
what=${1:-all}
make -s -j2 build/dsv3 build/bench_mtp
if [ "$what" = train ] || [ "$what" = all ]; then
    [ -f tmp/kjv.tokens ] || ./scripts/make_default_data.sh
    rm -rf tmp/mtpf32-init tmp/mtpf32-train
    ./build/dsv3 init --config bench/kjv-mtp-f32.json --out tmp/mtpf32-init --dtype f32 --seed 0 --std 0.02
    cp models/dsv3-kjv-tiny/tokenizer.json models/dsv3-kjv-tiny/tokenizer_config.json tmp/mtpf32-init/
    ./build/dsv3 train --model tmp/mtpf32-init --data tmp/kjv.tokens --out tmp/mtpf32-train --steps 800 --batch 8 \
        --seq-len 256 --lr 2e-3 --final-lr 2e-4 --warmup 40 --decay-start 250 --decay-steps 550 \
        --mtp-lambda 0.3 --bal-alpha 1e-4 --bias-gamma 1e-3 --eval-every 100 --eval-windows 16 \
        --save-every 50 --keep 2 --seed 0 --val-frac 0.02 --spike-factor 3 -t 2
    ./build/dsv3 export --checkpoint tmp/mtpf32-train --out tmp/mtpf32 --dtype f32
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    ./build/bench_mtp --model tmp/mtpf32 --drafts 1,2,3 --repeat 5 -t 2
    ./build/bench_mtp --model tmp/mtpf32 --costs --repeat 9 -t 2
fi
