# clickedge — see README.md.
GO ?= go
TEST_TIMEOUT ?= 20m

.PHONY: all build test vet race broker e2e bench fuzz clean

all: build

build:
	$(GO) build -o bin/clickedge ./cmd/clickedge

# make test: a reachable RabbitMQ (started or installed if needed), then vet
# and the race-enabled tests. Broker tests fail, never skip, without one.
test: broker vet race

broker:
	@./scripts/ensure-rabbitmq.sh

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

clean:
	rm -rf bin clickedge-data
