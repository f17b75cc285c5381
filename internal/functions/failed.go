package functions

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// maxFailedDigests bounds the modules the registry remembers as failed.
const maxFailedDigests = 1024

// failedDigests remembers, by SHA-256, modules that could not be compiled
// (ErrUncompilable: no valid code, over the compile deadline, or the
// compiling worker died), so that deploying the same bytes again is
// refused at once instead of costing another compile. It is bounded (the
// oldest entry goes first) and kept in memory only: the verdict depends
// on functions.compile_timeout and on how busy the machine was, so a
// restart, after which an operator may have raised the deadline, tries
// again; and each digest costs at most one compile per node run.
type failedDigests struct {
	mu    sync.Mutex
	max   int
	byDig map[string]failedDigest
	order []string // oldest first
}

type failedDigest struct {
	reason string
	at     time.Time
}

func newFailedDigests(max int) *failedDigests {
	return &failedDigests{max: max, byDig: map[string]failedDigest{}}
}

// remember records digest if err says the module does not compile.
func (f *failedDigests) remember(digest string, err error, now time.Time) {
	if digest == "" || !errors.Is(err, ErrUncompilable) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byDig[digest]; ok {
		return
	}
	for len(f.order) >= f.max {
		delete(f.byDig, f.order[0])
		f.order = f.order[1:]
	}
	f.byDig[digest] = failedDigest{reason: strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "), at: now}
	f.order = append(f.order, digest)
}

// check refuses a digest that failed before, with the first failure's
// reason.
func (f *failedDigests) check(digest string, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.byDig[digest]
	if !ok {
		return nil
	}
	return fmt.Errorf("module sha256 %s failed to compile %s ago and is not tried again until the node restarts: %s",
		digest, now.Sub(e.at).Round(time.Second), e.reason)
}
