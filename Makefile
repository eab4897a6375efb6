# Baton. `make demo` runs a real local cluster that shows a failover, and the old
# primary rejoining by itself once its disk is freed; `make test` runs every test,
# integration tests against real MariaDB and etcd included. Both install what they
# need (Debian packages) and need root (network namespaces, loop mounts). `make unit`
# runs the pure tests alone, as any user, with nothing installed but Go.

GO ?= go
# bin/baton is the product (agent and operator CLI); bin/baton-lab the lab (sandboxes,
# demo, benchmarks), which runs bin/baton in its clusters.
BIN := bin/baton
LAB := bin/baton-lab

# What each target installs (Debian packages), as command:package pairs: a package
# is installed when its command is missing. A sandbox's agents rebuild a node from a
# donor's backup with mariadb-backup and mbstream. The demo needs a sandbox; the tests also
# HAProxy (the sandbox's HAProxy, its config checked), promtool (alert rules, from
# Debian's prometheus package) and Chromium (the web view's browser test); the
# benchmarks HAProxy and sysbench (write load).
SANDBOX_DEBS := mariadbd:mariadb-server mariadb:mariadb-client ip:iproute2 bridge:iproute2 \
	mkfs.ext4:e2fsprogs losetup:util-linux nsenter:util-linux \
	mariadb-backup:mariadb-backup mbstream:mariadb-backup
TEST_DEBS := $(SANDBOX_DEBS) haproxy:haproxy promtool:prometheus chromium:chromium
BENCH_DEBS := $(SANDBOX_DEBS) haproxy:haproxy sysbench:sysbench

.PHONY: build unit test lint deps deps-demo deps-test deps-bench demo bench screenshots clean

build:
	$(GO) build -o $(BIN) ./cmd/baton
	$(GO) build -o $(LAB) ./cmd/baton-lab
	# The fault campaign's agents: baton with failpoints (internal/failpoint), never shipped.
	$(GO) build -tags failpoint -o bin/baton-failpoint ./cmd/baton

# install: apt-get install the packages of the pairs in $(1) whose command is missing.
define install
	@missing=""; \
	for pair in $(1); do \
		cmd=$${pair%%:*}; pkg=$${pair#*:}; \
		command -v $$cmd >/dev/null && continue; \
		case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

# promtool comes with Debian's prometheus package, which also installs a Prometheus
# server; under systemd it starts it: `systemctl disable --now prometheus` if it is
# not wanted.
deps-demo:
	$(call install,$(SANDBOX_DEBS))
deps-test:
	$(call install,$(TEST_DEBS))
deps-bench:
	$(call install,$(BENCH_DEBS))
# deps: everything any target needs.
deps: deps-test deps-bench

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags integration ./...
	$(GO) vet -tags 'integration failpoint' ./...

# Every pure test (no root, no MariaDB, no network namespaces; embedded etcd is
# fine), as any user, in well under a minute. Integration tests are the files built
# with the integration tag (`//go:build integration`).
unit:
	$(GO) test -count=1 ./...

# Everything: the pure tests and the integration tests, which fail (not skip) when the
# machine lacks what they need. One package at a time: each runs real clusters whose
# timings a second one would disturb on a small machine. The binaries the sandboxes
# run are built once, here, not by each package's tests. deploy/ runs promtool check
# rules and promtool test rules on the alert rules.
test: deps-test lint build
	BATON_REQUIRE_INTEGRATION=1 BATON_TEST_BINARY=$(CURDIR)/$(BIN) \
		$(GO) test -tags integration -p 1 -count=1 -timeout 14m ./...

# DEMO_FLAGS: e.g. `make demo DEMO_FLAGS=--secure` (TLS everywhere, etcd with client
# certificates and roles), or --keep.
demo: deps-demo build
	$(LAB) demo $(DEMO_FLAGS)

bench: deps-bench build
	$(LAB) bench all --out docs/BENCHMARKS.md

# docs/web.png and docs/web-phone.png: the web view in headless Chromium, after a
# failover in a sandbox (the browser test, saving its screenshots).
screenshots: deps-test
	BATON_REQUIRE_INTEGRATION=1 BATON_WEB_SCREENSHOTS=$(CURDIR)/docs $(GO) test -tags integration -count=1 -run '^TestBrowserFollowsFailover$$' ./internal/web/

clean:
	rm -rf bin
