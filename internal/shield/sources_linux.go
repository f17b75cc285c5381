package shield

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// The source table (sources in bpf/shield.c): per-source limiter and
// automatic-block state in an array of sourceBuckets buckets of sourceWays
// ways, each way a tag (the source's key) and its state. Userspace reads and
// writes it through mmap with the data path's protocol: a writer increments
// a way's begin counter, owns the way only if begin is then exactly one past
// the value it saw with begin == end, writes the state before the tag, and
// increments end. Where the kernel cannot mmap an array (before 5.5) it goes
// through the map system calls instead, a whole bucket at a time; a packet
// writing the same bucket at that moment can then lose its write, or keep a
// tag beside a state written for another (see docs/RATIONALE.md).

const (
	sourceBucketsLog = 14
	sourceBuckets    = 1 << sourceBucketsLog
	sourceWays       = 4
	// wayWords is a way in 64-bit words: begin, end, the tag (2) and the
	// state (10).
	wayWords = 14
	wayTag   = 2
	wayState = 4
)

// The layout the data path and sourceTable share.
var (
	_ [unsafe.Sizeof(shieldSourceBucket{}) - sourceWays*wayWords*8]struct{}
	_ [sourceWays*wayWords*8 - unsafe.Sizeof(shieldSourceBucket{})]struct{}
	_ [unsafe.Sizeof(shieldSourceState{}) - (wayWords-wayState)*8]struct{}
)

// sourceBucketOf is the data path's source_bucket_of of a key.
func sourceBucketOf(key [4]uint32) uint32 {
	x := key[0]*0x85EBCA77 + key[1]*0xC2B2AE3D + key[2]*0x27D4EB2F + key[3]*0x165667B1
	return (x * 0x9E3779B1) >> (32 - sourceBucketsLog)
}

// sourceAge is the data path's source_age: the way with the lowest is
// evicted first.
func sourceAge(st *shieldSourceState) uint64 {
	age := st.BlockedUntil
	for _, c := range st.Cls {
		age = max(age, c.Tat, c.WinStart)
	}
	return age
}

type sourceTable struct {
	m   *ebpf.Map
	mem []byte // the map's values, mmapped; nil where the kernel cannot
}

// sourcesMmapable reports whether the kernel can mmap the source table; where
// it cannot, Load drops the flag from the map's spec.
func sourcesMmapable() bool {
	return features.HaveMapFlag(features.BPF_F_MMAPABLE) == nil
}

func openSourceTable(m *ebpf.Map) (*sourceTable, error) {
	mem, err := mmapArray(m)
	if err != nil {
		return nil, fmt.Errorf("the source table: %w", err)
	}
	return &sourceTable{m: m, mem: mem}, nil
}

func (t *sourceTable) close() error {
	if t == nil || t.mem == nil {
		return nil
	}
	err := unix.Munmap(t.mem)
	t.mem = nil
	return err
}

func (t *sourceTable) way(bucket uint32, i int) *[wayWords]uint64 {
	off := (int(bucket)*sourceWays + i) * wayWords * 8
	return (*[wayWords]uint64)(unsafe.Pointer(&t.mem[off]))
}

// loadWay reads a way's tag, then its state, as the data path does.
func loadWay(w *[wayWords]uint64) (shieldAddr6, shieldSourceState) {
	var tag [2]uint64
	tag[0] = atomic.LoadUint64(&w[wayTag])
	tag[1] = atomic.LoadUint64(&w[wayTag+1])
	var st [wayWords - wayState]uint64
	for i := range st {
		st[i] = atomic.LoadUint64(&w[wayState+i])
	}
	return shieldAddr6{Addr: *(*[4]uint32)(unsafe.Pointer(&tag))},
		*(*shieldSourceState)(unsafe.Pointer(&st))
}

// readWay is loadWay as one consistent read: no writer inside before it,
// none began during it (the data path's way_enter).
func readWay(w *[wayWords]uint64) (shieldAddr6, shieldSourceState, error) {
	for range 100000 {
		e := atomic.LoadUint64(&w[1])
		b := atomic.LoadUint64(&w[0])
		if b == e {
			key, st := loadWay(w)
			if atomic.LoadUint64(&w[0]) == b {
				return key, st, nil
			}
		}
		runtime.Gosched()
	}
	return shieldAddr6{}, shieldSourceState{}, errWayBusy
}

// storeWay writes the state, then the tag; the caller holds the way.
func storeWay(w *[wayWords]uint64, key shieldAddr6, st shieldSourceState) {
	words := (*[wayWords - wayState]uint64)(unsafe.Pointer(&st))
	for i, v := range words {
		atomic.StoreUint64(&w[wayState+i], v)
	}
	tag := (*[2]uint64)(unsafe.Pointer(&key.Addr))
	atomic.StoreUint64(&w[wayTag], tag[0])
	atomic.StoreUint64(&w[wayTag+1], tag[1])
}

// errWayBusy: a way stayed busy for every attempt to take it.
var errWayBusy = errors.New("source table way busy")

// lockWay takes a way as the data path's way_lock does, retrying while
// another writer holds it, and returns the count to release it with.
func lockWay(w *[wayWords]uint64) (uint64, error) {
	for range 100000 {
		e := atomic.LoadUint64(&w[1])
		b := atomic.LoadUint64(&w[0])
		if b == e {
			atomic.AddUint64(&w[0], 1)
			if atomic.LoadUint64(&w[0]) == b+1 && atomic.LoadUint64(&w[1]) == b {
				return b, nil
			}
			atomic.AddUint64(&w[0], ^uint64(0))
		}
		runtime.Gosched()
	}
	return 0, errWayBusy
}

// unlockWay releases a way lockWay took with seen.
func unlockWay(w *[wayWords]uint64, seen uint64) { atomic.StoreUint64(&w[1], seen+1) }

func emptyWay(key *shieldAddr6, st *shieldSourceState) bool {
	return key.Addr == [4]uint32{} && *st == shieldSourceState{}
}

// forEach calls fn for every way in use.
func (t *sourceTable) forEach(oneByOne bool, fn func(*shieldAddr6, *shieldSourceState)) error {
	if t.mem == nil {
		err := forEachEntry(t.m, oneByOne, func(_ *uint32, b *shieldSourceBucket) {
			for i := range b.Ways {
				if !emptyWay(&b.Ways[i].Tag, &b.Ways[i].St) {
					fn(&b.Ways[i].Tag, &b.Ways[i].St)
				}
			}
		})
		if err != nil {
			return fmt.Errorf("reading sources map: %w", err)
		}
		return nil
	}
	// One key and state for the whole walk: fn takes their addresses, so
	// declared per way they would be allocated per way (a 7 MiB walk).
	var (
		key shieldAddr6
		st  shieldSourceState
		err error
	)
	for b := range uint32(sourceBuckets) {
		for i := range sourceWays {
			if key, st, err = readWay(t.way(b, i)); err != nil {
				return err
			}
			if !emptyWay(&key, &st) {
				fn(&key, &st)
			}
		}
	}
	return nil
}

// get returns a source's state, if the table holds it.
func (t *sourceTable) get(key shieldAddr6) (shieldSourceState, bool, error) {
	b := sourceBucketOf(key.Addr)
	if t.mem == nil {
		var bk shieldSourceBucket
		if err := t.m.Lookup(&b, &bk); err != nil {
			return shieldSourceState{}, false, fmt.Errorf("reading sources map: %w", err)
		}
		for _, w := range bk.Ways {
			if w.Tag == key {
				return w.St, true, nil
			}
		}
		return shieldSourceState{}, false, nil
	}
	for i := range sourceWays {
		k, st, err := readWay(t.way(b, i))
		if err != nil {
			return shieldSourceState{}, false, err
		}
		if k == key {
			return st, true, nil
		}
	}
	return shieldSourceState{}, false, nil
}

// put gives a source the state: in its way if it has one, else in the way of
// its bucket with the oldest state, as the data path evicts.
func (t *sourceTable) put(key shieldAddr6, st shieldSourceState) error {
	b := sourceBucketOf(key.Addr)
	pick := func(tags []shieldAddr6, states []shieldSourceState) int {
		victim := 0
		for i := range tags {
			if tags[i] == key {
				return i
			}
			if sourceAge(&states[i]) < sourceAge(&states[victim]) {
				victim = i
			}
		}
		return victim
	}
	if t.mem == nil {
		var bk shieldSourceBucket
		if err := t.m.Lookup(&b, &bk); err != nil {
			return fmt.Errorf("reading sources map: %w", err)
		}
		tags, states := make([]shieldAddr6, sourceWays), make([]shieldSourceState, sourceWays)
		for i, w := range bk.Ways {
			tags[i], states[i] = w.Tag, w.St
		}
		i := pick(tags, states)
		bk.Ways[i].Tag, bk.Ways[i].St = key, st
		if err := t.m.Update(&b, &bk, ebpf.UpdateExist); err != nil {
			return fmt.Errorf("writing sources map: %w", err)
		}
		return nil
	}
	for range 1000 {
		tags, states := make([]shieldAddr6, sourceWays), make([]shieldSourceState, sourceWays)
		for i := range sourceWays {
			tags[i], states[i] = loadWay(t.way(b, i))
		}
		i := pick(tags, states)
		w := t.way(b, i)
		seen, err := lockWay(w)
		if err != nil {
			return err
		}
		// The way must still hold what was picked.
		k, s := loadWay(w)
		if k != tags[i] || s != states[i] {
			unlockWay(w, seen)
			continue
		}
		if k != key && st != (shieldSourceState{}) {
			// A new tag comes with a zero state first, as the data
			// path's always does (fresh): a reader judging a way that
			// is being written relies on it. The state follows.
			storeWay(w, key, shieldSourceState{})
			unlockWay(w, seen)
			if seen, err = lockWay(w); err != nil {
				return err
			}
			if k, _ := loadWay(w); k != key {
				unlockWay(w, seen)
				continue
			}
		}
		storeWay(w, key, st)
		unlockWay(w, seen)
		return nil
	}
	return errWayBusy
}

// remove frees a source's way, if the table holds it.
func (t *sourceTable) remove(key shieldAddr6) error {
	b := sourceBucketOf(key.Addr)
	if t.mem == nil {
		var bk shieldSourceBucket
		if err := t.m.Lookup(&b, &bk); err != nil {
			return fmt.Errorf("reading sources map: %w", err)
		}
		found := false
		for i := range bk.Ways {
			if bk.Ways[i].Tag == key {
				bk.Ways[i].Tag, bk.Ways[i].St = shieldAddr6{}, shieldSourceState{}
				found = true
			}
		}
		if !found {
			return nil
		}
		if err := t.m.Update(&b, &bk, ebpf.UpdateExist); err != nil {
			return fmt.Errorf("writing sources map: %w", err)
		}
		return nil
	}
	for i := range sourceWays {
		w := t.way(b, i)
		if k, _ := loadWay(w); k != key {
			continue
		}
		seen, err := lockWay(w)
		if err != nil {
			return err
		}
		if k, _ := loadWay(w); k == key {
			storeWay(w, shieldAddr6{}, shieldSourceState{})
		}
		unlockWay(w, seen)
	}
	return nil
}

// oldSource is an entry of a sources LRU pinned by an earlier version.
type oldSource struct {
	key shieldAddr6
	st  shieldSourceState
}

// takeOldSources reads the sources LRU an earlier version pinned in mapsDir.
// Its pin stays: the load creates the table unpinned (found tells it to),
// and pinOver puts the table in the LRU's place as the load's last
// step, so a load that fails leaves the LRU pinned for a retry or for the
// version that made it. restoreSources writes the entries into the table.
func takeOldSources(mapsDir string) (old []oldSource, found bool, err error) {
	pin := filepath.Join(mapsDir, "sources")
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("opening pinned sources: %w", err)
	}
	defer m.Close()
	if m.Type() != ebpf.LRUHash || m.KeySize() != 16 || m.ValueSize() != uint32(unsafe.Sizeof(shieldSourceState{})) {
		return nil, false, nil // the table, or not a layout we know: the load decides
	}
	err = forEachEntry(m, false, func(k *shieldAddr6, v *shieldSourceState) {
		old = append(old, oldSource{*k, *v})
	})
	if err != nil {
		return nil, false, fmt.Errorf("reading pinned sources: %w", err)
	}
	return old, true, nil
}

// pinOver pins m in place of the map an older version pinned as name in
// mapsDir (the sources LRU, a counters map of fewer reasons): pinned beside
// it first, then renamed over it, so the old pin goes only when the new one
// is in place. A pin left beside it by a load that died between the two
// steps is replaced.
func pinOver(m *ebpf.Map, mapsDir, name string) error {
	pin := filepath.Join(mapsDir, name)
	next := pin + "-next" // bpffs refuses names with a dot
	if err := unix.Unlink(next); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing a stale %s pin: %w", name, err)
	}
	// A clone takes the pin, so m does not go on naming a path the
	// rename moves.
	c, err := m.Clone()
	if err != nil {
		return fmt.Errorf("pinning %s: %w", name, err)
	}
	defer c.Close()
	if err := c.Pin(next); err != nil {
		return fmt.Errorf("pinning %s: %w", name, err)
	}
	if err := os.Rename(next, pin); err != nil {
		return errors.Join(fmt.Errorf("replacing pinned %s: %w", name, err), c.Unpin())
	}
	return nil
}

// restoreSources puts the old entries in, the oldest first: where a bucket
// overflows, the most recent states (blocks that last longest) stay.
func restoreSources(t *sourceTable, old []oldSource) error {
	slices.SortFunc(old, func(a, b oldSource) int {
		x, y := sourceAge(&a.st), sourceAge(&b.st)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	for _, o := range old {
		if err := t.put(o.key, o.st); err != nil {
			return fmt.Errorf("carrying sources over: %w", err)
		}
	}
	return nil
}
