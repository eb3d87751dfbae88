GO      ?= go
BIN     ?= bin
PKGS    ?= ./...
# The wagate module, then the nested modules of its tools, each with its own
# go.mod so that wagate's go.mod requires none of their dependencies:
# scripts (the benchmark and the fault suite) and deployments (the manifest
# tests). vet, lint and test run $(PKGS) in each; to run a few packages of
# one module, name both: make test MODULES=. PKGS=./worker/
MODULES ?= . scripts deployments
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

# Each module in turn; the targets fail if any module fails.
vet:
	@status=0; for m in $(MODULES); do \
		echo "cd $$m && $(GO) vet $(PKGS)"; (cd $$m && $(GO) vet $(PKGS)) || status=1; \
	done; exit $$status

# golangci-lint with .golangci.yml; .ci/run installs the version it pins.
GOLANGCI_LINT ?= golangci-lint
lint:
	@status=0; for m in $(MODULES); do \
		echo "cd $$m && $(GOLANGCI_LINT) run $(PKGS)"; (cd $$m && $(GOLANGCI_LINT) run $(PKGS)) || status=1; \
	done; exit $$status

test: vet
	@status=0; for m in $(MODULES); do \
		echo "cd $$m && $(GO) test $(TESTFLAGS) $(PKGS)"; (cd $$m && $(GO) test $(TESTFLAGS) $(PKGS)) || status=1; \
	done; exit $$status

# A one-minute fuzz run of the Cloud API parser.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s ./messages/

run: build
	$(BIN)/wagate dev

# Side by side with a hand-written Go baseline, then throughput, latency and
# memory against the machine's floor (about 4 minutes);
# results in scripts/bench/results/. Needs redis-server on PATH. It runs in
# the scripts module: a relative -out in BENCHFLAGS is taken from scripts/.
.PHONY: bench
bench:
	cd scripts && $(GO) run ./bench $(BENCHFLAGS)

# The fault-injection suite with long traffic (about 5 minutes): kill -9,
# Redis and NATS restarts, a NATS cluster, slow and scaled processes; prints
# the ledger table. A short subset runs in make test. Needs redis-server.
.PHONY: chaos
chaos:
	cd scripts && $(GO) test -race -count=1 -timeout 30m -run TestChaos -v ./chaos -chaos.long

# govulncheck over the main module, against a vulnerability database built
# from golang.org/x/vulndb (vuln.go.dev itself is not needed), with the
# policy of scripts/vulncheck: fails on a vulnerability wagate's code
# reaches unless reviewed or, for the standard library, fixed in the Go the
# release image builds with. About a minute the first time, less after.
.PHONY: vuln
vuln:
	cd scripts && $(GO) run ./vulncheck -dir ..

clean:
	rm -rf $(BIN) .wagate
