package handlers

import (
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/authgate/caddy-authgate/callbacks"
)

// The benchmarks' requests do what they claim: a valid cookie reaches the next
// handler with the identity headers, a rejected one is redirected.
func TestGuardBenchmarkRequests(t *testing.T) {
	rl := benchRealm(t, nil)
	h := benchHandler(t, rl, &Handler{
		Require: []callbacks.Condition{{Expr: `token.email.endsWith("@example.com")`}},
		Headers: []HeaderConfig{{Name: "X-Email", Expr: "session.user.email"}},
	})
	valid := sessionCookie(t, rl, aliceClaims)

	r := benchRequest(valid)
	r.Header.Set("X-Email", "spoofed")
	var got http.Header
	next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		got = r.Header.Clone()
		return nil
	})
	w := &discard{h: http.Header{}}
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	if got == nil {
		t.Fatal("a valid session did not reach the next handler")
	}
	if got.Get("X-Email") != "alice@example.com" {
		t.Errorf("X-Email = %q, want alice@example.com", got.Get("X-Email"))
	}
	if c := got.Get("Cookie"); c != "" {
		t.Errorf("the session cookie reached the upstream: %q", c)
	}

	bad := *valid
	bad.Value = bad.Value[:len(bad.Value)-4] + "AAAA"
	got = nil
	w = &discard{h: http.Header{}}
	if err := h.ServeHTTP(w, benchRequest(&bad), next); err != nil {
		t.Fatal(err)
	}
	if got != nil {
		t.Fatal("a tampered session reached the next handler")
	}
	if loc := w.h.Get("Location"); loc == "" {
		t.Errorf("a tampered session was not redirected to sign in; headers %v", w.h)
	}
}

// The request variable that rules and webhooks see carries no cookies or credentials.
func TestRequestVarsLeaveOutSecrets(t *testing.T) {
	r := benchRequest(&http.Cookie{Name: "authgate.session-token", Value: "secret-token"})
	r.Header.Set("Authorization", "Bearer secret")
	r.Header.Set("Proxy-Authorization", "Basic secret")
	r.Header.Set("X-Tenant", "acme")
	h := requestVars(r)["headers"].(map[string]any)
	for _, k := range []string{"cookie", "authorization", "proxy-authorization"} {
		if v, ok := h[k]; ok {
			t.Errorf("request.headers[%q] = %v, want it left out", k, v)
		}
	}
	if h["x-tenant"] != "acme" {
		t.Errorf("request.headers[x-tenant] = %v, want acme", h["x-tenant"])
	}
}
