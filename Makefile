# Cairn: build, run, test, bench.
#
#   make run    a dev node that mines a block every few seconds (datadir ./data/dev)
#   make install  cairn-node and cairn-wallet into ~/.cargo/bin (on PATH with rustup)
#   make test   formatting check, clippy with warnings denied, every test
#   make testnet  a private testnet: 4 nodes on loopback, 2 mining (./data/testnet)
#   make bench  benchmarks with their ratios (figures go in benches/README.md)
#   make fuzz   every fuzz target for FUZZ_SECONDS each (nightly; see fuzz/README.md)
#   make crash  the crash campaign with 200 SIGKILLs (make test runs 20)

CARGO ?= cargo
DATADIR ?= ./data/dev

.PHONY: build install run test fmt fmt-check lint bench testnet clean fuzz fuzz-seed fuzz-cmin crash

build:
	$(CARGO) build --release --workspace

# cargo install puts the binaries in ~/.cargo/bin, which rustup puts on PATH
install:
	$(CARGO) install --locked --path node
	$(CARGO) install --locked --path wallet

run:
	$(CARGO) run --release -p cairn-node -- run --network dev --mine --datadir $(DATADIR)

# The whole-system tests in tests/ run the real binaries: build them first
# (cargo builds a package's binaries for its own integration tests only).
test: fmt-check lint
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	CAIRN_BENCH_REPORT_ONLY=1 $(CARGO) bench --bench consensus
	$(CARGO) bench --bench mining
	$(CARGO) bench --bench rpc_load
	$(CARGO) bench --bench p2p
	$(CARGO) bench --bench mempool
	$(CARGO) build --release -p cairn-node
	$(CARGO) bench --bench e2e

testnet:
	$(CARGO) run --release -p cairn-node -- testnet --nodes 4 --miners 2 --dir ./data/testnet

# Fuzzing needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= p2p_message noise_handshake transfer block rpc_params genesis_spec node_config wallet_file
FUZZ_FLAGS ?= -s none

fuzz:
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		echo "== fuzzing $$t for $(FUZZ_SECONDS) s"; \
		cargo +nightly fuzz run $(FUZZ_FLAGS) $$t -- -max_total_time=$(FUZZ_SECONDS) \
			-malloc_limit_mb=256 -rss_limit_mb=1024 -print_final_stats=1 \
			|| exit 1; \
	done

# The seed inputs the fuzzers start from (real messages, blocks, specs, wallets).
fuzz-seed:
	$(CARGO) run -p cairn-fuzz-checks --example seed_corpus

# Shrink the stored corpora to the inputs that add coverage edges (a few KB each).
fuzz-cmin:
	cd fuzz && for t in $(FUZZ_TARGETS); do cargo +nightly fuzz cmin $(FUZZ_FLAGS) $$t -- -use_counters=0 || exit 1; done

crash:
	$(CARGO) build --workspace --bins
	CAIRN_CRASH_KILLS=200 $(CARGO) test --test crash_campaign -- --nocapture

clean:
	$(CARGO) clean
