package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/internal/testsite"
	"github.com/authgate/caddy-authgate/store"
)

const (
	// memSessions database sessions are put in Redis; memPhase distinct ones
	// are requested in each of two phases.
	memSessions = 100_000
	memPhase    = 15_000
)

// TestMemoryManySessions puts 100k database sessions in Redis, as the handler
// stores them (id = hex SHA-256 of the cookie value, data = the token claims),
// then drives one instance through 2×15k distinct session cookies, each
// answered with its own user, more than the in-process session cache holds
// (10k entries). It logs the instance's resident memory (VmRSS) before and
// after each phase, for a reader to see it level off; nothing is asserted about
// memory or time, which measure the machine as much as the code (the cache's
// bound has a unit test in handlers).
func TestMemoryManySessions(t *testing.T) {
	rs := testredis.NewServer(t)
	const prefix = "mem:"
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	st, err := store.NewRedis(ctx, "redis://"+rs.Addr+"/0", store.RedisOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	values := make([]string, memSessions)
	users := make([]string, memSessions)
	for i := range values {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		values[i] = base64.RawURLEncoding.EncodeToString(b)
		users[i] = fmt.Sprintf("user-%d", i)
	}
	began := time.Now()
	parallel(t, memSessions, 64, func(i int) error {
		return st.CreateSession(ctx, store.Session{
			ID: sessionID(values[i]), UserID: users[i], Expires: time.Now().Add(time.Hour),
			Data: map[string]any{"sub": users[i], "name": "User " + users[i], "email": users[i] + "@example.com"},
		})
	})
	t.Logf("%d database sessions created in Redis in %v", memSessions, time.Since(began).Round(time.Millisecond))

	up := newUpstream(t)
	in := startInstance(t, "A", up, false, siteConfig{Realm: testsite.CredentialsProvider(usersFile(t, "alice")) + redisStore(rs.Addr, prefix) +
		"\t\tsession {\n\t\t\tstrategy database\n\t\t}\n"})

	request := func(i int) error {
		r, err := do(request{url: in.base + "/app", accept: jsonAccept, cookies: []*http.Cookie{sessionC(values[i])}})
		if err != nil {
			return err
		}
		if r.StatusCode != http.StatusOK {
			return fmt.Errorf("%s with session %d: status %d: %s", r.what, i, r.StatusCode, testsite.Excerpt(r.Body))
		}
		if got := upstreamSaw(t, r).User; got != users[i] {
			return fmt.Errorf("%s with session %d: upstream saw user %q, want %q", r.what, i, got, users[i])
		}
		return nil
	}
	// Warm up: the first requests allocate what any request needs.
	parallel(t, 500, 16, func(i int) error { return request(i) })
	rss0 := in.rssKB(t)
	next := 500
	rss := []int{rss0}
	for phase := 1; phase <= 2; phase++ {
		began := time.Now()
		from := next
		parallel(t, memPhase, 16, func(i int) error { return request(from + i) })
		next += memPhase
		rss = append(rss, in.rssKB(t))
		t.Logf("phase %d: %d distinct sessions in %v; VmRSS %d MB → %d MB (%+.1f MB)", phase, memPhase,
			time.Since(began).Round(time.Millisecond), rss[phase-1]/1024, rss[phase]/1024, float64(rss[phase]-rss[phase-1])/1024)
	}
	// Each phase alone overflows the cache, so with a bounded cache memory
	// levels off after the first; an unbounded one grows about as much again.
	t.Logf("resident memory growth over %d distinct sessions: %+.1f MB (first phase %+.1f MB, second %+.1f MB)", 2*memPhase,
		float64(rss[2]-rss0)/1024, float64(rss[1]-rss[0])/1024, float64(rss[2]-rss[1])/1024)
	in.alive(t)
}

// parallel runs f(0…n-1) on workers goroutines and fails the test with the
// first error (after which the remaining calls are skipped).
func parallel(t *testing.T, n, workers int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var failed atomic.Bool
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
