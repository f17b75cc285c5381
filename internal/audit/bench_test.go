package audit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchEvent is a typical control operation: a block with a few details.
var benchEvent = Event{Op: OpMapAdd, Target: "192.0.2.0/24", Actor: "uid=0 pid=4242",
	Details: map[string]any{"list": "block", "ttl": "1h0m0s", "reason": "scanner"}}

// BenchmarkAppend is one writer: every record waits for its own fsync.
func BenchmarkAppend(b *testing.B) {
	benchSerial(b, b.TempDir(), Options{})
}

// BenchmarkAppendAnchored is BenchmarkAppend with the anchor outside the
// directory: a third write and fdatasync per group commit.
func BenchmarkAppendAnchored(b *testing.B) {
	base := b.TempDir()
	benchSerial(b, filepath.Join(base, "audit"), Options{Anchor: filepath.Join(base, "anchor")})
}

func benchSerial(b *testing.B, dir string, opts Options) {
	l := openTest(b, dir, opts)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(ctx, benchEvent); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppendParallel is many writers sharing group commits.
func BenchmarkAppendParallel(b *testing.B) {
	benchParallel(b, Options{})
}

// BenchmarkAppendParallelAnchored is the same with the anchor.
func BenchmarkAppendParallelAnchored(b *testing.B) {
	benchParallel(b, Options{Anchor: filepath.Join(b.TempDir(), "anchor")})
}

func benchParallel(b *testing.B, opts Options) {
	l := openTest(b, b.TempDir(), opts)
	ctx := context.Background()
	b.SetParallelism(16) // 16 goroutines per CPU, like many admin clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, benchEvent); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkVerify checks a log of 10,000 records.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	l := openTest(b, dir, Options{})
	const n = 10_000
	for range n / 100 {
		done := make(chan error, 100)
		for range 100 {
			go func() { _, err := l.Append(context.Background(), benchEvent); done <- err }()
		}
		for range 100 {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
	l.Close()
	b.ResetTimer()
	for b.Loop() {
		if res, err := VerifyDir(dir); err != nil || res.Records != n {
			b.Fatalf("VerifyDir = %+v, %v", res, err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkWriteSyncBaseline is the floor Append is measured against: a
// line of the same size appended and fdatasynced, with no hashing, no
// head and no group commit.
func BenchmarkWriteSyncBaseline(b *testing.B) {
	r, err := newRecord(benchEvent, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	line, err := seal(&r, 1, Genesis)
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "baseline"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
