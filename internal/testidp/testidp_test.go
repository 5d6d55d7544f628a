package testidp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// rp is a minimal relying party: /login starts the authorization code flow
// with PKCE (S256) and a nonce, /cb exchanges the code, verifies the ID token
// and answers with its claims and the userinfo claims as JSON.
type rp struct {
	t        *testing.T
	srv      *httptest.Server
	oauth    oauth2.Config
	provider *oidc.Provider
	pending  sync.Map // state -> flow
}

type flow struct{ nonce, verifier string }

type cbResult struct {
	IDToken  map[string]any `json:"id_token"`
	UserInfo map[string]any `json:"userinfo"`
	Nonce    string         `json:"expected_nonce"`
	Iss      string         `json:"iss"` // RFC 9207 authorization response parameter
}

func newRP(t *testing.T) *rp {
	r := &rp{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", r.login)
	mux.HandleFunc("GET /cb", r.callback)
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *rp) login(w http.ResponseWriter, req *http.Request) {
	state, f := oauth2.GenerateVerifier(), flow{nonce: oauth2.GenerateVerifier(), verifier: oauth2.GenerateVerifier()}
	r.pending.Store(state, f)
	http.Redirect(w, req, r.oauth.AuthCodeURL(state, oidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier)), http.StatusFound)
}

func (r *rp) callback(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	if e := q.Get("error"); e != "" {
		http.Error(w, "authorization error: "+e+": "+q.Get("error_description"), http.StatusForbidden)
		return
	}
	v, ok := r.pending.LoadAndDelete(q.Get("state"))
	if !ok {
		http.Error(w, "unknown state", http.StatusBadRequest)
		return
	}
	f := v.(flow)
	ctx := req.Context()
	tok, err := r.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		http.Error(w, "exchange: "+err.Error(), http.StatusBadGateway)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.provider.Verifier(&oidc.Config{ClientID: r.oauth.ClientID}).Verify(ctx, raw)
	if err != nil {
		http.Error(w, "verify: "+err.Error(), http.StatusBadGateway)
		return
	}
	res := cbResult{Nonce: f.nonce, Iss: q.Get("iss")}
	if err := idt.Claims(&res.IDToken); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ui, err := r.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		http.Error(w, "userinfo: "+err.Error(), http.StatusBadGateway)
		return
	}
	if err := ui.Claims(&res.UserInfo); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

func TestProviderSignsInThroughForms(t *testing.T) {
	r := newRP(t)
	idp := testidp.Start(t, testidp.Options{
		Clients: []testidp.Client{{ID: "authgate", Secret: "authgate-secret", RedirectURIs: []string{r.srv.URL + "/cb"}}},
		Accounts: map[string]map[string]any{
			"alice": {
				"email": "alice@example.com", "email_verified": true, "name": "Alice Example",
				"groups": []string{"admins", "staff"}, "department": "engineering",
			},
		},
	})

	ctx := context.Background()
	var err error
	r.provider, err = oidc.NewProvider(ctx, idp.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	r.oauth = oauth2.Config{
		ClientID: "authgate", ClientSecret: "authgate-secret",
		Endpoint:    r.provider.Endpoint(),
		RedirectURL: r.srv.URL + "/cb",
		Scopes:      []string{oidc.ScopeOpenID, "email", "profile", "groups"},
	}

	t.Run("alice", func(t *testing.T) {
		client := browser(t)
		page, err := client.Get(r.srv.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp := testidp.Login(t, client, page, "alice")
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/cb" {
			t.Fatalf("final response %s at %s, want 200 at /cb", resp.Status, resp.Request.URL)
		}
		var res cbResult
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			t.Fatal(err)
		}
		t.Logf("ID token claims: %v", res.IDToken)
		t.Logf("userinfo claims: %v", res.UserInfo)
		if res.Iss != idp.Issuer {
			t.Errorf("authorization response iss = %q, want %q", res.Iss, idp.Issuer)
		}
		for name, claims := range map[string]map[string]any{"ID token": res.IDToken, "userinfo": res.UserInfo} {
			want := map[string]any{
				"sub": "alice", "email": "alice@example.com", "email_verified": true,
				"name": "Alice Example", "department": "engineering",
			}
			for k, v := range want {
				if claims[k] != v {
					t.Errorf("%s %s = %v, want %v", name, k, claims[k], v)
				}
			}
			groups, _ := claims["groups"].([]any)
			if !slices.Equal(groups, []any{"admins", "staff"}) {
				t.Errorf("%s groups = %v, want [admins staff]", name, claims["groups"])
			}
		}
		if res.IDToken["nonce"] != res.Nonce {
			t.Errorf("ID token nonce = %v, want %q", res.IDToken["nonce"], res.Nonce)
		}

		// With the provider session and grant in the jar, a second sign-in
		// needs no forms.
		resp2, err := client.Get(r.srv.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusOK || resp2.Request.URL.Path != "/cb" {
			t.Errorf("second sign-in: %s at %s, want 200 at /cb", resp2.Status, resp2.Request.URL)
		}
	})

	t.Run("unknown account", func(t *testing.T) {
		client := browser(t)
		page, err := client.Get(r.srv.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp := testidp.Login(t, client, page, "mallory")
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Request.URL.Host != mustHost(t, idp.Issuer) {
			t.Fatalf("login as unknown account: %s at %s, want 400 at the provider", resp.Status, resp.Request.URL)
		}
	})

	t.Run("Authorize", func(t *testing.T) {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		rpClient := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		start, err := rpClient.Get(r.srv.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		start.Body.Close()
		authURL, err := start.Location()
		if err != nil {
			t.Fatalf("/login: %s without a Location: %v", start.Status, err)
		}
		cb := testidp.Authorize(t, jar, authURL, "alice")
		if cb.Host != mustHost(t, r.srv.URL) || cb.Path != "/cb" || cb.Query().Get("code") == "" || cb.Query().Get("state") == "" {
			t.Fatalf("Authorize returned %s, want the relying party's /cb with code and state", cb)
		}
		// The relying party's callback accepts what the provider sent back.
		resp, err := rpClient.Get(cb.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the relying party's callback answered %s", resp.Status)
		}
	})

	t.Run("stop", func(t *testing.T) {
		idp.Stop()
		idp.Stop()
		if resp, err := http.Get(idp.Issuer + "/.well-known/openid-configuration"); err == nil {
			resp.Body.Close()
			t.Fatalf("provider still answers after Stop: %s", resp.Status)
		}
	})
}

func mustHost(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
