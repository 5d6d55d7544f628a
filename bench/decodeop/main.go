// Command decodeop times authgate's session.Codec.Decode on a given token, on one
// goroutine: the Go side of bench/run.sh's comparison with NextAuth's and @auth/core's
// decode(). It runs -runs timed batches of about -batch each and prints the median
// batch's wall time per operation and the process's CPU time per operation (user +
// system over all batches, garbage collection included), which a machine shared with
// other work disturbs less than wall time.
//
//	go run ./bench/decodeop -secret S -name authgate.session-token -format authjs -token T
//
// Output: "<wall ns/op median> <CPU ns/op> <fastest batch ns/op> <slowest batch ns/op> <operations>".
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/authgate/caddy-authgate/session"
)

func main() {
	secret := flag.String("secret", "", "the secret the token was encoded with (required)")
	name := flag.String("name", "authgate.session-token", "cookie name (the Auth.js format's salt)")
	format := flag.String("format", "authjs", "token format: authjs or next-auth-v4")
	token := flag.String("token", "", "the token to decode (required)")
	runs := flag.Int("runs", 5, "timed batches; the median is printed")
	batch := flag.Duration("batch", 400*time.Millisecond, "about how long one batch runs")
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
	decode := func(n int) time.Duration {
		start := time.Now()
		for range n {
			if _, err := codec.Decode(*token, now); err != nil {
				fmt.Fprintln(os.Stderr, "decodeop: the token does not decode:", err)
				os.Exit(1)
			}
		}
		return time.Since(start)
	}

	// Warm up, and size a batch to take about -batch.
	n := 16
	for {
		d := decode(n)
		if d >= *batch/4 {
			n = max(1, int(float64(n)*float64(*batch)/float64(d)))
			break
		}
		n *= 2
	}

	cpu0 := cpuTime()
	perOp := make([]float64, *runs)
	for i := range perOp {
		perOp[i] = float64(decode(n).Nanoseconds()) / float64(n)
	}
	cpu := float64((cpuTime() - cpu0).Nanoseconds()) / float64(n**runs)
	slices.Sort(perOp)
	fmt.Printf("%.0f %.0f %.0f %.0f %d\n", perOp[len(perOp)/2], cpu, perOp[0], perOp[len(perOp)-1], n**runs)
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fmt.Fprintln(os.Stderr, "decodeop: getrusage:", err)
		os.Exit(1)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
