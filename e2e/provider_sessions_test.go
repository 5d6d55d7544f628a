package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// clientRedirect is where the API clients of these tests are sent back with
// their code; nothing listens there, the code is read from the URL.
const clientRedirect = "http://127.0.0.1:1/callback"

// idToken signs account in at the provider as client, through a real
// authorization code flow with PKCE, and returns the ID token.
func idToken(t *testing.T, idp *testidp.IDP, c testidp.Client, account string) string {
	t.Helper()
	conf := &oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: clientRedirect, Scopes: []string{"openid", "email", "profile", "groups"},
		Endpoint: oauth2.Endpoint{AuthURL: idp.Issuer + "/auth", TokenURL: idp.Issuer + "/token"}}
	verifier := oauth2.GenerateVerifier()
	auth, _ := url.Parse(conf.AuthCodeURL("state-"+account, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n-"+account)))
	jar, _ := cookiejar.New(nil)
	cb := testidp.Authorize(t, jar, auth, account)
	tok, err := conf.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchanging %s's code: %v", account, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token")
	}
	return raw
}

// TestBearerTokens: an API client's ID token from the provider is a session
// (sign_in, jwt, require and header apply, no cookie); tampered, expired,
// foreign and other-audience tokens get RFC 6750's 401, never a redirect.
func TestBearerTokens(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	api := testidp.Client{ID: "api-client", Secret: "api-client-secret", RedirectURIs: []string{clientRedirect}}
	other := testidp.Client{ID: "other-client", Secret: "other-client-secret", RedirectURIs: []string{clientRedirect}}
	accounts := map[string]map[string]any{
		"alice": alice,
		"bob":   {"email": "bob@example.com", "email_verified": true, "name": "Bob", "groups": []string{"staff"}},
		"carol": {"email": "carol@example.com", "email_verified": true, "name": "Carol", "groups": []string{}},
	}
	idp := testidp.Start(t, testidp.Options{Clients: []testidp.Client{api, other}, Accounts: accounts, TTL: map[string]int{"IdToken": 4}})
	foreign := testidp.Start(t, testidp.Options{Clients: []testidp.Client{api}, Accounts: accounts})
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock(fmt.Sprintf(`		provider oidc api {
			issuer %s
			client_id api-client
			client_secret api-client-secret
			bearer
		}
		callbacks {
			sign_in {
				deny email bob@example.com
				default allow
			}
			jwt {
				set groups `+bt+`profile.groups`+bt+`
			}
		}
`, idp.Issuer))+siteBlock(port, "authgate {\n\t\trequire `\"staff\" in token.groups`\n\t\theader X-Who `token.email`\n\t}", up.URL))

	aliceTok := idToken(t, idp, api, "alice")
	b := newBrowser(t)
	r := b.navigate(base+"/api", "Authorization", "Bearer "+aliceTok)
	wantStatus(t, r, http.StatusOK)
	if got := up.Last(t).HeaderValues("X-Who"); len(got) != 1 || got[0] != "alice@example.com" {
		t.Errorf("the upstream saw X-Who %v for alice's bearer token", got)
	}
	if sc := r.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("a bearer request set cookies: %v", sc)
	}

	// A bearer token's cached session is no cookie's: a session cookie that
	// holds "bearer <token>" is no session. (It found the bearer's entry in the
	// cache, and POST /.auth/session then issued a session cookie, with max_age
	// ahead of it, from a bearer token.)
	cookieBrowser := newBrowser(t)
	asCookie := []string{"Cookie", sessionCookie + "=bearer " + aliceTok}
	wantStatus(t, cookieBrowser.get(base+"/api", "application/json", asCookie...), http.StatusUnauthorized)
	if s := cookieBrowser.get(base+"/.auth/session", "application/json", asCookie...); strings.TrimSpace(s.Body) != "{}" {
		t.Errorf("GET /.auth/session with the bearer token as a cookie = %s, want {}", s.Body)
	}
	form := url.Values{"csrfToken": {cookieBrowser.csrfToken(base)}, "data": {`{"x":1}`}}
	req, err := http.NewRequest(http.MethodPost, base+"/.auth/session", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(asCookie[0], asCookie[1]) // the jar adds the CSRF cookie
	upd := cookieBrowser.do(req)
	if c := setCookie(upd, sessionCookie); c != nil && c.Value != "" {
		t.Errorf("POST /.auth/session with the bearer token as a cookie set a session cookie (%d %s)", upd.StatusCode, upd.Body)
	}

	refused := func(name, token string) {
		t.Helper()
		n := up.Count()
		r := b.navigate(base+"/api", "Authorization", "Bearer "+token)
		if r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` || !strings.Contains(r.Body, "invalid_token") {
			t.Errorf("%s: %d WWW-Authenticate %q %s; want 401 Bearer error=\"invalid_token\"", name, r.StatusCode, r.Header.Get("WWW-Authenticate"), r.Body)
		}
		if up.Count() != n {
			t.Errorf("%s reached the upstream", name)
		}
	}
	parts := strings.Split(aliceTok, ".")
	sig := []byte(parts[2])
	sig[5] ^= 1
	refused("a tampered token", parts[0]+"."+parts[1]+"."+string(sig))
	refused("a token for another audience", idToken(t, idp, other, "alice"))
	refused("a token of another issuer", idToken(t, foreign, api, "alice"))
	refused("a token sign_in denies", idToken(t, idp, api, "bob"))
	refused("garbage", "not-a-jwt")

	// require applies: carol passes sign_in but is not staff.
	wantStatus(t, b.api(base+"/api", "Authorization", "Bearer "+idToken(t, idp, api, "carol")), http.StatusForbidden)

	// Expired: the same token that worked, once its 4 s are over.
	time.Sleep(5 * time.Second)
	refused("an expired token", aliceTok)
}

// logoutRecorder forwards the provider's back-channel logout requests to
// authgate and keeps their bodies, so that a test can replay one.
type logoutRecorder struct {
	target string
	mu     sync.Mutex
	bodies []string
	codes  []int
}

func (l *logoutRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	resp, err := http.Post(l.target, "application/x-www-form-urlencoded", bytes.NewReader(body))
	code := http.StatusBadGateway
	if err == nil {
		code = resp.StatusCode
		resp.Body.Close()
	}
	l.mu.Lock()
	l.bodies, l.codes = append(l.bodies, string(body)), append(l.codes, code)
	l.mu.Unlock()
	w.WriteHeader(code)
}

// TestSignOutAtProvider: sign-out ends at the provider's end_session_endpoint
// with id_token_hint and the checked post_logout_redirect_uri; the provider
// then ends the session by back-channel logout. And a logout at the provider
// ends that user's authgate session, another user's lives on; a replayed or
// forged logout token ends nothing.
func TestSignOutAtProvider(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	rec := &logoutRecorder{target: base + "/.auth/backchannel-logout/oidc"}
	recorder := httptest.NewServer(rec)
	defer recorder.Close()
	client := testidp.Client{ID: "oidc-client", Secret: "oidc-client-secret", RedirectURIs: []string{base + "/.auth/callback/oidc"},
		PostLogoutRedirectURIs: []string{base + "/"}, BackchannelLogoutURI: recorder.URL + "/logout"}
	idp := testidp.Start(t, testidp.Options{Clients: []testidp.Client{client}, Accounts: map[string]map[string]any{
		"alice": alice, "bob": {"email": "bob@example.com", "email_verified": true, "name": "Bob"},
	}})
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock(fmt.Sprintf(`		provider oidc {
			issuer %s
			client_id oidc-client
			client_secret oidc-client-secret
			sign_out_at_provider
		}
`, idp.Issuer))+siteBlock(port, "authgate", up.URL))

	// Logout at the provider (another device, an administrator): back-channel.
	a, bob := newBrowser(t), newBrowser(t)
	wantLocation(t, a.signInOIDC(base, "oidc", base+"/app", "alice"), base+"/app")
	wantLocation(t, bob.signInOIDC(base, "oidc", base+"/app", "bob"), base+"/app")
	wantStatus(t, a.navigate(base+"/app"), http.StatusOK)
	testidp.EndSession(t, a.jar, idp.Issuer+"/session/end?client_id=oidc-client")
	var codes []int
	var bodies []string
	defer func() {
		if t.Failed() {
			t.Logf("provider output:\n%s", idp.Output())
		}
	}()
	took := testsite.Eventually(t, 10*time.Second, "the provider's back-channel logout request", func() error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		codes, bodies = append([]int(nil), rec.codes...), append([]string(nil), rec.bodies...)
		if len(codes) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	t.Logf("the provider's logout token arrived %v after the sign-out at the provider", took)
	if t.Failed() {
		t.Logf("provider output:\n%s", idp.Output())
	}
	if len(codes) != 1 || codes[0] != http.StatusOK {
		t.Fatalf("back-channel logout requests answered %v, want one 200", codes)
	}
	wantSignInRedirect(t, a.navigate(base+"/app"), base+"/app")
	wantStatus(t, bob.navigate(base+"/app"), http.StatusOK)

	// Replayed, tampered and garbage logout tokens: 400, and bob stays.
	for name, body := range map[string]string{
		"replayed": bodies[0],
		"tampered": strings.Replace(bodies[0], "logout_token=ey", "logout_token=eyX", 1),
		"garbage":  "logout_token=nope",
		"missing":  "",
	} {
		resp, err := http.Post(base+"/.auth/backchannel-logout/oidc", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a %s logout token: %d, want 400", name, resp.StatusCode)
		}
	}
	wantStatus(t, bob.navigate(base+"/app"), http.StatusOK)

	// RP-initiated: bob signs out at authgate and lands at the provider.
	r := bob.signOut(base)
	loc := wantRedirect(t, r)
	if !strings.HasPrefix(loc.String(), idp.Issuer+"/session/end") || loc.Query().Get("id_token_hint") == "" ||
		loc.Query().Get("post_logout_redirect_uri") != base+"/" || loc.Query().Get("client_id") != "oidc-client" {
		t.Fatalf("sign-out sent the browser to %s, want the provider's end_session_endpoint with id_token_hint and post_logout_redirect_uri %s/", loc, base)
	}
	wantSignInRedirect(t, bob.navigate(base+"/app"), base+"/app")
	back := testidp.EndSession(t, bob.jar, loc.String())
	if back == nil || back.String() != base+"/" {
		t.Errorf("after the provider's sign-out the browser went to %v, want %s/", back, base)
	}
}
