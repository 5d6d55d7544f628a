package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
	"github.com/authgate/caddy-authgate/session"
)

// TestCSRF posts authgate's forms without the double-submit token, with a wrong
// one, and with a token but no cookie: each is refused with a 403 page and
// changes nothing.
func TestCSRF(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	// The OIDC provider's issuer is down: a sign-in POST that passes the CSRF
	// check ends at OAuthSignin, one that does not is a 403 before that.
	testcaddy.Start(t, globalBlock(oidcProvider("oidc", origin(testcaddy.FreePort(t)))+
		testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser)))+siteBlock(port, "authgate", up.URL))

	victim := newBrowser(t)
	token := victim.csrfToken(base)
	attackerToken := newBrowser(t).csrfToken(base)
	cookieValue := victim.cookie(base, csrfCookie)
	if !strings.HasPrefix(cookieValue, token+"|") {
		t.Fatalf("CSRF cookie %q does not hold the token %q", cookieValue, token)
	}

	refused := func(t *testing.T, r response) {
		t.Helper()
		wantStatus(t, r, http.StatusForbidden)
		if !strings.Contains(pageText(t, r.Body), "Request refused") {
			t.Errorf("403 page does not say the request was refused: %s", pageText(t, r.Body))
		}
		wantNoSetCookie(t, r, "authgate.")
	}

	// The forms to post, each with a valid token; the cases below break the
	// token, and the controls after them post the forms as they are.
	signin := url.Values{"csrfToken": {token}, "callbackUrl": {base + "/app"}}
	creds := url.Values{"csrfToken": {token}, "callbackUrl": {base + "/app"}, "username": {"alice"}, "password": {aliceUser.Password}}
	endpoints := []struct {
		name, path string
		form       url.Values
	}{
		{"sign-in", "/.auth/signin/oidc", signin},
		{"credentials", "/.auth/callback/credentials", creds},
		{"sign-out", "/.auth/signout", signin},
	}
	edited := func(form url.Values, edit func(url.Values)) url.Values {
		f := url.Values{}
		for k, v := range form {
			f[k] = append([]string(nil), v...)
		}
		edit(f)
		return f
	}

	for _, ep := range endpoints {
		t.Run(ep.name, func(t *testing.T) {
			victim := victim.in(t)
			t.Run("no token", func(t *testing.T) {
				refused(t, victim.in(t).post(base+ep.path, edited(ep.form, func(f url.Values) { f.Del("csrfToken") })))
			})
			t.Run("empty token", func(t *testing.T) {
				refused(t, victim.in(t).post(base+ep.path, edited(ep.form, func(f url.Values) { f.Set("csrfToken", "") })))
			})
			t.Run("wrong token", func(t *testing.T) {
				refused(t, victim.in(t).post(base+ep.path, edited(ep.form, func(f url.Values) { f.Set("csrfToken", strings.Repeat("0", 64)) })))
			})
			t.Run("another browser's token", func(t *testing.T) {
				refused(t, victim.in(t).post(base+ep.path, edited(ep.form, func(f url.Values) { f.Set("csrfToken", attackerToken) })))
			})
			t.Run("cookie value as token", func(t *testing.T) {
				refused(t, victim.in(t).post(base+ep.path, edited(ep.form, func(f url.Values) { f.Set("csrfToken", cookieValue) })))
			})
			t.Run("token in the query string", func(t *testing.T) {
				refused(t, victim.in(t).post(base+ep.path+"?csrfToken="+token, edited(ep.form, func(f url.Values) { f.Del("csrfToken") })))
			})
			t.Run("token but no cookie", func(t *testing.T) {
				refused(t, newBrowser(t).post(base+ep.path, ep.form))
			})
			t.Run("cookie forged without the secret", func(t *testing.T) {
				b := newBrowser(t)
				tok, val := session.NewCSRF("another-secret-0123456789-abcdefghijklmnop").Issue()
				b.setCookie(base, csrfCookie, val)
				refused(t, b.post(base+ep.path, edited(ep.form, func(f url.Values) { f.Set("csrfToken", tok) })))
				b.setCookie(base, csrfCookie, tok+"|"+strings.Repeat("0", 64))
				refused(t, b.post(base+ep.path, edited(ep.form, func(f url.Values) { f.Set("csrfToken", tok) })))
			})
		})
	}
	if victim.cookie(base, sessionCookie) != "" {
		t.Fatal("a refused credentials POST signed the browser in")
	}

	// Controls: with the token each form goes through.
	r := victim.post(base+"/.auth/signin/oidc", signin)
	wantLocation(t, r, "/.auth/error?error=OAuthSignin")
	r = victim.post(base+"/.auth/callback/credentials", creds)
	wantLocation(t, r, base+"/app")
	if setCookie(r, sessionCookie) == nil {
		t.Fatal("the credentials sign-in set no session cookie")
	}

	// A refused sign-out leaves the session valid.
	for _, form := range []url.Values{{}, {"csrfToken": {attackerToken}}} {
		r = victim.post(base+"/.auth/signout", form)
		refused(t, r)
		wantStatus(t, victim.navigate(base+"/still-signed-in"), http.StatusOK)
		wantAuthHeaders(t, up.Last(t), aliceHeaders)
	}
	// POST /.auth/session (Auth.js's update()) is CSRF-checked too.
	postJSON := func(body string) response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+"/.auth/session", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		return victim.do(req)
	}
	for _, r := range []response{
		postJSON(`{"data":{"name":"x"}}`),
		postJSON(`{"csrfToken":"` + attackerToken + `","data":{}}`),
		victim.post(base+"/.auth/session", url.Values{"data": {"{}"}}),
	} {
		wantStatus(t, r, http.StatusForbidden)
		wantNoSetCookie(t, r, "authgate.")
	}
	r = postJSON(`{"csrfToken":"` + token + `","data":{}}`)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.Body, `"email":"alice@example.com"`) {
		t.Errorf("session update answered %s", r.Body)
	}

	r = victim.post(base+"/.auth/signout", signin)
	wantLocation(t, r, base+"/app")
	wantCleared(t, r, sessionCookie)
	wantSignInRedirect(t, victim.navigate(base+"/app"), base+"/app")
}
