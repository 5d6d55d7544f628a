package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/caddy-authgate/internal/testenv"
	"github.com/authgate/caddy-authgate/session"
)

const (
	// chromiumPath is Debian's Chromium, installed by `make test` (make deps).
	chromiumPath = "/usr/bin/chromium"
	// testTimeout bounds everything a test does in the browser.
	testTimeout = 60 * time.Second
	// startTimeout bounds how long Chromium may take to start.
	startTimeout = 30 * time.Second
)

// page is one tab of a headless Chromium started for one test. Its methods fail
// the test with the tab's URL, its text and a screenshot when something goes
// wrong.
type page struct {
	t   *testing.T
	ctx context.Context // the tab, bounded by testTimeout
	tab context.Context // the tab, without the test's timeout (for diagnostics)
}

// startBrowser starts headless Chromium with a fresh profile and returns its
// tab. The browser is stopped, and its profile removed, when the test ends.
func startBrowser(t *testing.T) *page {
	t.Helper()
	if fi, err := os.Stat(chromiumPath); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		testenv.Unavailable(t, "browser: Debian's chromium (%s) is missing or not executable (%v)", chromiumPath, err)
	}
	profile := t.TempDir() // removed after the browser stopped: cleanups run last-in, first-out
	output := &testenv.SyncBuffer{}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Hermetic: every host but loopback fails to resolve at once, so no
		// page (e.g. the test IdP's, which imports a web font) waits for the
		// network.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(output),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit
	})

	// The first Do starts the browser and binds it to the context it is
	// given, so give it the tab's context and bound the start with a timer.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(tab) }()
	var err error
	select {
	case err = <-started:
	case <-time.After(startTimeout):
		cancelAlloc()
		err = fmt.Errorf("not started within %v: %w", startTimeout, <-started)
	}
	if err != nil {
		testenv.Unavailable(t, "browser: starting Debian's chromium (%s): %v\nits output:\n%s", chromiumPath, err, output.String())
	}

	ctx, cancel := context.WithTimeout(tab, testTimeout)
	t.Cleanup(cancel)
	return &page{t: t, ctx: ctx, tab: tab}
}

// fatalf fails the test after logging where the browser is, what the page
// says, and saving a screenshot.
func (p *page) fatalf(format string, args ...any) {
	p.t.Helper()
	msg := fmt.Sprintf(format, args...)
	// The test's context may be what ran out; look around with a fresh one.
	ctx, cancel := context.WithTimeout(p.tab, 10*time.Second)
	defer cancel()
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
		msg += "\n  browser at: " + loc
	}
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`)); err == nil {
		msg += "\n  page text:\n" + indent(text, "    ")
	}
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		name := "failure-" + strings.NewReplacer("/", "-", " ", "_").Replace(p.t.Name()) + ".png"
		if path, err := writeOutput(name, png); err == nil {
			msg += "\n  screenshot: " + path
		}
	}
	p.t.Fatal(msg)
}

// navigate loads rawURL (following redirects) and returns the final response.
func (p *page) navigate(rawURL string) *network.Response {
	p.t.Helper()
	resp, err := chromedp.Run(p.ctx, chromedp.NavigateResponse(rawURL))
	if err != nil {
		p.fatalf("navigating to %s: %v", rawURL, err)
	}
	return resp
}

// clickAndWait clicks the element sel, which must start a navigation (a submit
// button), and waits for the resulting page to load, following redirects.
func (p *page) clickAndWait(sel string) *network.Response {
	p.t.Helper()
	p.mustHave(sel)
	resp, err := chromedp.RunResponse(p.ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		p.fatalf("clicking %s and waiting for the next page: %v", sel, err)
	}
	return resp
}

// typeInto types text into the input sel, as a user would.
func (p *page) typeInto(sel, text string) {
	p.t.Helper()
	p.mustHave(sel)
	if err := chromedp.Do(p.ctx, chromedp.SendKeys(chromedp.CSS(sel), text)); err != nil {
		p.fatalf("typing into %s: %v", sel, err)
	}
}

// location is the URL of the page shown.
func (p *page) location() *url.URL {
	p.t.Helper()
	loc, err := chromedp.Run(p.ctx, chromedp.Location())
	if err != nil {
		p.fatalf("reading the location: %v", err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		p.fatalf("parsing the location %q: %v", loc, err)
	}
	return u
}

// text returns the rendered text of the first element matching sel, and
// whether there is one. Unlike chromedp's queries it does not wait for the
// element: the page has loaded when it is called.
func (p *page) text(sel string) (string, bool) {
	p.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.innerText : null; })()`, jsString(sel))
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[*string](js))
	if err != nil {
		p.fatalf("reading %s: %v", sel, err)
	}
	if v == nil {
		return "", false
	}
	return strings.TrimSpace(*v), true
}

// mustText returns the text of sel, failing the test when there is no such element.
func (p *page) mustText(sel string) string {
	p.t.Helper()
	s, ok := p.text(sel)
	if !ok {
		p.fatalf("no element matches %s", sel)
	}
	return s
}

// mustHave fails the test when no element matches sel.
func (p *page) mustHave(sel string) {
	p.t.Helper()
	p.mustText(sel)
}

// wantText fails the test unless the text of sel is want.
func (p *page) wantText(sel, want string) {
	p.t.Helper()
	if got := p.mustText(sel); got != want {
		p.fatalf("text of %s = %q, want %q", sel, got, want)
	}
}

// wantPath fails the test unless the page shown is at origin+path.
func (p *page) wantPath(origin, path string) *url.URL {
	p.t.Helper()
	u := p.location()
	if got := u.Scheme + "://" + u.Host; got != origin || u.Path != path {
		p.fatalf("browser at %s, want %s%s", u, origin, path)
	}
	return u
}

// screenshot saves a full-page PNG screenshot as name in the output directory.
func (p *page) screenshot(name string) string {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100)) // 100: PNG; anything else is JPEG
	if err != nil {
		p.fatalf("taking a screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		p.fatalf("the screenshot is not a PNG (starts with % x)", png[:min(8, len(png))])
	}
	path, err := writeOutput(name, png)
	if err != nil {
		p.t.Fatalf("saving the screenshot: %v", err)
	}
	p.t.Logf("screenshot: %s", path)
	return path
}

// writeOutput writes a test artifact to $AUTHGATE_TEST_OUTPUT, or to
// testoutput/ at the repository root (gitignored), and returns its path.
func writeOutput(name string, data []byte) (string, error) {
	dir := os.Getenv("AUTHGATE_TEST_OUTPUT")
	if dir == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "testoutput")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, data, 0o644)
}

// testUser is an account of the credentials provider's users file.
type testUser struct {
	username, password, name, email string
}

// writeUsersFile writes a users file (username:bcrypt-hash:name:email lines)
// in a temporary directory and returns its path.
func writeUsersFile(t *testing.T, users ...testUser) string {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(u.password), 4) // minimum cost: fast tests
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s:%s:%s\n", u.username, hash, u.name, u.email)
	}
	path := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startUpstream starts the guarded application: an HTML page showing the
// identity headers it received (#user, #email, #name) and the names of the
// cookies that reached it (#cookies).
func startUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var cookies []string
		for _, c := range r.Cookies() {
			cookies = append(cookies, c.Name)
		}
		sort.Strings(cookies)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Upstream</title></head>
<body>
<h1 id="upstream">Hello from the upstream</h1>
<p>Path: <span id="path">%s</span></p>
<table>
<tr><td>X-Auth-Request-User</td><td id="user">%s</td></tr>
<tr><td>X-Auth-Request-Email</td><td id="email">%s</td></tr>
<tr><td>X-Auth-Request-Name</td><td id="name">%s</td></tr>
<tr><td>Cookies</td><td id="cookies">%s</td></tr>
</table>
</body></html>
`, html.EscapeString(r.URL.Path),
			html.EscapeString(r.Header.Get("X-Auth-Request-User")),
			html.EscapeString(r.Header.Get("X-Auth-Request-Email")),
			html.EscapeString(r.Header.Get("X-Auth-Request-Name")),
			html.EscapeString(strings.Join(cookies, " ")))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// sessionCookieName is authgate's session cookie on http.
const sessionCookieName = "authgate.session-token"

// uuidPattern is a random (version 4) UUID: the id the store gives a user at
// their first OAuth, OIDC or email sign-in, and so the token's sub.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// sessionToken reads the browser's session cookie for origin (HttpOnly, so
// through the DevTools protocol, not the page) and decodes it with the realm's
// secret.
func (p *page) sessionToken(origin string) map[string]any {
	p.t.Helper()
	res, err := chromedp.Run(p.ctx, func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{origin + "/"}})
	})
	if err != nil {
		p.fatalf("reading the browser's cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name != sessionCookieName {
			continue
		}
		codec, err := session.NewCodec([]string{secret}, sessionCookieName, session.FormatAuthJS)
		if err != nil {
			p.t.Fatal(err)
		}
		claims, err := codec.Decode(c.Value, time.Now())
		if err != nil {
			p.fatalf("decoding the session cookie: %v", err)
		}
		return claims
	}
	p.fatalf("the browser has no %s cookie for %s", sessionCookieName, origin)
	return nil
}

// wantStoredUser checks that the browser's session is a stored user's (its
// sub a random UUID) and that the upstream page shows that id as
// X-Auth-Request-User; it returns the id.
func (p *page) wantStoredUser(origin string) string {
	p.t.Helper()
	sub, _ := p.sessionToken(origin)["sub"].(string)
	if !uuidPattern.MatchString(sub) {
		p.fatalf("session token sub = %q, want a stored user's id (a random UUID)", sub)
	}
	p.wantText("#user", sub)
	return sub
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func indent(s, prefix string) string {
	if len(s) > 3000 {
		s = s[:3000] + "…"
	}
	return prefix + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+prefix)
}
