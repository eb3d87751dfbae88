GO      ?= go
BIN     ?= bin
PKGS    ?= ./...
# Tests start their own servers; see internal/testenv.
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build test vet lint fuzz run clean

all: build

# The version and VCS revision shown by --version and wagate_build_info,
# passed by -ldflags so that they hold whatever -buildvcs is set to.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  ?= -X github.com/wagate/wagate/internal/buildinfo.version=$(VERSION) -X github.com/wagate/wagate/internal/buildinfo.revision=$(REVISION)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

vet:
	$(GO) vet $(PKGS)

# golangci-lint with .golangci.yml; .ci/run installs the version it pins.
GOLANGCI_LINT ?= golangci-lint
lint:
	$(GOLANGCI_LINT) run $(PKGS)

test: vet
	$(GO) test $(TESTFLAGS) $(PKGS)

# A one-minute fuzz run of the Cloud API parser.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s ./messages/

run: build
	$(BIN)/wagate dev

# Side by side with a hand-written Go baseline, then throughput, latency and
# memory against the machine's floor (about 4 minutes);
# results in scripts/bench/results/. Needs redis-server on PATH.
.PHONY: bench
bench:
	$(GO) run ./scripts/bench $(BENCHFLAGS)

# The fault-injection suite with long traffic (about 5 minutes): kill -9,
# Redis and NATS restarts, a NATS cluster, slow and scaled processes; prints
# the ledger table. A short subset runs in make test. Needs redis-server.
.PHONY: chaos
chaos:
	$(GO) test -race -count=1 -timeout 30m -run TestChaos -v ./scripts/chaos -chaos.long

clean:
	rm -rf $(BIN) .wagate
