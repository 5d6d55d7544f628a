package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/authgate/caddy-authgate/internal/testsite"
	"github.com/authgate/caddy-authgate/session"
)

const (
	// testSecret is every realm's secret; tests that forge cookies use it too.
	testSecret = "e2e-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"

	// sessionCookie, csrfCookie and stateCookie are authgate's cookie names on http.
	sessionCookie = "authgate.session-token"
	csrfCookie    = "authgate.csrf-token"
	stateCookie   = "authgate.oauth-state"

	// htmlAccept is what a browser sends when it navigates to a page.
	htmlAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

	// bt is a backtick, for CEL expressions in Caddyfiles written as Go raw strings.
	bt = "`"
)

// ---- Caddy ----

// origin is the base URL of a site on port.
func origin(port int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// siteBlock is a site on port guarded by authgate with the given directive
// block (empty for none), proxying to the upstream.
func siteBlock(port int, directive, upstreamURL string) string {
	return fmt.Sprintf("%s {\n\t%s\n\treverse_proxy %s\n}\n", origin(port), directive, upstreamURL)
}

// globalBlock wraps a realm's body in the global options.
func globalBlock(realm string) string {
	return globalOptions("", realm)
}

// globalOptions is globalBlock with more global options.
func globalOptions(extra, realm string) string {
	return "{\n\tauto_https off\n\tdefault_bind 127.0.0.1\n" + extra + "\tauthgate {\n\t\tsecret " + testSecret + "\n" + openSignIn(realm) + "\n\t}\n}\n"
}

// openSignIn lets everyone the test's identity provider or mailbox knows sign
// in (`sign_in { default allow }`) when the realm has such a provider and
// writes no sign_in rules itself: authgate refuses an open realm unless it
// says so (TestValidateErrors covers that refusal).
func openSignIn(realm string) string {
	if strings.Contains(realm, "sign_in {") || !(strings.Contains(realm, "provider oidc") || strings.Contains(realm, "provider email") || strings.Contains(realm, "provider github")) {
		return realm
	}
	allow := "\t\t\tsign_in {\n\t\t\t\tdefault allow\n\t\t\t}\n"
	if strings.Contains(realm, "callbacks {\n") {
		return strings.Replace(realm, "callbacks {\n", "callbacks {\n"+allow, 1)
	}
	return realm + "\t\tcallbacks {\n" + allow + "\t\t}\n"
}

// waitForLog waits until a log line contains every one of parts; background work
// such as OIDC discovery logs asynchronously.
func waitForLog(t *testing.T, c *testcaddy.Server, parts ...string) {
	t.Helper()
	testsite.Eventually(t, 15*time.Second, fmt.Sprintf("a Caddy log line containing %q", parts), func() error {
		if !c.LogContains(parts...) {
			return errors.New("no such line")
		}
		return nil
	})
}

// waitServedAfterReload waits until a GET of url, without cookies, answers
// status: the old config's server closes its connections as it shuts down, so
// a request just after a reload may meet a closed connection.
func waitServedAfterReload(t *testing.T, url string, status int) {
	t.Helper()
	testsite.Eventually(t, 10*time.Second, "a request served after the reload", func() error {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// ---- the browser ----

// browser is an HTTP client with a cookie jar that does not follow redirects,
// so each step of a flow can be looked at.
type browser struct {
	t   *testing.T
	jar *cookiejar.Jar
	c   *http.Client
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, jar: jar, c: &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// in returns the browser, with the same cookies, for use in test t (a subtest).
func (b *browser) in(t *testing.T) *browser {
	c := *b
	c.t = t
	return &c
}

// response is an answer with its body read.
type response struct {
	*http.Response
	Body string
}

func (b *browser) do(req *http.Request) response {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return response{Response: resp, Body: string(body)}
}

// get requests rawURL with the given Accept header and extra headers (name,
// value pairs; names are used exactly as written).
func (b *browser) get(rawURL, accept string, headers ...string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[headers[i]] = append(req.Header[headers[i]], headers[i+1])
	}
	return b.do(req)
}

// navigate is a browser loading a page.
func (b *browser) navigate(rawURL string, headers ...string) response {
	b.t.Helper()
	return b.get(rawURL, htmlAccept, headers...)
}

// api is a script or API client.
func (b *browser) api(rawURL string, headers ...string) response {
	b.t.Helper()
	return b.get(rawURL, "application/json", headers...)
}

// post submits a form.
func (b *browser) post(rawURL string, form url.Values) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", htmlAccept)
	return b.do(req)
}

// cookie returns the jar's cookie for base by name, or "" when there is none.
func (b *browser) cookie(base, name string) string {
	b.t.Helper()
	for _, c := range b.jar.Cookies(mustParse(b.t, base)) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// cookieNames lists the names of the jar's cookies for base.
func (b *browser) cookieNames(base string) []string {
	var names []string
	for _, c := range b.jar.Cookies(mustParse(b.t, base)) {
		names = append(names, c.Name)
	}
	return names
}

// setCookie puts a cookie in the jar, as a browser would have stored it.
func (b *browser) setCookie(base, name, value string) {
	b.jar.SetCookies(mustParse(b.t, base), []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// dropCookie removes a cookie from the jar.
func (b *browser) dropCookie(base, name string) {
	b.jar.SetCookies(mustParse(b.t, base), []*http.Cookie{{Name: name, Value: "", Path: "/", MaxAge: -1}})
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parsing %q: %v", raw, err)
	}
	return u
}

// ---- assertions on responses ----

func wantStatus(t *testing.T, r response, status int) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; Location %q; body:\n%s",
			r.Request.Method, r.Request.URL, r.StatusCode, status, r.Header.Get("Location"), testsite.Excerpt(r.Body))
	}
}

// wantRedirect checks a 302 and returns its Location resolved against the request URL.
func wantRedirect(t *testing.T, r response) *url.URL {
	t.Helper()
	wantStatus(t, r, http.StatusFound)
	loc, err := r.Location()
	if err != nil {
		t.Fatalf("%s %s: Location: %v", r.Request.Method, r.Request.URL, err)
	}
	return loc
}

// wantLocation checks a 302 to exactly loc (as written in the header).
func wantLocation(t *testing.T, r response, loc string) {
	t.Helper()
	wantStatus(t, r, http.StatusFound)
	if got := r.Header.Get("Location"); got != loc {
		t.Fatalf("%s %s: Location %q, want %q", r.Request.Method, r.Request.URL, got, loc)
	}
}

// wantSignInRedirect checks that a browser navigation to target was sent to
// the sign-in page with target as its callbackUrl.
func wantSignInRedirect(t *testing.T, r response, target string) {
	t.Helper()
	wantLocation(t, r, "/.auth/signin?callbackUrl="+url.QueryEscape(target))
}

// wantSessionRequired checks the 401 JSON answer to a signed-out API request.
func wantSessionRequired(t *testing.T, r response, status int) {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body["error"] != "SessionRequired" || len(body) != 1 {
		t.Errorf("body %q, want {\"error\":\"SessionRequired\"}", r.Body)
	}
}

// setCookie returns the response's Set-Cookie for name, or nil.
func setCookie(r response, name string) *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// wantCleared checks that the response deletes cookie name.
func wantCleared(t *testing.T, r response, name string) {
	t.Helper()
	c := setCookie(r, name)
	if c == nil || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("%s %s: want %s cleared (Max-Age=0), got Set-Cookie %v", r.Request.Method, r.Request.URL, name, r.Header.Values("Set-Cookie"))
	}
}

// wantNoSetCookie checks that the response sets no cookie whose name starts with prefix.
func wantNoSetCookie(t *testing.T, r response, prefix string) {
	t.Helper()
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, prefix) && c.MaxAge >= 0 {
			t.Errorf("%s %s: unexpected Set-Cookie %s", r.Request.Method, r.Request.URL, c.String())
		}
	}
}

// wantCookieAttrs checks the attributes every authgate cookie has on http.
func wantCookieAttrs(t *testing.T, c *http.Cookie, maxAge int) {
	t.Helper()
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure || c.Path != "/" || c.Domain != "" || c.MaxAge != maxAge {
		t.Errorf("cookie %s: want HttpOnly; SameSite=Lax; Path=/; no Secure or Domain on http; Max-Age=%d", c.String(), maxAge)
	}
}

// wantErrorPage follows a redirect to the error page and checks the code and status.
func wantErrorPage(t *testing.T, b *browser, base string, r response, code string, status int) response {
	t.Helper()
	wantLocation(t, r, "/.auth/error?error="+code)
	page := b.navigate(base + "/.auth/error?error=" + code)
	wantStatus(t, page, status)
	if !strings.Contains(page.Body, "Error code: "+code) {
		t.Errorf("error page does not show the code %s:\n%s", code, testsite.Excerpt(page.Body))
	}
	if ct := page.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("error page Content-Type %q", ct)
	}
	return page
}

// wantNoLeak checks that a page shows no Go error text, stack or internal detail.
func wantNoLeak(t *testing.T, body string, extra ...string) {
	t.Helper()
	text := pageText(t, body)
	for _, s := range append([]string{"goroutine", "panic", ".go:", "dial tcp", "connection refused",
		"discovery", "oidc:", "oauth2:", "invalid_grant", "error_description"}, extra...) {
		if strings.Contains(text, s) {
			t.Errorf("page leaks %q: %s", s, text)
		}
	}
}

// ---- HTML forms ----

// form is an HTML form with its inputs' values.
type form struct {
	Action string
	Method string
	Values url.Values
}

// forms returns the forms of an HTML page.
func forms(t *testing.T, page string) []form {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatalf("parsing HTML: %v", err)
	}
	var out []form
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode || n.DataAtom != atom.Form {
			continue
		}
		f := form{Action: attr(n, "action"), Method: strings.ToLower(attr(n, "method")), Values: url.Values{}}
		for in := range n.Descendants() {
			if in.Type == html.ElementNode && in.DataAtom == atom.Input && attr(in, "name") != "" {
				f.Values.Add(attr(in, "name"), attr(in, "value"))
			}
		}
		out = append(out, f)
	}
	return out
}

// formFor returns the page's POST form whose action is action.
func formFor(t *testing.T, page, action string) form {
	t.Helper()
	var actions []string
	for _, f := range forms(t, page) {
		if f.Action == action && f.Method == "post" {
			return f
		}
		actions = append(actions, f.Action)
	}
	t.Fatalf("no POST form with action %q (forms: %q) in:\n%s", action, actions, testsite.Excerpt(page))
	return form{}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}

// pageText is a page's text with runs of white space collapsed.
func pageText(t *testing.T, page string) string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatalf("parsing HTML: %v", err)
	}
	var words []string
	for n := range doc.Descendants() {
		if n.Type == html.TextNode && n.Parent != nil && n.Parent.DataAtom != atom.Style {
			words = append(words, strings.Fields(n.Data)...)
		}
	}
	return strings.Join(words, " ")
}

// ---- flows ----

// signInForm loads the sign-in page for callbackURL and returns the form that
// posts to action.
func (b *browser) signInForm(base, callbackURL, action string) form {
	b.t.Helper()
	page := b.navigate(base + "/.auth/signin?callbackUrl=" + url.QueryEscape(callbackURL))
	wantStatus(b.t, page, http.StatusOK)
	return formFor(b.t, page.Body, action)
}

// signInCredentials signs in through the credentials form and returns authgate's answer.
func (b *browser) signInCredentials(base, callbackURL, username, password string) response {
	b.t.Helper()
	f := b.signInForm(base, callbackURL, "/.auth/callback/credentials")
	f.Values.Set("username", username)
	f.Values.Set("password", password)
	return b.post(base+f.Action, f.Values)
}

// signOut signs out through the sign-out page's form.
func (b *browser) signOut(base string) response {
	b.t.Helper()
	page := b.navigate(base + "/.auth/signout")
	wantStatus(b.t, page, http.StatusOK)
	f := formFor(b.t, page.Body, "/.auth/signout")
	return b.post(base+f.Action, f.Values)
}

// csrfToken fetches a CSRF token (and its cookie) from /.auth/csrf.
func (b *browser) csrfToken(base string) string {
	b.t.Helper()
	r := b.api(base + "/.auth/csrf")
	wantStatus(b.t, r, http.StatusOK)
	var body struct{ CSRFToken string }
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body.CSRFToken == "" {
		b.t.Fatalf("/.auth/csrf: %q", r.Body)
	}
	return body.CSRFToken
}

// startOIDC starts signing in with an OAuth provider through the sign-in page's
// form and returns the provider's authorization URL it redirected to.
func (b *browser) startOIDC(base, provider, callbackURL string) *url.URL {
	b.t.Helper()
	f := b.signInForm(base, callbackURL, "/.auth/signin/"+provider)
	return wantRedirect(b.t, b.post(base+f.Action, f.Values))
}

// signInOIDC signs in with an OAuth provider as account, from the sign-in page to
// authgate's callback, and returns the callback's answer.
func (b *browser) signInOIDC(base, provider, callbackURL, account string) response {
	b.t.Helper()
	cb := testidp.Authorize(b.t, b.jar, b.startOIDC(base, provider, callbackURL), account)
	return b.navigate(cb.String())
}

// ---- stored users ----

// uuidPattern is a random (version 4) UUID in its canonical lowercase form:
// the id the store gives a user at their first OAuth, OIDC or email sign-in.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// wantStoredUserID checks that a session token's sub is a stored user's id (a
// random UUID, not the provider's subject) and returns it.
func wantStoredUserID(t *testing.T, claims map[string]any) string {
	t.Helper()
	sub, _ := claims["sub"].(string)
	if !uuidPattern.MatchString(sub) {
		t.Fatalf("session token sub = %v, want a stored user's id (a random UUID); token %v", claims["sub"], claims)
	}
	return sub
}

// sessionClaims decodes the session cookie a response set, failing the test
// when it set none.
func sessionClaims(t *testing.T, r response) map[string]any {
	t.Helper()
	sc := setCookie(r, sessionCookie)
	if sc == nil || sc.MaxAge < 0 {
		t.Fatalf("%s %s set no session cookie: %v", r.Request.Method, r.Request.URL, r.Header.Values("Set-Cookie"))
	}
	claims, err := codec(t, testSecret, sessionCookie).Decode(sc.Value, time.Now())
	if err != nil {
		t.Fatalf("decoding the session cookie: %v", err)
	}
	return claims
}

// identityHeaders are the default identity headers the upstream gets for a
// user: X-Auth-Request-User is the token's sub.
func identityHeaders(sub, email, name string) map[string]string {
	return map[string]string{"x-auth-request-user": sub, "x-auth-request-email": email, "x-auth-request-name": name}
}

// ---- session tokens made outside authgate ----

// codec is a session token codec for cookie name salt with secret.
func codec(t *testing.T, secret, salt string) *session.Codec {
	t.Helper()
	c, err := session.NewCodec([]string{secret}, salt, session.FormatAuthJS)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func encode(t *testing.T, c *session.Codec, claims map[string]any, maxAge time.Duration, now time.Time) string {
	t.Helper()
	tok, err := c.Encode(claims, maxAge, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
