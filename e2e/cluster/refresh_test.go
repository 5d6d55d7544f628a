package cluster

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testenv"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testredis"
)

// signInOIDC signs account in on the instance through the provider "oidc" (a
// real OpenID Provider) and returns the session cookie's value. The browser
// stops at authgate's answer to the callback: it does not load the page it is
// sent to, so the new session is not used yet.
func signInOIDC(t *testing.T, in *instance, idp *testidp.IDP, account string) string {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return signInOIDCWith(t, in, jar, account)
}

// signInOIDCWith is signInOIDC with the browser's cookie jar at the provider
// given, so that the test can use the provider session afterwards.
func signInOIDCWith(t *testing.T, in *instance, jar http.CookieJar, account string) string {
	t.Helper()
	tok, c := csrf(t, in)
	r := mustDo(t, request{method: http.MethodPost, url: in.base + "/.auth/signin/oidc", accept: htmlAccept,
		cookies: []*http.Cookie{c}, form: url.Values{"csrfToken": {tok}, "callbackUrl": {in.base + "/app"}}})
	wantStatus(t, r, http.StatusFound)
	state := setCookie(r, stateCookie)
	if state == nil {
		t.Fatalf("%s set no state cookie: %v", r.what, r.Header.Values("Set-Cookie"))
	}
	authURL, err := r.Location()
	if err != nil {
		t.Fatal(err)
	}

	// At the provider: a browser with a cookie jar of its own.
	cb := testidp.Authorize(t, jar, authURL, account)

	r = mustDo(t, request{url: cb.String(), accept: htmlAccept, cookies: []*http.Cookie{{Name: state.Name, Value: state.Value}}})
	wantStatus(t, r, http.StatusFound)
	if loc := r.Header.Get("Location"); loc != in.base+"/app" {
		t.Fatalf("%s: Location %q, want %s/app", r.what, loc, in.base)
	}
	sc := setCookie(r, sessionCookie)
	if sc == nil || sc.Value == "" {
		t.Fatalf("%s set no session cookie: %v", r.what, r.Header.Values("Set-Cookie"))
	}
	return sc.Value
}

// TestRefreshRotation checks refresh_access_token against a real provider
// that rotates refresh tokens (each one works once; presenting a used one
// revokes the grant) and issues access tokens for 2 seconds, so that a fresh
// session is due for a refresh at once (authgate refreshes 30s before expiry).
// Two instances share Redis. Fifty concurrent requests with the same due
// cookie, half on each instance, cause exactly one refresh at the provider:
// every response sets the same new cookie and the upstream sees the new access
// token everywhere. Then the provider refuses the refresh token: the next
// request is signed out and the session endpoint tells why.
func TestRefreshRotation(t *testing.T) {
	rs := testredis.NewServer(t)
	const prefix = "refresh:"
	up := newUpstream(t)
	portA, portB := testenv.FreePort(t), testenv.FreePort(t)
	client := testidp.Client{ID: "rt-client", Secret: "rt-client-secret", RedirectURIs: []string{
		fmt.Sprintf("http://127.0.0.1:%d/.auth/callback/oidc", portA),
		fmt.Sprintf("http://127.0.0.1:%d/.auth/callback/oidc", portB),
	}}
	idp := testidp.Start(t, testidp.Options{
		Clients:       []testidp.Client{client},
		Accounts:      map[string]map[string]any{"alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice Example"}},
		TTL:           map[string]int{"AccessToken": 2},
		RefreshTokens: true,
	})
	cfg := siteConfig{
		Realm: fmt.Sprintf("\t\tprovider oidc {\n\t\t\tissuer %s\n\t\t\tclient_id %s\n\t\t\tclient_secret %s\n\t\t\tscopes openid email profile offline_access\n\t\t}\n",
			idp.Issuer, client.ID, client.Secret) +
			redisStore(rs.Addr, prefix) +
			"\t\tcallbacks {\n\t\t\tsign_in {\n\t\t\t\tdefault allow\n\t\t\t}\n\t\t\tjwt {\n\t\t\t\trefresh_access_token\n\t\t\t}\n\t\t}\n",
		Directive: "authgate {\n\t\theader X-Access-Token " + bt + "token.access_token" + bt + "\n\t}",
	}
	a := startInstanceOn(t, "A", portA, up, false, cfg)
	b := startInstanceOn(t, "B", portB, up, false, cfg)

	old := signInOIDC(t, a, idp, "alice")
	claims := mustDecode(t, testSecret, old)
	at0, _ := claims["access_token"].(string)
	rt0, _ := claims["refresh_token"].(string)
	exp0, _ := claims["expires_at"].(float64)
	if at0 == "" || rt0 == "" || exp0 == 0 {
		t.Fatalf("the session token holds no provider tokens: access_token %q, refresh_token %q, expires_at %v", at0, rt0, claims["expires_at"])
	}
	if left := time.Until(time.Unix(int64(exp0), 0)); left > 5*time.Second {
		t.Fatalf("the access token expires in %v, want about 2s (the provider's TTL)", left)
	}
	before := idp.TokenRequests(t)
	if before["authorization_code"] != 1 || before["refresh_token"] != 0 {
		t.Fatalf("token requests after sign-in: %v, want one authorization_code", before)
	}

	// Fifty requests at once with the same due cookie, half on each instance.
	const n = 50
	answers := make([]response, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		in := a
		if i%2 == 1 {
			in = b
		}
		wg.Go(func() {
			<-start
			answers[i], errs[i] = do(request{url: in.base + "/app", accept: jsonAccept, cookies: []*http.Cookie{sessionC(old)}})
		})
	}
	close(start)
	wg.Wait()

	after := idp.TokenRequests(t)
	if got := after["refresh_token"] - before["refresh_token"]; got != 1 {
		t.Errorf("the provider got %d refresh_token grant requests for one due session, want exactly 1 (token requests: %v)", got, after)
	}
	t.Logf("%d concurrent requests (half on each instance) with one due session: %d refresh_token grant request(s) at the provider",
		n, after["refresh_token"]-before["refresh_token"])
	var fresh string
	for i, r := range answers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		wantStatus(t, r, http.StatusOK)
		sc := setCookie(r, sessionCookie)
		if sc == nil {
			continue
		}
		if fresh == "" {
			fresh = sc.Value
		}
		if sc.Value != fresh || sc.MaxAge <= 0 {
			t.Fatalf("%s set another session cookie than the others (or cleared it): the refresh was not shared", r.what)
		}
	}
	if fresh == "" || fresh == old {
		t.Fatal("no response re-issued the session cookie after the refresh")
	}
	nc := mustDecode(t, testSecret, fresh)
	at1, _ := nc["access_token"].(string)
	rt1, _ := nc["refresh_token"].(string)
	if at1 == "" || at1 == at0 || rt1 == "" || rt1 == rt0 || nc["error"] != nil {
		t.Fatalf("refreshed token: access_token %q (was %q), refresh_token rotated %v, error %v", at1, at0, rt1 != rt0, nc["error"])
	}
	for _, r := range answers {
		if got := upstreamSaw(t, r).AccessToken; got != at1 {
			t.Fatalf("%s: the upstream saw access token %q, want the refreshed %q", r.what, got, at1)
		}
	}
	for _, in := range []*instance{a, b} {
		if n := in.logCount("refresh lock unavailable"); n > 0 {
			t.Errorf("instance %s refreshed without the store's lock %d times", in.name, n)
		}
		// Later requests with the old cookie get the same new token, without
		// another refresh.
		r := api(t, in.base+"/app", old)
		wantStatus(t, r, http.StatusOK)
		if sc := setCookie(r, sessionCookie); sc == nil || sc.Value != fresh {
			t.Errorf("%s: a late request with the old cookie was not given the refreshed token", r.what)
		}
	}
	if got := idp.TokenRequests(t)["refresh_token"]; got != after["refresh_token"] {
		t.Errorf("late requests with the old cookie caused %d more refreshes", got-after["refresh_token"])
	}

	// The provider revokes the current refresh token. The refreshed access
	// token, too, expires within 30s: the next request refreshes, is refused,
	// and is signed out; the session endpoint tells the client why.
	idp.RevokeToken(t, client, rt1)
	before = idp.TokenRequests(t)
	r := api(t, a.base+"/app", fresh)
	wantSignedOut(t, r)
	// golang.org/x/oauth2 tries a refused token request again with the client
	// credentials in the body instead of the Authorization header (it probes
	// the provider's authentication style): one or two requests.
	refused := idp.TokenRequests(t)
	if got := refused["refresh_token"] - before["refresh_token"]; got < 1 || got > 2 {
		t.Errorf("the refused refresh made %d refresh_token grant requests, want 1 (or 2: see above)", got)
	}
	failed := setCookie(r, sessionCookie)
	if failed == nil || failed.Value == "" {
		t.Fatalf("%s: the failed refresh re-issued no cookie: %v", r.what, r.Header.Values("Set-Cookie"))
	}
	fc := mustDecode(t, testSecret, failed.Value)
	if fc["error"] != "RefreshAccessTokenError" || fc["access_token"] != nil || fc["refresh_token"] != nil {
		t.Errorf("token after the failed refresh: error %v, provider tokens kept: %v", fc["error"], fc["access_token"] != nil || fc["refresh_token"] != nil)
	}
	for _, in := range []*instance{a, b} {
		for _, v := range []string{fresh, failed.Value} {
			r := api(t, in.base+"/.auth/session", v)
			wantStatus(t, r, http.StatusOK)
			if m, err := jsonBody(r); err != nil || m["error"] != "RefreshAccessTokenError" || len(m) != 1 {
				t.Errorf("%s: %q, want {\"error\":\"RefreshAccessTokenError\"}", r.what, r.Body)
			}
			wantSignedOut(t, api(t, in.base+"/app", v))
			r = navigate(t, in.base+"/app", v)
			wantStatus(t, r, http.StatusFound)
		}
	}
	if got := idp.TokenRequests(t)["refresh_token"] - refused["refresh_token"]; got != 0 {
		t.Errorf("the signed-out session went on refreshing: %d more refresh_token grant requests", got)
	}
}
