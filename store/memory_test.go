package store_test

import (
	"maps"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/store"
	"github.com/authgate/caddy-authgate/store/storetest"
)

func newMemory(testing.TB) store.Store { return store.NewMemory() }

func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newMemory(t) })
}

// fillExpiring writes one record of every expiring kind that lives for d.
func fillExpiring(t *testing.T, s store.Store, id string, d time.Duration) {
	t.Helper()
	exp := time.Now().Add(d)
	for _, err := range []error{
		s.CreateVerificationToken(ctx, store.VerificationToken{Identifier: id + "@example.com", TokenHash: id, Expires: exp}),
		s.CreateSession(ctx, store.Session{ID: id, UserID: id, Expires: exp}),
		s.Revoke(ctx, id, exp),
		s.Claim(ctx, id, id, d),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Hit(ctx, id, d); err != nil {
		t.Fatal(err)
	}
}

func TestMemorySweepsExpired(t *testing.T) {
	m := store.NewMemory()
	fillExpiring(t, m, "short", 100*time.Millisecond)
	fillExpiring(t, m, "long", time.Hour)
	time.Sleep(150 * time.Millisecond)
	store.SweepSoon(m)
	fillExpiring(t, m, "new", time.Hour) // a write sweeps
	want := map[string]int{"tokens": 2, "sessions": 2, "user_sessions": 2, "revocations": 2, "hits": 2, "claims": 2}
	if got := store.MemoryRecords(m); !maps.Equal(got, want) {
		t.Fatalf("records after the sweep: %v, want %v", got, want)
	}
}
