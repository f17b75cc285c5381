//go:build !linux

package shield

import (
	"context"
	"errors"
	"net/netip"

	"github.com/cilium/ebpf"
)

// errNotLinux is why nothing loads here: XDP is Linux's.
var errNotLinux = errors.New("the XDP shield needs Linux")

// Shield is the loaded data path; it cannot be loaded here.
type Shield struct {
	// Adopted is true when the maps were already pinned.
	Adopted bool
}

// Load fails: XDP needs Linux.
func Load(Options) (*Shield, error) { return nil, errNotLinux }

// Object returns nothing: the object is built for Linux only.
func Object() []byte { return nil }

// The methods below fail or report nothing: no Shield exists here.

func (s *Shield) SyncClock() error                                  { return errNotLinux }
func (s *Shield) Clock() ClockInfo                                  { return ClockInfo{} }
func (s *Shield) Program() *ebpf.Program                            { return nil }
func (s *Shield) Close() error                                      { return nil }
func (s *Shield) Attach(string, XDPMode) (AttachInfo, error)        { return AttachInfo{}, errNotLinux }
func (s *Shield) Detach(string) error                               { return errNotLinux }
func (s *Shield) DetachBy(string, string) error                     { return errNotLinux }
func (s *Shield) Attached() ([]AttachInfo, error)                   { return nil, errNotLinux }
func (s *Shield) SetManagement([]netip.Prefix) error                { return errNotLinux }
func (s *Shield) Management() []netip.Prefix                        { return nil }
func (s *Shield) Settings() Settings                                { return Settings{} }
func (s *Shield) SetSettings(Settings) error                        { return errNotLinux }
func (s *Shield) Sync(List, ListChange) error                       { return errNotLinux }
func (s *Shield) PutRules(List, []Rule) error                       { return errNotLinux }
func (s *Shield) DeleteRules(List, []netip.Prefix) error            { return errNotLinux }
func (s *Shield) Rules(List) ([]RuleState, error)                   { return nil, errNotLinux }
func (s *Shield) Counters() (Counters, error)                       { return Counters{}, errNotLinux }
func (s *Shield) AutoBlocks() ([]AutoBlock, error)                  { return nil, errNotLinux }
func (s *Shield) Unblock(netip.Prefix) error                        { return errNotLinux }
func (s *Shield) ReadEvents(context.Context, func(AutoBlock)) error { return errNotLinux }
func (s *Shield) Maintain() error                                   { return errNotLinux }
