package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testsite"
	"github.com/authgate/caddy-authgate/session"
)

const (
	sessionMaxAge = 30 * 24 * 60 * 60 // seconds: the default session max_age
	stateMaxAge   = 15 * 60           // seconds: the OAuth state cookie's lifetime
)

// alice is the identity provider's account the OIDC tests sign in as.
var alice = map[string]any{
	"email": "alice@example.com", "email_verified": true, "name": "Alice Example",
	"groups": []string{"admins", "staff"}, "department": "engineering",
}

// startIDP starts the identity provider with one client per provider id, each
// registered with authgate's redirect URI on base.
func startIDP(t *testing.T, base string, ids ...string) *testidp.IDP {
	t.Helper()
	var clients []testidp.Client
	for _, id := range ids {
		clients = append(clients, testidp.Client{ID: id + "-client", Secret: id + "-client-secret",
			RedirectURIs: []string{base + "/.auth/callback/" + id}})
	}
	return testidp.Start(t, testidp.Options{Clients: clients, Accounts: map[string]map[string]any{"alice": alice}})
}

// oidcProvider is a realm's `provider oidc <id>` block for the client startIDP registered.
func oidcProvider(id, issuer string) string {
	return fmt.Sprintf("\t\tprovider oidc %s {\n\t\t\tissuer %s\n\t\t\tclient_id %s-client\n\t\t\tclient_secret %s-client-secret\n\t\t\tscopes openid email profile groups\n\t\t}\n",
		id, issuer, id, id)
}

// TestOIDCSignInFlow walks a browser through signing in with a real OpenID
// Provider, using the session at the upstream and the REST endpoints, and
// signing out; and checks what signed-out requests get.
func TestOIDCSignInFlow(t *testing.T) {
	port, port401 := testcaddy.FreePort(t), testcaddy.FreePort(t)
	base, base401 := origin(port), origin(port401)
	idp := startIDP(t, base, "oidc")
	up := testsite.NewUpstream(t, testsite.OK)
	testcaddy.Start(t, globalBlock(oidcProvider("oidc", idp.Issuer)+
		"\t\tcallbacks {\n\t\t\tjwt {\n\t\t\t\tset provider_sub `account.provider_account_id`\n\t\t\t}\n\t\t}\n")+
		siteBlock(port, "authgate", up.URL)+
		siteBlock(port401, "authgate {\n\t\tunauthenticated status 401\n\t}", up.URL))

	b := newBrowser(t)
	target := base + "/app?x=1"

	// Signed out: browsers are sent to sign in, everything else gets 401.
	r := b.navigate(target)
	wantSignInRedirect(t, r, target)
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("sign-in redirect Cache-Control %q, want no-store", cc)
	}
	wantSessionRequired(t, b.api(target), http.StatusUnauthorized)
	wantSessionRequired(t, b.get(target, ""), http.StatusUnauthorized)
	wantSessionRequired(t, b.navigate(target, "X-Requested-With", "XMLHttpRequest"), http.StatusUnauthorized)
	wantSessionRequired(t, b.post(target, url.Values{"a": {"b"}}), http.StatusUnauthorized)
	wantSessionRequired(t, b.navigate(base401+"/app"), http.StatusUnauthorized)
	if s := b.api(base + "/.auth/session"); s.StatusCode != http.StatusOK || strings.TrimSpace(s.Body) != "{}" {
		t.Errorf("signed-out /.auth/session: %d %q, want 200 {}", s.StatusCode, s.Body)
	}
	if n := up.Count(); n != 0 {
		t.Fatalf("the upstream received %d signed-out requests", n)
	}

	// The sign-in page offers the provider, with a CSRF token and the callback URL.
	page := b.navigate(base + r.Header.Get("Location"))
	wantStatus(t, page, http.StatusOK)
	if cc := page.Header.Get("Cache-Control"); cc != "private, no-store" {
		t.Errorf("sign-in page Cache-Control %q", cc)
	}
	f := formFor(t, page.Body, "/.auth/signin/oidc")
	if got := f.Values.Get("callbackUrl"); got != target {
		t.Errorf("sign-in form callbackUrl %q, want %q", got, target)
	}
	csrf := f.Values.Get("csrfToken")
	if len(csrf) != 64 {
		t.Errorf("sign-in form csrfToken %q, want 64 hex digits", csrf)
	}
	if c := setCookie(page, csrfCookie); c == nil {
		t.Errorf("the sign-in page set no %s cookie", csrfCookie)
	} else {
		wantCookieAttrs(t, c, 0)
	}
	if !strings.Contains(pageText(t, page.Body), "Sign in with OpenID Connect") {
		t.Errorf("sign-in page has no button for the provider:\n%s", testsite.Excerpt(page.Body))
	}

	// Posting the form redirects to the provider's authorization endpoint with
	// PKCE (S256), state and nonce; the state is sealed in a short-lived cookie.
	r = b.post(base+f.Action, f.Values)
	auth := wantRedirect(t, r)
	if !strings.HasPrefix(auth.String(), idp.Issuer+"/") {
		t.Fatalf("sign-in POST redirected to %s, want the provider %s", auth, idp.Issuer)
	}
	q := auth.Query()
	for k, want := range map[string]string{
		"client_id":             "oidc-client",
		"redirect_uri":          base + "/.auth/callback/oidc",
		"response_type":         "code",
		"scope":                 "openid email profile groups",
		"code_challenge_method": "S256",
	} {
		if q.Get(k) != want {
			t.Errorf("authorization request %s = %q, want %q", k, q.Get(k), want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 32 {
			t.Errorf("authorization request %s = %q, want a random value", k, q.Get(k))
		}
	}
	if c := setCookie(r, stateCookie); c == nil {
		t.Fatalf("the sign-in POST set no %s cookie", stateCookie)
	} else {
		wantCookieAttrs(t, c, stateMaxAge)
	}

	// The provider signs alice in and sends her back to the callback, which sets
	// the session cookie and returns to where she was going.
	cb := testidp.Authorize(b.t, b.jar, auth, "alice")
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != base+"/.auth/callback/oidc" || cb.Query().Get("state") != q.Get("state") {
		t.Fatalf("the provider sent the browser to %s, want the callback with state %s", cb, q.Get("state"))
	}
	r = b.navigate(cb.String())
	wantLocation(t, r, target)
	sc := setCookie(r, sessionCookie)
	if sc == nil {
		t.Fatalf("the callback set no session cookie: %v", r.Header.Values("Set-Cookie"))
	}
	wantCookieAttrs(t, sc, sessionMaxAge)
	wantCleared(t, r, stateCookie)
	claims, err := codec(t, testSecret, sessionCookie).Decode(sc.Value, time.Now())
	if err != nil {
		t.Fatalf("decoding the session cookie: %v", err)
	}
	// sub is the id of the user the store created for alice's account, not the
	// provider's subject, which the jwt rule copied from the account.
	sub := wantStoredUserID(t, claims)
	for k, want := range map[string]any{"name": "Alice Example", "email": "alice@example.com", "provider_sub": "alice"} {
		if claims[k] != want {
			t.Errorf("session token %s = %v, want %v", k, claims[k], want)
		}
	}

	// The upstream gets alice's identity, and not authgate's cookies.
	r = b.navigate(target)
	wantStatus(t, r, http.StatusOK)
	seen := wantUpstream(t, up, "/app?x=1", identityHeaders(sub, "alice@example.com", "Alice Example"))
	wantNoAuthCookies(t, seen, "authgate.")
	if strings.Contains(seen.Header.Get("Cookie"), sc.Value) {
		t.Error("the upstream received the session token")
	}
	// The realm's session is valid on its other site too.
	wantStatus(t, b.navigate(base401+"/other"), http.StatusOK)

	// GET /.auth/session: Auth.js's default session shape, never cached.
	r = b.api(base + "/.auth/session")
	wantStatus(t, r, http.StatusOK)
	if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
		t.Errorf("/.auth/session Cache-Control %q, want private, no-store", cc)
	}
	var sess struct {
		User    map[string]any `json:"user"`
		Expires string         `json:"expires"`
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.Body), &sess); err != nil || json.Unmarshal([]byte(r.Body), &keys) != nil {
		t.Fatalf("/.auth/session: %q: %v", r.Body, err)
	}
	if len(keys) != 2 || len(sess.User) != 3 || sess.User["name"] != "Alice Example" || sess.User["email"] != "alice@example.com" ||
		sess.User["image"] != nil {
		t.Errorf("/.auth/session = %s, want {user: {name, email, image: null}, expires}", r.Body)
	}
	if exp, err := time.Parse("2006-01-02T15:04:05.000Z", sess.Expires); err != nil {
		t.Errorf("/.auth/session expires %q: %v", sess.Expires, err)
	} else if d := time.Until(exp); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("/.auth/session expires %s, want about 30 days from now", sess.Expires)
	}

	// GET /.auth/csrf returns the token of the browser's CSRF cookie.
	r = b.api(base + "/.auth/csrf")
	wantStatus(t, r, http.StatusOK)
	var csrfBody map[string]any
	if err := json.Unmarshal([]byte(r.Body), &csrfBody); err != nil || len(csrfBody) != 1 || csrfBody["csrfToken"] != csrf {
		t.Errorf("/.auth/csrf = %s, want {\"csrfToken\": %q}", r.Body, csrf)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
		t.Errorf("/.auth/csrf Cache-Control %q", cc)
	}

	// GET /.auth/providers, in Auth.js's shape.
	r = b.api(base + "/.auth/providers")
	wantStatus(t, r, http.StatusOK)
	var provs map[string]map[string]string
	if err := json.Unmarshal([]byte(r.Body), &provs); err != nil {
		t.Fatalf("/.auth/providers %q: %v", r.Body, err)
	}
	wantProv := map[string]map[string]string{"oidc": {
		"id": "oidc", "name": "OpenID Connect", "type": "oidc",
		"signinUrl": base + "/.auth/signin/oidc", "callbackUrl": base + "/.auth/callback/oidc",
	}}
	if fmt.Sprint(provs) != fmt.Sprint(wantProv) {
		t.Errorf("/.auth/providers = %v, want %v", provs, wantProv)
	}

	// Signing out through the sign-out page clears the session.
	r = b.signOut(base)
	wantLocation(t, r, base+"/")
	wantCleared(t, r, sessionCookie)
	if v := b.cookie(base, sessionCookie); v != "" {
		t.Errorf("the browser still holds a session cookie after signing out")
	}
	seenBefore := up.Count()
	wantSignInRedirect(t, b.navigate(target), target)
	wantSessionRequired(t, b.api(target), http.StatusUnauthorized)
	if up.Count() != seenBefore {
		t.Error("the upstream received a request after sign-out")
	}

	// Signing in again needs no forms at the provider, which remembers alice.
	// She is the same stored user as before.
	r = b.signInOIDC(base, "oidc", base+"/again", "alice")
	wantLocation(t, r, base+"/again")
	again := sessionClaims(t, r)
	if got := wantStoredUserID(t, again); got != sub {
		t.Errorf("second sign-in: session token sub = %s, want %s as at the first", got, sub)
	}
	if again["provider_sub"] != "alice" {
		t.Errorf("second sign-in: session token provider_sub = %v, want alice", again["provider_sub"])
	}
	wantStatus(t, b.navigate(base+"/again"), http.StatusOK)
	wantUpstream(t, up, "/again", identityHeaders(sub, "alice@example.com", "Alice Example"))
}

// aliceHeaders are the default identity headers for alice of the credentials
// users file, whose id (the token's sub) is her username. Signed in with an
// OAuth/OIDC provider or by email, she is a stored user: see identityHeaders.
var aliceHeaders = map[string]string{
	"x-auth-request-user": "alice", "x-auth-request-email": "alice@example.com", "x-auth-request-name": "Alice Example",
}

// wantNoAuthCookies checks that the upstream received no cookie whose name
// starts with one of prefixes.
func wantNoAuthCookies(t *testing.T, seen testsite.Request, prefixes ...string) {
	t.Helper()
	for _, name := range seen.CookieNames() {
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				t.Errorf("the upstream received the cookie %s (Cookie: %q)", name, seen.Header.Get("Cookie"))
			}
		}
	}
}

// wantUpstream checks the upstream's latest request: its URI and its
// X-Auth-Request-* headers (see wantAuthHeaders).
func wantUpstream(t *testing.T, up *testsite.Upstream, uri string, headers map[string]string) testsite.Request {
	t.Helper()
	seen := up.Last(t)
	if seen.URI != uri {
		t.Errorf("the upstream got %s, want %s", seen.URI, uri)
	}
	wantAuthHeaders(t, seen, headers)
	return seen
}

// wantAuthHeaders checks that the upstream saw exactly these X-Auth-Request-*
// headers (names in lower case), each once.
func wantAuthHeaders(t *testing.T, seen testsite.Request, want map[string]string) {
	t.Helper()
	got := seen.AuthHeaders()
	if len(got) != len(want) {
		t.Errorf("the upstream saw X-Auth-Request-* headers %v, want %v", got, want)
	}
	for k, v := range want {
		if !slices.Equal(got[k], []string{v}) {
			t.Errorf("the upstream saw %s = %q, want [%q]", k, got[k], v)
		}
	}
}

// TestOIDCCallbackAttacks delivers forged, replayed and mismatched callbacks to
// authgate: each is refused with the OAuthCallback error page, sets no session
// and clears the single-use state cookie.
func TestOIDCCallbackAttacks(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := startIDP(t, base, "oidc", "other")
	up := testsite.NewUpstream(t, testsite.OK)
	caddy := testcaddy.Start(t, globalBlock(oidcProvider("oidc", idp.Issuer)+oidcProvider("other", idp.Issuer))+
		siteBlock(port, "authgate", up.URL))
	stateCodec := codec(t, testSecret, stateCookie)

	b := newBrowser(t)
	// A successful sign-in first; its callback is replayed below.
	auth := b.startOIDC(base, "oidc", base+"/first")
	firstState := b.cookie(base, stateCookie)
	firstCallback := testidp.Authorize(b.t, b.jar, auth, "alice")
	r := b.navigate(firstCallback.String())
	wantLocation(t, r, base+"/first")
	aliceSub := wantStoredUserID(t, sessionClaims(t, r))
	b.dropCookie(base, sessionCookie)

	// refused checks that r is refused for reason (a part of the log line) and
	// that the browser has no session afterwards.
	refused := func(t *testing.T, b *browser, r response, before int, reason string) {
		t.Helper()
		// A case that fails by signing in must not leave the next one signed in.
		t.Cleanup(func() { b.dropCookie(base, sessionCookie) })
		page := wantErrorPage(t, b, base, r, "OAuthCallback", http.StatusBadRequest)
		wantNoLeak(t, page.Body, reason)
		wantNoSetCookie(t, r, sessionCookie)
		wantCleared(t, r, stateCookie)
		if caddy.LogCount(`"error_code":"OAuthCallback"`, reason) <= before {
			t.Errorf("no new OAuthCallback log line says %q", reason)
		}
		if b.cookie(base, sessionCookie) != "" {
			t.Fatal("the browser has a session cookie after a refused callback")
		}
		wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
	}
	// attempt starts a sign-in with provider and returns the URL the provider
	// sends the browser back to, with a fresh code.
	attempt := func(b *browser, provider string) *url.URL {
		b.t.Helper()
		return testidp.Authorize(b.t, b.jar, b.startOIDC(base, provider, base+"/app"), "alice")
	}
	// resealWith replaces the browser's state cookie with its claims changed by
	// edit (if not nil) and sealed by c at time at.
	resealWith := func(b *browser, c *session.Codec, at time.Time, edit func(st map[string]any)) {
		t := b.t
		t.Helper()
		st, err := stateCodec.Decode(b.cookie(base, stateCookie), time.Now())
		if err != nil {
			t.Fatalf("decoding the state cookie: %v", err)
		}
		for _, k := range []string{"provider", "state", "code_verifier", "nonce", "callback_url"} {
			if s, _ := st[k].(string); s == "" {
				t.Fatalf("the state cookie has no %s: %v", k, st)
			}
		}
		if edit != nil {
			edit(st)
		}
		b.setCookie(base, stateCookie, encode(t, c, st, 15*time.Minute, at))
	}
	reseal := func(b *browser, edit func(st map[string]any)) {
		b.t.Helper()
		resealWith(b, stateCodec, time.Now(), edit)
	}
	withQuery := func(u *url.URL, edit func(q url.Values)) string {
		q := u.Query()
		edit(q)
		v := *u
		v.RawQuery = q.Encode()
		return v.String()
	}
	count := func(reason string) int { return caddy.LogCount(`"error_code":"OAuthCallback"`, reason) }

	t.Run("state issued for another provider", func(t *testing.T) {
		b := b.in(t)
		cb := attempt(b, "other")
		if cb.Path != "/.auth/callback/other" {
			t.Fatalf("the provider sent the browser to %s", cb)
		}
		before := count("another provider")
		refused(t, b, b.navigate(base+"/.auth/callback/oidc?"+cb.RawQuery), before, "another provider")
		// The state cookie was single-use: the genuine callback now fails too.
		before = count("no state cookie")
		refused(t, b, b.navigate(cb.String()), before, "no state cookie")
	})

	// Forged callbacks: each case starts a sign-in, lets the provider send the
	// browser back with a fresh code, and changes the callback URL or the state
	// cookie before delivering it.
	for _, tc := range []struct {
		name   string
		reason string // a part of the log line saying why it was refused
		forge  func(b *browser, cb *url.URL) string
	}{
		{"no state cookie", "no state cookie", func(b *browser, cb *url.URL) string {
			b.dropCookie(base, stateCookie)
			return cb.String()
		}},
		{"state parameter does not match", "state does not match", func(b *browser, cb *url.URL) string {
			return withQuery(cb, func(q url.Values) { q.Set("state", "attacker-"+q.Get("state")) })
		}},
		{"no state parameter", "state does not match", func(b *browser, cb *url.URL) string {
			return withQuery(cb, func(q url.Values) { q.Del("state") })
		}},
		{"tampered state cookie", "state cookie invalid", func(b *browser, cb *url.URL) string {
			parts := strings.Split(b.cookie(base, stateCookie), ".")
			if len(parts) != 5 {
				b.t.Fatalf("state cookie is not a compact JWE")
			}
			parts[3] = flip(parts[3], len(parts[3])/2)
			b.setCookie(base, stateCookie, strings.Join(parts, "."))
			return cb.String()
		}},
		{"state cookie sealed with another secret", "state cookie invalid", func(b *browser, cb *url.URL) string {
			resealWith(b, codec(b.t, "another-secret-0123456789-abcdefghijklmnop", stateCookie), time.Now(), nil)
			return cb.String()
		}},
		{"expired state cookie", "state cookie invalid", func(b *browser, cb *url.URL) string {
			resealWith(b, stateCodec, time.Now().Add(-time.Hour), nil)
			return cb.String()
		}},
		{"no PKCE verifier", "no PKCE code verifier", func(b *browser, cb *url.URL) string {
			reseal(b, func(st map[string]any) { delete(st, "code_verifier") })
			return cb.String()
		}},
		{"wrong PKCE verifier", "exchanging the code", func(b *browser, cb *url.URL) string {
			reseal(b, func(st map[string]any) { st["code_verifier"] = oauth2.GenerateVerifier() })
			return cb.String()
		}},
		{"no nonce", "no nonce", func(b *browser, cb *url.URL) string {
			reseal(b, func(st map[string]any) { delete(st, "nonce") })
			return cb.String()
		}},
		{"wrong nonce", "nonce does not match", func(b *browser, cb *url.URL) string {
			reseal(b, func(st map[string]any) { st["nonce"] = oauth2.GenerateVerifier() })
			return cb.String()
		}},
		// RFC 9207: a mix-up attack shows in the iss parameter.
		{"response from another issuer", "another issuer", func(b *browser, cb *url.URL) string {
			if cb.Query().Get("iss") != idp.Issuer {
				b.t.Fatalf("the provider's response has iss %q, want %q", cb.Query().Get("iss"), idp.Issuer)
			}
			return withQuery(cb, func(q url.Values) { q.Set("iss", "http://127.0.0.1:1") })
		}},
		// The provider's metadata says authorization_response_iss_parameter_supported,
		// so RFC 9207 (section 2.4) requires a response without iss to be refused.
		{"response without iss", "without iss", func(b *browser, cb *url.URL) string {
			return withQuery(cb, func(q url.Values) { q.Del("iss") })
		}},
		{"no code", "no authorization code", func(b *browser, cb *url.URL) string {
			return withQuery(cb, func(q url.Values) { q.Del("code") })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := b.in(t)
			target := tc.forge(b, attempt(b, "oidc"))
			before := count(tc.reason)
			refused(t, b, b.navigate(target), before, tc.reason)
		})
	}

	t.Run("replayed callback", func(t *testing.T) {
		// The exact first callback request again — its URL and the state cookie
		// it was sent with — from an attacker's browser: only the identity
		// provider, which redeems a code once, can refuse it.
		mallory := newBrowser(t)
		mallory.setCookie(base, stateCookie, firstState)
		before := count("exchanging the code")
		refused(t, mallory, mallory.navigate(firstCallback.String()), before, "exchanging the code")
	})

	t.Run("replayed code with a fresh state", func(t *testing.T) {
		b := b.in(t)
		auth := b.startOIDC(base, "oidc", base+"/app")
		cb := withQuery(firstCallback, func(q url.Values) { q.Set("state", auth.Query().Get("state")) })
		before := count("exchanging the code")
		refused(t, b, b.navigate(cb), before, "exchanging the code")
	})

	t.Run("provider answered access_denied", func(t *testing.T) {
		b := b.in(t)
		auth := b.startOIDC(base, "oidc", base+"/app")
		cb := base + "/.auth/callback/oidc?" + url.Values{
			"error":             {"access_denied"},
			"error_description": {"End-User aborted interaction <script>"},
			"state":             {auth.Query().Get("state")},
		}.Encode()
		before := count("access_denied")
		refused(t, b, b.navigate(cb), before, "access_denied")
	})

	t.Run("POST callback without a state cookie", func(t *testing.T) {
		b := b.in(t)
		cb := attempt(b, "oidc")
		b.dropCookie(base, stateCookie)
		before := count("no state cookie")
		refused(t, b, b.post(base+cb.Path, cb.Query()), before, "no state cookie")
	})

	// After all that, signing in still works, as the same user.
	r = b.signInOIDC(base, "oidc", base+"/after", "alice")
	wantLocation(t, r, base+"/after")
	if sub := wantStoredUserID(t, sessionClaims(t, r)); sub != aliceSub {
		t.Errorf("session token sub = %s, want %s as at the first sign-in", sub, aliceSub)
	}
	wantStatus(t, b.navigate(base+"/after"), http.StatusOK)
	wantAuthHeaders(t, up.Last(t), identityHeaders(aliceSub, "alice@example.com", "Alice Example"))
}

// flip changes the character at i of a base64url string to another base64url
// character. Use it away from the last character, whose low bits may be padding.
func flip(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// TestIdentityProviderDown checks that Caddy starts and serves while the
// identity provider is unreachable, and that signing in then fails with an
// Auth.js error page, not a 500 or a Go error.
func TestIdentityProviderDown(t *testing.T) {
	t.Run("never up", func(t *testing.T) {
		port, deadPort := testcaddy.FreePort(t), testcaddy.FreePort(t)
		base := origin(port)
		dead := origin(deadPort)
		// An issuer that answers, but not with a discovery document.
		broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "broken-idp-internal-detail", http.StatusInternalServerError)
		}))
		defer broken.Close()
		up := testsite.NewUpstream(t, testsite.OK)
		caddy := testcaddy.Start(t, globalBlock(oidcProvider("oidc", dead)+oidcProvider("broken", broken.URL))+
			siteBlock(port, "authgate", up.URL))

		b := newBrowser(t)
		wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
		for _, id := range []string{"oidc", "broken"} {
			f := b.signInForm(base, base+"/app", "/.auth/signin/"+id)
			r := b.post(base+f.Action, f.Values)
			page := wantErrorPage(t, b, base, r, "OAuthSignin", http.StatusBadGateway)
			wantNoLeak(t, page.Body, strconv.Itoa(deadPort), broken.URL, "broken-idp-internal-detail", "500 Internal")
			if c := setCookie(r, stateCookie); c != nil && c.MaxAge >= 0 {
				t.Errorf("a failed sign-in start set the state cookie")
			}
			if !strings.Contains(pageText(t, page.Body), "Could not start signing in") {
				t.Errorf("error page does not explain OAuthSignin:\n%s", testsite.Excerpt(page.Body))
			}
		}
		waitForLog(t, caddy, "OpenID Connect discovery failed", dead)
		waitForLog(t, caddy, "OpenID Connect discovery failed", broken.URL)
		if !caddy.LogContains(`"error_code":"OAuthSignin"`, "discovery") {
			t.Error("the OAuthSignin log line does not say discovery failed")
		}
		if up.Count() != 0 {
			t.Error("the upstream received a request")
		}
	})

	t.Run("down after start", func(t *testing.T) {
		port := testcaddy.FreePort(t)
		base := origin(port)
		idp := startIDP(t, base, "oidc")
		up := testsite.NewUpstream(t, testsite.OK)
		caddy := testcaddy.Start(t, globalBlock(oidcProvider("oidc", idp.Issuer))+siteBlock(port, "authgate", up.URL))
		waitForLog(t, caddy, "OpenID Connect discovery succeeded")

		// alice is at the provider when it goes down: her code cannot be redeemed.
		b := newBrowser(t)
		cb := testidp.Authorize(b.t, b.jar, b.startOIDC(base, "oidc", base+"/app"), "alice")
		idp.Stop()
		before := caddy.LogCount(`"error_code":"OAuthCallback"`, "exchanging the code")
		r := b.navigate(cb.String())
		page := wantErrorPage(t, b, base, r, "OAuthCallback", http.StatusBadRequest)
		wantNoLeak(t, page.Body, idp.Issuer)
		wantNoSetCookie(t, r, sessionCookie)
		if caddy.LogCount(`"error_code":"OAuthCallback"`, "exchanging the code") <= before {
			t.Error("no log line says the code exchange failed")
		}

		// Discovery is remembered, so the next sign-in still goes to the
		// provider (the browser, not authgate, finds it down); Caddy keeps serving.
		f := b.signInForm(base, base+"/app", "/.auth/signin/oidc")
		auth := wantRedirect(t, b.post(base+f.Action, f.Values))
		if !strings.HasPrefix(auth.String(), idp.Issuer+"/") {
			t.Errorf("sign-in redirected to %s, want the provider", auth)
		}
		wantSignInRedirect(t, b.navigate(base+"/app"), base+"/app")
		if up.Count() != 0 {
			t.Error("the upstream received a request")
		}
	})
}
