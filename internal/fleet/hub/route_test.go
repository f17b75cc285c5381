package hub

import (
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestRoutesNeedAuthentication: a server that joins a hub's route is
// trusted with every subject, past the users' permissions. A hub refuses
// to listen for routes without their authentication, and a server that
// does not present the route password never joins: a client of it,
// without credentials, can neither report under edges' names nor write
// into the change bucket.
func TestRoutesNeedAuthentication(t *testing.T) {
	users := []User{{Name: "edge1", Password: "one", Role: RoleEdge}}
	if _, err := StartServer(Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", Users: users,
		Cluster: Cluster{Name: "aegis", Listen: "127.0.0.1:-1"}}); err == nil || !strings.Contains(err.Error(), "authentication") {
		t.Fatalf("a hub listening for unauthenticated routes started: %v", err)
	}
	if _, err := StartServer(Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", Users: []User{{Name: HubUser, Password: "x", Role: RolePublisher}}}); err == nil {
		t.Fatal("a configured user took the hub's own name")
	}

	var ports, routes []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().String())
		routes = append(routes, "nats-route://"+l.Addr().String())
		l.Close()
	}
	s2, err := StartServer(Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", ServerName: "hub2", Users: users,
		Cluster: Cluster{Name: "aegis", Listen: ports[1], Routes: routes, Password: "route secret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown()
	h := openHub(t, Options{ServerName: "hub1", Users: users,
		Cluster: Cluster{Name: "aegis", Listen: ports[0], Routes: routes, Password: "route secret"}})
	ctx := testCtx(t)
	if !waitFor(func() bool { return h.Server.NumRoutes() > 0 }) {
		t.Fatal("the two hubs never routed to each other with the password")
	}

	for _, route := range []string{routes[0], strings.Replace(routes[0], "//", "//"+RouteUser+":guess@", 1)} {
		ru, _ := url.Parse(route)
		rogue, err := server.NewServer(&server.Options{ServerName: "rogue", Host: "127.0.0.1", Port: -1, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "aegis", Host: "127.0.0.1", Port: -1}, Routes: []*url.URL{ru}})
		if err != nil {
			t.Fatal(err)
		}
		go rogue.Start()
		if !rogue.ReadyForConnections(5 * time.Second) {
			t.Fatal("the rogue server did not start")
		}
		nc, err := nats.Connect(rogue.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		// The rogue keeps trying; give it a few attempts.
		time.Sleep(time.Second)
		for _, name := range []string{"ghost1", "ghost2", "ghost3"} {
			nc.Publish(ReportSubject(name), []byte(`{}`))
		}
		nc.Publish(SubjectPrefix+"list.block.198-51-100-7_32", []byte("garbage from a rogue route"))
		nc.Flush()
		nc.Close()
		joined := rogue.NumRoutes()
		rogue.Shutdown()
		if joined > 0 {
			t.Errorf("a server presenting %q joined the cluster", ru.Redacted())
		}
	}
	st, err := h.JS.Stream(ctx, ReportStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 0 {
		t.Errorf("the reports stream holds %d messages from a rogue route (%v)", info.State.Msgs, err)
	}
	if _, err := h.KV.Get(ctx, "list.block.198-51-100-7_32"); err == nil {
		t.Error("a rogue route wrote into the change bucket")
	}
}

func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(patience); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}
