package main

import (
	"encoding/json"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuantile(t *testing.T) {
	cur := map[float64]float64{0.001: 50, 0.01: 98, 0.1: 100, math.Inf(1): 100}
	if q := quantile(cur, nil, 0.5); q != 0.001 {
		t.Errorf("p50 = %v", q)
	}
	if q := quantile(cur, nil, 0.99); q != 0.1 {
		t.Errorf("p99 = %v", q)
	}
	prev := map[float64]float64{0.001: 50, 0.01: 50, 0.1: 50, math.Inf(1): 50}
	if q := quantile(cur, prev, 0.5); q != 0.01 {
		t.Errorf("interval p50 = %v, want 0.01 (the 50 new observations sit in (1ms, 10ms] and above)", q)
	}
	if q := quantile(prev, prev, 0.5); !math.IsNaN(q) {
		t.Errorf("empty interval = %v, want NaN", q)
	}
}

func TestStats(t *testing.T) {
	cfg := testNodeConfig(t)
	cfg.Gateway.Listen = freeAddr(t)
	startInProcessNode(t, cfg)
	sock := cfg.Admin.Socket
	hello := filepath.Join("..", "..", "internal", "functions", "testdata", "hello1.wasm")
	if code, _, stderr := cli("--socket", sock, "fn", "deploy", "hello", hello, "--route", "/"); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := cli("--socket", sock, "block", "add", "192.0.2.9"); code != 0 {
		t.Fatal(stderr)
	}
	for range 3 {
		resp, err := http.Get("http://" + cfg.Gateway.Listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	code, out, stderr := cli("--socket", sock, "stats", "--json")
	if code != 0 {
		t.Fatalf("stats --json: exit %d %s", code, stderr)
	}
	var v statsView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if f := v.Functions["hello"]; f.Requests != 3 || f.Errors != 0 || f.P99ms <= 0 {
		t.Errorf("function stats %+v", f)
	}
	if l := v.Lists["block ipv4"]; l[0] != 1 || l[1] != int64(cfg.Shield.Limits.IPv4) {
		t.Errorf("block ipv4 fill %v", l)
	}
	if _, ok := v.Reasons["blocked_exact"]; !ok || v.Audit == 0 {
		t.Errorf("reasons %v, audit %d", v.Reasons, v.Audit)
	}
	if code, out, _ := cli("--socket", sock, "stats"); code != 0 || !strings.Contains(out, "blocked_exact") || !strings.Contains(out, "hello") {
		t.Errorf("stats table: exit %d\n%s", code, out)
	}
	if code, _, _ := cli("--socket", sock, "stats", "--watch", "--interval", "0s"); code != 2 {
		t.Errorf("stats with a zero interval: exit %d, want 2", code)
	}
}
