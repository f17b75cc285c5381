package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/aegis-edge/aegis/internal/admin"
	"github.com/aegis-edge/aegis/internal/fleet/change"
	"github.com/aegis-edge/aegis/internal/fleet/hub"
	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/aegis-edge/aegis/internal/lists"
)

// Defaults of the operator's fleet commands.
const (
	defaultFleetServer = "nats://" + hub.DefaultListen
	// edgeReportEvery is how often an edge reports itself when idle
	// (follow.Options.ReportEvery's default); an edge that has not
	// reported for three times that is shown as disconnected and is not
	// waited for.
	edgeReportEvery = 10 * time.Second
	edgeFresh       = 3 * edgeReportEvery
	// fleetTimeout bounds a command's talk with the hub, --wait aside.
	fleetTimeout = 30 * time.Second
)

// fleetFlags are the flags of every `aegis fleet` command: how to reach
// the hub and which key signs.
type fleetFlags struct {
	server, key, credentials string
	tlsCA, tlsCert, tlsKey   string
	trusted                  []string
}

func newFleetCmd(e *env) *cobra.Command {
	var f fleetFlags
	cmd := groupCmd("fleet", "Change and inspect the fleet through its hub")
	cmd.Long = "Sign changes with an operator key and publish them to the fleet's hub, which every edge " +
		"follows (docs/FLEET.md). Changing commands take --wait DUR to wait until every connected edge has applied the change."
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.server, "server", "", "hub URL(s), comma-separated (env AEGIS_FLEET_SERVER, default "+defaultFleetServer+")")
	pf.StringVar(&f.key, "key", "", "operator private key file that signs changes (env AEGIS_FLEET_KEY)")
	pf.StringVar(&f.credentials, "credentials", "", "bus account: NATS credentials file or one line user:password (env AEGIS_FLEET_CREDENTIALS)")
	pf.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate (PEM) that verifies the hub")
	pf.StringVar(&f.tlsCert, "tls-cert", "", "client certificate (PEM) for mutual TLS")
	pf.StringVar(&f.tlsKey, "tls-key", "", "client certificate's key (PEM)")
	pf.StringSliceVar(&f.trusted, "trusted-key", nil, "operator public key (PEM) whose records the hub holds count when deciding whether a change is stale; "+
		"repeatable (env AEGIS_FLEET_TRUSTED_KEYS, comma-separated). With any given, --key's own counts too and a record no listed key signed "+
		"is overwritten; with none, every record counts unverified")
	cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		cmd.Root().PersistentPreRun(cmd, nil)
		for _, v := range []struct {
			dst *string
			env string
		}{{&f.server, "AEGIS_FLEET_SERVER"}, {&f.key, "AEGIS_FLEET_KEY"}, {&f.credentials, "AEGIS_FLEET_CREDENTIALS"}} {
			if *v.dst == "" {
				*v.dst = e.getenv(v.env)
			}
		}
		if f.server == "" {
			f.server = defaultFleetServer
		}
		if len(f.trusted) == 0 {
			for _, p := range strings.Split(e.getenv("AEGIS_FLEET_TRUSTED_KEYS"), ",") {
				if p = strings.TrimSpace(p); p != "" {
					f.trusted = append(f.trusted, p)
				}
			}
		}
		return nil
	}
	cmd.AddCommand(newFleetKeygenCmd(e), newFleetListCmd(e, &f, change.Blocklist), newFleetListCmd(e, &f, change.Allowlist),
		newFleetRateCmd(e, &f), newFleetFnCmd(e, &f), newFleetEdgesCmd(e, &f), newFleetStatusCmd(e))
	return cmd
}

// fleetConn is an open connection to the hub.
type fleetConn struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	pub *hub.Publisher
	// published holds the keys this command wrote: --wait counts an
	// edge's refusal of those only.
	published map[string]bool
}

// connect dials the hub and opens its buckets; publish says whether the
// command writes (and so needs the module store too).
func (f *fleetFlags) connect(ctx context.Context, publish bool) (*fleetConn, error) {
	d := hub.Dial{Name: "aegis-fleet", Credentials: f.credentials}
	for _, s := range strings.Split(f.server, ",") {
		if s = strings.TrimSpace(s); s != "" {
			d.Servers = append(d.Servers, s)
		}
	}
	if f.tlsCA != "" || f.tlsCert != "" || f.tlsKey != "" {
		c, err := hub.ClientTLS(f.tlsCA, f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, err
		}
		d.TLS = c
	}
	nc, err := d.Connect()
	if err != nil {
		return nil, err
	}
	c := &fleetConn{nc: nc, published: map[string]bool{}}
	if c.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, err
	}
	if c.kv, err = c.js.KeyValue(ctx, hub.Bucket); err != nil {
		nc.Close()
		return nil, fmt.Errorf("opening the hub's bucket %s (is it an aegis hub?): %w", hub.Bucket, err)
	}
	if publish {
		if c.pub, err = hub.NewPublisher(ctx, nc); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *fleetConn) close() { c.nc.Close() }

// signer reads the operator key; it is read before the hub is dialled,
// so a bad key publishes nothing.
func (f *fleetFlags) signer() (ed25519.PrivateKey, error) {
	if f.key == "" {
		return nil, usageError{errors.New("signing needs an operator key: --key FILE or AEGIS_FLEET_KEY (aegis fleet keygen NAME makes one)")}
	}
	return keyfile.ReadPrivateKey(f.key)
}

// trust is the verifier of --trusted-key and the signer's own key, nil
// when no key is listed; read before the hub is dialled, so a bad key
// publishes nothing.
func (f *fleetFlags) trust(signer ed25519.PrivateKey) (*change.Verifier, error) {
	if len(f.trusted) == 0 {
		return nil, nil
	}
	keys := []ed25519.PublicKey{signer.Public().(ed25519.PublicKey)}
	for _, path := range f.trusted {
		k, err := keyfile.ReadPublicKey(path)
		if err != nil {
			return nil, fmt.Errorf("--trusted-key: %w", err)
		}
		keys = append(keys, k)
	}
	return change.NewVerifier(change.Policy{Operators: keys})
}

// publisher is a changing command's run: it signs with the operator key,
// publishes and waits (--wait) for the edges.
type publisher struct {
	e    *env
	f    *fleetFlags
	wait time.Duration
}

func (p *publisher) register(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&p.wait, "wait", 0, "after publishing, wait this long for every connected edge to apply the change (exit 1 naming those that did not)")
}

// run reads the key, connects and calls do, which publishes and returns
// the highest revision it wrote (0: nothing written); then it waits.
func (p *publisher) run(cmd *cobra.Command, do func(ctx context.Context, c *fleetConn, key ed25519.PrivateKey) (uint64, error)) error {
	if p.wait < 0 {
		return usageError{errors.New("--wait must not be negative")}
	}
	key, err := p.f.signer()
	if err != nil {
		return err
	}
	trust, err := p.f.trust(key)
	if err != nil {
		return err
	}
	ctx, refuse := context.WithCancelCause(cmd.Context())
	defer refuse(nil)
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	c, err := p.f.connect(ctx, true)
	if err != nil {
		return err
	}
	defer c.close()
	if trust != nil {
		c.pub.Trust(trust)
	}
	// The hub refuses a write the account may not make (an edge's
	// credentials) asynchronously; without this the publish would wait
	// for an acknowledgement until the timeout.
	c.nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			refuse(fmt.Errorf("the hub refused the write (are the credentials a publisher's?): %w", err))
		}
	})
	// What this command publishes comes after the bucket's last revision:
	// an edge refusing a record from there on refused this change.
	from, err := hub.LastRevision(ctx, c.js)
	if err != nil {
		return err
	}
	rev, err := do(ctx, c, key)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
			return cause
		}
		return err
	}
	if rev == 0 || p.wait == 0 {
		return nil
	}
	// WaitApplied does not say how many edges it waits for: with none
	// connected, say so rather than claim success.
	start := time.Now()
	if n, err := freshEdges(ctx, c.js, start); err == nil && n == 0 {
		fmt.Fprintf(p.e.stdout, "no edge has reported in the last %s: nothing to wait for\n", edgeFresh)
		return nil
	}
	wctx, wcancel := context.WithTimeout(cmd.Context(), p.wait)
	defer wcancel()
	missing, refused, err := hub.WaitApplied(wctx, c.js, hub.Published{From: from + 1, To: rev, Keys: c.published}, nil, edgeFresh)
	if err != nil {
		return fmt.Errorf("published, but waiting for the edges failed: %w", err)
	}
	var fails []string
	if len(refused) > 0 {
		fails = append(fails, fmt.Sprintf("refused by %d edge(s): %s", len(refused), strings.Join(refused, ", ")))
	}
	if len(missing) > 0 {
		fails = append(fails, fmt.Sprintf("not applied within %s by %d edge(s): %s", p.wait, len(missing), strings.Join(missing, ", ")))
	}
	if len(fails) > 0 {
		return fmt.Errorf("published, but %s", strings.Join(fails, "; "))
	}
	fmt.Fprintf(p.e.stdout, "applied by every connected edge\n")
	return nil
}

// freshEdges counts the edges that reported within edgeFresh before t.
func freshEdges(ctx context.Context, js jetstream.JetStream, t time.Time) (int, error) {
	reports, err := hub.Edges(ctx, js)
	n := 0
	for _, r := range reports {
		if t.Sub(r.Reported) <= edgeFresh {
			n++
		}
	}
	return n, err
}

// publishEach signs and publishes changes one by one and returns the
// highest revision.
func publishEach(ctx context.Context, c *fleetConn, key ed25519.PrivateKey, changes []change.Change) (uint64, error) {
	envs := make([]change.Envelope, len(changes))
	for i, ch := range changes {
		env, err := change.Sign(ch, key)
		if err != nil {
			return 0, err
		}
		envs[i] = env
	}
	var high uint64
	for i, env := range envs {
		c.published[env.StoredKey] = true
		rev, err := c.pub.Publish(ctx, env)
		if err != nil {
			if i > 0 {
				// Each change stands alone: say which went out.
				return high, fmt.Errorf("%w (%d published before it, %s to %s)", err, i, envs[0].StoredKey, envs[i-1].StoredKey)
			}
			return high, err
		}
		high = max(high, rev)
	}
	return high, nil
}

func newFleetKeygenCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "keygen NAME",
		Short: "Create an operator key pair: NAME.key (private, 0600) and NAME.pub",
		Long: "Create an ed25519 key pair for signing fleet changes. Give NAME.key to aegis fleet --key and " +
			"list NAME.pub in the edges' fleet.trusted_keys (and the hub's hub.operator_keys). Never overwrites.",
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			pub, err := keyfile.GenerateFiles(a[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s.key and %s.pub; key id %s\n", a[0], a[0], keyfile.KeyID(pub))
			return nil
		},
	}
}

// newFleetListCmd is `aegis fleet block|allow`: the local list's verbs
// and flags, signed and published to the hub.
func newFleetListCmd(e *env, f *fleetFlags, list change.List) *cobra.Command {
	noun := "fleet " + lists.List(list).Noun()
	cmd := groupCmd(string(list), "Manage the "+noun)

	var entry entryFlags
	pub := &publisher{e: e, f: f}
	add := func(cmd *cobra.Command, targets []string, batch bool) error {
		if err := lists.ValidateEntry(entry.ttl, entry.reason); err != nil {
			return err
		}
		prefixes, err := lists.ParseTargets(targets)
		if err != nil {
			return err
		}
		now := time.Now()
		at := func(i int) change.Change {
			c := change.Change{Kind: change.KindList, Op: change.OpPut, List: list, Prefix: prefixes[i],
				Reason: entry.reason, IssuedAt: now.UnixNano()}
			if entry.ttl > 0 {
				c.ExpiresAt = now.Add(entry.ttl).UnixNano()
			}
			return c
		}
		return pub.run(cmd, func(ctx context.Context, c *fleetConn, key ed25519.PrivateKey) (uint64, error) {
			if !batch {
				changes := make([]change.Change, len(prefixes))
				for i := range changes {
					changes[i] = at(i)
				}
				rev, err := publishEach(ctx, c, key, changes)
				if err == nil {
					fmt.Fprintf(e.stdout, "added %d to the %s\n", len(changes), noun)
				}
				return rev, err
			}
			res, err := publishImport(ctx, c, key, len(prefixes), at)
			if err != nil {
				return 0, fmt.Errorf("after %d published: %w", res.Published, err)
			}
			fmt.Fprintf(e.stdout, "imported %d to the %s (%d published, %d already there, %d newer on the hub)\n",
				len(prefixes), noun, res.Published, res.Same, res.Stale)
			if res.Published == 0 {
				return 0, nil
			}
			// PublishMany does not say which revisions it wrote: the
			// stream's last one is at or after all of them.
			return hub.LastRevision(ctx, c.js)
		})
	}

	addCmd := listAddCmd(noun, func(cmd *cobra.Command, t []string) error { return add(cmd, t, false) })
	importCmd := listImportCmd(e, func(cmd *cobra.Command, t []string) error { return add(cmd, t, true) })
	for _, c := range []*cobra.Command{addCmd, importCmd} {
		entry.register(c)
		pub.register(c)
	}

	rmCmd := &cobra.Command{
		Use:     "rm TARGET...",
		Aliases: []string{"remove"},
		Short:   "Remove entries from the " + noun + " (signed tombstones)",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, targets []string) error {
			prefixes, err := lists.ParseTargets(targets)
			if err != nil {
				return err
			}
			return pub.run(cmd, func(ctx context.Context, c *fleetConn, key ed25519.PrivateKey) (uint64, error) {
				var changes []change.Change
				var absent []string
				for _, p := range prefixes {
					ch := change.Change{Kind: change.KindList, Op: change.OpDelete, List: list, Prefix: p}
					if live, err := c.live(ctx, ch); err != nil {
						return 0, err
					} else if live {
						changes = append(changes, ch)
					} else {
						absent = append(absent, p.String())
					}
				}
				rev, err := publishEach(ctx, c, key, changes)
				if err == nil {
					fmt.Fprintf(e.stdout, "removed %d from the %s\n", len(changes), noun)
					if len(absent) > 0 {
						fmt.Fprintf(e.stdout, "not in the %s (nothing published for them): %s\n", noun, strings.Join(absent, ", "))
					}
				}
				return rev, err
			})
		},
	}
	pub.register(rmCmd)

	var asJSON bool
	lsCmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the " + noun + " as the hub holds it",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			entries, err := readRecords(cmd, f, "list."+string(list)+".>")
			if err != nil {
				return err
			}
			out := []fleetEntry{}
			now := time.Now().UnixNano()
			for _, r := range entries {
				if r.c.Kind != change.KindList || r.c.ExpiresAt != 0 && r.c.ExpiresAt <= now {
					continue
				}
				fe := fleetEntry{Key: r.c.Key, Prefix: r.c.Prefix, Reason: r.c.Reason, KeyID: r.c.KeyID,
					Issued: time.Unix(0, r.c.IssuedAt).UTC(), Revision: r.rev}
				if r.c.ExpiresAt != 0 {
					fe.Expires = time.Unix(0, r.c.ExpiresAt).UTC()
				}
				out = append(out, fe)
			}
			if asJSON {
				return e.printJSON(struct {
					Entries []fleetEntry `json:"entries"`
				}{out})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TARGET\tEXPIRES\tREASON\tSIGNER\tISSUED")
			for _, en := range out {
				exp := "never"
				if !en.Expires.IsZero() {
					exp = en.Expires.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", en.Prefix, exp, en.Reason, en.KeyID, en.Issued.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	lsCmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	cmd.AddCommand(addCmd, rmCmd, lsCmd, importCmd)
	return cmd
}

// fleetEntry is a list entry as `aegis fleet block ls --json` prints it.
type fleetEntry struct {
	Key      string       `json:"key"`
	Prefix   netip.Prefix `json:"prefix"`
	Expires  time.Time    `json:"expires,omitzero"`
	Reason   string       `json:"reason,omitempty"`
	KeyID    string       `json:"key_id"`
	Issued   time.Time    `json:"issued"`
	Revision uint64       `json:"revision"`
}

// record is a stored change as the hub holds it, not verified: ls shows
// what is there, and the edges decide what counts.
type record struct {
	c   change.Change
	rev uint64
}

// readRecords returns the live (not deleted) records under keys, a KV
// key filter.
func readRecords(cmd *cobra.Command, f *fleetFlags, keys string) ([]record, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), fleetTimeout)
	defer cancel()
	c, err := f.connect(ctx, false)
	if err != nil {
		return nil, err
	}
	defer c.close()
	w, err := c.kv.Watch(ctx, keys, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []record
	for {
		select {
		case en := <-w.Updates():
			if en == nil {
				slices.SortFunc(out, func(a, b record) int { return strings.Compare(a.c.Key, b.c.Key) })
				return out, nil
			}
			ch, ok := change.Peek(en.Value())
			if ok && ch.Op == change.OpPut {
				out = append(out, record{ch, en.Revision()})
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("reading the hub's bucket: %w", ctx.Err())
		}
	}
}

// live reports whether the hub holds a put for ch's subject, so that rm
// publishes tombstones only for what is there.
func (c *fleetConn) live(ctx context.Context, ch change.Change) (bool, error) {
	key, err := change.KeyFor(ch)
	if err != nil {
		return false, err
	}
	en, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", key, err)
	}
	held, ok := change.Peek(en.Value())
	return ok && held.Op == change.OpPut, nil
}

// lastRevision is the change bucket's last revision.

func newFleetRateCmd(e *env, f *fleetFlags) *cobra.Command {
	pub := &publisher{e: e, f: f}
	cmd := rateCmd("Set a class's per-source rate limit on every edge (--pps 0 lifts it)",
		func(cmd *cobra.Command, req admin.RateRequest) error {
			ch := change.Change{Kind: change.KindRate, Op: change.OpPut,
				Rate: &change.Rate{Class: req.Class, PPS: req.PPS, Burst: req.Burst}}
			return pub.run(cmd, func(ctx context.Context, c *fleetConn, key ed25519.PrivateKey) (uint64, error) {
				rev, err := publishEach(ctx, c, key, []change.Change{ch})
				if err == nil {
					fmt.Fprintf(e.stdout, "fleet rate limit: %s %d/s burst %d\n", req.Class, req.PPS, req.Burst)
				}
				return rev, err
			})
		})
	pub.register(cmd)
	return cmd
}

func newFleetFnCmd(e *env, f *fleetFlags) *cobra.Command {
	cmd := groupCmd("fn", "Deploy and manage the fleet's edge functions")
	cmd.AddCommand(newFleetFnDeployCmd(e, f), newFleetFnLsCmd(e, f), newFleetFnRmCmd(e, f))
	return cmd
}

func newFleetFnDeployCmd(e *env, f *fleetFlags) *cobra.Command {
	pub := &publisher{e: e, f: f}
	cmd := fnDeployCmd("Store a module on the hub and deploy it as a function on every edge",
		"Store the module in the hub's object store under its SHA-256, then publish a signed change naming "+
			"that digest, its route and limits. Each edge fetches the module, checks the digest and deploys it as "+
			"`aegis fn deploy` does; an edge that refuses it keeps serving the previous version. Flags not given "+
			"take each edge's defaults (functions.defaults).",
		func(cmd *cobra.Command, name string, spec functions.Spec, module []byte) error {
			specJSON, err := json.Marshal(spec)
			if err != nil {
				return err
			}
			return pub.run(cmd, func(ctx context.Context, c *fleetConn, key ed25519.PrivateKey) (uint64, error) {
				digest, err := c.pub.PutModule(ctx, module)
				if err != nil {
					return 0, err
				}
				ch := change.Change{Kind: change.KindFunction, Op: change.OpPut,
					Func: &change.Function{Name: name, Digest: digest, Size: int64(len(module)), Spec: specJSON}}
				rev, err := publishEach(ctx, c, key, []change.Change{ch})
				if err == nil {
					fmt.Fprintf(e.stdout, "published %s on %s to the fleet (sha256 %.12s, %d bytes)\n", name, spec.Route, digest, len(module))
				}
				return rev, err
			})
		})
	pub.register(cmd)
	return cmd
}

func newFleetFnRmCmd(e *env, f *fleetFlags) *cobra.Command {
	pub := &publisher{e: e, f: f}
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a function from every edge (a signed tombstone)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			ch := change.Change{Kind: change.KindFunction, Op: change.OpDelete, Func: &change.Function{Name: a[0]}}
			if _, err := change.KeyFor(ch); err != nil {
				return usageError{err}
			}
			return pub.run(cmd, func(ctx context.Context, c *fleetConn, key ed25519.PrivateKey) (uint64, error) {
				live, err := c.live(ctx, ch)
				if err != nil {
					return 0, err
				}
				if !live {
					return 0, fmt.Errorf("the fleet has no function %q", a[0])
				}
				rev, err := publishEach(ctx, c, key, []change.Change{ch})
				if err == nil {
					fmt.Fprintf(e.stdout, "removed %s from the fleet\n", a[0])
				}
				return rev, err
			})
		},
	}
	pub.register(cmd)
	return cmd
}

// fleetFunction is a function as `aegis fleet fn ls --json` prints it.
type fleetFunction struct {
	Name     string         `json:"name"`
	Digest   string         `json:"sha256"`
	Size     int64          `json:"size"`
	Spec     functions.Spec `json:"spec"`
	KeyID    string         `json:"key_id"`
	Issued   time.Time      `json:"issued"`
	Revision uint64         `json:"revision"`
}

func newFleetFnLsCmd(e *env, f *fleetFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List the fleet's functions as the hub holds them",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			recs, err := readRecords(cmd, f, "fn.>")
			if err != nil {
				return err
			}
			out := []fleetFunction{}
			for _, r := range recs {
				if r.c.Kind != change.KindFunction {
					continue
				}
				fn := fleetFunction{Name: r.c.Func.Name, Digest: r.c.Func.Digest, Size: r.c.Func.Size, KeyID: r.c.KeyID,
					Issued: time.Unix(0, r.c.IssuedAt).UTC(), Revision: r.rev}
				// A spec that does not decode is shown empty; the edges refuse it.
				_ = json.Unmarshal(r.c.Func.Spec, &fn.Spec)
				out = append(out, fn)
			}
			if asJSON {
				return e.printJSON(struct {
					Functions []fleetFunction `json:"functions"`
				}{out})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROUTE\tSHA256\tSIZE\tFUEL\tTIMEOUT\tMEMORY\tSIGNER\tISSUED")
			for _, fn := range out {
				fuel, timeout, memory := "default", "default", "default"
				if fn.Spec.Fuel != nil {
					fuel = strconv.FormatInt(*fn.Spec.Fuel, 10)
				}
				if fn.Spec.Timeout != nil {
					timeout = fn.Spec.Timeout.String()
				}
				if fn.Spec.Memory != nil {
					memory = fn.Spec.Memory.String()
				}
				// A route is the signer's word: one no edge would take (a
				// terminal escape, a line break) is not printed.
				route := fn.Spec.Route
				if _, err := functions.ParseRoute(route); err != nil {
					route = "invalid"
				}
				fmt.Fprintf(tw, "%s\t%s\t%.12s\t%d\t%s\t%s\t%s\t%s\t%s\n", fn.Name, route, fn.Digest, fn.Size,
					fuel, timeout, memory, fn.KeyID, fn.Issued.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// fleetEdge is an edge as `aegis fleet edges --json` prints it.
type fleetEdge struct {
	hub.EdgeReport
	Connected bool `json:"connected"`
	// Lag is the hub's last revision minus the edge's; -1 when the edge's
	// cursor is of another bucket (it has not caught up since the bucket
	// was recreated).
	Lag int64 `json:"lag"`
}

func newFleetEdgesCmd(e *env, f *fleetFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "edges [--json]",
		Short: "List the edges that report to the hub: connected, lag, last applied change, refusals",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), fleetTimeout)
			defer cancel()
			c, err := f.connect(ctx, false)
			if err != nil {
				return err
			}
			defer c.close()
			st, err := c.js.Stream(ctx, hub.Stream)
			if err != nil {
				return err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return err
			}
			epoch := strconv.FormatInt(info.Created.UnixNano(), 10)
			reports, err := hub.Edges(ctx, c.js)
			if err != nil {
				return err
			}
			now := time.Now()
			out := []fleetEdge{}
			for _, r := range reports {
				fe := fleetEdge{EdgeReport: r, Connected: now.Sub(r.Reported) <= edgeFresh, Lag: -1}
				if r.Epoch == epoch {
					fe.Lag = int64(info.State.LastSeq) - int64(min(r.Seq, info.State.LastSeq))
				}
				out = append(out, fe)
			}
			if asJSON {
				return e.printJSON(struct {
					Revision uint64      `json:"revision"`
					Edges    []fleetEdge `json:"edges"`
				}{info.State.LastSeq, out})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EDGE\tCONNECTED\tLAG\tLAST APPLIED\tAPPLIED\tREFUSED\tREPORTED")
			for _, fe := range out {
				lag, last := "-", "never"
				if fe.Lag >= 0 {
					lag = strconv.FormatInt(fe.Lag, 10)
				}
				if !fe.LastApplied.IsZero() {
					last = fe.LastApplied.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", fe.Name, yesNo(fe.Connected), lag, last, fe.Applied,
					refusals(fe.Refused), fe.Reported.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// refusals formats refusal counts as reason=N,... or "0".

func refusals(m map[string]uint64) string {
	if len(m) == 0 {
		return "0"
	}
	// A report is its edge's word: a reason that is not a plain word
	// (escape sequences for the operator's terminal) is counted as other.
	sum := map[string]uint64{}
	for r, n := range m {
		if !hub.PlainReason(r) {
			r = "other"
		}
		sum[r] += n
	}
	var parts []string
	for r, n := range sum {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", r, n))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// publishImport checks the n changes at builds, then signs them in
// batches and publishes each batch while the next is signed, so the hub
// is busy from the first batch on. A bad change publishes nothing.
func publishImport(ctx context.Context, c *fleetConn, key ed25519.PrivateKey, n int, at func(int) change.Change) (hub.ManyResult, error) {
	im, err := change.PrepareImport(n, at, key)
	if err != nil {
		return hub.ManyResult{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []change.Envelope, 4)
	signed := make(chan error, 1)
	go func() {
		defer close(batches)
		signed <- im.Sign(key, func(b []change.Envelope) error {
			select {
			case batches <- b:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	for _, k := range im.Keys() {
		c.published[k] = true
	}
	res, err := c.pub.PublishBatches(ctx, im.Keys(), batches)
	cancel()
	switch serr := <-signed; {
	case err == nil:
		return res, serr
	case serr != nil && !errors.Is(serr, context.Canceled):
		return res, serr // the signing failure explains the rest
	}
	return res, err
}
