# dsv3 build. Targets:
#   make            release build: build/dsv3, build/libdsv3.a, build/test_dsv3, build/bench_*
#   make test       release tests, then the whole suite again under ASan+UBSan
#   make asan       build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer)
#   make debug      build-debug/ (-O0 -g)
#   make demo       release build + generate text with the embedded default model
#   make clean
BUILD   ?= build
CC      ?= cc
OPT     ?= -O3 -march=native
CFLAGS  ?=
CFLAGS  += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-psabi -fopenmp $(OPT) -Iinclude -Isrc -MMD -MP
LDLIBS  += -ljansson -lpcre2-8 -lmicrohttpd -lm -fopenmp -lpthread

LIB_SRC   := $(shell find src -name '*.c' ! -path 'src/cli/*' | sort)
CLI_SRC   := $(shell find src/cli -name '*.c' | sort)
TEST_SRC  := $(shell find tests -name '*.c' | sort)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/%)

all: $(BUILD)/dsv3 $(BUILD)/test_dsv3 $(BENCH_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# elementwise activations: vectorised with the scalar code's values (see the file's header)
$(BUILD)/obj/src/ops/cpu/activation.o: CFLAGS += -fno-trapping-math

$(BUILD)/libdsv3.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/dsv3: $(CLI_OBJ) $(BUILD)/libdsv3.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libdsv3.a $(LDLIBS)

# The test binary links the CLI objects too (minus main) so CLI commands are testable in-process.
$(BUILD)/test_dsv3: $(TEST_OBJ) $(filter-out %/main.o,$(CLI_OBJ)) $(BUILD)/libdsv3.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench_%: $(BUILD)/obj/bench/bench_%.o $(BUILD)/libdsv3.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

test: all
	./$(BUILD)/test_dsv3
	$(MAKE) asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    ./build-asan/test_dsv3 --sanitizer

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    build-asan/dsv3 build-asan/test_dsv3

debug:
	$(MAKE) BUILD=build-debug OPT="-O0 -g" build-debug/dsv3 build-debug/test_dsv3

demo: all
	./$(BUILD)/dsv3 generate --model models/dsv3-kjv-tiny --prompt "In the beginning God" -n 80 \
	    --temp 0.8 --top-k 40 --seed 1 --mtp --stats

clean:
	rm -rf build build-asan build-debug

.PHONY: all test asan debug demo clean
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
