package handlers

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/store"
)

// listeningStore is a memory store that is also a Broadcaster whose Publish
// plays another instance hearing the message at once: for "session <id>" it
// reads the session from the store, as that instance's next request would
// after dropping it from its cache, and records whether it was still there.
type listeningStore struct {
	*store.Memory
	mu    sync.Mutex
	heard []string // "session <id>: found" or "session <id>: gone"
}

func (s *listeningStore) Publish(ctx context.Context, _, msg string) error {
	id, ok := strings.CutPrefix(msg, "session ")
	if !ok {
		return nil
	}
	state := "gone"
	if _, err := s.GetSession(ctx, id); err == nil {
		state = "found"
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.mu.Lock()
	s.heard = append(s.heard, msg+": "+state)
	s.mu.Unlock()
	return nil
}

func (s *listeningStore) Subscribe(context.Context, string, func(string), func()) error { return nil }

// An instance that hears that a database session ended must find it gone from
// the store: if the message arrived first, a request in between would read
// the session again and cache it for databaseCacheTTL, so that the revoked
// session went on working there. This holds for a sign-out and for an
// administrator's revocation.
func TestSessionGoneBeforeBroadcast(t *testing.T) {
	rl := benchRealm(t, func(c *Realm) { c.Session = &SessionConfig{Strategy: "database"} })
	ls := &listeningStore{Memory: store.NewMemory()}
	rl.sessions.store = ls
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	for _, id := range []string{"s1", "s2", "s3"} {
		if err := ls.CreateSession(ctx, store.Session{ID: id, UserID: "alice", Expires: exp, Data: aliceClaims}); err != nil {
			t.Fatal(err)
		}
	}

	// A sign-out.
	if err := rl.sessions.end(ctx, &sessionState{cb: rl.cb, key: "s1", expires: exp}); err != nil {
		t.Fatal(err)
	}
	// An administrator's revocation of one session, then of all of alice's.
	r := httptest.NewRequest("POST", "/.auth/admin/revoke", nil)
	if n, err := rl.revokeSessions(r, "", "s2"); err != nil || n != 1 {
		t.Fatalf("revoking s2: %d, %v", n, err)
	}
	if n, err := rl.revokeSessions(r, "alice", ""); err != nil || n != 1 {
		t.Fatalf("revoking alice's sessions: %d, %v", n, err)
	}

	want := []string{"session s1: gone", "session s2: gone", "session s3: gone"}
	if strings.Join(ls.heard, "\n") != strings.Join(want, "\n") {
		t.Errorf("other instances heard:\n%s\nwant:\n%s", strings.Join(ls.heard, "\n"), strings.Join(want, "\n"))
	}
}

// A resync (after the connection to the store was lost) reloads the
// revocations without forgetting those this instance knew: a store that lost
// its data, such as a Redis restarted without persistence, must not bring
// signed-out tokens back to life.
func TestResyncKeepsRevocations(t *testing.T) {
	rl := benchRealm(t, nil)
	st := store.NewMemory()
	rl.sessions.store = st
	ctx := context.Background()
	now := time.Now()
	rl.sessions.revoked.add("known", now.Add(time.Hour), now)
	if err := st.Revoke(ctx, "stored", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := rl.sessions.loadRevocations(ctx); err != nil {
		t.Fatal(err)
	}
	for _, jti := range []string{"known", "stored"} {
		if !rl.sessions.revoked.has(jti, now) {
			t.Errorf("after a resync, %s is not revoked", jti)
		}
	}
}
