package audit

import (
	"bytes"
	"testing"
)

// FuzzVerify feeds arbitrary bytes to the verifier as the newest log file
// and as a head file: it must never panic, and what it accepts must be a
// gapless chain from record 1.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := checker{nextSeq: 1, prev: Genesis}
		err := c.scan("audit-000000000001.jsonl", bytes.NewReader(data), true)
		if err == nil {
			res := c.res
			if res.Records > 0 && (res.FirstSeq != 1 || res.LastSeq != res.Records) {
				t.Fatalf("accepted a chain that is not 1..n: %+v", res)
			}
			if c.goodSize+res.TornBytes != int64(len(data)) {
				t.Fatalf("good %d + torn %d bytes != %d", c.goodSize, res.TornBytes, len(data))
			}
			// The accepted prefix verifies on its own, with the same result.
			again := checker{nextSeq: 1, prev: Genesis}
			if err := again.scan("x", bytes.NewReader(data[:c.goodSize]), false); err != nil || again.res.LastHash != res.LastHash {
				t.Fatalf("accepted prefix does not verify again: %v", err)
			}
		}
		if h, _, err := readHead(bytes.NewReader(data)); err == nil && len(h.Hash) != 64 {
			t.Fatalf("head with a %d-byte hash accepted", len(h.Hash))
		}
	})
}
