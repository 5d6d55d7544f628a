# authgate — make demo runs the demo on http://localhost:8080, make test runs every test.
SHELL := /bin/bash
GO ?= go
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test deps check build

demo:
	$(GO) run ./cmd/caddy run --config examples/demo/Caddyfile

# deps installs what the tests need when it is missing: Node.js and npm (for the test
# OpenID Provider and Auth.js's codec), the Node packages, Debian's Chromium and
# redis-server. mailpit (the SMTP server of the email tests) is a Go tool in go.mod.
deps:
	@command -v node >/dev/null && command -v npm >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm; }
	@[ -x /usr/bin/chromium ] && command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium redis-server; }
	@[ -d testdata/node/node_modules/oidc-provider ] && [ -d testdata/node/node_modules/@auth/core ] || (cd testdata/node && npm ci --no-audit --no-fund --loglevel=error)
	@$(GO) build -o /dev/null github.com/axllent/mailpit   # warms the build cache for `go tool mailpit`

# check also fails on a function of module code with a cyclomatic complexity over 30
# (tests and the internal/test* helpers aside), and on module code that cmd/caddy
# cannot reach (deadcode prints it and exits 0, hence the test of its output). The
# tools run at pinned versions with `go run`, outside go.mod.
GOCYCLO := github.com/fzipp/gocyclo/cmd/gocyclo@v0.6.0
DEADCODE := golang.org/x/tools/cmd/deadcode@v0.52.0

check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@out=$$($(GO) run $(GOCYCLO) -over 30 -ignore '_test\.go$$|^internal/test|/node_modules/' .) || \
		{ echo "gocyclo: functions with a cyclomatic complexity over 30:"; echo "$$out"; exit 1; }
	@out=$$($(GO) run $(DEADCODE) -test=false ./cmd/caddy) || exit 1; \
		out=$$(echo "$$out" | grep -v '^internal/test' || true); \
		if [ -n "$$out" ]; then echo "deadcode: unreachable from cmd/caddy:"; echo "$$out"; exit 1; fi

test: deps check
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./callbacks/ ./session/ ./handlers/ ./providers/ ./store/... ./internal/... ./e2e/
	$(GO) test -count=1 -run '^$$' -bench . -benchtime=1x ./handlers/ ./session/ ./callbacks/ ./store/   # benchmarks still compile and run

build:
	$(GO) build -o caddy ./cmd/caddy

# bench is the load benchmark (not part of test): bare reverse_proxy vs authgate vs authgate
# with rules under wrk, plus session decode per op against NextAuth's and @auth/core's.
# Installs wrk, Node.js and the Node packages it needs when missing; see bench/run.sh and BENCH.md.
.PHONY: bench
bench:
	@command -v wrk >/dev/null && command -v curl >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk curl; }
	@command -v node >/dev/null && command -v npm >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm; }
	@[ -d bench/node/node_modules/next-auth ] || (cd bench/node && npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error)
	@[ -d testdata/node/node_modules/@auth/core ] || (cd testdata/node && npm ci --no-audit --no-fund --loglevel=error)
	@GO=$(GO) bash bench/run.sh

# soak runs authgate for 10 minutes of mixed load on loopback (not part of test): guarded
# requests over 20,000 sessions, and users who sign in, update their session and sign out.
# It fails on any unexpected answer, or when Caddy's RSS at the end is more than 10 % over
# its RSS at minute 2; it stops by itself. SOAK_FLAGS passes flags (bench/soak), e.g.
# SOAK_FLAGS='-duration 3m -rss-from 1m'.
.PHONY: soak
soak:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(GO) build -o "$$tmp/caddy" ./cmd/caddy && \
		$(GO) build -o "$$tmp/soak" ./bench/soak && \
		"$$tmp/soak" -caddy "$$tmp/caddy" $(SOAK_FLAGS)
