// Package testidp starts a real OpenID Provider (oidc-provider from the npm
// registry) on loopback for end-to-end tests and signs users in through its
// login and consent forms.
//
// The provider is testdata/idp/server.mjs run by node with the packages
// installed in testdata/node/node_modules (by `make test`). It offers the
// scopes openid, email (email, email_verified), profile (name, picture, … and
// every account claim no other scope lists, e.g. "department") and groups
// (groups); claims are put in the ID token as well as served from userinfo.
// PKCE with S256 is required of every client.
package testidp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/authgate/caddy-authgate/internal/testenv"
)

// startTimeout bounds how long Start waits for the provider's READY line.
const startTimeout = 20 * time.Second

// Client is an OAuth 2.0 client registered with the provider. It
// authenticates at the token endpoint with client_secret_basic (the
// provider's default token_endpoint_auth_method) and may only use the
// authorization code flow (with refresh tokens).
type Client struct {
	ID           string
	Secret       string
	RedirectURIs []string
	// PostLogoutRedirectURIs are where the end-session endpoint may send the
	// browser back to (RP-initiated logout).
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI receives logout tokens when a session at the
	// provider ends (OIDC Back-Channel Logout 1.0); "" for none.
	BackchannelLogoutURI string
}

// Options configures the provider.
type Options struct {
	Clients []Client
	// Accounts maps the login typed into the login form to the account's
	// claims, e.g. {"alice": {"email": "alice@example.com", "groups":
	// []string{"admins"}}}. "sub" defaults to the login.
	Accounts map[string]map[string]any
	// TTL overrides oidc-provider's token lifetimes in seconds, e.g.
	// {"AccessToken": 2}. Default: oidc-provider's.
	TTL map[string]int
	// RefreshTokens makes the provider issue a refresh token with every
	// authorization code (whether or not offline_access was asked for),
	// rotate it on every use (a used refresh token is refused, and using
	// one twice revokes the grant) and serve the revocation endpoint (see
	// RevokeToken). Default: oidc-provider's (a refresh token only for
	// offline_access, no revocation endpoint).
	RefreshTokens bool
}

// IDP is a running provider.
type IDP struct {
	// Issuer is the provider's issuer identifier, http://127.0.0.1:PORT
	// (no trailing slash); its discovery document is at
	// Issuer+"/.well-known/openid-configuration".
	Issuer string

	cmd   *exec.Cmd
	stdin io.Closer
	done  chan struct{} // closed when the process has exited
	once  sync.Once
	logs  *ringLog
}

type serverConfig struct {
	Port             int                       `json:"port"`
	Clients          []serverClient            `json:"clients"`
	Accounts         map[string]map[string]any `json:"accounts"`
	TTL              map[string]int            `json:"ttl,omitempty"`
	RefreshTokens    bool                      `json:"refresh_tokens,omitempty"`
	ExitOnStdinClose bool                      `json:"exit_on_stdin_close"`
}

type serverClient struct {
	ClientID               string   `json:"client_id"`
	ClientSecret           string   `json:"client_secret"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`
	BackchannelLogoutURI   string   `json:"backchannel_logout_uri,omitempty"`
	BackchannelSession     bool     `json:"backchannel_logout_session_required,omitempty"`
}

// Start starts the provider on a free loopback port and stops it with
// t.Cleanup. It needs node and testdata/node/node_modules (installed by `make
// test`); when either is missing or the server does not print READY within
// 20s, Start calls t.Fatalf when the CI environment variable is "true" and
// t.Skipf otherwise. When the server exits before it is ready (e.g. it
// rejected Options), Start calls t.Fatalf with its output.
func Start(t testing.TB, opts Options) *IDP {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatalf("testidp: %v", err)
	}
	node, _ := testenv.Node(t, "oidc-provider")

	cfg := serverConfig{Accounts: opts.Accounts, TTL: opts.TTL, RefreshTokens: opts.RefreshTokens, ExitOnStdinClose: true}
	if cfg.Accounts == nil {
		cfg.Accounts = map[string]map[string]any{}
	}
	for _, c := range opts.Clients {
		cfg.Clients = append(cfg.Clients, serverClient{ClientID: c.ID, ClientSecret: c.Secret, RedirectURIs: c.RedirectURIs,
			PostLogoutRedirectURIs: c.PostLogoutRedirectURIs, BackchannelLogoutURI: c.BackchannelLogoutURI, BackchannelSession: c.BackchannelLogoutURI != ""})
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("testidp: encoding config: %v", err)
	}
	cfgPath := filepath.Join(t.TempDir(), "idp.json")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o600); err != nil {
		t.Fatalf("testidp: %v", err)
	}

	p := &IDP{done: make(chan struct{}), logs: &ringLog{max: 200}}
	ready := make(chan string, 1)
	stdout := &lineWriter{line: func(s string) {
		if issuer, ok := strings.CutPrefix(s, "READY "); ok {
			select {
			case ready <- strings.TrimSpace(issuer):
			default:
			}
			return
		}
		p.logs.add("stdout: " + s)
	}}
	stderr := &lineWriter{line: func(s string) { p.logs.add("stderr: " + s) }}

	cmd := exec.Command(node, filepath.Join(root, "testdata", "idp", "server.mjs"), cfgPath)
	cmd.Dir = root
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe() // the provider exits when this closes, e.g. when the test binary dies
	if err != nil {
		t.Fatalf("testidp: %v", err)
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		testenv.Unavailable(t, "testidp: starting node: %v", err)
	}
	p.cmd, p.stdin = cmd, stdin
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		stdout.flush()
		stderr.flush()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("testidp: provider output (last lines):\n%s", p.logs.String())
		}
	})

	select {
	case p.Issuer = <-ready:
		t.Logf("testidp: provider %s ready in %v", p.Issuer, time.Since(started).Round(time.Millisecond))
	case <-p.done:
		// node and oidc-provider are there, so this is most likely a bad
		// Options (e.g. an invalid redirect URI): fail rather than skip.
		t.Fatalf("testidp: provider exited before it was ready (%v); its output is logged below", waitErr)
	case <-time.After(startTimeout):
		p.Stop()
		testenv.Unavailable(t, "testidp: provider not ready within %v; output:\n%s", startTimeout, p.logs.String())
	}
	return p
}

// Stop stops the provider and waits for it to exit, so that its port refuses
// connections when Stop returns (for "identity provider down" tests). It is
// idempotent; Start also calls it with t.Cleanup.
func (p *IDP) Stop() {
	if p.cmd == nil {
		return
	}
	p.once.Do(func() {
		testenv.Terminate(p.cmd.Process, p.done, 5*time.Second)
		_ = p.stdin.Close()
	})
	<-p.done
}

// TokenRequests returns the number of token endpoint requests the provider
// received so far by grant_type ("authorization_code", "refresh_token"),
// failed ones included.
func (p *IDP) TokenRequests(t testing.TB) map[string]int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(p.Issuer + "/test/token-requests")
	if err != nil {
		t.Fatalf("testidp: token requests: %v", err)
	}
	defer resp.Body.Close()
	counts := map[string]int{}
	if err := json.NewDecoder(resp.Body).Decode(&counts); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("testidp: token requests: %s, %v", resp.Status, err)
	}
	return counts
}

// RevokeToken revokes a token issued to client (an access or refresh token)
// at the provider's revocation endpoint (RFC 7009), which Options.RefreshTokens
// enables; a revoked refresh token is refused with invalid_grant.
func (p *IDP) RevokeToken(t testing.TB, client Client, token string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.Issuer+"/token/revocation",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatalf("testidp: revoking a token: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(client.ID), url.QueryEscape(client.Secret))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("testidp: revoking a token: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("testidp: revoking a token: %s: %s", resp.Status, body)
	}
}

// Login signs account in at the provider. loginPage is the response of
// following authgate's redirect to the provider's authorization endpoint:
// the provider's login page (or its consent page when the client's cookie jar
// already holds a provider session). Login submits the login form with
// login=account and a password, then the consent form, following redirects
// with client (which must have a cookie jar), and returns the final response,
// i.e. whatever authgate's callback answers or redirects to. Login closes
// loginPage.Body; the returned body is unread. Login also submits the
// auto-submitting page of the form_post response mode.
//
// When the provider refuses the login (account is not in Options.Accounts) it
// answers 400 with the login form again; Login returns that response.
func Login(t testing.TB, client *http.Client, loginPage *http.Response, account string) *http.Response {
	t.Helper()
	if client.Jar == nil {
		t.Fatalf("testidp.Login: the HTTP client needs a cookie jar")
	}
	resp := loginPage
	loggedIn := false
	for step := 0; ; step++ {
		if step == 10 {
			t.Fatalf("testidp.Login: still at a provider form after %d submissions (%s)", step, resp.Request.URL)
		}
		f, err := provFormOf(resp)
		if err != nil {
			t.Fatalf("testidp.Login: %v", err)
		}
		if f == nil {
			if step == 0 {
				t.Fatalf("testidp.Login: expected the provider's login page, got %s at %s:\n%s",
					resp.Status, resp.Request.URL, excerpt(resp))
			}
			return resp
		}
		switch f.kind {
		case "login":
			if loggedIn {
				return resp // login refused
			}
			loggedIn = true
			f.values.Set("login", account)
			f.values.Set("password", "testidp-password")
		case "consent", "callback":
		default:
			t.Fatalf("testidp.Login: unexpected provider form %q at %s", f.kind, resp.Request.URL)
		}
		resp.Body.Close()
		resp, err = client.PostForm(f.action, f.values)
		if err != nil {
			t.Fatalf("testidp.Login: submitting the %s form: %v", f.kind, err)
		}
	}
}

// Authorize plays a browser at the provider: it visits authURL (the
// authorization URL authgate redirected to) with a client that keeps its
// cookies in jar and follows redirects while they stay at the provider, signs
// account in when the provider asks (see Login), and returns the URL the
// provider sends the browser back to: authgate's callback with code and
// state, or with an error.
func Authorize(t testing.TB, jar http.CookieJar, authURL *url.URL, account string) *url.URL {
	t.Helper()
	idpHost := authURL.Host
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != idpHost || len(via) > 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := browser.Get(authURL.String())
	if err != nil {
		t.Fatalf("GET %s: %v", authURL, err)
	}
	if resp.StatusCode == http.StatusOK {
		resp = Login(t, browser, resp, account)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || loc.Host == idpHost {
		t.Fatalf("the provider did not send the browser back: %s at %s (Location %q)", resp.Status, resp.Request.URL, resp.Header.Get("Location"))
	}
	return loc
}

// EndSession plays a browser that the relying party sent to the provider's
// end_session_endpoint (endSessionURL): it confirms the sign-out and returns
// where the provider sends the browser afterwards (the post-logout redirect
// URI), or nil when it shows its own "signed out" page. The provider sends
// the back-channel logout tokens before it answers.
func EndSession(t testing.TB, jar http.CookieJar, endSessionURL string) *url.URL {
	t.Helper()
	u, err := url.Parse(endSessionURL)
	if err != nil {
		t.Fatal(err)
	}
	idpHost := u.Host
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != idpHost || len(via) > 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := browser.Get(endSessionURL)
	if err != nil {
		t.Fatalf("GET %s: %v", endSessionURL, err)
	}
	f, err := provFormOf(resp)
	if err != nil || f == nil || f.kind != "logout" {
		t.Fatalf("the provider showed no sign-out confirmation at %s (%s): %v\n%s", endSessionURL, resp.Status, err, excerpt(resp))
	}
	f.values.Set("logout", "yes")
	resp, err = browser.PostForm(f.action, f.values)
	if err != nil {
		t.Fatalf("confirming the sign-out: %v", err)
	}
	defer resp.Body.Close()
	if loc, err := resp.Location(); err == nil && loc.Host != idpHost {
		return loc
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("confirming the sign-out: %s at %s\n%s", resp.Status, resp.Request.URL, excerpt(resp))
	}
	return nil
}

// Output is the provider's last lines of output, for a test's failure message.
func (p *IDP) Output() string { return p.logs.String() }

// provForm is a form of the provider's to submit.
type provForm struct {
	kind   string // "login", "consent" or "callback" (form_post response mode)
	action string
	values url.Values
}

// provFormOf finds the provider form in resp: the login or consent form of
// oidc-provider's devInteractions (identified by their hidden "prompt"
// input), or the auto-submitting page of the form_post response mode. It
// returns nil when there is none. It leaves resp.Body unread.
func provFormOf(resp *http.Response) (*provForm, error) {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", resp.Request.URL, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		return nil, nil
	}
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		return nil, nil
	}
	var title string
	var forms []*html.Node
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		switch n.DataAtom {
		case atom.Title:
			title = text(n)
		case atom.Form:
			forms = append(forms, n)
		}
	}
	for _, form := range forms {
		values := url.Values{}
		for n := range form.Descendants() {
			if n.Type == html.ElementNode && n.DataAtom == atom.Input && attr(n, "name") != "" {
				values.Add(attr(n, "name"), attr(n, "value"))
			}
		}
		kind := values.Get("prompt")
		if kind == "" && title == "Submitting Callback" {
			kind = "callback"
		}
		if kind == "" && values.Has("xsrf") && strings.Contains(attr(form, "action"), "/session/end") {
			kind = "logout"
		}
		if kind == "" {
			continue
		}
		action, err := resp.Request.URL.Parse(attr(form, "action"))
		if err != nil {
			return nil, fmt.Errorf("form action at %s: %w", resp.Request.URL, err)
		}
		return &provForm{kind: kind, action: action.String(), values: values}, nil
	}
	return nil, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text returns the text in n with runs of white space collapsed to one
// space (text of separate elements is separated by a space).
func text(n *html.Node) string {
	var words []string
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			words = append(words, strings.Fields(c.Data)...)
		}
	}
	return strings.Join(words, " ")
}

// excerpt returns the start of resp's body (left unread) as text.
func excerpt(resp *http.Response) string {
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	s := string(body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		if doc, err := html.Parse(bytes.NewReader(body)); err == nil {
			for n := range doc.Descendants() {
				if n.Type == html.ElementNode && n.DataAtom == atom.Body {
					s = text(n)
					break
				}
			}
		}
	}
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

// lineWriter calls line for each line written to it.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	line func(string)
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(strings.TrimSuffix(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

// ringLog keeps the last max lines.
type ringLog struct {
	mu    sync.Mutex
	max   int
	lines []string
	lost  int
}

func (r *ringLog) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) == r.max {
		r.lines = r.lines[1:]
		r.lost++
	}
	r.lines = append(r.lines, s)
}

func (r *ringLog) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	if r.lost > 0 {
		fmt.Fprintf(&b, "(%d earlier lines dropped)\n", r.lost)
	}
	for _, l := range r.lines {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
