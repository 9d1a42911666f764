# nabla — GNU make build. `make help` lists the targets.
CC       ?= cc
PREFIX   ?= /usr/local
# BLAS=openblas builds apart (build-openblas/): objects do not track the flags
# they were built with, so one tree holding both builds would mix them.
BUILD    ?= $(if $(filter openblas,$(BLAS)),build-openblas,build)
OPT      ?= -O3
CFLAGS   ?= $(OPT) -g
# Threads come from the library's own pool (src/core/pool.c, pthreads);
# -fopenmp-simd only honours the `omp simd` loop hints, without libgomp.
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC -fopenmp-simd -pthread -Iinclude
LDLIBS   += -lz -lpng -lm -pthread
ISA_avx512 := -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma -mavx2
ISA_avx2   := -mavx2 -mfma

ifeq ($(BLAS),openblas)
CFLAGS += -DNB_OPENBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS += -lopenblas
endif

# Data parallelism (src/dist, nabla/dist.h) over Open MPI: on when mpicc is
# found (MPI=0 turns it off, MPI=1 insists). Only src/dist/*.c see MPI's
# headers; without MPI they build stubs that report "built without MPI".
# Deferred (=) so that `make test` sees MPI once `deps` has installed it.
MPI ?= $(if $(shell mpicc --showme:version 2>/dev/null),1,0)
$(BUILD)/src/dist/%.o: override CFLAGS += $(if $(filter 1,$(MPI)),-DNB_MPI $(shell mpicc --showme:compile))
override LDLIBS += $(if $(filter 1,$(MPI)),$(shell mpicc --showme:link))

LIB_SRC   := $(sort $(wildcard src/*/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC   := $(sort $(wildcard tools/*.c lab/*.c))
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC  := $(sort $(wildcard tests/*.c))
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))
HEADERS   := $(wildcard include/*.h include/nabla/*.h src/*/*.h src/ops/ops.def lab/*.h)

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

# The library again with each NB_CLONES loop (src/kernels/simd.h) in its
# baseline variant alone, and a CLI on it: tests/test_clones.c trains with
# both CLIs and requires the same bits, as the variants promise.
NC_DIR := $(BUILD)/noclones
NC_OBJ := $(LIB_OBJ:$(BUILD)/%=$(NC_DIR)/%)
$(NC_DIR)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DNB_NO_CLONES $(if $(findstring _avx512,$<),$(ISA_avx512),$(if $(findstring _avx2,$<),$(ISA_avx2))) -c $< -o $@
$(NC_DIR)/src/dist/%.o: override CFLAGS += $(if $(filter 1,$(MPI)),-DNB_MPI $(shell mpicc --showme:compile))

$(NC_DIR)/nabla: $(CLI_OBJ) $(NC_OBJ)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(NC_OBJ) $(LDLIBS)

$(BUILD)/run_tests: $(TEST_OBJ) $(BUILD)/libnabla.a
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libnabla.a $(LDLIBS)

# Fuzz targets, built with a main() that replays files (tests/fuzz/replay.c);
# the tests replay the seed corpora and mutations of them.
$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(BUILD)/libnabla.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< tests/fuzz/replay.c $(BUILD)/libnabla.a $(LDLIBS)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

# The same targets built for libFuzzer with clang, under ASan and UBSan, in
# $(BUILD)/libfuzzer (a library of their own). `make test` builds them when
# clang and its libFuzzer are installed (scripts/install-deps.sh installs
# them) and tests/test_safetensors_fuzz.c runs each for FUZZ_TEST_SECONDS;
# `make fuzz` runs each for FUZZ_SECONDS.
CLANG             ?= clang
FUZZ_SECONDS      ?= 60
FUZZ_TEST_SECONDS ?= 20
LF_DIR   := $(BUILD)/libfuzzer
LF_FLAGS := -O1 -g -std=c11 -D_GNU_SOURCE -Iinclude -fopenmp-simd -pthread -Wno-pass-failed -fno-omit-frame-pointer \
            -fsanitize=address,undefined -fno-sanitize-recover=undefined
# What the library's objects get on top: coverage for the fuzzer. The SIMD
# kernels (src/kernels) are not what the targets explore, and clang takes
# minutes per file on their intrinsics with UBSan and coverage together (4-7
# CPU minutes for gemm_avx512.c against 40 s with ASan alone), so they get
# ASan only; `make asan` checks them under UBSan as well.
LF_OBJ_FLAGS = $(LF_FLAGS) -fsanitize=fuzzer-no-link
$(LF_DIR)/src/kernels/%.o: LF_OBJ_FLAGS = -O1 -g -std=c11 -D_GNU_SOURCE -Iinclude -fopenmp-simd -pthread -Wno-pass-failed -fno-omit-frame-pointer -fsanitize=address
LF_OBJ   := $(LIB_SRC:%.c=$(LF_DIR)/%.o)
LF_BIN   := $(FUZZ_SRC:tests/fuzz/%.c=$(LF_DIR)/%)
# Whether clang links a libFuzzer program (evaluated when a rule needs it).
HAVE_LIBFUZZER = $(shell printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; return n > 1u << 30; }\n' \
                   | $(CLANG) -x c -pthread -fsanitize=fuzzer -o /dev/null - 2>/dev/null && echo yes)

$(LF_DIR)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CLANG) $(LF_OBJ_FLAGS) $(if $(findstring _avx512,$<),$(ISA_avx512),$(if $(findstring _avx2,$<),$(ISA_avx2))) -c $< -o $@

$(LF_DIR)/libnabla.a: $(LF_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LF_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(LF_DIR)/libnabla.a
	$(CLANG) $(LF_FLAGS) -fsanitize=fuzzer -o $@ $< $(LF_DIR)/libnabla.a -lz -lpng -lm

deps:
	@scripts/install-deps.sh $(if $(filter openblas,$(BLAS)),--blas)

test: deps all $(BUILD)/run_tests $(BUILD)/readme_example $(NC_DIR)/nabla $(FUZZ_BIN) $(if $(HAVE_LIBFUZZER),$(LF_BIN))
	NABLA_BUILD=$(BUILD) FUZZ_TEST_SECONDS=$(FUZZ_TEST_SECONDS) $(BUILD)/run_tests

asan:
	$(MAKE) test BUILD=build-asan OPT=-O1 \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDLIBS="-lz -lpng -lm -pthread -fsanitize=address,undefined"

demo: deps all
	@scripts/demo.sh $(BUILD)

$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.inc) $(BUILD)/libnabla.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libnabla.a $(LDLIBS)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

bench: deps all $(BENCH_BIN)
	@scripts/bench.sh $(BUILD)

fuzz-build:
	@test -n "$(HAVE_LIBFUZZER)" || { echo "make fuzz needs clang with libFuzzer (scripts/install-deps.sh)"; exit 2; }
	@$(MAKE) --no-print-directory $(LF_BIN)

fuzz: fuzz-build
	tests/fuzz/run_libfuzzer.sh $(LF_DIR) $(FUZZ_SECONDS)

install: all
	install -d $(DESTDIR)$(PREFIX)/include/nabla $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/nabla.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/nabla/*.h $(DESTDIR)$(PREFIX)/include/nabla/
	install -m 644 $(BUILD)/libnabla.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libnabla.so $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/nabla $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|0.1.0|' -e 's|@LIBS_PRIVATE@|$(strip $(LDLIBS))|' nabla.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/nabla.pc

clean:
	rm -rf build build-asan build-openblas

help:
	@echo "make          build build/libnabla.a, build/libnabla.so, build/nabla"
	@echo "make test     install missing dependencies, build, run the tests"
	@echo "make demo     train the Fashion-MNIST MLP for 2 epochs and show predictions"
	@echo "make bench    throughput beside PyTorch (when python3-torch is installed)"
	@echo "make asan     the tests under address and undefined-behaviour sanitizers"
	@echo "make fuzz     run each libFuzzer target FUZZ_SECONDS (default 60; needs clang)"
	@echo "make install  PREFIX=/usr/local: headers, libraries, nabla.pc, the CLI"
	@echo "make BLAS=openblas  use OpenBLAS for GEMM (comparison only), in build-openblas/;"
	@echo "                    its headers: scripts/install-deps.sh --blas"

.PHONY: all deps test asan demo bench fuzz fuzz-build install clean help
