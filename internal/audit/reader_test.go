package audit

import (
	"context"
	"testing"
)

func TestTailFiltersAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{MaxFileBytes: 1500})
	for i := range 30 {
		op := OpMapAdd
		if i%3 == 0 {
			op = OpAttach
		}
		if _, err := l.Append(context.Background(), Event{Op: op, Target: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	recs, last, err := Tail(dir, 4, func(r Record) bool { return r.Op == OpAttach })
	if err != nil || last != 30 {
		t.Fatalf("Tail = %v, last %d", err, last)
	}
	var seqs []uint64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	if len(seqs) != 4 || seqs[0] != 19 || seqs[1] != 22 || seqs[2] != 25 || seqs[3] != 28 {
		t.Errorf("Tail(4, attach) = %v, want [19 22 25 28]", seqs)
	}
	all, _, _ := Tail(dir, 100, nil)
	if len(all) != 30 || all[0].Seq != 1 {
		t.Errorf("Tail(100) returned %d records from %d", len(all), all[0].Seq)
	}
	if none, last, _ := Tail(dir, 0, nil); len(none) != 0 || last != 30 {
		t.Errorf("Tail(0) = %d records, last %d", len(none), last)
	}
}

func TestFollowerSeesNewRecordsAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{MaxFileBytes: 1500})
	appendN(t, l, "old", 7)
	fl, err := NewFollower(dir, 7)
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := fl.Next(); err != nil || len(recs) != 0 {
		t.Fatalf("Next before new records = %d, %v", len(recs), err)
	}
	var want []uint64
	for round := range 3 {
		for _, r := range appendN(t, l, "new", 5+round) {
			want = append(want, r.Seq)
		}
		recs, err := fl.Next()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if len(want) == 0 || r.Seq != want[0] {
				t.Fatalf("round %d: got record %d, want %v", round, r.Seq, want)
			}
			want = want[1:]
		}
		if len(want) != 0 {
			t.Fatalf("round %d: records %v not returned", round, want)
		}
	}
	if files, _ := Files(dir); len(files) < 3 {
		t.Fatalf("the test did not rotate: %d files", len(files))
	}
}

func TestFollowerStartsOnEmptyLog(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	fl, err := NewFollower(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, "a", 2)
	if recs, err := fl.Next(); err != nil || len(recs) != 2 || recs[0].Seq != 1 {
		t.Fatalf("Next = %+v, %v", recs, err)
	}
}
