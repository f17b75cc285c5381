package hub

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestReportStream(t *testing.T) {
	h := openHub(t, Options{ReportWindow: 2 * time.Hour})
	ctx := testCtx(t)
	st, err := h.JS.Stream(ctx, ReportStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.MaxAge != 6*time.Hour || c.MaxBytes <= 0 || c.MaxMsgSize != MaxReportSize || c.Storage != jetstream.FileStorage ||
		len(c.Subjects) != 1 || c.Subjects[0] != ReportSubjectPrefix+"*" {
		t.Fatalf("reports stream config %+v", c)
	}
	if ReportAge(time.Minute) != time.Hour {
		t.Fatalf("ReportAge(1m) = %v, want the 1h floor", ReportAge(time.Minute))
	}
	// A longer window later raises the age limit; a shorter one keeps it.
	if err := EnsureReports(ctx, h.JS, 1, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := EnsureReports(ctx, h.JS, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if info, err = st.Info(ctx); err != nil || info.Config.MaxAge != 9*time.Hour {
		t.Fatalf("age limit after a longer window: %v, %v", info.Config.MaxAge, err)
	}
}

// TestEdgeReportsOnlyAsItself: an edge user may publish auto-block
// reports to its own subject, acknowledged by JetStream, and not to
// another edge's.
func TestEdgeReportsOnlyAsItself(t *testing.T) {
	h := openHub(t, Options{Users: []User{
		{Name: "edge1", Password: "one", Role: RoleEdge},
		{Name: "edge2", Password: "two", Role: RoleEdge},
	}})
	nc, err := nats.Connect(h.Server.ClientURL(), nats.UserInfo("edge1", "one"),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the refused publish below is expected
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	ack, err := js.Publish(ctx, ReportSubject("edge1"), []byte(`{}`))
	if err != nil || ack.Stream != ReportStream {
		t.Fatalf("edge1 reporting as itself: %+v, %v", ack, err)
	}
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := js.Publish(short, ReportSubject("edge2"), []byte(`{}`)); err == nil {
		t.Fatal("edge1 published a report as edge2")
	}
	st, err := h.JS.Stream(ctx, ReportStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("the stream holds %d reports (%v), want 1", info.State.Msgs, err)
	}
	// Nor may it read the reports (other edges').
	if _, err := js.OrderedConsumer(short, ReportStream, jetstream.OrderedConsumerConfig{}); err == nil {
		t.Fatal("an edge user opened a consumer on the reports stream")
	}
}
