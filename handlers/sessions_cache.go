package handlers

import (
	"sync"
	"sync/atomic"
	"time"
)

// tokenCache remembers decoded session tokens by their exact cookie value, so the
// guard decrypts a token once, not on every request. It is bounded, and an entry
// is never served past the token's expiry.
type tokenCache struct {
	mu      sync.RWMutex
	entries map[string]*tokenEntry
	max     int
}

// tokenEntry is a decoded token and what was computed from it. Its maps are shared
// between requests: nothing may modify them.
type tokenEntry struct {
	claims map[string]any
	// sid identifies the session across re-issued tokens (renewal, refresh,
	// update, secret rotation), which each get a new jti; revocation is by sid.
	sid     string
	iat     time.Time
	expires time.Time
	// cacheUntil, when set, ends the entry's life in the cache before expires
	// (database sessions are read again now and then).
	cacheUntil time.Time

	// assertion is the newest signed upstream assertion for this token.
	assertion atomic.Pointer[signedAssertion]

	// next is the token that replaced this one after a refresh.
	next nextToken
	// failedRefresh: the provider refused to refresh; the session is over.
	failedRefresh bool
	// stale: encrypted with an older secret, so re-issued with the current one.
	stale bool

	// database sessions: the stored session's user and data
	userID string
	data   map[string]any
	user   map[string]any

	// defaults are the default identity headers' values, ready to assign.
	defaults [3][]string

	// session is the session callback's result, when it depends on the token only.
	sessOnce sync.Once
	sess     map[string]any
	sessErr  error

	// views holds each handler's require/header results, when they depend on the
	// token only: *Handler → *view.
	views sync.Map
}

// view is what one handler derived from a token: whether it may pass and the
// headers it sets.
type view struct {
	allowed bool
	headers []headerValue
}

type headerValue struct {
	name  string
	value []string
}

const defaultTokenCacheSize = 10000

func newTokenCache(max int) *tokenCache {
	return &tokenCache{entries: make(map[string]*tokenEntry), max: max}
}

// get returns the live entry for the cookie value.
func (c *tokenCache) get(raw string, now time.Time) *tokenEntry {
	c.mu.RLock()
	e := c.entries[raw]
	c.mu.RUnlock()
	if e == nil || !now.Before(e.expires) || (!e.cacheUntil.IsZero() && !now.Before(e.cacheUntil)) {
		return nil
	}
	return e
}

// put stores an entry, first evicting expired entries and, if still full, an
// arbitrary tenth of them (Go's map order is random, so this is random eviction).
func (c *tokenCache) put(raw string, e *tokenEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max-c.max/10 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[raw] = e
}

// remove forgets a cookie value (signed out, revoked).
func (c *tokenCache) remove(raw string) {
	c.mu.Lock()
	delete(c.entries, raw)
	c.mu.Unlock()
}

// clear forgets everything.
func (c *tokenCache) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

func newTokenEntry(claims map[string]any) *tokenEntry {
	e := &tokenEntry{claims: claims, iat: numericTime(claims["iat"]), expires: numericTime(claims["exp"])}
	e.sid, _ = claims["sid"].(string)
	if e.sid == "" {
		// A token made elsewhere (Auth.js) has no sid: its jti is all there is.
		e.sid, _ = claims["jti"].(string)
	}
	e.failedRefresh = claims["error"] == errRefresh
	for i, k := range defaultHeaderClaims {
		if s, ok := claims[k].(string); ok && s != "" {
			e.defaults[i] = []string{headerSafe(s)}
		}
	}
	return e
}

// numericTime reads a JWT NumericDate claim.
func numericTime(v any) time.Time {
	switch n := v.(type) {
	case float64:
		return time.Unix(int64(n), 0)
	case int64:
		return time.Unix(n, 0)
	case int:
		return time.Unix(int64(n), 0)
	}
	return time.Time{}
}
