package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/store"
)

// BenchmarkGetSession measures reading a live session (what every request
// with the database session strategy does), from parallel goroutines.
func BenchmarkGetSession(b *testing.B, s store.Store) {
	ids := names("s", 1000)
	for _, id := range ids {
		if err := s.CreateSession(ctx, session(id, "u1", time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.GetSession(ctx, ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}
