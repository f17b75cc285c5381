package vmtest

import (
	"fmt"
	"strconv"
	"strings"
)

// planPath is where the host puts the guest's instructions in the initramfs.
const planPath = "/vmtest/plan.json"

// resultPort is the guest's device for the test's output and status: the
// second serial port (the first is the kernel console).
const resultPort = "/dev/ttyS1"

// plan tells the guest what to run. It travels as JSON in the initramfs so
// that arguments reach the test binary exactly, whatever characters they
// hold.
type plan struct {
	Binary  string   `json:"binary"`  // test binary, at its host path
	Args    []string `json:"args"`    // arguments after the binary
	Dir     string   `json:"dir"`     // working directory
	Env     []string `json:"env"`     // complete environment
	Modules []string `json:"modules"` // module files to load, in order
	Sysctls []string `json:"sysctls"` // key=value settings applied before the test
	Token   string   `json:"token"`   // makes the status marker unforgeable by test output
}

// markerPrefix starts the line the guest writes after the test exits:
// "<prefix><token> <status>".
const markerPrefix = "vmtest-exit:"

// startPrefix starts the line the guest writes just before it starts the
// test binary: "<prefix><token>". A guest that ends without it died
// booting or preparing, not in the test, and may be booted again.
const startPrefix = "vmtest-start:"

func startLine(token string) string { return startPrefix + token }

// Exit statuses the guest reports for its own failures, distinct from a
// test binary's (1 for failed tests, 2 for a panic or bad flags).
const (
	statusSetupFailed = 125 // the guest could not prepare or start the test
	statusSignaled    = 126 // the test binary died from a signal
)

func marker(token string, status int) string {
	return fmt.Sprintf("%s%s %d", markerPrefix, token, status)
}

// parseMarker reports the exit status if line is the marker for token.
func parseMarker(line, token string) (int, bool) {
	rest, ok := strings.CutPrefix(line, markerPrefix+token+" ")
	if !ok {
		return 0, false
	}
	status, err := strconv.Atoi(rest)
	if err != nil || status < 0 || status > 255 {
		return 0, false
	}
	return status, true
}
