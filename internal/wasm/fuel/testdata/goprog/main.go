// Command goprog is a GOOS=wasip1 program for the fuel tests: it exercises
// the Go runtime (allocation, garbage collection, maps, goroutines and
// channels, interfaces) and prints what it computed. gen.go builds it.
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"sort"
	"strings"
)

type shape interface{ area() float64 }

type rect struct{ w, h float64 }
type circle struct{ r float64 }

func (r rect) area() float64   { return r.w * r.h }
func (c circle) area() float64 { return 3.25 * c.r * c.r }

func main() {
	words := strings.Fields("the quick brown fox jumps over the lazy dog the end")
	counts := map[string]int{}
	for _, w := range words {
		counts[w]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%s=%d ", k, counts[k])
	}
	fmt.Println()

	// Goroutines and channels: a pipeline summing squares.
	in := make(chan int)
	out := make(chan int)
	go func() {
		for i := 0; i < 1000; i++ {
			in <- i
		}
		close(in)
	}()
	go func() {
		sum := 0
		for v := range in {
			sum += v * v
		}
		out <- sum
	}()
	fmt.Println("sum of squares", <-out)

	// Allocation-heavy work that triggers garbage collection.
	var total int
	for i := 0; i < 200; i++ {
		buf := make([]byte, 64<<10)
		for j := range buf {
			buf[j] = byte(i + j)
		}
		total += int(buf[i])
	}
	fmt.Println("allocated total", total)

	h := sha256.New()
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(h, "line %d\n", i)
	}
	fmt.Printf("sha256 %x\n", h.Sum(nil))

	shapes := []shape{rect{2, 3}, circle{1.5}, rect{0.5, 8}}
	var area float64
	for _, s := range shapes {
		area += s.area()
	}
	fmt.Printf("area %.4f args %d\n", area, len(os.Args))
}
