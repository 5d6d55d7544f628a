package providers

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/coreos/go-oidc/v3/oidc/oidctest"
	"go.uber.org/zap"
)

var (
	opKey    = sync.OnceValue(func() *rsa.PrivateKey { return newRSAKey() })
	otherKey = sync.OnceValue(func() *rsa.PrivateKey { return newRSAKey() })
)

func newRSAKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// fakeOP is an OpenID Provider: go-oidc's test server for discovery and keys,
// fakeOAuth's token endpoint. Discovery answers 503 while failures is positive.
type fakeOP struct {
	*fakeOAuth
	failures  atomic.Int32
	discovery atomic.Int32 // discovery requests served, failed or not
	// meta is added to the discovery document; set it before New.
	meta map[string]any
}

func newFakeOP(t *testing.T, failures int) *fakeOP {
	t.Helper()
	op := &fakeOP{fakeOAuth: newFakeOAuth(t), meta: map[string]any{}}
	op.failures.Store(int32(failures))
	keys := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: opKey().Public(), KeyID: "k1", Algorithm: oidc.RS256}}}
	keys.SetIssuer(op.URL)
	op.public["/.well-known/openid-configuration"] = func(w http.ResponseWriter, r *http.Request) {
		op.discovery.Add(1)
		if op.failures.Add(-1) >= 0 {
			http.Error(w, "starting up", http.StatusServiceUnavailable)
			return
		}
		rec := httptest.NewRecorder()
		keys.ServeHTTP(rec, r)
		var doc map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for k, v := range op.meta {
			doc[k] = v
		}
		writeJSON(w, http.StatusOK, doc)
	}
	op.public["/keys"] = keys.ServeHTTP
	return op
}

// idToken signs the usual claims for alice, edited by edit, and makes it the
// token endpoint's id_token.
func (op *fakeOP) idToken(t *testing.T, edit func(claims map[string]any)) {
	t.Helper()
	claims := map[string]any{
		"iss": op.URL, "aud": testClientID, "sub": "alice", "nonce": testNonce,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		"name": "Alice Example", "email": "alice@example.com", "email_verified": true, "picture": "https://img.example.com/alice",
	}
	key := opKey()
	if edit != nil {
		edit(claims)
		if _, ok := claims["other key"]; ok {
			delete(claims, "other key")
			key = otherKey()
		}
	}
	raw, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	op.token["id_token"] = oidctest.SignIDToken(key, "k1", oidc.RS256, string(raw))
}

func newOIDCFor(t *testing.T, ctx context.Context, op *fakeOP) *oidcProvider {
	t.Helper()
	p, err := New(ctx, Config{Kind: "oidc", ID: "corp", Issuer: op.URL, ClientID: testClientID, ClientSecret: testClientSecret},
		op.Client(), zap.NewNop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p.(*oidcProvider)
}

func discovered(p *oidcProvider) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.disc != nil
}

func TestOIDCDiscoveryRetry(t *testing.T) {
	const failures = 5
	op := newFakeOP(t, failures)
	p := newOIDCFor(t, t.Context(), op)

	// The background loop's first try fails at once; wait for it.
	for i := 0; op.discovery.Load() == 0; i++ {
		if i == 500 {
			t.Fatal("no discovery request after New")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err := p.AuthCodeURL(t.Context(), testRedirectURL, testState, op.verifier, testNonce)
	errContains(t, err, "discovery", "503")
	_, err = p.Callback(t.Context(), testRedirectURL, withCode(testCode), op.verifier, testNonce)
	errContains(t, err, "discovery")

	for i := 0; !discovered(p); i++ {
		if i > failures+1 {
			t.Fatalf("discovery still failing after %d forced retries: %v", i, err)
		}
		_, err = p.discover(t.Context(), true)
	}
	if got := op.discovery.Load(); got < failures+1 {
		t.Errorf("%d discovery requests, want %d failed ones and then one", got, failures)
	}
	raw, err := p.AuthCodeURL(t.Context(), testRedirectURL, testState, op.verifier, testNonce)
	if err != nil {
		t.Fatalf("AuthCodeURL after discovery: %v", err)
	}
	q := parseAuthURL(t, raw, op.URL+"/auth", op.verifier)
	if q.Get("nonce") != testNonce || q.Get("scope") != "openid email profile" {
		t.Errorf("nonce %q, scope %q; want %q, the default scopes", q.Get("nonce"), q.Get("scope"), testNonce)
	}
}

// An identity provider that is down when Caddy starts is used once it is back,
// without a request having to force it.
func TestOIDCDiscoveryInBackground(t *testing.T) {
	op := newFakeOP(t, 1)
	p := newOIDCFor(t, t.Context(), op)
	for i := 0; !discovered(p); i++ {
		if i == 1000 {
			t.Fatalf("not discovered after %d requests", op.discovery.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := p.AuthCodeURL(t.Context(), testRedirectURL, testState, op.verifier, testNonce); err != nil {
		t.Fatal(err)
	}
}

func TestOIDCCallback(t *testing.T) {
	op := newFakeOP(t, 0)
	p := newOIDCFor(t, t.Context(), op)
	op.idToken(t, nil)
	id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), op.verifier, testNonce)
	if err != nil {
		t.Fatal(err)
	}
	wantUser := map[string]any{"id": "alice", "name": "Alice Example", "email": "alice@example.com", "image": "https://img.example.com/alice"}
	if !reflect.DeepEqual(id.User, wantUser) {
		t.Errorf("user = %v, want %v", id.User, wantUser)
	}
	if id.Account["provider"] != "corp" || id.Account["type"] != "oidc" || id.Account["provider_account_id"] != "alice" ||
		id.Account["id_token"] != op.token["id_token"] || id.Account["access_token"] != testAccessToken {
		t.Errorf("account = %v", id.Account)
	}
	if id.Profile["sub"] != "alice" || id.Profile["iss"] != op.URL || id.Profile["email"] != "alice@example.com" {
		t.Errorf("profile = %v, want the ID token's claims", id.Profile)
	}
}

// TestOIDCUnverifiedEmail: the user's email is the profile's only when
// email_verified says so; the profile keeps the address either way.
func TestOIDCUnverifiedEmail(t *testing.T) {
	for _, tc := range []struct {
		name     string
		verified any // nil: no email_verified claim
		want     string
	}{
		{"verified", true, "alice@example.com"},
		{"verified, as a string", "true", "alice@example.com"},
		{"unverified", false, ""},
		{"unverified, as a string", "false", ""},
		{"no email_verified", nil, ""},
		{"email_verified of another type", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newFakeOP(t, 0)
			p := newOIDCFor(t, t.Context(), op)
			op.idToken(t, func(c map[string]any) {
				if tc.verified == nil {
					delete(c, "email_verified")
				} else {
					c["email_verified"] = tc.verified
				}
			})
			id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), op.verifier, testNonce)
			if err != nil {
				t.Fatal(err)
			}
			if id.User["email"] != tc.want {
				t.Errorf("user email = %v, want %q", id.User["email"], tc.want)
			}
			if id.Profile["email"] != "alice@example.com" {
				t.Errorf("profile email = %v, want the raw claim", id.Profile["email"])
			}
		})
	}
}

func TestOIDCCallbackRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(claims map[string]any) // nil: no id_token at all
		nonce string
		want  string
	}{
		{"no id_token", nil, testNonce, "id_token"},
		{"nonce mismatch", func(c map[string]any) { c["nonce"] = "another-nonce" }, testNonce, "nonce"},
		{"nonce missing from the token", func(c map[string]any) { delete(c, "nonce") }, testNonce, "nonce"},
		{"no nonce in the flow", func(map[string]any) {}, "", "nonce"},
		{"another audience", func(c map[string]any) { c["aud"] = "another-client" }, testNonce, "verifying"},
		{"another issuer", func(c map[string]any) { c["iss"] = "https://evil.example.com" }, testNonce, "verifying"},
		{"expired", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, testNonce, "verifying"},
		{"signed by another key", func(c map[string]any) { c["other key"] = true }, testNonce, "verifying"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newFakeOP(t, 0)
			p := newOIDCFor(t, t.Context(), op)
			if tc.edit != nil {
				op.idToken(t, tc.edit)
			}
			id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), op.verifier, tc.nonce)
			if err == nil {
				t.Fatalf("Callback succeeded with user %v", id.User)
			}
			errContains(t, err, tc.want)
		})
	}
}

func TestOIDCConfigErrors(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	base := Config{Kind: "oidc", Issuer: "https://idp.example.com", ClientID: testClientID, ClientSecret: testClientSecret}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"no issuer", func(c *Config) { c.Issuer = "" }, "missing issuer"},
		{"issuer not a URL", func(c *Config) { c.Issuer = "not-a-url" }, "issuer"},
		{"issuer ftp", func(c *Config) { c.Issuer = "ftp://x" }, "issuer"},
		{"issuer with a query", func(c *Config) { c.Issuer = "https://idp.example.com?tenant=1" }, "issuer"},
		{"issuer with credentials", func(c *Config) { c.Issuer = "https://u:p@idp.example.com" }, "issuer"},
		{"no client_id", func(c *Config) { c.ClientID = "" }, "missing client_id"},
		{"no client_secret", func(c *Config) { c.ClientSecret = "" }, "missing client_secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			_, err := New(canceled, c, offline, zap.NewNop())
			errContains(t, err, `"oidc"`, tc.want)
		})
	}
}

func TestGooglePreset(t *testing.T) {
	// A canceled context and a client without network: New must not need Google.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p, err := New(ctx, Config{Kind: "google", ClientID: testClientID, ClientSecret: testClientSecret}, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	g := p.(*oidcProvider)
	if g.ID() != "google" || g.Name() != "Google" || g.Type() != TypeOIDC || !g.UsesNonce() ||
		g.issuer != "https://accounts.google.com" || !reflect.DeepEqual(g.scopes, []string{"openid", "email", "profile"}) {
		t.Errorf("google preset: id %q, name %q, type %q, issuer %q, scopes %q", g.ID(), g.Name(), g.Type(), g.issuer, g.scopes)
	}
	_, err = g.AuthCodeURL(t.Context(), testRedirectURL, testState, "v", testNonce)
	errContains(t, err, "discovery")

	p, err = New(ctx, Config{Kind: "google", ID: "gw", Name: "Workspace", Issuer: "https://google.example.com",
		ClientID: testClientID, ClientSecret: testClientSecret}, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if g := p.(*oidcProvider); g.issuer != "https://google.example.com" || g.Name() != "Workspace" || g.ID() != "gw" {
		t.Errorf("google overrides: issuer %q, name %q, id %q", g.issuer, g.Name(), g.ID())
	}
	if _, err := New(ctx, Config{Kind: "google", ClientID: testClientID}, offline, zap.NewNop()); err == nil {
		t.Error("google without client_secret: no error")
	}
}
