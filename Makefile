# aegis — see README.md. Targets that touch the kernel need root.
GO        ?= go
FUZZTIME  ?= 200000x
BIN       := bin/aegis
# Every generated artefact: bpf2go output, eBPF test objects, Wasm modules.
GENERATED := '*_bpfel.go' '*_bpfel.o' '*.sha256' '*.wasm' 'internal/bpfguard/testdata/*.o' 'internal/shield/testdata/*.o'

.PHONY: all build deps generate check-generated vet lint test test-unit fuzz bench run lab clean

all: build

deps:
	./scripts/install-deps.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/aegis

generate: deps
	$(GO) generate ./...

# CI regenerates every generated file and fails when the committed ones differ.
check-generated: generate
	@git diff --exit-code --stat -- $(GENERATED) && \
		test -z "$$(git ls-files --others --exclude-standard -- $(GENERATED))" || \
		(git ls-files --others --exclude-standard -- $(GENERATED); \
		echo "generated files are not up to date: run 'make generate' and commit" >&2; exit 1)

vet:
	@test -z "$$(gofmt -l cmd internal)" || (gofmt -l cmd internal; echo "gofmt needed" >&2; exit 1)
	$(GO) vet ./...

# lint is vet (also for macOS: every package builds off Linux, with stubs
# where it needs the kernel), staticcheck (pinned as a go.mod tool) and a
# tidy go.mod.
lint: vet
	GOOS=darwin $(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) mod tidy -diff

# test is the README's test command: set-up, generated files, vet, the whole
# suite (privileged tests included: run as root), a short fuzz of each target,
# and the privileged packages again on Debian's 6.1 and 6.12 kernels (QEMU).
# The kernel matrix must end within TEST_MINUTES of the start (CI stops a run
# at 90): it gets what is left.
TEST_MINUTES ?= 85
TEST_START   := $(shell date +%s)
test: deps check-generated lint
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run '^$$' -bench . -benchtime=1x -skip BenchmarkPeerXDPFilter ./...
	$(MAKE) fuzz
	$(MAKE) test-kernels KERNEL_DEADLINE=$$(( $(TEST_START) + $(TEST_MINUTES) * 60 ))

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

bench: deps
	./scripts/bench-shield.sh
	./scripts/bench-functions.sh

# lab is the README's first command: a throwaway topology of namespaces with
# an attacker, a client and a node, 20 seconds of floods and function calls
# shown live, then a summary; nothing is left behind.
lab: deps build
	$(BIN) lab

# run builds aegis and starts a node with the embedded defaults.
run: deps build
	$(BIN) node

clean:
	rm -rf bin

# test-kernels boots each kernel of the matrix under QEMU and runs the
# privileged test packages in it (see docs/KERNELS.md); one summary line per
# kernel. KERNEL_PKGS lists the packages, KERNEL_TEST_FLAGS adds go test flags,
# KERNEL_SYSCTLS sets key=value kernel settings in the guests; KERNEL_BUDGET
# (minutes, default 60) and KERNEL_DEADLINE (epoch seconds) bound the whole.
KERNELS     ?= 6.1 6.12
KERNEL_PKGS ?= ./internal/shield ./internal/testutil ./internal/kernelprobe ./internal/bpfguard ./internal/privilege ./internal/sandbox ./internal/executor
.PHONY: test-kernels
test-kernels:
	KERNELS="$(KERNELS)" KERNEL_PKGS="$(KERNEL_PKGS)" KERNEL_TEST_FLAGS="$(KERNEL_TEST_FLAGS)" KERNEL_SYSCTLS="$(KERNEL_SYSCTLS)" \
		KERNEL_BUDGET="$(KERNEL_BUDGET)" KERNEL_DEADLINE="$(KERNEL_DEADLINE)" ./scripts/kernels/test.sh
