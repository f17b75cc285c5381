//go:build !linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// errNotLinux is why nothing runs here: workers are Linux namespaces,
// seccomp and Landlock.
var errNotLinux = errors.New("sandbox workers need Linux")

// Pool is the supervisor of the workers; it cannot be created here.
type Pool struct{}

// NewPool fails: workers need Linux.
func NewPool(context.Context, Config) (*Pool, error) { return nil, errNotLinux }

// Do fails: workers need Linux.
func (p *Pool) Do(context.Context, string, []byte) ([]byte, error) { return nil, errNotLinux }

// DoExchange fails: workers need Linux.
func (p *Pool) DoExchange(context.Context, string, []byte, Exchange) ([]byte, error) {
	return nil, errNotLinux
}

// Close does nothing.
func (p *Pool) Close() error { return nil }

// Stats are zero.
func (p *Pool) Stats() Stats { return Stats{} }

// Reports are empty.
func (p *Pool) Reports() []Report { return nil }

// Recycle replaces nothing.
func (p *Pool) Recycle(int) bool { return false }

// BuiltinHandlers has nothing to offer here.
func BuiltinHandlers() map[string]Handler { return nil }

// ProbeMemoryCap fails: worker cgroups need Linux.
func ProbeMemoryCap() (string, error) { return "", errNotLinux }

// WorkerMain exits: a worker needs Linux.
func WorkerMain(map[string]Handler) {
	fmt.Fprintln(os.Stderr, "aegis:", errNotLinux)
	os.Exit(70)
}
