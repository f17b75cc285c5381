package shield

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Marks of automatic blocks (autoblock_marks in bpf/shield.c): a packet that
// no rate limit applies to (TCP other than a bare SYN, protocols other than
// TCP, UDP and ICMP) is checked for an automatic block only when its source's
// mark is set, so the bulk of a node's traffic skips the sources lookup. The
// data path sets a mark when it blocks a source; nothing in the data path
// clears one, so userspace clears the marks no active block needs, now and
// then, lest they fill up and every packet pay the lookup again.

// markLog is the data path's MARK_LOG: autoblock_marks has 2^markLog entries.
const markLog = 16

// markOf is the data path's source_mark of a sources-map key.
func markOf(key [4]uint32) uint32 {
	return exactHash(wordsAddr6(key)) >> (exactFilterLog - markLog)
}

// setMarks reads which marks are set.
func (s *Shield) setMarks() (map[uint32]bool, error) {
	set := map[uint32]bool{}
	err := forEachEntry(s.objs.AutoblockMarks, s.oneByOne, func(k, v *uint32) {
		if *v != 0 {
			set[*k] = true
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading autoblock_marks: %w", err)
	}
	return set, nil
}

// neededMarks are the marks of the sources blocked at this moment.
func (s *Shield) neededMarks() (map[uint32]bool, error) {
	s.mu.Lock()
	now := s.clock().boot
	s.mu.Unlock()
	need := map[uint32]bool{}
	err := s.forEachSource(func(key *shieldAddr6, st *shieldSourceState) {
		if st.BlockedUntil > now {
			need[markOf(key.Addr)] = true
		}
	})
	return need, err
}

func (s *Shield) writeMark(m, v uint32) error {
	if err := s.objs.AutoblockMarks.Update(&m, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("writing autoblock_marks: %w", err)
	}
	return nil
}

// refreshMarks clears the marks that no active block needs and marks every
// active block. It reads the blocks, clears, and reads the blocks again
// before marking, so a block that begins while it runs, whose mark the
// clearing may have wiped, is marked by the second reading (the data path
// writes a block before its mark). A block never loses its mark while it
// lasts, except one begun during a refresh, for that moment. With all set
// false it returns at once when no mark is set; all marks every active
// block regardless (for maps adopted from a daemon without marks).
func (s *Shield) refreshMarks(all bool) (cleared int, err error) {
	set, err := s.setMarks()
	if err != nil || (len(set) == 0 && !all) {
		return 0, err
	}
	need, err := s.neededMarks()
	if err != nil {
		return 0, err
	}
	for m := range set {
		if !need[m] {
			if err := s.writeMark(m, 0); err != nil {
				return cleared, err
			}
			delete(set, m)
			cleared++
		}
	}
	need, err = s.neededMarks()
	if err != nil {
		return cleared, err
	}
	for m := range need {
		if !set[m] {
			if err := s.writeMark(m, 1); err != nil {
				return cleared, err
			}
		}
	}
	return cleared, nil
}

// Maintain is the shield's periodic upkeep, which the node runs on every
// sweep: it keeps the data path's clock on boot time across a suspend and
// clears marks of automatic blocks that have ended.
func (s *Shield) Maintain() error {
	errClock := s.SyncClock()
	_, errMarks := s.refreshMarks(false)
	return errors.Join(errClock, errMarks)
}
