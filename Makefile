# clickedge — see README.md.
GO ?= go
TEST_TIMEOUT ?= 20m

.PHONY: all build test vet race bench-test broker postgres tools e2e bench fuzz clean demo-regions demo-stop

all: build

build:
	$(GO) build -o bin/clickedge ./cmd/clickedge

# make test: a reachable RabbitMQ (started or installed if needed),
# PostgreSQL's binaries (tests start private clusters), the deploy tools
# (promtool, amtool, chromium, haproxy), then vet and the race-enabled
# tests, the bench module's included. Broker, database and tool tests fail,
# never skip, without them.
test: broker postgres tools vet race bench-test

broker:
	@./scripts/ensure-rabbitmq.sh

postgres:
	@./scripts/ensure-postgres.sh

tools:
	@./scripts/ensure-tools.sh

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

# bench/ is a module of its own (its plotting and load libraries stay out of
# the product's go.mod), so ./... above does not reach it.
bench-test:
	cd bench && $(GO) vet ./... && $(GO) test -race -timeout $(TEST_TIMEOUT) ./...

clean:
	rm -rf bin clickedge-data

# make e2e: the black-box reliability suite (docs/reliability.md): the built
# binary against private RabbitMQ nodes behind a fault proxy, with the
# postback, links, cluster and collector stages (a private PostgreSQL);
# about 11 minutes on 2 cores. The long run: make e2e E2E_CYCLES=1000 E2E_TIMEOUT=3h.
E2E_TIMEOUT ?= 25m
e2e: build broker postgres
	E2E_BIN=$(CURDIR)/bin/clickedge $(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e/

# make demo-regions: a private broker, three regions of two nodes, a
# registration node and HAProxy mapping client addresses to regions, all on
# loopback (deploy/demo/README.md). make demo-stop stops what it started.
demo-regions: build tools
	@./deploy/demo/demo-regions.sh

demo-stop:
	@./deploy/demo/demo-stop.sh
