package providers

import (
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

const (
	octocat = `{"login":"octocat","id":583231,"name":"The Octocat","email":"public@example.com",
		"avatar_url":"https://avatars.example.com/u/583231","company":"@github"}`
	// The public address is verified but not primary; an old one is neither.
	octoEmails = `[{"email":"public@example.com","primary":false,"verified":true},
		{"email":"old@example.com","primary":false,"verified":false},
		{"email":"octo@example.com","primary":true,"verified":true}]`
	octoOrgs = `[{"login":"acme","id":1},{"login":"widgets","id":2}]`
)

// newGitHubFake serves GitHub's token endpoint and API (under /api) for octocat
// and returns the provider configured for it.
func newGitHubFake(t *testing.T, scopes ...string) (*fakeOAuth, OAuth) {
	t.Helper()
	f := newFakeOAuth(t)
	f.api["/api/user"] = answer(http.StatusOK, octocat)
	f.api["/api/user/emails"] = answer(http.StatusOK, octoEmails)
	f.api["/api/user/orgs"] = answer(http.StatusOK, octoOrgs)
	p, err := New(t.Context(), Config{
		Kind:         "github",
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		AuthURL:      f.URL + "/login/oauth/authorize",
		TokenURL:     f.URL + "/token",
		APIURL:       f.URL + "/api/", // the trailing slash is tolerated
		Scopes:       scopes,
	}, f.Client(), zap.NewNop())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f, p.(OAuth)
}

func TestGitHubAuthCodeURL(t *testing.T) {
	f, p := newGitHubFake(t)
	if p.ID() != "github" || p.Name() != "GitHub" || p.Type() != TypeOAuth || p.UsesNonce() {
		t.Errorf("id %q, name %q, type %q, nonce %v; want github, GitHub, oauth, false", p.ID(), p.Name(), p.Type(), p.UsesNonce())
	}
	raw, err := p.AuthCodeURL(t.Context(), testRedirectURL, testState, f.verifier, "")
	if err != nil {
		t.Fatal(err)
	}
	q := parseAuthURL(t, raw, f.URL+"/login/oauth/authorize", f.verifier)
	if q.Get("scope") != "read:user user:email" {
		t.Errorf("scope = %q, want the default %q", q.Get("scope"), "read:user user:email")
	}
	if q.Has("nonce") || q.Has("client_secret") || q.Has("code_verifier") {
		t.Errorf("AuthCodeURL carries what it must not: %s", raw)
	}
}

func TestGitHubCallback(t *testing.T) {
	f, p := newGitHubFake(t)
	f.token["refresh_token"] = "the-refresh-token"
	f.token["expires_in"] = 28800
	f.token["scope"] = "read:user,user:email"
	before := time.Now().Unix()
	id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), f.verifier, "")
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().Unix()

	wantUser := map[string]any{
		"id":    "583231",
		"name":  "The Octocat",
		"email": "octo@example.com", // primary and verified, not the public one
		"image": "https://avatars.example.com/u/583231",
	}
	if !reflect.DeepEqual(id.User, wantUser) {
		t.Errorf("user = %v, want %v", id.User, wantUser)
	}

	exp, _ := id.Account["expires_at"].(int64)
	if exp < before+28800 || exp > after+28800 {
		t.Errorf("expires_at = %v, want now + 28800", id.Account["expires_at"])
	}
	delete(id.Account, "expires_at")
	wantAccount := map[string]any{
		"provider":            "github",
		"type":                "oauth",
		"provider_account_id": "583231",
		"access_token":        testAccessToken,
		"token_type":          "bearer",
		"refresh_token":       "the-refresh-token",
		"scope":               "read:user,user:email",
	}
	if !reflect.DeepEqual(id.Account, wantAccount) {
		t.Errorf("account = %v, want %v", id.Account, wantAccount)
	}

	if id.Profile["login"] != "octocat" || id.Profile["id"] != float64(583231) || id.Profile["company"] != "@github" ||
		id.Profile["email"] != "octo@example.com" {
		t.Errorf("profile = %v, want the /user object with the primary verified email", id.Profile)
	}
	if _, ok := id.Profile["orgs"]; ok || f.hits("/api/user/orgs") != 0 {
		t.Errorf("organizations fetched without read:org (profile %v)", id.Profile)
	}
}

func TestGitHubTokenWithoutExpiryOrRefresh(t *testing.T) {
	f, p := newGitHubFake(t)
	id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), f.verifier, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"expires_at", "refresh_token", "scope", "id_token"} {
		if v, ok := id.Account[k]; ok {
			t.Errorf("account[%q] = %v, want it absent", k, v)
		}
	}
}

func TestGitHubUserAndEmail(t *testing.T) {
	for _, tc := range []struct {
		name, user, emails string
		wantName           string
		wantEmail          any // in the profile; the user has "" for nil
	}{
		{"name null: login", `{"id":1,"login":"octocat","name":null}`, octoEmails, "octocat", "octo@example.com"},
		{"name missing: login", `{"id":1,"login":"octocat"}`, octoEmails, "octocat", "octo@example.com"},
		{"primary but unverified", `{"id":1,"login":"o","email":"public@example.com"}`,
			`[{"email":"p@example.com","primary":true,"verified":false},{"email":"v@example.com","primary":false,"verified":true}]`, "o", nil},
		{"no addresses: not the public one", `{"id":1,"login":"o","email":"public@example.com"}`, `[]`, "o", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, p := newGitHubFake(t)
			f.api["/api/user"] = answer(http.StatusOK, tc.user)
			f.api["/api/user/emails"] = answer(http.StatusOK, tc.emails)
			id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), f.verifier, "")
			if err != nil {
				t.Fatal(err)
			}
			if id.User["name"] != tc.wantName {
				t.Errorf("user name = %v, want %q", id.User["name"], tc.wantName)
			}
			if v, ok := id.Profile["email"]; !ok || v != tc.wantEmail {
				t.Errorf("profile email = %#v (present %v), want %#v", v, ok, tc.wantEmail)
			}
			wantUserEmail, _ := tc.wantEmail.(string)
			if id.User["email"] != wantUserEmail {
				t.Errorf("user email = %#v, want %q", id.User["email"], wantUserEmail)
			}
		})
	}
}

func TestGitHubOrgs(t *testing.T) {
	f, p := newGitHubFake(t, "read:user", "user:email", "read:org")
	raw, err := p.AuthCodeURL(t.Context(), testRedirectURL, testState, f.verifier, "")
	if err != nil {
		t.Fatal(err)
	}
	if q := parseAuthURL(t, raw, f.URL+"/login/oauth/authorize", f.verifier); q.Get("scope") != "read:user user:email read:org" {
		t.Errorf("scope = %q", q.Get("scope"))
	}
	id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), f.verifier, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []any{"acme", "widgets"}; !reflect.DeepEqual(id.Profile["orgs"], want) {
		t.Errorf("profile.orgs = %#v, want %#v", id.Profile["orgs"], want)
	}

	// No organizations is an empty list, so `"acme" in profile.orgs` is false, not an error.
	f.api["/api/user/orgs"] = answer(http.StatusOK, `[]`)
	id, err = p.Callback(t.Context(), testRedirectURL, withCode(testCode), f.verifier, "")
	if err != nil {
		t.Fatal(err)
	}
	if orgs, ok := id.Profile["orgs"].([]any); !ok || orgs == nil || len(orgs) != 0 {
		t.Errorf("profile.orgs = %#v, want an empty list", id.Profile["orgs"])
	}
}

// endless starts a JSON object and keeps writing until the client goes away
// (bounded, so that a broken client cannot make the test run forever).
func endless(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"id":1,"bio":"`))
	chunk := bytes.Repeat([]byte("a"), 32<<10)
	for range 4096 {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

func TestGitHubHostileResponses(t *testing.T) {
	huge := `{"id":1,"login":"o","bio":"` + strings.Repeat("a", 2<<20) + `"}`
	padded := `{"id":1,"login":"o"}` + strings.Repeat(" ", 2<<20)
	for _, tc := range []struct {
		name  string
		setup func(f *fakeOAuth)
	}{
		{"user 500", func(f *fakeOAuth) { f.api["/api/user"] = answer(http.StatusInternalServerError, `{"id":1}`) }},
		{"user 401", func(f *fakeOAuth) {
			f.api["/api/user"] = answer(http.StatusUnauthorized, `{"message":"Bad credentials"}`)
		}},
		{"user not JSON", func(f *fakeOAuth) { f.api["/api/user"] = answer(http.StatusOK, `<html>rate limited</html>`) }},
		{"user null", func(f *fakeOAuth) { f.api["/api/user"] = answer(http.StatusOK, `null`) }},
		{"user an array", func(f *fakeOAuth) { f.api["/api/user"] = answer(http.StatusOK, `[{"id":1}]`) }},
		{"user without id", func(f *fakeOAuth) { f.api["/api/user"] = answer(http.StatusOK, `{"login":"octocat"}`) }},
		{"user id not an integer", func(f *fakeOAuth) { f.api["/api/user"] = answer(http.StatusOK, `{"id":1.5,"login":"o"}`) }},
		{"user over 1 MiB", func(f *fakeOAuth) { f.api["/api/user"] = answer(http.StatusOK, huge) }},
		{"user padded over 1 MiB", func(f *fakeOAuth) { f.api["/api/user"] = answer(http.StatusOK, padded) }},
		{"user endless", func(f *fakeOAuth) { f.api["/api/user"] = endless }},
		{"emails 500", func(f *fakeOAuth) { f.api["/api/user/emails"] = answer(http.StatusInternalServerError, `[]`) }},
		{"emails not a list", func(f *fakeOAuth) { f.api["/api/user/emails"] = answer(http.StatusOK, `{"email":"x@example.com"}`) }},
		{"orgs 500", func(f *fakeOAuth) { f.api["/api/user/orgs"] = answer(http.StatusInternalServerError, `[]`) }},
		{"orgs endless", func(f *fakeOAuth) { f.api["/api/user/orgs"] = endless }},
		{"token error in a 200 (GitHub's way)", func(f *fakeOAuth) {
			f.token = map[string]any{"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."}
		}},
		{"token over 1 MiB", func(f *fakeOAuth) { f.token["padding"] = strings.Repeat("a", 2<<20) }},
		{"token endpoint expects another verifier", func(f *fakeOAuth) { f.verifier = "another-verifier-that-is-long-enough-for-pkce" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, p := newGitHubFake(t, "read:user", "user:email", "read:org")
			verifier := f.verifier
			tc.setup(f)
			id, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), verifier, "")
			if err == nil {
				t.Fatalf("Callback succeeded with %+v, want an error", id)
			}
		})
	}
}

func TestGitHubCallbackNeedsCodeAndVerifier(t *testing.T) {
	f, p := newGitHubFake(t)
	if _, err := p.Callback(t.Context(), testRedirectURL, withCode(""), f.verifier, ""); err == nil {
		t.Error("Callback with no code succeeded")
	}
	if _, err := p.Callback(t.Context(), testRedirectURL, withCode(testCode), "", ""); err == nil {
		t.Error("Callback with no PKCE verifier succeeded")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != 0 {
		t.Errorf("requests made: %v, want none", f.requests)
	}
}

func TestGitHubConfigErrors(t *testing.T) {
	ok := Config{Kind: "github", ClientID: testClientID, ClientSecret: testClientSecret}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"no client_id", func(c *Config) { c.ClientID = "" }, "missing client_id"},
		{"no client_secret", func(c *Config) { c.ClientSecret = "" }, "missing client_secret"},
		{"auth_url not http", func(c *Config) { c.AuthURL = "ftp://github.example.com/login" }, "auth_url"},
		{"token_url relative", func(c *Config) { c.TokenURL = "/login/oauth/access_token" }, "token_url"},
		{"api_url with credentials", func(c *Config) { c.APIURL = "https://u:p@github.example.com/api/v3" }, "api_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			_, err := New(t.Context(), c, offline, zap.NewNop())
			errContains(t, err, `"github"`, tc.want)
		})
	}
	p, err := New(t.Context(), ok, offline, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := p.(OAuth).AuthCodeURL(t.Context(), testRedirectURL, testState, "v", "")
	if err != nil || !strings.HasPrefix(raw, "https://github.com/login/oauth/authorize?") {
		t.Errorf("default AuthCodeURL = %q, %v; want GitHub's", raw, err)
	}
}
