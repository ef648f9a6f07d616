# edged: the edge video appliance daemon. `make run` and `make test` are all a new user needs.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 60s

.PHONY: build build-arm64 run test test-unit test-e2e test-systemd vboard-test lint bench loadtest fuzz deps-run deps-test clean

## build: the daemon for this machine, with the software H.264 encoder (cgo), and the pure-Go
## tools: provisiond (fleet server), edgectl (operator), edge-provision (device agent), edgebench.
build: deps-run
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edged ./cmd/edged
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/provisiond ./cmd/edgectl ./cmd/edge-provision

## build-arm64: cross-compile for 64-bit ARM boards (Raspberry Pi 4/CM4, RK3588, i.MX8MP, Jetson).
build-arm64:
	.ci/install-deps arm64
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ \
		$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edged-arm64 ./cmd/edged
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edge-provision-arm64 ./cmd/edge-provision

## run: the daemon on its embedded defaults (synthetic camera when there is no /dev/video*).
## Pages opened from this machine get the access token; anyone else needs the one it logs.
run: build
	EDGED_AUTH_TRUST_LOOPBACK=true EDGED_WEBRTC_INCLUDE_LOOPBACK=true ./bin/edged $(ARGS)

## test: everything CI runs: lint, unit tests with fuzz seed corpora, end-to-end tests with a
## real H.264 decoder (ffmpeg) and a real browser (Chromium).
test: deps-test lint test-unit test-e2e test-systemd vboard-test

## test-unit: every package's tests and fuzz seeds, under the race detector.
test-unit:
	$(GO) test -race -count=1 ./...

test-e2e:
	$(GO) test -count=1 -tags e2e -timeout 10m -v -run 'E2E' ./cmd/edged/

## vboard-test: the device layer against real kernel drivers in QEMU guests (x86-64: vivid,
## vicodec, gpio-sim; arm64: PL061 and edged-arm64). The test kernel is built once and cached
## in ~/.cache/edged-vboard (EDGE_VBOARD_CACHE); see internal/vboard/README.md.
vboard-test: deps-test
	$(GO) test -tags vboard -count=1 -timeout 40m -v ./internal/vboard/

## test-systemd: the unit's exposure must stay at 2.5 or lower (systemd-analyze's 0-100 scale).
test-systemd:
	systemd-analyze security --offline=yes --threshold=25 systemd/edged.service
	systemd-analyze security --offline=yes --threshold=25 systemd/edge-provision.service

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./cmd/edged/
	$(GO) vet -tags vboard ./internal/vboard/...
	$(GO) vet -tags vboardguest ./...
	CGO_ENABLED=0 $(GO) build ./...
	CGO_ENABLED=0 $(GO) vet ./...

## bench: encoder and pipeline figures at 1280x720 30 fps (a table from go test -bench).
bench: deps-run
	$(GO) test -run '^$$' -bench . -benchtime 300x ./cmd/edged/ ./edge/... ./device/... ./encoder/... ./internal/batchudp/

## loadtest: edgebench against a fresh edged (synthetic 720p camera) on loopback: time to
## first frame, delivered bitrate, loss, server CPU and memory per viewer for STEPS viewers;
## docs/benchmarks.md explains the table. About 12 minutes for the default steps.
STEPS ?= 50,100,200,500
LOADTEST_SECRET := loadtest-secret-0123456789abcdef0123456789
loadtest: deps-run
	$(GO) build -o bin/edged ./cmd/edged
	$(GO) build -o bin/edgebench ./cmd/edgebench
	$(GO) build -o bin/edgectl ./cmd/edgectl
	export EDGED_AUTH_SECRET=$(LOADTEST_SECRET); \
	tok=$$(./bin/edgectl token -room '*' -identity edgebench -subscribe -publish -admin -ttl 2h) || exit 1; \
	EDGED_CAMERA_DEVICE=synthetic EDGED_LOG_LEVEL=warn EDGED_TURN_ENABLED=false EDGED_WEBRTC_MDNS=false \
	EDGED_WEBRTC_INCLUDE_LOOPBACK=true EDGED_WEBRTC_UDP_PORT=18189 EDGED_WEBRTC_MAX_VIEWERS=1000 \
		./bin/edged -listen 127.0.0.1:18080 & pid=$$!; trap 'kill $$pid' EXIT; \
	until curl -sf -o /dev/null http://127.0.0.1:18080/; do kill -0 $$pid || exit 1; sleep 0.2; done; \
	./bin/edgebench -whep http://127.0.0.1:18080/whep/camera -token "$$tok" \
		-metrics http://127.0.0.1:18080/metrics -server-pid $$pid \
		-steps $(STEPS) -duration 15s -settle 150s -out bin/loadtest.json $(LOADTEST_ARGS)

## fuzz: each fuzz target for FUZZTIME (CI runs only the committed seed corpora, in test-unit).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

deps-run:
	@.ci/install-deps run

deps-test:
	@.ci/install-deps test

clean:
	rm -rf bin
