package change

// Cursor is where an edge is in the hub's stream.
type Cursor struct {
	// Epoch identifies the bucket's stream instance (its creation time);
	// a recreated bucket has another, and revisions restart.
	Epoch string `json:"epoch"`
	// Seq is the last revision the edge has applied or passed over.
	Seq uint64 `json:"seq"`
	// Forms is RecordForms of the edge that wrote the cursor (0 before
	// the binary form): an edge whose cursor says fewer passed over
	// records it could not read, and reconciles fully once.
	Forms int `json:"forms,omitempty"`
	// Full, when set, says why the edge must reconcile fully before it
	// trusts Seq again (tombstones it had not read were removed). It is
	// saved so that a reconcile cut short, by an error or a crash, is done
	// again; the cursor a full reconcile ends with clears it.
	Full string `json:"full,omitempty"`
}

// RecordForms counts the stored forms of a record this build reads: 1
// for JSON only, 2 since batch records have a binary form.
const RecordForms = 2

// Applied is what an edge last applied for one key: enough to refuse a
// replay or an older change without reading the entry itself.
type Applied struct {
	IssuedAt int64 `json:"issued_at"`
	Deleted  bool  `json:"deleted"`
	// ExpiresAt and ByController are the applied put's: the controller
	// key may not replace an operator's entry while it is live.
	ExpiresAt    int64 `json:"expires_at,omitempty"`
	ByController bool  `json:"by_controller,omitempty"`
}

// AppliedOf is what an edge keeps of an applied change.
func AppliedOf(c Change) Applied {
	if c.Op == OpDelete {
		return Applied{IssuedAt: c.IssuedAt, Deleted: true}
	}
	return Applied{IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt, ByController: c.ByController}
}
