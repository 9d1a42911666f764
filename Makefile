# nabla — GNU make build. `make help` lists the targets.
CC       ?= cc
PREFIX   ?= /usr/local
BUILD    ?= build
OPT      ?= -O3
CFLAGS   ?= $(OPT) -g
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC -fopenmp -Iinclude
LDLIBS   += -lz -lpng -lm -fopenmp
ISA_avx512 := -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma -mavx2
ISA_avx2   := -mavx2 -mfma

ifeq ($(BLAS),openblas)
CFLAGS += -DNB_OPENBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS += -lopenblas
endif

LIB_SRC   := $(sort $(wildcard src/*/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC   := $(sort $(wildcard tools/*.c))
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC  := $(sort $(wildcard tests/*.c))
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))
HEADERS   := $(wildcard include/*.h include/nabla/*.h src/*/*.h src/ops/ops.def)

all: $(BUILD)/libnabla.a $(BUILD)/libnabla.so $(BUILD)/nabla

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(findstring _avx512,$<),$(ISA_avx512),$(if $(findstring _avx2,$<),$(ISA_avx2))) -c $< -o $@

$(BUILD)/libnabla.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libnabla.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

$(BUILD)/nabla: $(CLI_OBJ) $(BUILD)/libnabla.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libnabla.a $(LDLIBS)

# The README's C example, extracted so the tests compile and run it.
$(BUILD)/readme_example.c: README.md
	@mkdir -p $(BUILD)
	awk '/<!-- example:begin -->/{f=1;next} /<!-- example:end -->/{f=0} f && !/^```/' README.md > $@

$(BUILD)/readme_example: $(BUILD)/readme_example.c $(BUILD)/libnabla.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libnabla.a $(LDLIBS)

$(BUILD)/run_tests: $(TEST_OBJ) $(BUILD)/libnabla.a
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libnabla.a $(LDLIBS)

# Fuzz targets, built with a main() that replays files (tests/fuzz/replay.c);
# `make fuzz` builds them for libFuzzer with clang when it is installed.
$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(BUILD)/libnabla.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< tests/fuzz/replay.c $(BUILD)/libnabla.a $(LDLIBS)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

deps:
	@scripts/install-deps.sh

test: deps all $(BUILD)/run_tests $(BUILD)/readme_example $(FUZZ_BIN)
	NABLA_BUILD=$(BUILD) $(BUILD)/run_tests

asan:
	$(MAKE) test BUILD=build-asan OPT=-O1 \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDLIBS="-lz -lpng -lm -fopenmp -fsanitize=address,undefined"

demo: deps all
	@scripts/demo.sh $(BUILD)

$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.inc) $(BUILD)/libnabla.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libnabla.a $(LDLIBS)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

bench: deps all $(BENCH_BIN)
	@scripts/bench.sh $(BUILD)

fuzz:
	@command -v clang >/dev/null || { echo "make fuzz needs clang (apt-get install clang)"; exit 2; }
	@mkdir -p $(BUILD)/libfuzzer
	for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -O1 -g -fsanitize=fuzzer,address,undefined -Iinclude -D_GNU_SOURCE -o $(BUILD)/libfuzzer/$$n $$f $(LIB_SRC) -lz -lpng -lm || exit 1; done
	@echo "run e.g. $(BUILD)/libfuzzer/fuzz_safetensors tests/fuzz/corpus/safetensors"

install: all
	install -d $(DESTDIR)$(PREFIX)/include/nabla $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/nabla.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/nabla/*.h $(DESTDIR)$(PREFIX)/include/nabla/
	install -m 644 $(BUILD)/libnabla.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libnabla.so $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/nabla $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|0.1.0|' nabla.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/nabla.pc

clean:
	rm -rf build build-asan

help:
	@echo "make          build build/libnabla.a, build/libnabla.so, build/nabla"
	@echo "make test     install missing dependencies, build, run the tests"
	@echo "make demo     train the Fashion-MNIST MLP for 2 epochs and show predictions"
	@echo "make bench    throughput beside PyTorch (when python3-torch is installed)"
	@echo "make asan     the tests under address and undefined-behaviour sanitizers"
	@echo "make fuzz     libFuzzer builds of the file readers (needs clang)"
	@echo "make install  PREFIX=/usr/local: headers, libraries, nabla.pc, the CLI"
	@echo "make BLAS=openblas  use OpenBLAS for GEMM (comparison only)"

.PHONY: all deps test asan demo bench fuzz install clean help
