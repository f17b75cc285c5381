package hub

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/nats-io/nats-server/v2/server"
)

// Role is what a bus user may do.
type Role string

// The roles of bus users. Signatures decide what edges accept; bus
// permissions decide who can write at all, so that a stolen edge
// credential cannot rewrite the bucket (which a full reconcile would
// take as the truth).
const (
	// RoleEdge may read the change bucket and the module store, and
	// nothing else.
	RoleEdge Role = "edge"
	// RolePublisher may also write them (operators' CLI, the controller).
	RolePublisher Role = "publisher"
)

// User is a bus account of the embedded server (hub.users).
type User struct {
	// Name is the user name; for an edge, also its fleet.name, the only
	// report it may write.
	Name string
	// Password is plain text or a bcrypt hash ("$2a$..."), as nats-server
	// takes it.
	Password string
	Role     Role
}

// EdgePermissions are the subjects the follower of edge name needs:
// stream and consumer management of its own ephemeral ordered consumers
// on the two buckets, direct and message gets, flow-control replies, its
// inbox, writing its own report (and no other edge's), and publishing its
// auto-block reports to ReportSubject(name) only (JetStream acknowledges
// them to its inbox).
func EdgePermissions(name string) *server.Permissions {
	var pub []string
	for _, s := range []string{Stream, "OBJ_" + ModuleBucket} {
		pub = append(pub,
			"$JS.API.STREAM.INFO."+s,
			"$JS.API.CONSUMER.CREATE."+s,
			"$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.INFO."+s+".*",
			"$JS.API.CONSUMER.DELETE."+s+".*",
			"$JS.API.STREAM.MSG.GET."+s,
			"$JS.API.DIRECT.GET."+s,
			"$JS.API.DIRECT.GET."+s+".>",
		)
	}
	pub = append(pub, "$JS.API.INFO", "$JS.FC.>",
		"$JS.API.STREAM.INFO.KV_"+EdgesBucket, "$KV."+EdgesBucket+"."+name,
		ReportSubject(name))
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// HubUser is the hub's own in-process user; no configured user may take
// its name.
const HubUser = "aegis-hub"

// serverUsers turns users into the server's, adding the hub's own
// in-process user with a random password.
func serverUsers(users []User) (out []*server.User, self *server.User) {
	secret := make([]byte, 24)
	rand.Read(secret)
	self = &server.User{Username: HubUser, Password: hex.EncodeToString(secret)}
	out = append(out, self)
	for _, u := range users {
		su := &server.User{Username: u.Name, Password: u.Password}
		if u.Role != RolePublisher {
			su.Permissions = EdgePermissions(u.Name)
		}
		out = append(out, su)
	}
	return out, self
}
