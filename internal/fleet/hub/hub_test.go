package hub

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aegis-edge/aegis/internal/fleet/change"
)

const patience = 60 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

func openHub(t *testing.T, opts Options) *Hub {
	t.Helper()
	if opts.StoreDir == "" && opts.NATSURL == "" {
		opts.StoreDir = t.TempDir()
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:-1"
	}
	h, err := Open(testCtx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// publisherFor returns a publisher on h and the test's context.
func publisherFor(t *testing.T, h *Hub) (context.Context, *Publisher) {
	t.Helper()
	ctx := testCtx(t)
	pub, err := NewPublisher(ctx, h.Conn)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, pub
}

func signer(t *testing.T) ed25519.PrivateKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func blockAt(t *testing.T, key ed25519.PrivateKey, prefix string, issued time.Time) change.Envelope {
	t.Helper()
	env, err := change.Sign(change.Change{Kind: change.KindList, Op: change.OpPut, List: change.Blocklist,
		Prefix: netip.MustParsePrefix(prefix), IssuedAt: issued.UnixNano()}, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestOpenCreatesBuckets(t *testing.T) {
	h := openHub(t, Options{})
	ctx := testCtx(t)
	st, err := h.JS.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxMsgsPerSubject != 1 || info.Config.Storage != jetstream.FileStorage {
		t.Fatalf("bucket stream config %+v: want history 1 on file storage", info.Config)
	}
	if _, err := h.JS.ObjectStore(ctx, ModuleBucket); err != nil {
		t.Fatal(err)
	}
	// What the bucket defaults leave open to the bus's writers is closed:
	// rollups of the edges' reports, and consumers left behind for ever
	// on what edges read.
	es, err := h.JS.Stream(ctx, "KV_"+EdgesBucket)
	if err != nil || es.CachedInfo().Config.AllowRollup {
		t.Fatalf("edges bucket allows rollups (%v)", err)
	}
	for _, stream := range []string{Stream, "OBJ_" + ModuleBucket} {
		durable, err := h.JS.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "left-behind"})
		if err != nil {
			t.Fatal(err)
		}
		if got := durable.CachedInfo().Config.InactiveThreshold; got != consumerIdle {
			t.Errorf("a durable consumer on %s is removed after %v unused, want %v", stream, got, consumerIdle)
		}
	}
	// Opening again (a restarted hub) keeps the buckets.
	again, err := Open(ctx, Options{NATSURL: h.Server.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Server != nil {
		t.Fatal("Open with NATSURL started a server")
	}
	info2, err := again.KV.Status(ctx)
	if err != nil || info2.Bucket() != Bucket {
		t.Fatalf("external connection: %v", err)
	}
}

func TestPublisherRefusesStaleChanges(t *testing.T) {
	h := openHub(t, Options{})
	ctx, pub := publisherFor(t, h)
	key := signer(t)
	now := time.Now()
	env := blockAt(t, key, "198.51.100.0/24", now)
	rev, err := pub.Publish(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := pub.Publish(ctx, env); err != nil || again != rev {
		t.Fatalf("republishing the same record: rev %d, %v; want %d, nil", again, err, rev)
	}
	if _, err := pub.Publish(ctx, blockAt(t, key, "198.51.100.0/24", now.Add(-time.Second))); !errors.Is(err, ErrStale) {
		t.Fatalf("publishing an older change: %v, want ErrStale", err)
	}
	if r, err := pub.Publish(ctx, blockAt(t, key, "198.51.100.0/24", now.Add(time.Second))); err != nil || r <= rev {
		t.Fatalf("publishing a newer change: rev %d, %v", r, err)
	}
	// An unsigned delete on the bus does not stop the next signed change.
	if err := h.KV.Delete(ctx, env.StoredKey); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, blockAt(t, key, "198.51.100.0/24", now.Add(2*time.Second))); err != nil {
		t.Fatalf("publishing over an unsigned delete: %v", err)
	}
	if _, err := pub.Publish(ctx, change.Envelope{Payload: []byte("{}")}); !errors.Is(err, change.ErrMalformed) {
		t.Fatalf("publishing garbage: %v, want ErrMalformed", err)
	}
}

func TestStartServerSaysWhy(t *testing.T) {
	// A JetStream cluster without routes is refused by the server itself.
	_, err := StartServer(Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", ServerName: "x",
		Cluster: Cluster{Name: "aegis", Listen: "127.0.0.1:-1", Password: "route secret"}})
	if err == nil || !strings.Contains(err.Error(), "routes") {
		t.Fatalf("StartServer = %v, want the server's reason (routes)", err)
	}
}

func TestPutModule(t *testing.T) {
	h := openHub(t, Options{})
	ctx, pub := publisherFor(t, h)
	module := make([]byte, 300<<10) // several chunks
	rand.Read(module)
	digest, err := pub.PutModule(ctx, module)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := pub.PutModule(ctx, module); err != nil || again != digest {
		t.Fatalf("storing the module twice: %q, %v", again, err)
	}
	got, err := h.Modules.GetBytes(ctx, digest)
	if err != nil || string(got) != string(module) {
		t.Fatalf("module read back: %d bytes, %v", len(got), err)
	}
	// A meta whose chunks never come (the right size) is replaced within
	// the caller's time, not waited on until it runs out.
	info, err := h.Modules.GetInfo(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	info.NUID = "NoSuchChunksXXXXXXXXXX"
	meta, _ := json.Marshal(info)
	m := nats.NewMsg("$O." + ModuleBucket + ".M." + base64.URLEncoding.EncodeToString([]byte(digest)))
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Data = meta
	if _, err := h.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := pub.PutModule(pctx, module); err != nil {
		t.Fatalf("PutModule over a meta without chunks: %v", err)
	}
	if got, err := h.Modules.GetBytes(ctx, digest); err != nil || !bytes.Equal(got, module) {
		t.Fatalf("over a meta without chunks: the store holds %d bytes, %v", len(got), err)
	}
	// Other bytes put first under the module's name are replaced.
	other := make([]byte, len(module))
	rand.Read(other)
	for _, squat := range [][]byte{other, module[:100]} {
		if _, err := h.Modules.PutBytes(ctx, digest, squat); err != nil {
			t.Fatal(err)
		}
		if _, err := pub.PutModule(ctx, module); err != nil {
			t.Fatal(err)
		}
		if got, err := h.Modules.GetBytes(ctx, digest); err != nil || !bytes.Equal(got, module) {
			t.Fatalf("after %d squatted bytes: the store holds %d bytes, %v; want the module", len(squat), len(got), err)
		}
	}
}

// TestClusterSurvivesLeaderLoss runs three hubs with R3 buckets, stops the
// bucket's leader, and checks that every acknowledged change survives and
// writes resume.
func TestClusterSurvivesLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three JetStream servers")
	}
	base := t.TempDir()
	// A JetStream cluster needs its routes up front: reserve three ports.
	var routes []string
	var ports []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().String())
		routes = append(routes, "nats-route://"+l.Addr().String())
		l.Close()
	}
	servers := map[string]interface{ Shutdown() }{}
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	var urls []string
	for i, name := range []string{"h0", "h1", "h2"} {
		s, err := StartServer(Options{StoreDir: filepath.Join(base, name), Listen: "127.0.0.1:-1", ServerName: name,
			Cluster: Cluster{Name: "aegis", Listen: ports[i], Routes: routes, Password: "route secret"}})
		if err != nil {
			t.Fatal(err)
		}
		servers[name] = s
		urls = append(urls, s.ClientURL())
	}
	all := urls[0] + "," + urls[1] + "," + urls[2]
	h, err := Open(testCtx(t), Options{NATSURL: all, Replicas: 3, ConnOptions: []nats.Option{nats.ReconnectWait(50 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, pub := publisherFor(t, h)
	key := signer(t)
	var acked []string
	for i := range 20 {
		env := blockAt(t, key, fmt.Sprintf("198.51.100.%d/32", i), time.Now())
		if _, err := pub.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, env.StoredKey)
	}
	st, err := h.JS.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream is not R3: %+v, %v", info.Cluster, err)
	}
	leader := info.Cluster.Leader
	// One hub per server: only the one on the stream's leader compacts.
	var leads []string
	for i, name := range []string{"h0", "h1", "h2"} {
		hi, err := Open(ctx, Options{NATSURL: urls[i], Replicas: 3})
		if err != nil {
			t.Fatal(err)
		}
		lead, err := hi.LeadsBucket(ctx)
		hi.Close()
		if err != nil {
			t.Fatal(err)
		}
		if lead {
			leads = append(leads, name)
		}
	}
	if len(leads) != 1 || leads[0] != leader {
		t.Fatalf("hubs leading the bucket: %v, want only the one on %s", leads, leader)
	}
	servers[leader].Shutdown()
	delete(servers, leader)

	// Writes resume under a new leader.
	lost := time.Now()
	for i := 20; i < 40; {
		env := blockAt(t, key, fmt.Sprintf("198.51.100.%d/32", i), time.Now())
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := pub.Publish(wctx, env)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("writes did not resume after losing leader %s: %v", leader, err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		acked = append(acked, env.StoredKey)
		i++
	}
	t.Logf("writes resumed %v after stopping leader %s", time.Since(lost).Round(time.Millisecond), leader)
	for _, k := range acked {
		if _, err := h.KV.Get(ctx, k); err != nil {
			t.Fatalf("acknowledged change %s lost: %v", k, err)
		}
	}
}

// TestPublishIf: the condition sees the held record (nil when none), its
// refusal is returned as is and writes nothing.
func TestPublishIf(t *testing.T) {
	h := openHub(t, Options{})
	ctx, pub := publisherFor(t, h)
	key := signer(t)
	now := time.Now()
	first := blockAt(t, key, "198.51.100.0/24", now)
	var saw []*change.Change
	record := func(held *change.Change) error { saw = append(saw, held); return nil }
	if _, err := pub.PublishIf(ctx, first, record); err != nil || len(saw) != 1 || saw[0] != nil {
		t.Fatalf("PublishIf over nothing: %v, saw %v", err, saw)
	}
	no := errors.New("no")
	second := blockAt(t, key, "198.51.100.0/24", now.Add(time.Second))
	_, err := pub.PublishIf(ctx, second, func(held *change.Change) error {
		if held == nil || held.IssuedAt != now.UnixNano() {
			t.Errorf("held = %+v, want the first record", held)
		}
		return no
	})
	if !errors.Is(err, no) {
		t.Fatalf("PublishIf with a refusing condition: %v", err)
	}
	e, err := h.KV.Get(ctx, first.StoredKey)
	if err != nil || string(e.Value()) != string(first.Encode()) {
		t.Fatalf("a refused PublishIf wrote: %v", err)
	}
}

// TestTrustedPublisherWeighsOnlyVerifiedRecords: a record signed by an
// unknown key and dated a year ahead makes a genuine change look stale to
// a publisher that reads held records unverified, and is overwritten by
// one that trusts only the operators' keys, through Publish and
// PublishMany alike.
func TestTrustedPublisherWeighsOnlyVerifiedRecords(t *testing.T) {
	h := openHub(t, Options{})
	ctx, pub := publisherFor(t, h)
	op, rogue := signer(t), signer(t)
	now := time.Now()
	forge := func(prefix string) {
		env := blockAt(t, rogue, prefix, now.AddDate(1, 0, 0))
		if _, err := h.KV.Put(ctx, env.StoredKey, env.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	forge("198.51.100.0/24")
	forge("203.0.113.0/24")
	genuine := blockAt(t, op, "198.51.100.0/24", now)
	if _, err := pub.Publish(ctx, genuine); !errors.Is(err, ErrStale) {
		t.Fatalf("unverified publisher: %v, want ErrStale", err)
	}
	v, err := change.NewVerifier(change.Policy{Operators: []ed25519.PublicKey{op.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	pub.Trust(v)
	if _, err := pub.Publish(ctx, genuine); err != nil {
		t.Fatalf("trusted publisher over a forged record: %v", err)
	}
	batch, err := change.SignBatch([]change.Change{{Kind: change.KindList, Op: change.OpPut, List: change.Blocklist,
		Prefix: netip.MustParsePrefix("203.0.113.0/24"), IssuedAt: now.UnixNano()}}, op)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := pub.PublishMany(ctx, batch); err != nil || res.Published != 1 {
		t.Fatalf("PublishMany over a forged record: %+v, %v", res, err)
	}
	for _, env := range []change.Envelope{genuine, batch[0]} {
		e, err := h.KV.Get(ctx, env.StoredKey)
		if err != nil || string(e.Value()) != string(env.Encode()) {
			t.Fatalf("%s does not hold the operator's record: %v", env.StoredKey, err)
		}
	}
}

// TestStandaloneHubLeadsBucket: without a cluster the hub compacts its
// own bucket.
func TestStandaloneHubLeadsBucket(t *testing.T) {
	h := openHub(t, Options{})
	if lead, err := h.LeadsBucket(testCtx(t)); err != nil || !lead {
		t.Fatalf("LeadsBucket = %v, %v; want true", lead, err)
	}
}
