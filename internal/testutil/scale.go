package testutil

import (
	"time"

	"github.com/aegis-edge/aegis/internal/testutil/timescale"
)

// Scale returns a wall-clock budget written for the reference machine (the
// CI class, idle, natively) scaled to this process's speed: d times the
// factor timescale measures once per test binary (10–100 in a QEMU guest
// under TCG, more than 1 on a busy host). Use it for every budget a test
// gives something that must finish — a function's timeout, a worker's
// start, a wait-for loop, a read deadline — so that a slow machine does not
// fail the test and a hang still does. A timeout the test expects to fire
// (a function that sleeps an hour) needs no scaling; what must happen
// around it (the report of the timeout) does.
func Scale(d time.Duration) time.Duration { return timescale.Scale(d) }

// TimeScale describes the factor Scale uses and where it came from; tests
// add it to failure messages about time.
func TimeScale() string { return timescale.Describe() }
