package report

import (
	"bufio"
	"bytes"
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// queueFile is the queue's file in Options.Dir.
const queueFile = "reports.jsonl"

// line is one line of the queue file: a report (ID set) or the removal
// of one (Done set).
type line struct {
	ID     uint64       `json:"id,omitempty"`
	Prefix netip.Prefix `json:"prefix,omitzero"`
	At     time.Time    `json:"at,omitzero"`
	Until  time.Time    `json:"until,omitzero"`
	Done   uint64       `json:"done,omitempty"`
}

// entry is a queued report.
type entry struct {
	id     uint64
	prefix netip.Prefix
	at     time.Time
	until  time.Time
	// version changes on every merge, so that an ack of the version Run
	// sent does not remove a newer one.
	version uint64
}

// queue is the on-disk queue and its copy in memory. Its caller locks.
type queue struct {
	path    string
	f       *os.File
	order   *list.List // of *entry, oldest first
	byID    map[uint64]*list.Element
	byKey   map[netip.Prefix]*list.Element
	nextID  uint64
	lines   int // lines in the file
	skipped int // unreadable lines found when loading
}

// openQueue loads dir's queue, skipping a torn last line (and any other
// unreadable one), and rewrites the file compacted.
func openQueue(dir string) (*queue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	q := &queue{path: filepath.Join(dir, queueFile), order: list.New(),
		byID: map[uint64]*list.Element{}, byKey: map[netip.Prefix]*list.Element{}, nextID: 1}
	data, err := os.ReadFile(q.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			q.skipped++
			continue
		}
		switch {
		case l.Done != 0:
			q.remove(l.Done)
		case l.ID != 0 && l.Prefix.IsValid():
			q.put(&entry{id: l.ID, prefix: l.Prefix, at: l.At, until: l.Until})
			q.nextID = max(q.nextID, l.ID+1)
		default:
			q.skipped++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", q.path, err)
	}
	if err := q.rewrite(); err != nil {
		return nil, err
	}
	return q, nil
}

// put adds e, or replaces the entry with its id.
func (q *queue) put(e *entry) {
	if el, ok := q.byID[e.id]; ok {
		old := el.Value.(*entry)
		delete(q.byKey, old.prefix)
		el.Value = e
		q.byKey[e.prefix] = el
		return
	}
	if el, ok := q.byKey[e.prefix]; ok { // cannot happen from our own writes
		q.remove(el.Value.(*entry).id)
	}
	el := q.order.PushBack(e)
	q.byID[e.id] = el
	q.byKey[e.prefix] = el
}

func (q *queue) remove(id uint64) bool {
	el, ok := q.byID[id]
	if !ok {
		return false
	}
	e := q.order.Remove(el).(*entry)
	delete(q.byID, id)
	delete(q.byKey, e.prefix)
	return true
}

func (q *queue) len() int { return q.order.Len() }

func (e *entry) line() line {
	return line{ID: e.id, Prefix: e.prefix, At: e.at, Until: e.until}
}

// appendLines writes ls at the end of the file, fsynced if sync.
func (q *queue) appendLines(sync bool, ls ...line) error {
	var buf bytes.Buffer
	for _, l := range ls {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if _, err := q.f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing %s: %w", q.path, err)
	}
	q.lines += len(ls)
	if sync {
		if err := q.f.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", q.path, err)
		}
	}
	return nil
}

// compactable reports whether removed lines outnumber the queued reports
// enough to rewrite the file.
func (q *queue) compactable() bool { return q.lines > 2*q.order.Len()+1024 }

// rewrite replaces the file with the queued reports only: a temporary
// file, fsynced, renamed over it, and the directory fsynced.
func (q *queue) rewrite() error {
	tmp := q.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for el := q.order.Front(); el != nil; el = el.Next() {
		b, _ := json.Marshal(el.Value.(*entry).line())
		w.Write(b)
		w.WriteByte('\n')
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, q.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rewriting %s: %w", q.path, err)
	}
	if d, err := os.Open(filepath.Dir(q.path)); err == nil {
		d.Sync()
		d.Close()
	}
	if q.f != nil {
		q.f.Close()
	}
	q.f, err = os.OpenFile(q.path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	q.lines = q.order.Len()
	return nil
}

func (q *queue) close() error {
	if q.f == nil {
		return nil
	}
	err := q.f.Close()
	q.f = nil
	return err
}
