package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Operations. eBPF operations are named ebpf.*, changes to the shield's
// runtime settings shield.*, and the log's own bookkeeping audit.*.
const (
	OpVerify         = "ebpf.verify"          // object checked against its recorded SHA-256
	OpVerifierReject = "ebpf.verifier_reject" // the kernel verifier refused a program
	OpLoad           = "ebpf.load"
	OpAttach         = "ebpf.attach"
	OpDetach         = "ebpf.detach"
	OpPin            = "ebpf.pin"
	OpReplace        = "ebpf.replace" // program replaced in place
	OpMapAdd         = "ebpf.map_add"
	OpMapRemove      = "ebpf.map_remove"
	OpMapBulk        = "ebpf.map_bulk"
	OpLimitRefused   = "ebpf.limit_refused" // a capacity or guard limit refused a change
	OpRlimit         = "ebpf.rlimit"
	OpMode           = "shield.mode"
	OpRate           = "shield.rate"
	OpAutoBlock      = "shield.auto_block" // aggregated, see Aggregator
	OpFleetRefused   = "fleet.refused"     // aggregated: a fleet change this edge refused
	OpNodeStart      = "node.start"
	OpNodeStop       = "node.stop"
	// OpRecover is written by Open (or by Append after a failed write)
	// when it found records that were written but never acknowledged, or
	// removed a torn tail; see the package documentation.
	OpRecover = "audit.recover"
)

// Results.
const (
	ResultOK      = "ok"      // the operation passed its checks (and is about to be or was applied)
	ResultRefused = "refused" // policy said no: a limit, the lockout guard, a bad request
	ResultFailed  = "failed"  // the operation was attempted and failed
)

// SystemActor is the actor of operations the node starts by itself.
const SystemActor = "system"

// Genesis is the Prev of record 1.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Size bounds of one record.
const (
	// MaxLineBytes is the longest record line Verify accepts.
	MaxLineBytes = 128 << 10
	// maxDetailsBytes bounds the encoded details; larger details are
	// replaced by their size and SHA-256 so that an operation is not
	// refused for having a long description.
	maxDetailsBytes = 16 << 10
	// maxFieldBytes bounds each string field (op, target, actor, error).
	maxFieldBytes = 2 << 10
)

// timeLayout is RFC 3339 with exactly nine fractional digits, so every
// timestamp has the same width and keeps its nanoseconds.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Event is what a caller asks to record.
type Event struct {
	Op     string // one of the Op constants
	Target string // what the operation acts on: an interface, a prefix, a map
	// Details is marshalled to JSON; nil is omitted.
	Details any
	// Actor is "uid=0 pid=123" for an admin socket peer; empty means
	// SystemActor.
	Actor string
	// Result is one of the Result constants; empty means ResultOK when
	// Err is nil and ResultFailed otherwise.
	Result string
	Err    error
	// Ref is the sequence number of an earlier record this one completes,
	// such as the record of an operation whose apply then failed; 0 for
	// none.
	Ref uint64
}

// Record is one durable entry of the log.
type Record struct {
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"time"`
	Op      string          `json:"op"`
	Target  string          `json:"target,omitempty"`
	Details json.RawMessage `json:"details,omitempty"`
	Actor   string          `json:"actor"`
	Result  string          `json:"result"`
	Error   string          `json:"error,omitempty"`
	Ref     uint64          `json:"ref,omitempty"`
	// Prev is the Hash of the previous record, Genesis for record 1.
	Prev string `json:"prev"`
	// Hash is the hex SHA-256 of the record's line up to, not including,
	// its ",\"hash\":" member.
	Hash string `json:"hash"`

	line []byte // the exact line, without its newline
}

// Line returns the record's line exactly as it is in the log, without
// the newline; nil for a Record that was neither read from nor written to
// a log.
func (r Record) Line() []byte { return r.line }

// wireRecord fixes the member order and time format of a line. Hash is
// not part of it: it is appended after the hashed bytes.
type wireRecord struct {
	Seq     uint64          `json:"seq"`
	Time    string          `json:"time"`
	Op      string          `json:"op"`
	Target  string          `json:"target,omitempty"`
	Details json.RawMessage `json:"details,omitempty"`
	Actor   string          `json:"actor"`
	Result  string          `json:"result"`
	Error   string          `json:"error,omitempty"`
	Ref     uint64          `json:"ref,omitempty"`
	Prev    string          `json:"prev"`
}

// hashMember is what separates a line's hashed body from its hash.
const hashMember = `,"hash":"`

// newRecord fills in a record for ev without Seq, Prev and Hash.
func newRecord(ev Event, now time.Time) (Record, error) {
	if ev.Op == "" {
		return Record{}, errors.New("event has no operation")
	}
	r := Record{
		Time:   now.UTC(),
		Op:     clip(ev.Op),
		Target: clip(ev.Target),
		Actor:  clip(ev.Actor),
		Result: clip(ev.Result),
		Ref:    ev.Ref,
	}
	if r.Actor == "" {
		r.Actor = SystemActor
	}
	if ev.Err != nil {
		r.Error = clip(ev.Err.Error())
	}
	if r.Result == "" {
		r.Result = ResultOK
		if ev.Err != nil {
			r.Result = ResultFailed
		}
	}
	if ev.Details != nil {
		d, err := json.Marshal(ev.Details)
		if err != nil {
			return Record{}, fmt.Errorf("encoding details of %s: %w", ev.Op, err)
		}
		if len(d) > maxDetailsBytes {
			sum := sha256.Sum256(d)
			d, _ = json.Marshal(map[string]any{"omitted_bytes": len(d), "sha256": hex.EncodeToString(sum[:])})
		}
		if !bytes.Equal(d, []byte("null")) {
			r.Details = d
		}
	}
	return r, nil
}

// clip shortens s to maxFieldBytes on a rune boundary.
func clip(s string) string {
	if len(s) <= maxFieldBytes {
		return s
	}
	cut := maxFieldBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// seal sets r.Seq and r.Prev, computes r.Hash and returns the record's
// line, newline included.
func seal(r *Record, seq uint64, prev string) ([]byte, error) {
	r.Seq, r.Prev = seq, prev
	body, err := json.Marshal(wireRecord{
		Seq: r.Seq, Time: r.Time.Format(timeLayout), Op: r.Op, Target: r.Target,
		Details: r.Details, Actor: r.Actor, Result: r.Result, Error: r.Error, Ref: r.Ref, Prev: r.Prev,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding record: %w", err)
	}
	body = body[:len(body)-1] // drop the closing brace
	sum := sha256.Sum256(body)
	r.Hash = hex.EncodeToString(sum[:])
	line := make([]byte, 0, len(body)+len(hashMember)+len(r.Hash)+3)
	line = append(line, body...)
	line = append(line, hashMember...)
	line = append(line, r.Hash...)
	line = append(line, "\"}\n"...)
	if len(line) > MaxLineBytes {
		return nil, fmt.Errorf("record of %s is %d bytes, limit is %d", r.Op, len(line), MaxLineBytes)
	}
	r.line = line[:len(line)-1]
	return line, nil
}

// Reasons a line is not a valid record.
var (
	errNotRecord = errors.New("not a record")
	errEdited    = errors.New("contents do not match its hash")
)

// parseLine decodes one line (without its newline) and checks it against
// its own hash. On errEdited the returned record is decoded as far as
// possible, so callers can still report its sequence number.
func parseLine(line []byte) (Record, error) {
	i := bytes.LastIndex(line, []byte(hashMember))
	if i < 0 || len(line)-i != len(hashMember)+64+2 || !bytes.HasSuffix(line, []byte(`"}`)) {
		return Record{}, errNotRecord
	}
	var w struct {
		wireRecord
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal(line, &w); err != nil {
		return Record{}, errNotRecord
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Record{}, errNotRecord
	}
	r := Record{
		Seq: w.Seq, Time: t, Op: w.Op, Target: w.Target, Details: w.Details, Actor: w.Actor,
		Result: w.Result, Error: w.Error, Ref: w.Ref, Prev: w.Prev, Hash: w.Hash,
		line: bytes.Clone(line),
	}
	sum := sha256.Sum256(line[:i])
	if hex.EncodeToString(sum[:]) != string(line[i+len(hashMember):len(line)-2]) || w.Hash != string(line[i+len(hashMember):len(line)-2]) {
		return r, errEdited
	}
	return r, nil
}

// String formats r on one line for people: time, seq, op, target, actor,
// result, then error and details when present.
func (r Record) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %s", r.Time.Format(timeLayout), r.Seq, r.Op)
	if r.Target != "" {
		fmt.Fprintf(&b, " %s", r.Target)
	}
	fmt.Fprintf(&b, " by %s: %s", r.Actor, r.Result)
	if r.Error != "" {
		fmt.Fprintf(&b, " (%s)", r.Error)
	}
	if r.Ref != 0 {
		fmt.Fprintf(&b, " ref #%d", r.Ref)
	}
	if len(r.Details) > 0 {
		fmt.Fprintf(&b, " %s", r.Details)
	}
	return b.String()
}
