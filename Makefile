# deployme: build, test and run. See README.md.
GO      ?= go
BIN     := bin
GOBIN_TOOLS := $(CURDIR)/tools/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/deployme/deployme/internal/buildinfo.Version=$(VERSION)

.PHONY: all build run test test-short lint generate generate-check tools proto-plugins bench bench-fleet kubeadm dist images clean

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
	./agent/inventory:FuzzParseVPD80 \
	./agent/netconf:FuzzConfigValidate \
	./pxe/dhcp:FuzzHandle \
	./pxe/tftp:FuzzCleanPath \
	./pxe/httpboot:FuzzScript

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# The protoc plugins are `tool` dependencies in go.mod: their versions are pinned there.
# Every tool the build and the tests use, in tools/bin: the protoc plugins, the real kubeadm
# and nfpm (packages).
tools: proto-plugins kubeadm $(GOBIN_TOOLS)/nfpm

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

# Debian packages of the coordinator (with the deployme CLI) and of the agent, built by nfpm
# from tools/dist/*.yaml (see tools/dist/README.md): dist/deployme-coordinator_<ver>_amd64.deb
# and dist/deployme-agent_<ver>_amd64.deb, where <ver> is VERSION, the version stamped into
# the binaries, made a Debian version by tools/dist/debversion.sh. The agent package's unit is
# internal/units/deployme-agent.service with ExecStart moved from the install script's
# /usr/local/bin to /usr/bin; the build fails if that line ever stops matching. File times
# are the commit's (SOURCE_DATE_EPOCH), so one commit gives the same packages every time.
# BIN and DIST may be set on the command line (test/dist builds in a temporary directory).
DIST := dist
NFPM := $(GOBIN_TOOLS)/nfpm
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
AGENT_UNIT := $(DIST)/staging/deployme-agent.service

dist: build $(NFPM)
	@if [ "$$($(GO) env GOOS)/$$($(GO) env GOARCH)" != linux/amd64 ]; then \
		echo "make dist packages linux/amd64 binaries: run it with GOOS=linux GOARCH=amd64"; exit 1; fi
	@mkdir -p $(DIST)/staging
	rm -f $(DIST)/deployme-coordinator_*.deb $(DIST)/deployme-agent_*.deb
	sed 's|^ExecStart=/usr/local/bin/deployme-agent\([[:space:]].*\)\{0,1\}$$|ExecStart=/usr/bin/deployme-agent\1|' \
		internal/units/deployme-agent.service >$(AGENT_UNIT)
	@if ! grep -q '^ExecStart=/usr/bin/deployme-agent' $(AGENT_UNIT) || grep -q '^Exec.*/usr/local/' $(AGENT_UNIT); then \
		echo "internal/units/deployme-agent.service: no ExecStart=/usr/local/bin/deployme-agent to rewrite"; exit 1; fi
	@set -e; v=$$(sh tools/dist/debversion.sh '$(VERSION)'); \
	for p in coordinator agent; do \
		echo "nfpm: deployme-$$p $$v"; \
		DIST_VERSION=$$v DIST_BIN=$(BIN) DIST_STAGING=$(DIST)/staging SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
			$(NFPM) package --packager deb --config tools/dist/$$p.yaml --target $(DIST)/; \
	done

# nfpm from tools/nfpm, its own module, so that its dependencies never enter the main go.mod.
# Its version is stamped from that go.mod (module builds carry none). Rebuilt only when
# tools/nfpm/go.mod is newer than the binary; built under a temporary name, as kubeadm is.
$(NFPM): tools/nfpm/go.mod
	@mkdir -p $(GOBIN_TOOLS)
	cd tools/nfpm && v=$$($(GO) list -m -f '{{.Version}}' github.com/goreleaser/nfpm/v2) && \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$$v" \
		-o $@.tmp github.com/goreleaser/nfpm/v2/cmd/nfpm
	mv $@.tmp $@

# The netboot image (images/README.md) in images/out: Debian's kernel, an initrd with our
# /init and the agent (stamped with VERSION), the iPXE binaries, SHA256SUMS. Needs the Debian
# packages linux-image-amd64 and ipxe. The same commit and inputs give the same bytes.
images:
	$(GO) run ./images/build -out images/out -go $(GO) -version $(VERSION)

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
