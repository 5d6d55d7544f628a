package handlers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

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

// request makes a guarded request as Caddy would hand it to the handler.
func benchRequest(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/page?x=1", nil)
	r.Header.Set("Accept", "text/html")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	return r.WithContext(ctx)
}

// discard is a ResponseWriter that keeps nothing, so the benchmark measures the handler.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

var noop = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// runGuard benchmarks ServeHTTP with fresh headers each iteration (a request's
// headers are mutated by the guard).
func runGuard(b *testing.B, h caddyhttp.MiddlewareHandler, cookies ...*http.Cookie) {
	base := benchRequest(cookies...)
	hdr := base.Header.Clone()
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := *base
		r.Header = make(http.Header, len(hdr)+3)
		for k, v := range hdr {
			r.Header[k] = v
		}
		clear(w.h)
		if err := h.ServeHTTP(w, &r, noop); err != nil {
			b.Fatal(err)
		}
	}
}

// passThrough is the baseline: a handler that only calls the next one.
type passThrough struct{}

func (passThrough) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

func BenchmarkBaselineNoop(b *testing.B) {
	runGuard(b, passThrough{})
}

func BenchmarkGuardValid(b *testing.B) {
	rl := benchRealm(b, nil)
	h := benchHandler(b, rl, &Handler{})
	runGuard(b, h, sessionCookie(b, rl, aliceClaims))
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
	runGuard(b, h, sessionCookie(b, rl, aliceClaims))
}

func BenchmarkGuardRejected(b *testing.B) {
	rl := benchRealm(b, nil)
	h := benchHandler(b, rl, &Handler{})
	c := sessionCookie(b, rl, aliceClaims)
	c.Value = c.Value[:len(c.Value)-4] + "AAAA"
	runGuard(b, h, c)
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
	runGuard(b, h, cookies...)
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
	c := sessionCookie(b, rl, aliceClaims)
	base := benchRequest(c)
	hdr := base.Header.Clone()
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rl.sessions.cache.clear()
		r := *base
		r.Header = hdr.Clone()
		if err := h.ServeHTTP(w, &r, noop); err != nil {
			b.Fatal(err)
		}
	}
}
