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
DEBS := mariadb-server mariadb-client sysbench iproute2 e2fsprogs util-linux haproxy prometheus chromium

.PHONY: build unit test lint deps demo bench screenshots clean

build:
	$(GO) build -o $(BIN) ./cmd/baton
	$(GO) build -o $(LAB) ./cmd/baton-lab

# promtool (alert rule tests) comes with Debian's prometheus package, which also installs
# a Prometheus server; under systemd it starts it: `systemctl disable --now prometheus`
# if it is not wanted.
deps:
	@missing=""; \
	command -v mariadbd >/dev/null || missing="$$missing mariadb-server mariadb-client"; \
	command -v sysbench >/dev/null || missing="$$missing sysbench"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v bridge >/dev/null || missing="$$missing iproute2"; \
	command -v mkfs.ext4 >/dev/null || missing="$$missing e2fsprogs"; \
	command -v losetup >/dev/null || missing="$$missing util-linux"; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags integration ./...

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
test: deps lint build
	BATON_REQUIRE_INTEGRATION=1 BATON_TEST_BINARY=$(CURDIR)/$(BIN) \
		$(GO) test -tags integration -p 1 -count=1 -timeout 14m ./...

demo: deps build
	$(LAB) demo

bench: deps build
	$(LAB) bench all --out docs/BENCHMARKS.md

# docs/web.png and docs/web-phone.png: the web view in headless Chromium, after a
# failover in a sandbox (the browser test, saving its screenshots).
screenshots: deps
	BATON_REQUIRE_INTEGRATION=1 BATON_WEB_SCREENSHOTS=$(CURDIR)/docs $(GO) test -tags integration -count=1 -run '^TestBrowserFollowsFailover$$' ./internal/web/

clean:
	rm -rf bin
