# deployme: build, test and run. See README.md.
GO      ?= go
BIN     := bin
GOBIN_TOOLS := $(CURDIR)/tools/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/deployme/deployme/internal/buildinfo.Version=$(VERSION)

.PHONY: all build run test test-short lint generate generate-check tools proto-plugins bench bench-fleet kubeadm clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# A single-node coordinator in ./data on 127.0.0.1:8080; its admin token is in data/admin-token.
run: build
	$(BIN)/coordinator --dev --dev-agents 8 --data-dir ./data

# Everything CI checks: formatting, vet, then every test with the race detector. Generated
# code drift is a test too (proto/generate_test.go; it needs protoc and says so if missing).
test: lint build
	$(GO) test -race -count=1 -timeout 25m ./...

test-short:
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(find . -name '*.go' -not -name '*.pb.go' -not -path './tools/*' | xargs gofmt -l); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Fuzz targets as package:Target. `make test` runs their seed corpora as ordinary tests;
# `make fuzz` fuzzes each for FUZZTIME, one after the other (go test -fuzz takes one package
# and one target per run), and stops at the first crash, which go test saves under the
# package's testdata/fuzz/ so that it becomes a seed.
FUZZTIME ?= 10s
FUZZ_TARGETS := \
	./coordinator/agentsvc:FuzzRegister \
	./coordinator/agentsvc:FuzzConnectMessages \
	./coordinator/agentsvc:FuzzInventory \
	./coordinator/command:FuzzDecode \
	./api/rest:FuzzDecodeBody \
	./agent/inventory:FuzzParseLabels \
	./agent/inventory:FuzzParseCPUInfo \
	./agent/inventory:FuzzParseMemTotal \
	./agent/inventory:FuzzParsePrettyName \
	./agent/inventory:FuzzParseVPD80

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# The protoc plugins are `tool` dependencies in go.mod: their versions are pinned there.
# Every tool the build and the tests use, in tools/bin: the protoc plugins and the real kubeadm.
tools: proto-plugins kubeadm

proto-plugins:
	@mkdir -p $(GOBIN_TOOLS)
	$(GO) build -o $(GOBIN_TOOLS)/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc

# The real kubeadm, for the tests that check our rendered configs against it (test/kubeadm).
# It is built from tools/kubeadm, its own module, so that k8s.io/kubernetes never enters the
# main go.mod. The version is stamped by hand because module builds carry no git metadata:
# without it `kubeadm version` says v0.0.0-master and our preflight version check would fail.
# Rebuilt only when tools/kubeadm/go.mod is newer than the binary (a cold build takes minutes).
KUBEADM_VERSION := v1.37.2
KUBEADM_LDFLAGS = -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBEADM_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/component-base/version.buildDate=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

kubeadm: $(GOBIN_TOOLS)/kubeadm

# Built under a temporary name and renamed, so that an interrupted build never leaves a
# binary newer than go.mod that make would then take as up to date.
$(GOBIN_TOOLS)/kubeadm: tools/kubeadm/go.mod
	@mkdir -p $(GOBIN_TOOLS)
	cd tools/kubeadm && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(KUBEADM_LDFLAGS)" \
		-o $@.tmp k8s.io/kubernetes/cmd/kubeadm
	mv $@.tmp $@

# Regenerates committed code: protobuf (needs protoc, from Debian's protobuf-compiler).
generate: proto-plugins
	cd proto && PATH=$(GOBIN_TOOLS):$$PATH protoc -I . --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative $$(find . -name '*.proto' | sort)

# Fails when generated code is not what `make generate` would write.
generate-check: generate
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		git status --porcelain -- proto; git diff -- proto | head -50; \
		echo "generated code drifted: run 'make generate' and commit"; exit 1; fi

# REST API table (one replica) and replicated-writes table (1 vs 3 replicas, leader failover).
# The replicated table compares with a 3-member etcd when the etcd binary is on PATH
# (optional: `apt-get install -y etcd-server`); without it the etcd rows are skipped with a note.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./test/bench/

# Agent fleet: N simulated agents (the real agent client, in the test process) against 1 and
# 3 coordinator processes; time to register, RSS and CPU per 1,000 agents at steady heartbeat,
# Raft writes/s at steady state, reconnect time after a replica restart. N defaults to 2000
# (a few minutes); the target run is DEPLOYME_FLEET_AGENTS=10000 make bench-fleet.
bench-fleet:
	$(GO) test -run '^$$' -bench Fleet -benchtime 1x -timeout 60m ./test/fleetbench/

clean:
	rm -rf $(BIN) $(GOBIN_TOOLS)
