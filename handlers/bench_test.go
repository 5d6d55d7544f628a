package handlers

import (
	"context"
	"crypto/aes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	josecipher "github.com/go-jose/go-jose/v4/cipher"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/hkdf"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/providers"
	"github.com/authgate/caddy-authgate/session"
	"github.com/authgate/caddy-authgate/store"
)

const benchSecret = "a-benchmark-secret-that-is-long-enough-0123456789"

// benchRealm is a realm with a credentials provider and an in-memory store.
func benchRealm(tb testing.TB, mutate func(*Realm)) *realm {
	tb.Helper()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), 4)
	users := filepath.Join(tb.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:"+string(hash)+":Alice:alice@example.com\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg := &Realm{
		Secrets:   []string{benchSecret},
		Store:     &StoreConfig{Type: "memory"},
		Providers: []providers.Config{{Kind: "credentials", UsersFile: users}},
	}
	if mutate != nil {
		mutate(cfg)
	}
	rl, err := newRealm(context.Background(), DefaultRealm, cfg, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	rl.sessions.store = store.NewMemory()
	rl.started.Store(true)
	return rl
}

// benchHandler compiles h for rl.
func benchHandler(tb testing.TB, rl *realm, h *Handler) *Handler {
	tb.Helper()
	if err := h.compile(rl); err != nil {
		tb.Fatal(err)
	}
	return h
}

// sessionCookie encodes a session token for rl with claims.
func sessionCookie(tb testing.TB, rl *realm, claims map[string]any) *http.Cookie {
	tb.Helper()
	tok, err := rl.sessions.codecs[0].Encode(claims, time.Hour, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return &http.Cookie{Name: rl.sessions.cookieName, Value: tok}
}

var aliceClaims = map[string]any{"sub": "alice", "name": "Alice Example", "email": "alice@example.com", "picture": nil}

// benchRequest makes a guarded request as Caddy would hand it to the handler.
func benchRequest(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/page?x=1", nil)
	r.Header.Set("Accept", "text/html")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return withCaddyContext(r)
}

// withCaddyContext gives r a replacer and variables of its own, as Caddy gives
// every request: the guard keeps its state there, and a shared replacer would
// pile up every request's placeholders. As Caddy's server does, the replacer
// has a provider of HTTP placeholders and the variables hold the client's IP
// and whether its proxy is trusted.
func withCaddyContext(r *http.Request) *http.Request {
	repl := caddy.NewReplacer()
	repl.Map(func(string) (any, bool) { return nil, false })
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: false, caddyhttp.ClientIPVarKey: "192.0.2.1"})
	return r.WithContext(ctx)
}

// discard is a ResponseWriter that keeps only the status, so the benchmark
// measures the handler.
type discard struct {
	h      http.Header
	status int // 0: none written (the request went on to the next handler)
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(code int)        { d.status = code }

var noop = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// runGuard benchmarks ServeHTTP with fresh headers, replacer and variables each
// iteration (the guard mutates a request's headers and keeps its state in the
// variables), and checks every answer: 0 = passed to the next handler.
func runGuard(b *testing.B, h caddyhttp.MiddlewareHandler, status int, cookies ...*http.Cookie) {
	runRequests(b, h, status, nil, benchRequest(cookies...))
}

// runRefused is runGuard for a client that asks for JSON, as the load
// benchmark's does: a refused session is a 401, not a redirect to sign in.
func runRefused(b *testing.B, h caddyhttp.MiddlewareHandler, cookies ...*http.Cookie) {
	r := benchRequest(cookies...)
	r.Header.Set("Accept", "application/json")
	runRequests(b, h, http.StatusUnauthorized, nil, r)
}

// runRequests is runGuard on request base, calling before ahead of each
// request (cold: forget the cache).
func runRequests(b *testing.B, h caddyhttp.MiddlewareHandler, status int, before func(), base *http.Request) {
	hdr := base.Header.Clone()
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if before != nil {
			before()
		}
		r := withCaddyContext(base)
		r.Header = make(http.Header, len(hdr)+3)
		for k, v := range hdr {
			r.Header[k] = v
		}
		clear(w.h)
		w.status = 0
		if err := h.ServeHTTP(w, r, noop); err != nil {
			b.Fatal(err)
		}
		if w.status != status {
			b.Fatalf("status %d, want %d", w.status, status)
		}
	}
}

// passThrough is the baseline: a handler that only calls the next one.
type passThrough struct{}

func (passThrough) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

func BenchmarkBaselineNoop(b *testing.B) {
	runGuard(b, passThrough{}, 0)
}

func BenchmarkGuardValid(b *testing.B) {
	rl := benchRealm(b, nil)
	h := benchHandler(b, rl, &Handler{})
	runGuard(b, h, 0, sessionCookie(b, rl, aliceClaims))
}

func BenchmarkGuardValidRules(b *testing.B) {
	rl := benchRealm(b, nil)
	h := benchHandler(b, rl, &Handler{
		Require: []callbacks.Condition{{Expr: `token.email.endsWith("@example.com")`}},
		Headers: []HeaderConfig{
			{Name: "X-User", Expr: "token.sub"},
			{Name: "X-Email", Expr: "session.user.email"},
			{Name: "X-Name", Expr: "token.name"},
		},
	})
	runGuard(b, h, 0, sessionCookie(b, rl, aliceClaims))
}

func BenchmarkGuardRejected(b *testing.B) {
	rl := benchRealm(b, nil)
	h := benchHandler(b, rl, &Handler{})
	c := sessionCookie(b, rl, aliceClaims)
	c.Value = c.Value[:len(c.Value)-4] + "AAAA"
	runRefused(b, h, c)
}

func BenchmarkGuardChunked8KB(b *testing.B) {
	rl := benchRealm(b, nil)
	h := benchHandler(b, rl, &Handler{})
	claims := map[string]any{"sub": "alice", "email": "alice@example.com", "name": strings.Repeat("n", 5500)}
	tok, err := rl.sessions.codecs[0].Encode(claims, time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	var cookies []*http.Cookie
	for i := 0; len(tok) > 0; i++ {
		n := min(len(tok), session.ChunkSize)
		cookies = append(cookies, &http.Cookie{Name: rl.sessions.cookieName + "." + string(rune('0'+i)), Value: tok[:n]})
		tok = tok[n:]
	}
	if len(cookies) < 2 {
		b.Fatalf("want a chunked cookie, got %d chunk(s)", len(cookies))
	}
	runGuard(b, h, 0, cookies...)
}

func BenchmarkEncodeAtSignIn(b *testing.B) {
	rl := benchRealm(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rl.sessions.codecs[0].Encode(aliceClaims, rl.sessions.maxAge, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuardCold decrypts the cookie on every request: the first request of
// a session on this instance.
func BenchmarkGuardCold(b *testing.B) {
	rl := benchRealm(b, nil)
	h := benchHandler(b, rl, &Handler{})
	runCold(b, rl, h)
}

// runCold benchmarks h on alice's cookie, forgotten by the cache before each
// request.
func runCold(b *testing.B, rl *realm, h *Handler) {
	c := sessionCookie(b, rl, aliceClaims)
	key := rl.sessions.cache.keyOf(c.Value) // the harness's own work, out of the loop
	runRequests(b, h, 0, func() { rl.sessions.cache.entries.Invalidate(key) }, benchRequest(c))
}

// BenchmarkGuardColdRules is BenchmarkGuardCold with the load benchmark's (c):
// a require line and five header lines, so a cold request also decodes the
// claims into a map, runs the session callback and the expressions, and keeps
// the handler's view.
func BenchmarkGuardColdRules(b *testing.B) {
	rl := benchRealm(b, nil)
	h := benchHandler(b, rl, &Handler{
		Require: []callbacks.Condition{{Expr: `token.email.endsWith("@example.com")`}},
		Headers: []HeaderConfig{
			{Name: "X-Auth-Request-User", Expr: "token.sub"}, {Name: "X-Auth-Request-Email", Expr: "token.email"},
			{Name: "X-Auth-Request-Name", Expr: "token.name"}, {Name: "X-Auth-Session-Email", Expr: "session.user.email"},
			{Name: "X-Auth-Session-Expires", Expr: "session.expires"},
		},
	})
	runCold(b, rl, h)
}

// benchToken is the token BenchmarkGuardCold decodes, with its parts.
func benchToken(b *testing.B) (rl *realm, token string, parts []string) {
	rl = benchRealm(b, nil)
	token = sessionCookie(b, rl, aliceClaims).Value
	return rl, token, strings.Split(token, ".")
}

// BenchmarkCryptoFloor is the least any decode of BenchmarkGuardCold's token
// must do: open it (A256CBC-HS512: HMAC-SHA-512 and AES-256-CBC) with
// go-jose's exported AEAD, from bytes already decoded, nothing parsed.
func BenchmarkCryptoFloor(b *testing.B) {
	rl, _, parts := benchToken(b)
	name := rl.sessions.cookieName
	key := make([]byte, 64)
	if _, err := io.ReadFull(hkdf.New(sha256.New, []byte(benchSecret), []byte(name), []byte("Auth.js Generated Encryption Key ("+name+")")), key); err != nil {
		b.Fatal(err)
	}
	aead, err := josecipher.NewCBCHMAC(key, aes.NewCipher)
	if err != nil {
		b.Fatal(err)
	}
	dec := base64.RawURLEncoding.DecodeString
	iv, _ := dec(parts[2])
	ct, _ := dec(parts[3])
	tag, _ := dec(parts[4])
	sealed, aad := append(ct, tag...), []byte(parts[0])
	if _, err := aead.Open(nil, iv, sealed, aad); err != nil {
		b.Fatalf("the floor does not open the token: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := aead.Open(nil, iv, sealed, aad); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuardColdParts times, one by one, what a cold request does beyond a
// warm one (BenchmarkGuardValid) on BenchmarkGuardCold's token: decode it
// (open, claims, times), make its entry, and cache it (with the harness's
// Invalidate, as runCold). GuardCold is about GuardValid plus these parts; what
// is left over is the cost of running them together (caches, the collector).
func BenchmarkGuardColdParts(b *testing.B) {
	rl, token, _ := benchToken(b)
	codec, now := rl.sessions.codecs[0], time.Now()
	t, _, err := codec.DecodeToken(token, now)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := codec.DecodeToken(token, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("entry", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if e := newDecodedEntry(&t); e.sid == "" {
				b.Fatal("an entry without its session id")
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		cache, e := rl.sessions.cache, newDecodedEntry(&t)
		key := cache.keyOf(token)
		b.ReportAllocs()
		for b.Loop() {
			cache.entries.Invalidate(key)
			cache.store(key, e, now)
		}
		if cache.lookup(key, now) != e {
			b.Fatal("the entry is not cached")
		}
	})
}

// BenchmarkDecodeForgedTag decodes a token whose header is authgate's and whose
// tag is wrong: refused after the HMAC, with no decryption.
func BenchmarkDecodeForgedTag(b *testing.B) {
	rl, _, parts := benchToken(b)
	// Change the tag's first character, whatever it is: the tag must differ.
	if parts[4][0] == 'A' {
		parts[4] = "B" + parts[4][1:]
	} else {
		parts[4] = "A" + parts[4][1:]
	}
	benchRefused(b, rl, strings.Join(parts, "."))
}

// BenchmarkDecodeForgedHeader decodes a token whose header is not one authgate
// writes (alg none): refused from the header alone.
func BenchmarkDecodeForgedHeader(b *testing.B) {
	rl, _, parts := benchToken(b)
	parts[0] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","enc":"A256CBC-HS512","kid":"x"}`))
	benchRefused(b, rl, strings.Join(parts, "."))
}

func benchRefused(b *testing.B, rl *realm, token string) {
	codec, now := rl.sessions.codecs[0], time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := codec.DecodeKey(token, now); err == nil {
			b.Fatal("a forged token decoded")
		}
	}
}

// BenchmarkGuardForgedHeader is BenchmarkDecodeForgedHeader's token at the
// guard: 401, and the cookie cleared.
func BenchmarkGuardForgedHeader(b *testing.B) {
	rl, _, parts := benchToken(b)
	h := benchHandler(b, rl, &Handler{})
	parts[0] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","enc":"A256CBC-HS512","kid":"x"}`))
	runRefused(b, h, &http.Cookie{Name: rl.sessions.cookieName, Value: strings.Join(parts, ".")})
}

// BenchmarkGuardManyUsers sends 2000 users' cookies in turn, all cached: the
// warm path when the cache holds many sessions (BenchmarkGuardValid's, spread
// over memory).
func BenchmarkGuardManyUsers(b *testing.B) {
	rl := benchRealm(b, nil)
	h := benchHandler(b, rl, &Handler{})
	reqs := make([]*http.Request, 2000)
	for i := range reqs {
		reqs[i] = benchRequest(sessionCookie(b, rl, map[string]any{"sub": fmt.Sprint("user", i), "email": fmt.Sprint("user", i, "@example.com"), "name": fmt.Sprint("User ", i)}))
	}
	w := &discard{h: http.Header{}}
	serve := func(base *http.Request) {
		r := withCaddyContext(base)
		r.Header = base.Header.Clone()
		clear(w.h)
		w.status = 0
		if err := h.ServeHTTP(w, r, noop); err != nil || w.status != 0 {
			b.Fatalf("status %d, err %v", w.status, err)
		}
	}
	for _, r := range reqs {
		serve(r)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		serve(reqs[i%len(reqs)])
		i++
	}
}
