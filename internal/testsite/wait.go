package testsite

import (
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it reports nil — the state the test
// waits for — and returns how long that took, for the test to log. It fails the
// test only when the state never comes: when cond still reports an error after
// patience, a limit meant to be far beyond what the state takes even on a busy
// machine. The failure names what and cond's last error.
//
// Tests wait this way instead of asserting a deadline: a deadline measures the
// machine, not the behaviour (see STYLE.md).
func Eventually(t testing.TB, patience time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > patience {
			t.Fatalf("%s: still not so after %v: %v", what, patience, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
