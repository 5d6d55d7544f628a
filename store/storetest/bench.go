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

// BenchmarkIsRevoked measures checking a token's jti (what every request with
// a JWT session does), half of them revoked, from parallel goroutines.
func BenchmarkIsRevoked(b *testing.B, s store.Store) {
	jtis := names("j", 1000)
	for _, jti := range jtis[:len(jtis)/2] {
		if err := s.Revoke(ctx, jti, time.Now().Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := i % len(jtis)
			r, err := s.IsRevoked(ctx, jtis[k])
			if err != nil || r != (k < len(jtis)/2) {
				b.Errorf("IsRevoked(%s) = %v, %v", jtis[k], r, err)
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
