package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

// recorder is an Appender that keeps what it is given and fails while
// failing is set.
type recorder struct {
	recs    []Record
	failing bool
}

func (r *recorder) Append(_ context.Context, ev Event) (Record, error) {
	if r.failing {
		return Record{}, errors.New("disk full")
	}
	rec, err := newRecord(ev, time.Unix(0, 0))
	if err != nil {
		return Record{}, err
	}
	rec.Seq = uint64(len(r.recs) + 1)
	r.recs = append(r.recs, rec)
	return rec, nil
}

func details(t *testing.T, r Record) AggregateDetails {
	t.Helper()
	var d AggregateDetails
	if err := json.Unmarshal(r.Details, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAggregatorWritesOneRecordPerSourcePerPeriod(t *testing.T) {
	rec := &recorder{}
	a := NewAggregator(rec, OpAutoBlock, 3)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		a.Add("192.0.2.0/24", 10, t0.Add(time.Duration(i)*time.Millisecond))
		a.Add("198.51.100.7/32", 1, t0)
	}
	// Two sources fit the bound of three; the rest are summed as "other".
	for i := range 5 {
		a.Add(fmt.Sprintf("203.0.113.%d/32", i), 2, t0)
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.recs) != 4 {
		t.Fatalf("wrote %d records, want 4 (3 sources + overflow): %+v", len(rec.recs), rec.recs)
	}
	want := []struct {
		target          string
		events, packets uint64
	}{
		{"192.0.2.0/24", 1000, 10000},
		{"198.51.100.7/32", 1000, 1000},
		{"203.0.113.0/32", 1, 2},
		{OverflowSource, 4, 8},
	}
	for i, w := range want {
		r := rec.recs[i]
		d := details(t, r)
		if r.Op != OpAutoBlock || r.Target != w.target || d.Events != w.events || d.Packets != w.packets || r.Actor != SystemActor {
			t.Errorf("record %d = %s %s %+v, want %s events %d packets %d", i, r.Op, r.Target, d, w.target, w.events, w.packets)
		}
	}
	if d := details(t, rec.recs[0]); !d.First.Equal(t0) || !d.Last.Equal(t0.Add(999*time.Millisecond)) {
		t.Errorf("first/last = %v/%v", d.First, d.Last)
	}

	// An idle period writes nothing.
	if err := a.Flush(context.Background()); err != nil || len(rec.recs) != 4 {
		t.Errorf("idle Flush wrote %d records, %v", len(rec.recs)-4, err)
	}
}

func TestAggregatorRetriesAfterFailure(t *testing.T) {
	rec := &recorder{failing: true}
	a := NewAggregator(rec, OpAutoBlock, 0)
	t0 := time.Unix(1000, 0)
	a.Add("a", 1, t0)
	a.Add("b", 1, t0)
	if err := a.Flush(context.Background()); err == nil {
		t.Fatal("Flush into a failing log succeeded")
	}
	a.Add("a", 5, t0.Add(time.Second))
	a.Add("c", 1, t0)
	rec.failing = false
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]AggregateDetails{}
	for _, r := range rec.recs {
		got[r.Target] = details(t, r)
	}
	if len(rec.recs) != 3 || got["a"].Events != 2 || got["a"].Packets != 6 || got["b"].Events != 1 || got["c"].Events != 1 {
		t.Errorf("after retry: %+v", got)
	}
	if rec.recs[0].Target != "a" || rec.recs[1].Target != "b" {
		t.Errorf("retried sources lost their order: %s, %s", rec.recs[0].Target, rec.recs[1].Target)
	}
}

func TestAggregatorRunFlushesOnStop(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	a := NewAggregator(l, OpAutoBlock, 0)
	a.Add("192.0.2.1/32", 3, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a.Run(ctx, time.Hour, func(err error) { t.Error(err) })
	l.Close()
	if res := mustVerifyDir(t, dir); res.Records != 1 {
		t.Errorf("Run wrote %d records on stop, want 1", res.Records)
	}
}
