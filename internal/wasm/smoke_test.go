package wasm

import "testing"

func TestSmoke(t *testing.T) {
	e := newTestEngine(t)
	m := compileFixture(t, e, "../../examples/hello-wat/hello.wasm", testLimits())
	resp, err, _ := serve(t, m, getRequest("/", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d %v %q fuel=%d %s", resp.Status, resp.Header, resp.Body, resp.FuelUsed, resp.Duration)
}
