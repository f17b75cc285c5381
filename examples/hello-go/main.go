//go:build wasip1

// hello-go greets the name in its query string (?name=...) and counts the
// greetings per name in the key-value store, with the Go SDK.
package main

import (
	"fmt"
	"net/url"
	"os"
	"strconv"

	"github.com/aegis-edge/aegis/sdk/go/aegis"
)

func main() {
	q, _ := url.ParseQuery(os.Getenv("QUERY_STRING"))
	name := q.Get("name")
	if name == "" {
		name = "world"
	}
	count := 1
	key := "greeted:" + name
	if v, err := aegis.KVGet(key); err == nil {
		n, _ := strconv.Atoi(string(v))
		count = n + 1
	}
	if err := aegis.KVSet(key, []byte(strconv.Itoa(count)), 0); err != nil {
		fmt.Fprintln(os.Stderr, "storing the count:", err)
	}
	aegis.Log(aegis.LevelInfo, "greeted", map[string]string{"name": name, "count": strconv.Itoa(count)})
	fmt.Printf("Content-Type: text/plain; charset=utf-8\nX-Greetings: %d\n\nHello, %s, from Go!\n", count, name)
}
