package audit

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"strings"
)

// HeadFile is the name of the anchor file in a log directory. It records
// the sequence number and hash of the last acknowledged record, so that
// removing records from the end of the log is detected.
const HeadFile = "head"

// The head file holds two fixed-size text slots written alternately; a
// write torn by a crash damages only the slot being written, and the other
// still holds the previous anchor. Each slot reads
//
//	seq=00000000000000000042 hash=<64 hex> crc=<8 hex>   ...padding...\n
//
// where crc is the CRC-32 (IEEE) of the text before " crc=".
const (
	headSlotSize = 128
	headSlots    = 2
)

// head is an anchor: the last acknowledged record.
type head struct {
	Seq  uint64
	Hash string
}

var errNoHead = errors.New("no valid head slot")

func (h head) slot() []byte {
	text := fmt.Sprintf("seq=%020d hash=%s", h.Seq, h.Hash)
	text += fmt.Sprintf(" crc=%08x", crc32.ChecksumIEEE([]byte(text)))
	b := []byte(text + strings.Repeat(" ", headSlotSize-1-len(text)) + "\n")
	return b
}

func parseHeadSlot(b []byte) (head, bool) {
	text, _, ok := strings.Cut(strings.TrimRight(string(b), " \n"), " crc=")
	if !ok || len(b) != headSlotSize {
		return head{}, false
	}
	crc := strings.TrimRight(string(b[len(text)+len(" crc="):]), " \n")
	want, err := strconv.ParseUint(crc, 16, 32)
	if err != nil || len(crc) != 8 || uint32(want) != crc32.ChecksumIEEE([]byte(text)) {
		return head{}, false
	}
	seqText, hash, ok := strings.Cut(text, " hash=")
	seqText, found := strings.CutPrefix(seqText, "seq=")
	if !ok || !found || len(hash) != 64 {
		return head{}, false
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return head{}, false
	}
	return head{Seq: seq, Hash: hash}, true
}

// readHead returns the newest valid slot of a head file's contents and the
// index of the slot it came from.
func readHead(r io.ReaderAt) (head, int, error) {
	buf := make([]byte, headSlotSize*headSlots)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return head{}, 0, fmt.Errorf("reading head: %w", err)
	}
	best, bestSlot, found := head{}, 0, false
	for i := range headSlots {
		if n < (i+1)*headSlotSize {
			break
		}
		if h, ok := parseHeadSlot(buf[i*headSlotSize : (i+1)*headSlotSize]); ok && (!found || h.Seq > best.Seq) {
			best, bestSlot, found = h, i, true
		}
	}
	if !found {
		return head{}, 0, errNoHead
	}
	return best, bestSlot, nil
}

// ReadHead returns the sequence number and hash of the last acknowledged
// record of the log in dir, as its head file records them.
func ReadHead(dir string) (seq uint64, hash string, err error) {
	f, err := os.Open(dir + "/" + HeadFile)
	if err != nil {
		return 0, "", fmt.Errorf("reading audit head: %w", err)
	}
	defer f.Close()
	h, _, err := readHead(f)
	if err != nil {
		return 0, "", fmt.Errorf("reading audit head %s: %w", f.Name(), err)
	}
	return h.Seq, h.Hash, nil
}

// headWriter overwrites the older slot of an open head file.
type headWriter struct {
	f    *os.File
	next int // slot to write next
}

// write stores h durably.
func (w *headWriter) write(h head) error {
	if _, err := w.f.WriteAt(h.slot(), int64(w.next*headSlotSize)); err != nil {
		return fmt.Errorf("writing audit head: %w", err)
	}
	if err := datasync(w.f); err != nil {
		return fmt.Errorf("syncing audit head: %w", err)
	}
	w.next = (w.next + 1) % headSlots
	return nil
}

// init writes h to every slot.
func (w *headWriter) init(h head) error {
	for range headSlots {
		if err := w.write(h); err != nil {
			return err
		}
	}
	return nil
}
