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
	"github.com/authgate/caddy-authgate/store"
)

const (
	// memSessions database sessions are put in Redis; memPhase distinct ones
	// are requested in each of two phases.
	memSessions = 100_000
	memPhase    = 15_000
	// memBoundMB bounds the instance's resident memory growth over both phases.
	memBoundMB = 200
)

// TestMemoryManySessions puts 100k database sessions in Redis, as the handler
// stores them (id = hex SHA-256 of the cookie value, data = the token claims),
// then drives one instance through 2×15k distinct session cookies and reads
// its resident memory (VmRSS) before and after each phase. The in-process
// session cache is bounded (10k entries), so memory must level off: the second
// phase grows it much less than the first, and the growth stays under a
// generous bound. Nothing is asserted about time.
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
	in := startInstance(t, "A", up, false, siteConfig{Realm: credentialsProvider(usersFile(t, "alice")) + redisStore(rs.Addr, prefix) +
		"\t\tsession {\n\t\t\tstrategy database\n\t\t}\n"})

	request := func(i int) error {
		r, err := do(request{url: in.base + "/app", accept: jsonAccept, cookies: []*http.Cookie{sessionC(values[i])}})
		if err != nil {
			return err
		}
		if r.StatusCode != http.StatusOK {
			return fmt.Errorf("%s with session %d: status %d: %s", r.what, i, r.StatusCode, excerpt(r.Body))
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
	growth := float64(rss[2]-rss0) / 1024
	t.Logf("resident memory growth over %d distinct sessions: %.1f MB (bound %d MB)", 2*memPhase, growth, memBoundMB)
	if growth > memBoundMB {
		t.Errorf("the instance's resident memory grew by %.1f MB over %d distinct sessions, more than %d MB", growth, 2*memPhase, memBoundMB)
	}
	// Each phase alone overflows the cache, so memory levels off after the
	// first: an unbounded cache grows about as much in the second phase.
	g1, g2 := float64(rss[1]-rss[0])/1024, float64(rss[2]-rss[1])/1024
	if limit := max(g1/2, 10); g2 > limit {
		t.Errorf("memory did not level off: +%.1f MB in the first phase, +%.1f MB in the second (limit %.1f MB): is the session cache bounded?", g1, g2, limit)
	}
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
