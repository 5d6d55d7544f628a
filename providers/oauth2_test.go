package providers

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func oauth2Config(f *fakeOAuth) Config {
	return Config{
		Kind:         "oauth2",
		ID:           "acme",
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		AuthURL:      f.URL + "/authorize",
		TokenURL:     f.URL + "/token",
		UserinfoURL:  f.URL + "/userinfo",
		Scopes:       []string{"profile", "email"},
	}
}

func newOAuth2Fake(t *testing.T, userinfo string) (*fakeOAuth, OAuth) {
	t.Helper()
	f := newFakeOAuth(t)
	f.api["/userinfo"] = answer(http.StatusOK, userinfo)
	p, err := New(t.Context(), oauth2Config(f), f.Client(), zap.NewNop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f, p.(OAuth)
}

func TestOAuth2AuthCodeURL(t *testing.T) {
	f, p := newOAuth2Fake(t, `{}`)
	if p.ID() != "acme" || p.Name() != "acme" || p.Type() != TypeOAuth || p.UsesNonce() {
		t.Errorf("id %q, name %q, type %q, nonce %v; want acme, acme, oauth, false", p.ID(), p.Name(), p.Type(), p.UsesNonce())
	}
	raw, err := p.AuthCodeURL(t.Context(), testRedirectURL, testState, f.verifier, "")
	if err != nil {
		t.Fatal(err)
	}
	if q := parseAuthURL(t, raw, f.URL+"/authorize", f.verifier); q.Get("scope") != "profile email" {
		t.Errorf("scope = %q, want %q", q.Get("scope"), "profile email")
	}
}

func TestOAuth2Userinfo(t *testing.T) {
	for _, tc := range []struct {
		name, userinfo string
		want           map[string]any
	}{
		{"sub", `{"sub":"abc-123","name":"Ann","email":"ann@example.com","email_verified":true,"picture":"https://img.example.com/ann"}`,
			map[string]any{"id": "abc-123", "name": "Ann", "email": "ann@example.com", "image": "https://img.example.com/ann"}},
		{"unverified email", `{"sub":"abc-123","email":"ann@example.com","email_verified":false}`,
			map[string]any{"id": "abc-123", "name": "", "email": "", "image": ""}},
		{"email without email_verified", `{"sub":"abc-123","email":"ann@example.com"}`,
			map[string]any{"id": "abc-123", "name": "", "email": "", "image": ""}},
		{"numeric id", `{"id":42,"login":"ann","avatar_url":"https://img.example.com/42"}`,
			map[string]any{"id": "42", "name": "ann", "email": "", "image": "https://img.example.com/42"}},
		{"string id", `{"id":"u-42","preferred_username":"ann"}`,
			map[string]any{"id": "u-42", "name": "ann", "email": "", "image": ""}},
		{"sub wins over id", `{"sub":"s-1","id":7}`,
			map[string]any{"id": "s-1", "name": "", "email": "", "image": ""}},
		{"largest exact numeric id", `{"id":9007199254740991}`,
			map[string]any{"id": "9007199254740991", "name": "", "email": "", "image": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, p := newOAuth2Fake(t, tc.userinfo)
			id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), f.verifier, "")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(id.User, tc.want) {
				t.Errorf("user = %v, want %v", id.User, tc.want)
			}
			if id.Account["provider"] != "acme" || id.Account["type"] != "oauth" ||
				id.Account["provider_account_id"] != tc.want["id"] || id.Account["access_token"] != testAccessToken {
				t.Errorf("account = %v", id.Account)
			}
			if len(id.Profile) == 0 {
				t.Errorf("profile is empty, want the userinfo response")
			}
		})
	}
}

func TestOAuth2UserinfoErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"no id", http.StatusOK, `{"name":"Ann","email":"ann@example.com"}`},
		{"empty sub and no id", http.StatusOK, `{"sub":""}`},
		{"sub not a string", http.StatusOK, `{"sub":5}`},
		{"fractional id", http.StatusOK, `{"id":1.5}`},
		// Past 2^53 a float64 cannot tell neighbouring ids apart: two users would share one account.
		{"id beyond float precision", http.StatusOK, `{"id":9007199254740993}`},
		{"boolean id", http.StatusOK, `{"id":true}`},
		{"null", http.StatusOK, `null`},
		{"not JSON", http.StatusOK, `sub=abc`},
		{"status 500", http.StatusInternalServerError, `{"sub":"abc"}`},
		{"over 1 MiB", http.StatusOK, `{"sub":"abc","x":"` + strings.Repeat("a", 2<<20) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, p := newOAuth2Fake(t, "")
			f.api["/userinfo"] = answer(tc.status, tc.body)
			if id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), f.verifier, ""); err == nil {
				t.Errorf("Callback succeeded with user %v, want an error", id.User)
			}
		})
	}
}

func TestOAuth2ConfigErrors(t *testing.T) {
	base := Config{
		Kind: "oauth2", ClientID: testClientID, ClientSecret: testClientSecret,
		AuthURL: "https://idp.example.com/authorize", TokenURL: "https://idp.example.com/token",
		UserinfoURL: "https://idp.example.com/userinfo",
	}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want []string
	}{
		{"no auth_url", func(c *Config) { c.AuthURL = "" }, []string{`"oauth2"`, "missing auth_url"}},
		{"no token_url", func(c *Config) { c.TokenURL = "" }, []string{`"oauth2"`, "missing token_url"}},
		{"no userinfo_url", func(c *Config) { c.UserinfoURL = "" }, []string{`"oauth2"`, "missing userinfo_url"}},
		{"userinfo_url not http", func(c *Config) { c.UserinfoURL = "ftp://idp.example.com/me" }, []string{"userinfo_url", "http(s)"}},
		{"token_url relative", func(c *Config) { c.TokenURL = "/token" }, []string{"token_url"}},
		{"no client_id", func(c *Config) { c.ClientID = "" }, []string{"missing client_id"}},
		{"no client_secret", func(c *Config) { c.ClientSecret = "" }, []string{"missing client_secret"}},
		{"id named in errors", func(c *Config) { c.ID = "corp"; c.AuthURL = "" }, []string{`"corp"`, "missing auth_url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			_, err := New(t.Context(), c, offline, zap.NewNop())
			errContains(t, err, tc.want...)
		})
	}
	p, err := New(t.Context(), base, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != "oauth2" {
		t.Errorf("id = %q, want the type", p.ID())
	}
}
