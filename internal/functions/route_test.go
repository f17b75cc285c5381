package functions

import "testing"

func TestParseRoute(t *testing.T) {
	good := map[string]Route{
		"/":                     {Prefix: "/"},
		"/hello":                {Prefix: "/hello"},
		"/hello/":               {Prefix: "/hello"},
		"Example.COM/":          {Host: "example.com", Prefix: "/"},
		"example.com/v1/api":    {Host: "example.com", Prefix: "/v1/api"},
		"[2001:db8::1]/x":       {Host: "[2001:db8::1]", Prefix: "/x"},
		"edge-1.example.net/ok": {Host: "edge-1.example.net", Prefix: "/ok"},
	}
	for in, want := range good {
		got, err := ParseRoute(in)
		if err != nil || got != want {
			t.Errorf("ParseRoute(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "hello", "example.com", "/a/../b", "/a/./b", "//a", "/a//b", "/a?b", "/a#b", "/a%2e", "exa mple.com/", "example.com:8080/", "*.example.com/", "-bad.com/", "[zz]/", "/a\\b",
		"/e\x1b]0;pwned\x07", "/a\x00b", "/a\x7fb", "/caf\u00e9", "/\u202eevil"} { // escapes, control, non-ASCII
		if r, err := ParseRoute(bad); err == nil {
			t.Errorf("ParseRoute(%q) = %+v, want an error", bad, r)
		}
	}
}

func TestLookup(t *testing.T) {
	routes := map[Route]string{}
	for _, r := range []string{"/", "/api", "/api/v2", "example.com/api", "example.com/", "[2001:db8::1]/"} {
		route, err := ParseRoute(r)
		if err != nil {
			t.Fatal(err)
		}
		routes[route] = r
	}
	table := newRouteTable(routes)
	tests := []struct {
		host, path         string
		want               string
		scriptName, pathIn string
	}{
		{"other.org", "/", "/", "", "/"},
		{"other.org", "/apix", "/", "", "/apix"},
		{"other.org", "/api", "/api", "/api", ""},
		{"other.org", "/api/", "/api", "/api", "/"},
		{"other.org", "/api/v2/users", "/api/v2", "/api/v2", "/users"},
		{"other.org", "/api/v20", "/api", "/api", "/v20"},
		{"example.com", "/api/v2/users", "example.com/api", "/api", "/v2/users"},
		{"EXAMPLE.com:8080", "/api", "example.com/api", "/api", ""},
		{"example.com.", "/other", "example.com/", "", "/other"},
		{"[2001:db8::1]:80", "/z", "[2001:db8::1]/", "", "/z"},
		{"", "", "/", "", "/"},
	}
	for _, tt := range tests {
		m, ok := table.Lookup(tt.host, tt.path)
		if !ok || m.Target != tt.want || m.ScriptName != tt.scriptName || m.PathInfo != tt.pathIn {
			t.Errorf("Lookup(%q, %q) = %+v %v; want %s (%q, %q)", tt.host, tt.path, m, ok, tt.want, tt.scriptName, tt.pathIn)
		}
	}
	only := newRouteTable(map[Route]string{{Host: "a.example", Prefix: "/x"}: "x"})
	for _, miss := range [][2]string{{"b.example", "/x"}, {"a.example", "/"}, {"a.example", "/xy"}} {
		if m, ok := only.Lookup(miss[0], miss[1]); ok {
			t.Errorf("Lookup(%q, %q) matched %+v", miss[0], miss[1], m)
		}
	}
}
