package handlers

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/maypok86/otter/v2"
)

// tokenCache remembers decoded session tokens, so the guard decrypts a token
// once, not on every request. It is bounded in bytes (each entry's estimated
// size, see entrySize), evicts by frequency and recency (otter's W-TinyLFU: a
// session used again and again survives a scan of sessions seen once, as when a
// new instance meets every session cold), and never serves an entry past its
// token's expiry. It holds neither cookie values nor their plain hashes.
type tokenCache struct {
	entries *otter.Cache[cacheKey, *tokenEntry]
	// mac computes keys, under a random key of this process (see keyOf).
	mac   cipher.AEAD
	stats *cacheStats // hits and misses, for metrics; nil counts nothing
}

// cacheKey is a cookie value's key in the cache (keyOf).
type cacheKey [16]byte

// keyOf is the cache key of a cookie value (or of a database session's key):
// GMAC under a random key of this process, that is AES-GCM's GHASH of the value
// (as additional data) masked with an AES block — a keyed universal hash.
//
// Why this key, and not the others it could be:
//   - The value itself (as before) costs its 1–4 KB again per entry.
//   - The JWE authentication tag alone: a tag proves nothing until it has been
//     verified, and verifying it is the decryption the cache is there to save;
//     a cookie carrying another's tag with other bytes would hit that entry.
//   - A fast non-cryptographic hash (hash/maphash): collisions are rare, not
//     ruled out against a client that tries.
//   - SHA-256 of the value: collision-resistant without a secret, but it is the
//     warm path's largest cost (≈ 5 × GMAC for a 600-byte cookie, measured).
//
// GHASH is ε-almost-XOR-universal: two different values of at most ℓ 16-byte
// blocks get the same key for at most ℓ+1 of the 2¹²⁸ hash keys, and the key is
// random and never leaves the process, nor do the cache keys. A client cannot
// see them and so can do no better than guess: with n sessions cached, a forged
// cookie of ℓ blocks hits an entry with probability ≤ n·(ℓ+1)/2¹²⁸ — for 10⁵
// sessions and 16 KB, about 2⁻¹⁰¹ per attempt. The fixed nonce is safe here
// because the MAC is never published: it is a hash, not a message authenticator.
func (c *tokenCache) keyOf(value string) cacheKey {
	// Seal's destination escapes: a pooled one, not an allocation per lookup.
	// Seal only reads its additional data, so value's bytes need no copy.
	k := keyBuffers.Get().(*cacheKey)
	c.mac.Seal(k[:0], gmacNonce[:], nil, unsafe.Slice(unsafe.StringData(value), len(value)))
	key := *k
	keyBuffers.Put(k)
	return key
}

var (
	gmacNonce  [12]byte
	keyBuffers = sync.Pool{New: func() any { return new(cacheKey) }}
)

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
	// refusedBy is the require line that refused, when not allowed by one.
	refusedBy string
	headers   []headerValue
}

type headerValue struct {
	name  string
	value []string
}

// defaultTokenCacheSize is the token cache's bound in bytes (realm option
// cache_size): at about 2 KB a session, some 30,000 sessions.
const defaultTokenCacheSize = 64 << 20

// newTokenCache makes a token cache holding at most maxBytes (estimated; see
// entrySize); maxBytes ≤ 0 means defaultTokenCacheSize.
func newTokenCache(maxBytes int64) *tokenCache {
	if maxBytes <= 0 {
		maxBytes = defaultTokenCacheSize
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		panic("token cache: no randomness: " + err.Error())
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("token cache: " + err.Error())
	}
	mac, err := cipher.NewGCM(block)
	if err != nil {
		panic("token cache: " + err.Error())
	}
	return &tokenCache{
		mac: mac,
		entries: otter.Must(&otter.Options[cacheKey, *tokenEntry]{
			MaximumWeight: uint64(maxBytes),
			Weigher:       func(_ cacheKey, e *tokenEntry) uint32 { return entrySize(e) },
		}),
	}
}

// get returns the live entry for the cookie value.
func (c *tokenCache) get(raw string, now time.Time) *tokenEntry {
	e, ok := c.entries.GetIfPresent(c.keyOf(raw))
	if !ok || !e.live(now) {
		c.stats.lookup(false)
		return nil
	}
	c.stats.lookup(true)
	return e
}

// live reports whether the entry may be served at now.
func (e *tokenEntry) live(now time.Time) bool {
	return now.Before(e.expires) && (e.cacheUntil.IsZero() || now.Before(e.cacheUntil))
}

// put stores an entry for a cookie value; an entry already dead is not kept.
// When the cache is over its bound, the eviction policy makes room (otter does
// it after the write, off the caller's path).
func (c *tokenCache) put(raw string, e *tokenEntry, now time.Time) {
	if !e.live(now) {
		return
	}
	c.entries.Set(c.keyOf(raw), e)
}

// replace stores the entry of a re-issued token and drops its predecessor's,
// which no client should send again (renewal, rotation to the current secret).
func (c *tokenCache) replace(oldRaw, newRaw string, e *tokenEntry, now time.Time) {
	c.entries.Invalidate(c.keyOf(oldRaw))
	c.put(newRaw, e, now)
}

// remove forgets a cookie value (signed out, revoked).
func (c *tokenCache) remove(raw string) {
	c.entries.Invalidate(c.keyOf(raw))
}

// clear forgets everything.
func (c *tokenCache) clear() {
	c.entries.InvalidateAll()
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

// The sizes entrySize adds up, in bytes, as Go 1.26 on 64-bit allocates them:
// sizeEntry is a tokenEntry with otter's node and hash-table slot for it and the
// three default headers' slices; sizeLater is room for what the guard computes
// later and keeps with the entry, the session callback's result and each
// handler's view (measured by TestTokenCacheEntrySize: 0.2 KB with the default
// headers, 1.1 KB with a require and five header expressions).
const (
	sizeEntry     = int(unsafe.Sizeof(tokenEntry{})) + 160 + 3*16
	sizeLater     = 1280
	sizeMap       = 48 + 8  // map header and its directory
	sizeMapSlot   = 40      // a key and a value (interface), at 7/8 load, with control bytes
	sizeBoxed     = 16      // an interface's boxed value (string header, float64)
	sizeSliceHead = 24 + 16 // a boxed []any
)

// entrySize estimates the bytes an entry holds: its own, its claims' (and a
// database session's data and user), and room for what it gains later.
func entrySize(e *tokenEntry) uint32 {
	n := sizeEntry + sizeLater + valueSize(e.claims) + valueSize(e.user)
	if e.data != nil {
		n += valueSize(e.data) // database sessions: most values are shared with claims, the map is not
	}
	for _, d := range e.defaults {
		if len(d) > 0 {
			n += 16 + roundSize(len(d[0])) // headerSafe may have made a copy
		}
	}
	return uint32(min(n, 1<<31))
}

// valueSize estimates the heap bytes of a decoded JSON value (map[string]any,
// []any, string, float64, bool or nil) held in an interface.
func valueSize(v any) int {
	switch v := v.(type) {
	case map[string]any:
		if v == nil {
			return 0
		}
		n := sizeMap + sizeBoxed
		for k, x := range v {
			n += sizeMapSlot + roundSize(len(k)) + valueSize(x)
		}
		return n
	case []any:
		n := sizeSliceHead + 16*cap(v)
		for _, x := range v {
			n += valueSize(x)
		}
		return n
	case string:
		return sizeBoxed + roundSize(len(v))
	case float64, int64, int:
		return 8
	}
	return 0 // bool and nil are not allocated
}

// roundSize is n rounded up as the allocator's small size classes do (to 8,
// then 16 bytes; larger classes waste about as much).
func roundSize(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= 8:
		return 8
	}
	return (n + 15) &^ 15
}
