# Cairn: build, run, test, bench.
#
#   make run    a dev node that mines a block every few seconds (datadir ./data/dev)
#   make install  cairn-node and cairn-wallet into ~/.cargo/bin (on PATH with rustup)
#   make test   formatting check, clippy with warnings denied, every test
#   make testnet  a private testnet: 4 nodes on loopback, 2 mining (./data/testnet)
#   make bench  benchmarks with their ratios (figures go in benches/README.md)

CARGO ?= cargo
DATADIR ?= ./data/dev

.PHONY: build install run test fmt fmt-check lint bench testnet clean

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
	$(CARGO) build --release -p cairn-node
	$(CARGO) bench --bench e2e

testnet:
	$(CARGO) run --release -p cairn-node -- testnet --nodes 4 --miners 2 --dir ./data/testnet

clean:
	$(CARGO) clean
