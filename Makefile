GO      ?= go
BIN     ?= bin
PKGS    ?= ./...
# Tests start their own servers; see internal/testenv.
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build test vet fuzz run clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

vet:
	$(GO) vet $(PKGS)

test: vet
	$(GO) test $(TESTFLAGS) $(PKGS)

# A one-minute fuzz run of the Cloud API parser.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./messages/

run: build
	$(BIN)/wagate dev

clean:
	rm -rf $(BIN) .wagate
