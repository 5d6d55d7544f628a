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

	"github.com/authgate/caddy-authgate/session"
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
	return c.keyIn(&cookieNonce, value)
}

// bearerKeyOf is the cache key of a bearer token's session. Bearer tokens and
// cookie values are keys of two namespaces (two nonces, so two independent
// masks over the same GHASH): no cookie value finds a bearer token's entry,
// even one spelling the token. (The key of "bearer "+token, as before, was the
// key of a cookie holding that text: its session then passed as a cookie's, and
// POST /session re-issued it as a session token good for max_age.)
func (c *tokenCache) bearerKeyOf(token string) cacheKey {
	return c.keyIn(&bearerNonce, token)
}

func (c *tokenCache) keyIn(nonce *[12]byte, value string) cacheKey {
	// Seal's destination escapes: a pooled one, not an allocation per lookup.
	// Seal only reads its additional data, so value's bytes need no copy.
	k := keyBuffers.Get().(*cacheKey)
	c.mac.Seal(k[:0], nonce[:], nil, unsafe.Slice(unsafe.StringData(value), len(value)))
	key := *k
	keyBuffers.Put(k)
	return key
}

var (
	cookieNonce [12]byte          // cookie values and database session keys
	bearerNonce = [12]byte{11: 1} // bearer tokens
	keyBuffers  = sync.Pool{New: func() any { return new(cacheKey) }}
)

// tokenEntry is a decoded token and what was computed from it. Its maps are shared
// between requests: nothing may modify them.
//
// A token read from a cookie keeps its claims as their JSON (one pointer-free
// buffer the garbage collector does not walk, to which the strings below point)
// and decodes them into a map only when something asks for it (claimsMap): the
// default guard reads sub, email and name, and never needs the map. What few
// sessions need (database sessions' records, rules' views, the session
// callback's result, assertions, refreshes) lives beside the entry, made when
// first needed, so the entry of a plain session stays small. Its size in the
// cache grows with what it gains (grow).
type tokenEntry struct {
	// json is the token's claims as JSON, decoded on demand into claims;
	// nil when the entry was made from a map (claims is then set).
	json       []byte
	claimsOnce sync.Once
	claims     map[string]any
	// sid identifies the session across re-issued tokens (renewal, refresh,
	// update, secret rotation), which each get a new jti; revocation is by sid.
	sid string
	// iat and expires are the token's (Unix nanoseconds); accessExpires is the
	// provider access token's expiry (claim expires_at), and cacheUntil, when
	// set, ends the entry's life in the cache before expires (database
	// sessions are read again now and then): Unix nanoseconds, 0 for none.
	iat, expires, accessExpires, cacheUntil int64

	// mixed: sub, email or name is present with another type than string;
	// changed: headerSafe changed one of them. The placeholders then take the
	// map's values.
	mixed, changed bool
	// failedRefresh: the provider refused to refresh; the session is over.
	failedRefresh bool
	// stale: encrypted with an older secret, so re-issued with the current one.
	stale bool

	// db is a database session's record (nil for jwt sessions).
	db *dbRecord

	// defaultVals are the claims sub, email and name when they are strings
	// (made header-safe), else "", and defaultView the view of a handler
	// without require or header lines: the default headers, pointing into
	// defaultHdrs and defaultVals.
	defaultVals [3]string
	defaultHdrs [3]headerValue
	defaultView view

	more atomic.Pointer[entryMore]

	// size is the entry's estimated size in bytes (entrySize), which grows
	// with the claims map, views and session result; cache and key, set when
	// the entry is cached, let it be weighed again.
	size      atomic.Uint32
	unweighed atomic.Bool
	cache     *tokenCache
	key       cacheKey
}

// dbRecord is what a database session's entry knows of its stored session.
type dbRecord struct {
	userID string
	data   map[string]any
	user   map[string]any
}

// entryMore is what an entry gains after it is made, for the sessions that need it.
type entryMore struct {
	// assertion is the newest signed upstream assertion for this token.
	assertion atomic.Pointer[signedAssertion]
	// next is the token that replaced this one after a refresh.
	next nextToken

	// the session callback's result, when it depends on the token only
	sessOnce sync.Once
	sess     map[string]any
	sessErr  error

	// views holds each handler's require/header results, when they depend on the
	// token only: *Handler → *view.
	views sync.Map
}

// sizeMore is an entryMore's size, as entrySize counts it.
const sizeMore = int(unsafe.Sizeof(entryMore{}))

// extra returns the entry's entryMore, made on first use.
func (e *tokenEntry) extra() *entryMore {
	if m := e.more.Load(); m != nil {
		return m
	}
	if m := new(entryMore); e.more.CompareAndSwap(nil, m) {
		e.grow(roundSize(sizeMore))
	}
	return e.more.Load()
}

// expiry is when the entry's token expires.
func (e *tokenEntry) expiry() time.Time { return time.Unix(0, e.expires) }

// age is how long ago the entry's token was issued (or a database session
// renewed); a token without iat is as old as can be.
func (e *tokenEntry) age(now time.Time) time.Duration { return time.Duration(now.UnixNano() - e.iat) }

// user is a database session's stored user (nil for others).
func (e *tokenEntry) user() map[string]any {
	if e.db == nil {
		return nil
	}
	return e.db.user
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
// cache_size): at about 0.7 KB a session with the default headers (2.7 KB with
// a require and five header lines), some 95,000 sessions.
const defaultTokenCacheSize = 64 << 20

// runNow is the token cache's executor: otter's maintenance (applying writes
// to its eviction policy, evicting) runs on the goroutine whose write asked for
// it, as with Caffeine's same-thread executor. otter's default starts a
// goroutine for it after every write that finds maintenance idle; a cold
// session is one write (and a renewal two), so under load with many sessions
// that was a goroutine, and a wake-up of another core, per request. Run here it
// costs the writer its own maintenance and no hand-over; otter keeps one drain
// at a time (a try-lock), so concurrent writers do not queue behind it.
// BenchmarkGuardCold, paired with the default: −6 % (BENCH.md, third pass).
func runNow(f func()) { f() }

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
			Weigher:       func(_ cacheKey, e *tokenEntry) uint32 { return e.size.Load() },
			Executor:      runNow,
		}),
	}
}

// get returns the live entry for the cookie value.
func (c *tokenCache) get(raw string, now time.Time) *tokenEntry {
	return c.lookup(c.keyOf(raw), now)
}

// lookup is get by key.
func (c *tokenCache) lookup(key cacheKey, now time.Time) *tokenEntry {
	e, ok := c.entries.GetIfPresent(key)
	if !ok || !e.live(now) {
		c.stats.lookup(false)
		return nil
	}
	c.stats.lookup(true)
	e.settle()
	return e
}

// live reports whether the entry may be served at now.
func (e *tokenEntry) live(now time.Time) bool {
	n := now.UnixNano()
	return n < e.expires && (e.cacheUntil == 0 || n < e.cacheUntil)
}

// put stores an entry for a cookie value; an entry already dead is not kept.
// When the cache is over its bound, the eviction policy makes room (otter does
// it after the write, on the writer's goroutine: runNow).
func (c *tokenCache) put(raw string, e *tokenEntry, now time.Time) {
	c.store(c.keyOf(raw), e, now)
}

// store is put by key.
func (c *tokenCache) store(key cacheKey, e *tokenEntry, now time.Time) {
	if !e.live(now) {
		return
	}
	e.cache, e.key = c, key
	c.entries.Set(key, e)
}

// replace stores the entry of a re-issued token and drops its predecessor's,
// which no client should send again (renewal, rotation to the current secret).
func (c *tokenCache) replace(old cacheKey, newRaw string, e *tokenEntry, now time.Time) {
	c.entries.Invalidate(old)
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

// newTokenEntry is the entry of a token whose claims are a map already (issued
// here, a database session, a bearer token).
func newTokenEntry(claims map[string]any) *tokenEntry {
	e := &tokenEntry{claims: claims, iat: unixNano(numericTime(claims["iat"])), expires: unixNano(numericTime(claims["exp"]))}
	e.accessExpires = unixNano(numericTime(claims["expires_at"]))
	e.sid, _ = claims["sid"].(string)
	if e.sid == "" {
		// A token made elsewhere (Auth.js) has no sid: its jti is all there is.
		e.sid, _ = claims["jti"].(string)
	}
	e.failedRefresh = claims["error"] == errRefresh
	var strs [3]string
	for i, k := range defaultHeaderClaims {
		strs[i], _ = claims[k].(string)
	}
	e.setDefaults(strs)
	e.size.Store(entrySize(e))
	return e
}

// newDecodedEntry is the entry of a token read from a cookie, its claims left
// undecoded.
func newDecodedEntry(t *session.Token) *tokenEntry {
	e := &tokenEntry{json: t.JSON, iat: unixNano(t.Iat), expires: unixNano(t.Exp), accessExpires: unixNano(t.ExpiresAt), sid: t.Sid}
	if e.sid == "" {
		e.sid = t.Jti // as newTokenEntry: a sid that is not a string counts as none
	}
	e.mixed = t.Mixed&(session.ClaimSub|session.ClaimEmail|session.ClaimName) != 0
	e.failedRefresh = t.Error == errRefresh
	e.setDefaults([3]string{t.Sub, t.Email, t.Name})
	e.size.Store(entrySize(e))
	return e
}

// unixNano is t in Unix nanoseconds, 0 for the zero time. Token times are
// whole seconds, well within int64's nanoseconds (until 2262).
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// setDefaults fills the default headers and the default view from the claims
// sub, email and name ("" when absent or not strings).
func (e *tokenEntry) setDefaults(strs [3]string) {
	n := 0
	for i, v := range strs {
		if v == "" {
			continue
		}
		if e.defaultVals[i] = headerSafe(v); e.defaultVals[i] != v {
			e.changed = true
		}
		e.defaultHdrs[n] = headerValue{name: defaultHeaderNames[i], value: e.defaultVals[i : i+1 : i+1]}
		n++
	}
	e.defaultView = view{allowed: true, headers: e.defaultHdrs[:n:n]}
}

// claimsMap is the token's claims, decoded on first use. The map is shared:
// nothing may modify it.
func (e *tokenEntry) claimsMap() map[string]any {
	e.claimsOnce.Do(func() {
		if e.json == nil {
			return
		}
		claims, err := (&session.Token{JSON: e.json}).Claims()
		if err != nil {
			// Not reached: DecodeToken accepted exactly this JSON, with the
			// same tokenizer and checks (FuzzDecodeTokenMatchesDecode).
			claims = map[string]any{}
		}
		e.claims = claims
		e.grow(valueSize(claims))
	})
	return e.claims
}

// placeholder is the value of claim sub, email or name (i) for Caddy's
// http.auth.user.* placeholders: the claim as it is, nil when absent.
func (e *tokenEntry) placeholder(i int) any {
	if e.json == nil || e.mixed || e.changed {
		return e.claimsMap()[defaultHeaderClaims[i]]
	}
	if s := e.defaultVals[i]; s != "" {
		return s
	}
	return nil
}

// grow adds n bytes to the entry's size. The cache weighs it again at settle:
// a cold request can add several parts (the claims map, the session result,
// a view), and each weighing is a write to the cache.
func (e *tokenEntry) grow(n int) {
	if n <= 0 {
		return
	}
	e.size.Add(uint32(min(n, 1<<24)))
	if e.cache != nil {
		e.unweighed.Store(true)
	}
}

// settle has the cache weigh the entry again if it grew since it was weighed:
// the guard calls it once its view is made, and a cache hit does too, so the
// weight lags by one request at most.
func (e *tokenEntry) settle() {
	if !e.unweighed.Load() || !e.unweighed.CompareAndSwap(true, false) {
		return
	}
	e.cache.entries.ComputeIfPresent(e.key, func(old *tokenEntry) (*tokenEntry, otter.ComputeOp) {
		if old != e {
			return old, otter.CancelOp
		}
		return e, otter.WriteOp
	})
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
// sizeEntry is a tokenEntry with otter's node and hash-table slot for it (the
// default headers and view live inside the entry).
const (
	sizeEntry     = int(unsafe.Sizeof(tokenEntry{})) + 160
	sizeMap       = 48 + 8  // map header and its directory
	sizeMapSlot   = 40      // a key and a value (interface), at 7/8 load, with control bytes
	sizeBoxed     = 16      // an interface's boxed value (string header, float64)
	sizeSliceHead = 24 + 16 // a boxed []any
)

// entrySize estimates the bytes an entry holds when made: its own, its claims'
// (as JSON or as a map; a database session's data and user too). What it gains
// later (the claims map, views, the session result) is added by grow.
func entrySize(e *tokenEntry) uint32 {
	n := sizeEntry + roundSize(len(e.json)) + valueSize(e.claims)
	if e.db != nil {
		// database sessions: most values of data are shared with claims, the map is not
		n += 48 + valueSize(e.db.data) + valueSize(e.db.user)
	}
	for _, s := range e.defaultVals {
		if e.claims == nil && s != "" && !inside(s, e.json) {
			n += roundSize(len(s)) // unquoted or made header-safe: a copy
		}
	}
	return uint32(min(n, 1<<31))
}

// inside reports whether s's bytes are in b.
func inside(s string, b []byte) bool {
	if len(b) == 0 || len(s) == 0 {
		return false
	}
	p, start := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(&b[0]))
	return p >= start && p < start+uintptr(len(b))
}

// viewSize estimates the bytes of a view kept with an entry (and its place in
// the entry's views).
func viewSize(v *view) int {
	n := 48 + 128 + roundSize(len(v.refusedBy)) + 40*cap(v.headers) // the view, its node in views
	for _, h := range v.headers {
		n += 16
		for _, s := range h.value {
			n += roundSize(len(s))
		}
	}
	return n
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
