package handlers

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/authgate/caddy-authgate/callbacks"
)

// cacheTestEntry is the entry of a typical session token: the claims a
// credentials sign-in writes.
func cacheTestEntry(i int, exp time.Time) *tokenEntry {
	return newTokenEntry(map[string]any{
		"sub": "user" + strconv.Itoa(i), "name": "User " + strconv.Itoa(i), "email": "user" + strconv.Itoa(i) + "@example.com",
		"picture": nil, "sid": fmt.Sprintf("sid-%028d", i), "jti": fmt.Sprintf("%08d-0000-4000-8000-000000000000", i),
		"iat": float64(exp.Add(-time.Hour).Unix()), "exp": float64(exp.Unix()),
	})
}

// cacheTestCookie stands for a session cookie value: about as long as a real one.
func cacheTestCookie(kind string, i int) string {
	return kind + "-" + strconv.Itoa(i) + "." + strings.Repeat("x", 600)
}

// The token cache never holds more bytes than its bound, however many distinct
// sessions pass.
func TestTokenCacheBound(t *testing.T) {
	now := time.Now()
	one := int64(entrySize(cacheTestEntry(0, now.Add(time.Hour))))
	bound := 100 * one
	c := newTokenCache(bound)
	for i := range 5000 {
		c.put(cacheTestCookie("s", i), cacheTestEntry(i, now.Add(time.Hour)), now)
		if i%500 == 0 {
			c.entries.CleanUp()
			if w := c.entries.WeightedSize(); w > uint64(bound) {
				t.Fatalf("after %d puts the cache holds %d bytes, bound %d", i+1, w, bound)
			}
		}
	}
	c.entries.CleanUp()
	if w, n := c.entries.WeightedSize(), c.entries.EstimatedSize(); w > uint64(bound) || n > 100 || n < 50 {
		t.Fatalf("the cache holds %d bytes in %d entries; want at most %d bytes, 50 to 100 entries", w, n, bound)
	}
	if d := newTokenCache(0); d.entries.GetMaximum() != defaultTokenCacheSize {
		t.Errorf("newTokenCache(0) holds %d bytes, want the default %d", d.entries.GetMaximum(), defaultTokenCacheSize)
	}
}

// A write's maintenance runs before the write returns (runNow): the cache is
// within its bound after every put, with no CleanUp (otter's default executor
// started a goroutine per write, and the cache overshot its bound until that
// goroutine ran).
func TestTokenCacheMaintainsOnWrite(t *testing.T) {
	now := time.Now()
	one := int64(entrySize(cacheTestEntry(0, now.Add(time.Hour))))
	c := newTokenCache(100 * one)
	for i := range 5000 {
		c.put(cacheTestCookie("w", i), cacheTestEntry(i, now.Add(time.Hour)), now)
		if n := c.entries.EstimatedSize(); n > 100 {
			t.Fatalf("after %d puts the cache holds %d entries, bound 100", i+1, n)
		}
	}
}

// A bearer token's entry is found by the token only: not by a cookie value
// that spells the token, nor "bearer " and the token, nor the other way round.
func TestBearerKeysAreNoCookieKeys(t *testing.T) {
	now := time.Now()
	c := newTokenCache(0)
	e := cacheTestEntry(1, now.Add(time.Hour))
	c.store(c.bearerKeyOf("tok"), e, now)
	if c.lookup(c.bearerKeyOf("tok"), now) != e {
		t.Fatal("the bearer entry is not found by its token")
	}
	for _, cookie := range []string{"tok", "bearer tok", "Bearer tok"} {
		if c.get(cookie, now) != nil {
			t.Errorf("the cookie value %q finds the bearer token's entry", cookie)
		}
	}
	c.put("cookie", cacheTestEntry(2, now.Add(time.Hour)), now)
	if c.lookup(c.bearerKeyOf("cookie"), now) != nil {
		t.Error("a bearer token finds a cookie's entry")
	}
}

// An entry is not served past its token's expiry, nor past cacheUntil (database
// sessions), and an entry already dead is not kept.
func TestTokenCacheExpiry(t *testing.T) {
	now := time.Now()
	c := newTokenCache(0)
	c.put("expiring", cacheTestEntry(1, now.Add(time.Minute)), now)
	if c.get("expiring", now) == nil {
		t.Fatal("a live entry is not served")
	}
	if c.get("expiring", now.Add(time.Minute)) != nil || c.get("expiring", now.Add(2*time.Minute)) != nil {
		t.Fatal("an entry is served at or past its token's expiry")
	}
	db := cacheTestEntry(2, now.Add(time.Hour))
	db.cacheUntil = now.Add(10 * time.Second).UnixNano()
	c.put("database", db, now)
	if c.get("database", now.Add(9*time.Second)) == nil || c.get("database", now.Add(10*time.Second)) != nil {
		t.Fatal("cacheUntil is not honoured")
	}
	c.put("dead", cacheTestEntry(3, now.Add(-time.Second)), now)
	if _, ok := c.entries.GetIfPresent(c.keyOf("dead")); ok {
		t.Fatal("an expired entry was stored")
	}
}

// A re-issued token's entry replaces its predecessor's; remove and clear forget.
func TestTokenCacheReplace(t *testing.T) {
	now := time.Now()
	c := newTokenCache(0)
	old, renewed := cacheTestEntry(1, now.Add(time.Hour)), cacheTestEntry(1, now.Add(2*time.Hour))
	c.put("old-token", old, now)
	c.replace(c.keyOf("old-token"), "new-token", renewed, now)
	if c.get("old-token", now) != nil {
		t.Error("the predecessor is still cached after replace")
	}
	if c.get("new-token", now) != renewed {
		t.Error("the re-issued token is not cached after replace")
	}
	c.remove("new-token")
	if c.get("new-token", now) != nil {
		t.Error("remove did not forget the token")
	}
	c.put("a", old, now)
	c.clear()
	if c.get("a", now) != nil {
		t.Error("clear did not forget the token")
	}
}

// Only the very cookie value finds an entry: not one that differs in a byte,
// nor a prefix or extension of it, nor one that shares its JWE tag.
func TestTokenCacheKeyIsTheWholeValue(t *testing.T) {
	now := time.Now()
	c := newTokenCache(0)
	cookie := "eyJhbGciOiJkaXIifQ..aXY.Y2lwaGVydGV4dA.dGFnLXRhZy10YWctdGFnLXRhZy10YWctdGFnLXRhZw"
	c.put(cookie, cacheTestEntry(1, now.Add(time.Hour)), now)
	if c.get(cookie, now) == nil {
		t.Fatal("the cookie does not find its entry")
	}
	tag := cookie[strings.LastIndexByte(cookie, '.'):]
	for _, other := range []string{
		"eyJhbGciOiJkaXIifQ..aXY.Y2lwaGVydGV4dB" + tag, // another ciphertext, the same tag
		"eyJhbGciOiJkaXIifQ..aXZ.Y2lwaGVydGV4dA" + tag, // another IV
		cookie[:len(cookie)-1], cookie + "A", cookie + "\x00", "\x00" + cookie, strings.ToUpper(cookie), "",
	} {
		if c.get(other, now) != nil {
			t.Errorf("%q found the entry of another cookie", other)
		}
	}
}

// hotScan runs the access pattern of an instance that meets many sessions
// cold while a few keep coming back: each step one new session is looked up
// (a miss, then put, as readJWT does) and one of the hot sessions is looked
// up. It reports the hot lookups' hit rate after the first pass.
func hotScan(get func(string) bool, put func(string), hot, cold int) float64 {
	for i := range hot {
		put(cacheTestCookie("hot", i))
	}
	var hits, lookups int
	for i := range cold {
		k := cacheTestCookie("cold", i)
		if !get(k) {
			put(k)
		}
		h := cacheTestCookie("hot", i%hot)
		ok := get(h)
		if !ok {
			put(h)
		}
		if i >= hot {
			lookups++
			if ok {
				hits++
			}
		}
	}
	return float64(hits) / float64(lookups)
}

// Hot sessions survive a scan of cold ones ten times the cache's size.
func TestTokenCacheHotSurvivesScan(t *testing.T) {
	now := time.Now()
	e := cacheTestEntry(0, now.Add(time.Hour))
	c := newTokenCache(1000 * int64(entrySize(e)))
	rate := hotScan(func(k string) bool { return c.get(k, now) != nil }, func(k string) { c.put(k, e, now) }, 100, 10000)
	c.entries.CleanUp()
	survivors := 0
	for i := range 100 {
		if c.get(cacheTestCookie("hot", i), now) != nil {
			survivors++
		}
	}
	if rate < 0.9 || survivors < 90 {
		t.Errorf("hot sessions' hit rate during the scan %.2f, %d of 100 cached after it; want ≥ 0.90 and ≥ 90", rate, survivors)
	}
}

// TestTokenCacheEntrySize holds entrySize to what the heap really grows by per
// cached session, through the guard (so with the views and the session result
// it computes), for the default headers and for rules with five headers. It
// also checks the bound: at most 4 KB per cached session.
func TestTokenCacheEntrySize(t *testing.T) {
	for name, h := range map[string]*Handler{
		"defaults": {},
		"rules": {
			Require: []callbacks.Condition{{Expr: `token.email.endsWith("@example.com")`}},
			Headers: []HeaderConfig{
				{Name: "X-Auth-Request-User", Expr: "token.sub"}, {Name: "X-Auth-Request-Email", Expr: "token.email"},
				{Name: "X-Auth-Request-Name", Expr: "token.name"}, {Name: "X-Auth-Session-Email", Expr: "session.user.email"},
				{Name: "X-Auth-Session-Expires", Expr: "session.expires"},
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			rl := benchRealm(t, nil)
			h := benchHandler(t, rl, h)
			const n = 2000
			cookies := make([]*http.Cookie, n)
			for i := range cookies {
				cookies[i] = sessionCookie(t, rl, map[string]any{"sub": "user" + strconv.Itoa(i), "name": "User " + strconv.Itoa(i),
					"email": "user" + strconv.Itoa(i) + "@example.com", "picture": nil})
			}
			serve := func(c *http.Cookie) {
				w := &discard{h: http.Header{}}
				if err := h.ServeHTTP(w, benchRequest(c), noop); err != nil || w.status != 0 {
					t.Fatalf("status %d, err %v", w.status, err)
				}
			}
			serve(cookies[0]) // compiles what is compiled once
			rl.sessions.cache.clear()
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for _, c := range cookies {
				serve(c)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			rl.sessions.cache.entries.CleanUp()
			measured := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
			estimated := float64(rl.sessions.cache.entries.WeightedSize()) / float64(rl.sessions.cache.entries.EstimatedSize())
			t.Logf("%s: %.0f bytes per cached session on the heap, %.0f estimated", name, measured, estimated)
			if estimated < 0.9*measured {
				t.Errorf("entrySize estimates %.0f bytes, the heap grows by %.0f per session: the cache would hold more than its bound", estimated, measured)
			}
			if measured > 4096 {
				t.Errorf("a cached session takes %.0f bytes, want at most 4096", measured)
			}
			runtime.KeepAlive(cookies)
		})
	}
}

// mapTokenCache is the cache before otter (a map by cookie value, random
// eviction of a tenth when full), kept to measure against.
type mapTokenCache struct {
	mu      sync.RWMutex
	entries map[string]*tokenEntry
	max     int
}

func (c *mapTokenCache) get(raw string, now time.Time) *tokenEntry {
	c.mu.RLock()
	e := c.entries[raw]
	c.mu.RUnlock()
	if e == nil || !e.live(now) {
		return nil
	}
	return e
}

func (c *mapTokenCache) put(raw string, e *tokenEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k := range c.entries {
			if len(c.entries) < c.max-c.max/10 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[raw] = e
}

// BenchmarkTokenCacheHotScan reports the hot sessions' hit rate (hot-hits) in
// hotScan, for otter and the map before it, both holding 1000 entries.
func BenchmarkTokenCacheHotScan(b *testing.B) {
	now := time.Now()
	e := cacheTestEntry(0, now.Add(time.Hour))
	b.Run("otter", func(b *testing.B) {
		var rate float64
		for b.Loop() {
			c := newTokenCache(1000 * int64(entrySize(e)))
			rate = hotScan(func(k string) bool { return c.get(k, now) != nil }, func(k string) { c.put(k, e, now) }, 100, 10000)
		}
		b.ReportMetric(rate, "hot-hits")
	})
	b.Run("map", func(b *testing.B) {
		var rate float64
		for b.Loop() {
			c := &mapTokenCache{entries: map[string]*tokenEntry{}, max: 1000}
			rate = hotScan(func(k string) bool { return c.get(k, now) != nil }, func(k string) { c.put(k, e, now) }, 100, 10000)
		}
		b.ReportMetric(rate, "hot-hits")
	})
}

// BenchmarkTokenCacheGet is a hit among 20,000 cached sessions, for otter (keyOf
// included) and the map before it.
func BenchmarkTokenCacheGet(b *testing.B) {
	now := time.Now()
	e := cacheTestEntry(0, now.Add(time.Hour))
	for _, bc := range []struct {
		name  string
		cache interface {
			put(raw string, e *tokenEntry, now time.Time)
			get(raw string, now time.Time) *tokenEntry
		}
	}{
		{"otter", newTokenCache(0)},
		{"map", &mapTokenCache{entries: map[string]*tokenEntry{}, max: 20000}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := bc.cache
			for i := range 20000 {
				c.put(cacheTestCookie("s", i), e, now)
			}
			k := cacheTestCookie("s", 777)
			b.ReportAllocs()
			for b.Loop() {
				if c.get(k, now) == nil {
					b.Fatal("miss")
				}
			}
		})
	}
	b.Run("keyOf", func(b *testing.B) {
		c := newTokenCache(0)
		k := cacheTestCookie("s", 777)
		b.ReportAllocs()
		for b.Loop() {
			c.keyOf(k)
		}
	})
}

// A session update (POST /.auth/session) drops the old token's cache entry:
// the browser holds the new token from then on.
func TestUpdateDropsOldEntry(t *testing.T) {
	rl := benchRealm(t, nil)
	c := sessionCookie(t, rl, aliceClaims)
	r := benchRequest(c)
	st, err := rl.sessions.read(httptest.NewRecorder(), r, rl.cb)
	if err != nil || st == nil {
		t.Fatalf("reading the session: %v, %v", st, err)
	}
	now := time.Now()
	if rl.sessions.cache.get(c.Value, now) == nil {
		t.Fatal("a read session is not cached")
	}
	if err := rl.sessions.update(httptest.NewRecorder(), r, st, map[string]any{"sub": "alice", "theme": "dark"}); err != nil {
		t.Fatal(err)
	}
	if rl.sessions.cache.get(c.Value, now) != nil {
		t.Error("after an update the old token is still cached")
	}
}

// decodedEntry decodes a token of claims as the guard does: its claims stay JSON.
func decodedEntry(t *testing.T, rl *realm, claims map[string]any) (*tokenEntry, map[string]any) {
	t.Helper()
	c := sessionCookie(t, rl, claims)
	tok, _, err := rl.sessions.codecs[0].DecodeToken(c.Value, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := rl.sessions.codecs[0].DecodeKey(c.Value, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return newDecodedEntry(&tok), want
}

// An entry made from a cookie reads like one made from the decoded map: the
// same sid, times, default headers, placeholders and claims, the map decoded
// only when asked for.
func TestDecodedEntryMatchesMapEntry(t *testing.T) {
	rl := benchRealm(t, nil)
	for _, claims := range []map[string]any{
		aliceClaims,
		{"sub": "bob", "email": "bob@example.com", "expires_at": float64(time.Now().Add(time.Minute).Unix()), "error": errRefresh},
		{"sub": 42.0, "name": "Tab\there\x01", "email": nil, "sid": 7.0}, // mixed types, a value headerSafe changes
		{"name": "caf\u00e9 \u2603", "email": "\u00e9@example.com"},
	} {
		e, want := decodedEntry(t, rl, claims)
		m := newTokenEntry(want)
		if e.claims != nil {
			t.Fatalf("%v: the claims were decoded before anything asked", claims)
		}
		if e.sid != m.sid || e.iat != m.iat || e.expires != m.expires || e.accessExpires != m.accessExpires || e.failedRefresh != m.failedRefresh {
			t.Errorf("%v: entry %+v, from the map %+v", claims, e, m)
		}
		if got, w := e.defaultView.headers, m.defaultView.headers; fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%v: default headers %q, from the map %q", claims, got, w)
		}
		for i := range defaultHeaderNames {
			if got, w := e.placeholder(i), want[defaultHeaderClaims[i]]; got != w {
				t.Errorf("%v: placeholder %d = %#v, the claim is %#v", claims, i, got, w)
			}
		}
		if fmt.Sprint(e.claimsMap()) != fmt.Sprint(want) {
			t.Errorf("claims = %v, want %v", e.claimsMap(), want)
		}
	}
}

// What an entry gains after it is cached (its claims map, a view, the session
// result) counts against the cache's bound.
func TestTokenCacheEntryGrows(t *testing.T) {
	rl := benchRealm(t, nil)
	e, _ := decodedEntry(t, rl, aliceClaims)
	c := newTokenCache(0)
	c.put("cookie", e, time.Now())
	c.entries.CleanUp()
	before := c.entries.WeightedSize()
	if before != uint64(entrySize(e)) || before == 0 {
		t.Fatalf("weighed %d, entrySize %d", before, entrySize(e))
	}
	claims := e.claimsMap()
	c.entries.CleanUp()
	if got := c.entries.WeightedSize(); got != before {
		t.Fatalf("weighed again before settle: %d, was %d", got, before)
	}
	e.settle()
	c.entries.CleanUp()
	afterClaims := c.entries.WeightedSize()
	if want := before + uint64(valueSize(claims)); afterClaims != want {
		t.Fatalf("after decoding the claims the cache weighs %d, want %d", afterClaims, want)
	}
	e.extra()
	if c.get("cookie", time.Now()) != e { // a hit settles the entry
		t.Fatal("the entry is not cached")
	}
	c.entries.CleanUp()
	if got := c.entries.WeightedSize(); got <= afterClaims {
		t.Fatalf("after the entry's extra part the cache weighs %d, want more than %d", got, afterClaims)
	}
}

// Many requests with one new cookie at once, through a handler with rules: the
// claims are decoded once, the extra part made once, the view kept once, and
// the entry weighed with all of it (run with -race).
func TestDecodedEntryConcurrent(t *testing.T) {
	rl := benchRealm(t, nil)
	h := benchHandler(t, rl, &Handler{
		Require: []callbacks.Condition{{Expr: `token.email.endsWith("@example.com")`}},
		Headers: []HeaderConfig{{Name: "X-Email", Expr: "session.user.email"}},
	})
	c := sessionCookie(t, rl, aliceClaims)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 20 {
				w := &discard{h: http.Header{}}
				r := benchRequest(c)
				if err := h.ServeHTTP(w, r, noop); err != nil || w.status != 0 {
					t.Errorf("status %d, err %v", w.status, err)
					return
				}
				if got := r.Header.Get("X-Email"); got != "alice@example.com" {
					t.Errorf("X-Email = %q", got)
					return
				}
			}
		})
	}
	wg.Wait()
	e := rl.sessions.cache.get(c.Value, time.Now())
	if e == nil || e.claims == nil || e.more.Load() == nil {
		t.Fatalf("entry %v: want it cached with its claims and extra part", e)
	}
	rl.sessions.cache.entries.CleanUp()
	if w := rl.sessions.cache.entries.WeightedSize(); w != uint64(e.size.Load()) || int(w) <= sizeEntry+valueSize(e.claims) {
		t.Fatalf("the cache weighs %d, the entry's size is %d", w, e.size.Load())
	}
}

// Caddy's access log reads {http.auth.user.id} after the handler has returned;
// the placeholders come from the request's session, absent claims empty.
func TestUserPlaceholders(t *testing.T) {
	rl := benchRealm(t, nil)
	h := benchHandler(t, rl, &Handler{})
	r := benchRequest(sessionCookie(t, rl, map[string]any{"sub": "alice", "email": "alice@example.com"}))
	w := &discard{h: http.Header{}}
	if err := h.ServeHTTP(w, r, noop); err != nil || w.status != 0 {
		t.Fatalf("status %d, err %v", w.status, err)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	for key, want := range map[string]string{"http.auth.user.id": "alice", "http.auth.user.email": "alice@example.com", "http.auth.user.name": ""} {
		if got, ok := repl.GetString(key); !ok || got != want {
			t.Errorf("%s = %q (%v), want %q", key, got, ok, want)
		}
	}
	if _, ok := repl.Get("http.auth.user.other"); ok {
		t.Error("http.auth.user.other is answered")
	}
}
