# ANGEL Flow Meter — the entry point. `make run` and `make test` install what is missing first.
#   make            build (build/bin/)
#   make run        demo: replay a generated trace through the meter into angel-sink
#   make test       unit + integration tests (ctest); SANITIZE=1 for ASan+UBSan
#   make bench      benchmarks against softflowd / nfpcapd
#   make fuzz       libFuzzer on the packet parser and on ctld's segment readers, FUZZ_SECONDS each (default 60)
#   make install    PREFIX=/usr/local DESTDIR=
CXX        ?= g++
PREFIX     ?= /usr/local
DESTDIR    ?=
SANITIZE   ?= 0
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc)

ifeq ($(SANITIZE),1)
BUILD ?= build-san
CMAKE_FLAGS += -DANGEL_SANITIZE=ON
else
BUILD ?= build
endif
ifneq ($(findstring clang,$(CXX)),)
ifeq ($(SANITIZE),0)
BUILD := build-clang
endif
endif

.PHONY: all deps configure run test bench fuzz install clean
all: configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@tools/install-deps.sh

configure: $(BUILD)/build.ninja
$(BUILD)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_CXX_COMPILER=$(CXX) $(CMAKE_FLAGS)

run: deps all
	tools/demo.sh $(BUILD)/bin

test: deps all
	cd $(BUILD) && ctest --output-on-failure --timeout 900 -j 1

bench: deps all
	bench/run-all.sh $(BUILD)/bin

fuzz: deps
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DANGEL_FUZZ=ON
	cmake --build build-fuzz -j $(JOBS) --target parser_fuzz segment_view_fuzz
	fuzz/run.sh build-fuzz/bin/parser_fuzz $(FUZZ_SECONDS)
	mkdir -p fuzz/corpus-segment
	build-fuzz/bin/segment_view_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -artifact_prefix=$${TMPDIR:-/tmp}/ fuzz/corpus-segment

install: all
	tools/install.sh "$(BUILD)/bin" "$(DESTDIR)" "$(PREFIX)"

clean:
	rm -rf build build-san build-clang build-fuzz
