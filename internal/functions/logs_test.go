package functions

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A follower sees every line in order: those before it started (the last
// n), those written while it was busy with earlier ones, and those written
// while it waited; none twice.
func TestLogRingFollowSeesEveryLineOnce(t *testing.T) {
	r := newLogRing()
	for i := range 5 {
		r.add(LogLine{Message: fmt.Sprint(i)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		done <- r.follow(ctx, 2, func(l LogLine) error {
			got <- l.Message
			if l.Message == "5" {
				time.Sleep(10 * time.Millisecond) // busy while lines arrive
			}
			return nil
		})
	}()
	want := []string{"3", "4"}
	for i := 5; i < 40; i++ {
		want = append(want, fmt.Sprint(i))
	}
	next := 5
	for i, w := range want {
		if i >= 2 && next < 40 {
			r.add(LogLine{Message: fmt.Sprint(next)})
			next++
		}
		select {
		case m := <-got:
			if m != w {
				t.Fatalf("line %d: got %q, want %q", i, m, w)
			}
		case <-time.After(time.Minute):
			t.Fatalf("line %d (%q) never reached the follower", i, w)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		t.Fatalf("line %q delivered twice or unasked", m)
	default:
	}
}

// Lines nobody follows cost no wake-up channel each, and a ring keeps only
// its last logRingSize lines.
func TestLogRingKeepsTheLastLines(t *testing.T) {
	r := newLogRing()
	wake := r.wake
	for i := range logRingSize + 10 {
		r.add(LogLine{Message: fmt.Sprint(i)})
	}
	if r.wake != wake {
		t.Fatal("lines nobody waits for replaced the wake-up channel")
	}
	lines, seq, _ := r.since(0)
	if len(lines) != logRingSize || seq != logRingSize+10 || lines[0].Message != "10" {
		t.Fatalf("%d lines from %q, seq %d", len(lines), lines[0].Message, seq)
	}
}
