// Command decodeop times authgate's session.Codec.Decode on a given token, one
// goroutine, with testing.Benchmark, and prints nanoseconds per operation: the Go
// side of bench/run.sh's comparison with NextAuth's and @auth/core's decode(). It runs
// the benchmark -runs times (about a second each) and prints the median, which a
// machine shared with other work disturbs less than a single run.
//
//	go run ./bench/decodeop -secret S -name authgate.session-token -format authjs -token T
package main

import (
	"cmp"
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/session"
)

func main() {
	secret := flag.String("secret", "", "the secret the token was encoded with (required)")
	name := flag.String("name", "authgate.session-token", "cookie name (the Auth.js format's salt)")
	format := flag.String("format", "authjs", "token format: authjs or next-auth-v4")
	token := flag.String("token", "", "the token to decode (required)")
	runs := flag.Int("runs", 5, "benchmark runs; the median is printed")
	flag.Parse()
	if *secret == "" || *token == "" || *runs < 1 {
		fmt.Fprintln(os.Stderr, "decodeop: -secret and -token are required, -runs at least 1")
		os.Exit(2)
	}

	var f session.Format
	switch *format {
	case "authjs":
		f = session.FormatAuthJS
	case "next-auth-v4":
		f = session.FormatNextAuthV4
	default:
		fmt.Fprintf(os.Stderr, "decodeop: unknown -format %q\n", *format)
		os.Exit(2)
	}
	codec, err := session.NewCodec([]string{*secret}, *name, f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "decodeop:", err)
		os.Exit(1)
	}
	now := time.Now()
	if _, err := codec.Decode(*token, now); err != nil {
		fmt.Fprintln(os.Stderr, "decodeop: the token does not decode:", err)
		os.Exit(1)
	}

	results := make([]testing.BenchmarkResult, *runs)
	for i := range results {
		results[i] = testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := codec.Decode(*token, now); err != nil {
					b.Fatal(err)
				}
			}
		})
		if results[i].N == 0 {
			fmt.Fprintln(os.Stderr, "decodeop: the benchmark failed")
			os.Exit(1)
		}
	}
	slices.SortFunc(results, func(a, b testing.BenchmarkResult) int { return cmp.Compare(a.NsPerOp(), b.NsPerOp()) })
	med := results[len(results)/2]
	// ns/op (median), allocs/op, bytes/op, fastest ns/op, slowest ns/op
	fmt.Printf("%d %d %d %d %d\n", med.NsPerOp(), med.AllocsPerOp(), med.AllocedBytesPerOp(),
		results[0].NsPerOp(), results[len(results)-1].NsPerOp())
}
