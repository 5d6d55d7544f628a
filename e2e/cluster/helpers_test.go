package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/caddy-authgate/internal/testenv"
	"github.com/authgate/caddy-authgate/internal/testsite"
	"github.com/authgate/caddy-authgate/session"
)

const (
	// testSecret is the realm secret every instance of a test shares.
	testSecret = "cluster-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"

	// authgate's cookie names on http.
	sessionCookie = "authgate.session-token"
	csrfCookie    = "authgate.csrf-token"
	stateCookie   = "authgate.oauth-state"

	// htmlAccept is what a browser sends when it navigates to a page.
	htmlAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	jsonAccept = "application/json"

	// bt is a backtick, for CEL expressions in Caddyfiles written as Go strings.
	bt = "`"

	// patience is how long a test waits for what other instances, Redis or the
	// provider bring about (a sign-out honoured elsewhere, a subscription
	// renewed) before it gives up: far more than a working cluster takes, so
	// that a busy machine does not fail a test while a broadcast that never
	// arrives does. How long it took is logged, never asserted.
	patience = 30 * time.Second
)

// ---- the upstream ----

// newUpstream starts the guarded application and returns its URL.
func newUpstream(t *testing.T) string {
	t.Helper()
	return testsite.NewUpstream(t, answerIdentity).URL
}

// answerIdentity answers 200 with the identity the upstream received from
// authgate as JSON ({"user": X-Auth-Request-User, "access_token":
// X-Access-Token}), so that each response tells what the upstream saw for that
// very request.
func answerIdentity(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"user":         r.Header.Get("X-Auth-Request-User"),
		"access_token": r.Header.Get("X-Access-Token"),
	})
}

// seen is what the upstream reported in a response body.
type seen struct {
	User        string `json:"user"`
	AccessToken string `json:"access_token"`
}

// wantUpstreamUser checks that the request was let through and that the
// upstream saw it from user.
func wantUpstreamUser(t testing.TB, r response, user string) {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	if got := upstreamSaw(t, r).User; got != user {
		t.Fatalf("%s: upstream saw user %q, want %s", r.what, got, user)
	}
}

func upstreamSaw(t testing.TB, r response) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(r.Body), &s); err != nil {
		t.Fatalf("%s: not the upstream's answer: %q", r.what, testsite.Excerpt(r.Body))
	}
	return s
}

// ---- Caddy processes ----

// siteConfig is what differs between the instances' Caddyfiles.
type siteConfig struct {
	// Secrets is the realm's secret line (default: testSecret).
	Secrets string
	// Realm is the rest of the `authgate { … }` global option.
	Realm string
	// Directive is the site's authgate directive (default: `authgate`).
	Directive string
	// Extra goes into the site block, before reverse_proxy.
	Extra string
}

// instance is one Caddy process serving http://127.0.0.1:<port>.
type instance struct {
	t         *testing.T
	name      string
	id        string // sent back in X-Cluster-Instance, unique to the process
	port      int
	base      string
	adminAddr string // "" when the admin API is off
	dir       string
	upstream  string
	logPath   string

	cmd  *exec.Cmd
	done chan struct{}
}

// startInstance runs the caddy binary with the Caddyfile made from cfg, on a
// free loopback port, and waits until it answers. withAdmin turns the admin API
// on, on another free loopback port (for reload). The process is stopped when
// the test ends; its log is shown if the test failed, and a log that mentions
// a panic fails the test.
func startInstance(t *testing.T, name, upstream string, withAdmin bool, cfg siteConfig) *instance {
	t.Helper()
	return startInstanceOn(t, name, 0, upstream, withAdmin, cfg)
}

// startInstanceOn is startInstance on the given port (0: a free one), for
// instances whose address must be known before they start.
func startInstanceOn(t *testing.T, name string, port int, upstream string, withAdmin bool, cfg siteConfig) *instance {
	t.Helper()
	var lastErr error
	for try := 0; try < 3; try++ {
		in := &instance{t: t, name: name, upstream: upstream, dir: t.TempDir(), port: port,
			id: fmt.Sprintf("%s-%d-%d", name, os.Getpid(), time.Now().UnixNano())}
		if in.port == 0 {
			in.port = testenv.FreePort(t)
		}
		in.base = fmt.Sprintf("http://127.0.0.1:%d", in.port)
		if withAdmin {
			in.adminAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		}
		in.logPath = filepath.Join(in.dir, "caddy.log")
		lastErr = in.start(cfg)
		if lastErr == nil {
			t.Cleanup(in.stop)
			return in
		}
		if port != 0 || !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("instance %s: %v", name, lastErr)
	return nil
}

// caddyfile is the instance's Caddyfile for cfg.
func (in *instance) caddyfile(cfg siteConfig) string {
	secrets := cfg.Secrets
	if secrets == "" {
		secrets = testSecret
	}
	directive := cfg.Directive
	if directive == "" {
		directive = "authgate"
	}
	admin := "admin off"
	if in.adminAddr != "" {
		admin = "admin " + in.adminAddr
	}
	return fmt.Sprintf(`{
	%s
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	storage file_system %s
	authgate {
		secret %s
%s
	}
}

%s {
	header X-Cluster-Instance %s
	%s
%s
	reverse_proxy %s
}
`, admin, filepath.Join(in.dir, "data"), secrets, cfg.Realm, in.base, in.id, directive, cfg.Extra, in.upstream)
}

func (in *instance) writeConfig(cfg siteConfig) string {
	path := filepath.Join(in.dir, fmt.Sprintf("Caddyfile.%d", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(in.caddyfile(cfg)), 0o600); err != nil {
		in.t.Fatal(err)
	}
	return path
}

func (in *instance) env() []string {
	return append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(in.dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(in.dir, "xdgdata"),
	)
}

func (in *instance) start(cfg siteConfig) error {
	path := in.writeConfig(cfg)
	logFile, err := os.Create(in.logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Dir = in.dir
	cmd.Env = in.env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	testenv.SetPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting caddy: %v", err)
	}
	in.cmd, in.done = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(in.done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := plainClient.Get(in.base + "/.auth/providers")
		if err == nil {
			resp.Body.Close()
			// Another process may have taken the port meanwhile: the answer
			// must come from this instance.
			if got := resp.Header.Get("X-Cluster-Instance"); got != in.id {
				in.kill()
				return fmt.Errorf("address already in use: %s is answered by another server (X-Cluster-Instance %q)", in.base, got)
			}
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-in.done:
			return fmt.Errorf("caddy exited before it answered:\n%s", in.logTail(60))
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			in.kill()
			return fmt.Errorf("caddy did not answer within 20s:\n%s", in.logTail(60))
		}
	}
}

func (in *instance) kill() {
	_ = in.cmd.Process.Kill()
	<-in.done
}

// stop stops the process (SIGTERM, then SIGKILL) and checks its log.
func (in *instance) stop() {
	t := in.t
	if !in.exited() {
		testenv.Terminate(in.cmd.Process, in.done, 10*time.Second)
	}
	if n := in.logCount("panic"); n > 0 {
		t.Errorf("instance %s logged %d lines mentioning a panic", in.name, n)
	}
	if t.Failed() {
		t.Logf("instance %s (%s) log, last lines:\n%s", in.name, in.base, in.logTail(80))
	}
}

func (in *instance) exited() bool {
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

// alive fails the test when the process has exited.
func (in *instance) alive(t *testing.T) {
	t.Helper()
	if in.exited() {
		t.Fatalf("instance %s exited: %v\n%s", in.name, in.cmd.ProcessState, in.logTail(60))
	}
}

func (in *instance) logs() string {
	b, _ := os.ReadFile(in.logPath)
	return string(b)
}

func (in *instance) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(in.logs(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// logCount is the number of log lines containing every one of parts.
func (in *instance) logCount(parts ...string) int {
	return testsite.LogCount(in.logs(), parts...)
}

// reload loads cfg into the running instance with `caddy reload` through its
// admin API.
func (in *instance) reload(t *testing.T, cfg siteConfig) {
	t.Helper()
	if in.adminAddr == "" {
		t.Fatal("reload needs an instance started with its admin API")
	}
	path := in.writeConfig(cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, "reload", "--config", path, "--adapter", "caddyfile", "--address", in.adminAddr, "--force")
	cmd.Dir = in.dir
	cmd.Env = in.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
}

// rssKB is the process's resident set size in kB, from /proc/<pid>/status.
func (in *instance) rssKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.cmd.Process.Pid))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("reading the resident set size: %v", err)
		}
		t.Skipf("reading the resident set size needs /proc (CI fails here instead): %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", in.cmd.Process.Pid)
	return 0
}

// ---- HTTP ----

// plainClient follows no redirects, so that each step can be looked at, and
// has no cookie jar: every request names its cookies (Go's jar ignores ports,
// so instances on one host would share cookies behind the test's back).
var plainClient = &http.Client{
	Timeout: 30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
	Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
	},
}

// response is an answer with its body read.
type response struct {
	*http.Response
	Body string
	what string // "GET http://…", for messages
}

// request describes one HTTP request.
type request struct {
	method  string
	url     string
	accept  string
	cookies []*http.Cookie
	form    url.Values // POSTed as a form
	json    any        // POSTed as JSON
}

func sessionC(v string) *http.Cookie { return &http.Cookie{Name: sessionCookie, Value: v} }

// do sends rq; it may be called from any goroutine.
func do(rq request) (response, error) {
	var body io.Reader
	ct := ""
	switch {
	case rq.form != nil:
		body, ct = strings.NewReader(rq.form.Encode()), "application/x-www-form-urlencoded"
	case rq.json != nil:
		js, err := json.Marshal(rq.json)
		if err != nil {
			return response{}, err
		}
		body, ct = bytes.NewReader(js), "application/json"
	}
	method := rq.method
	if method == "" {
		method = http.MethodGet
	}
	what := method + " " + rq.url
	req, err := http.NewRequest(method, rq.url, body)
	if err != nil {
		return response{}, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if rq.accept != "" {
		req.Header.Set("Accept", rq.accept)
	}
	for _, c := range rq.cookies {
		req.AddCookie(c)
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s: reading the body: %w", what, err)
	}
	return response{Response: resp, Body: string(b), what: what}, nil
}

func mustDo(t testing.TB, rq request) response {
	t.Helper()
	r, err := do(rq)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// doAll sends the requests concurrently and returns the answers in order.
func doAll(t testing.TB, rqs ...request) []response {
	t.Helper()
	out := make([]response, len(rqs))
	errs := make([]error, len(rqs))
	var wg sync.WaitGroup
	for i, rq := range rqs {
		wg.Go(func() { out[i], errs[i] = do(rq) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// api is a script's GET with the session cookie v ("" for none).
func api(t testing.TB, rawURL, v string) response {
	t.Helper()
	return get(t, rawURL, jsonAccept, v)
}

// navigate is a browser's GET with the session cookie v.
func navigate(t testing.TB, rawURL, v string) response {
	t.Helper()
	return get(t, rawURL, htmlAccept, v)
}

func get(t testing.TB, rawURL, accept, v string) response {
	t.Helper()
	rq := request{url: rawURL, accept: accept}
	if v != "" {
		rq.cookies = []*http.Cookie{sessionC(v)}
	}
	return mustDo(t, rq)
}

func wantStatus(t testing.TB, r response, status int) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s: status %d, want %d; Location %q; body:\n%s", r.what, r.StatusCode, status, r.Header.Get("Location"), testsite.Excerpt(r.Body))
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

// wantSignedOut checks the answer to a script's request without a valid
// session: 401 {"error":"SessionRequired"}.
func wantSignedOut(t testing.TB, r response) {
	t.Helper()
	wantStatus(t, r, http.StatusUnauthorized)
	if !strings.Contains(r.Body, `"SessionRequired"`) {
		t.Fatalf("%s: body %q, want SessionRequired", r.what, r.Body)
	}
}

// refusedEventually polls the instance with the session cookie v until it
// answers 401, failing the test when it still lets v through after patience,
// and logs how long the refusal took to arrive.
func refusedEventually(t testing.TB, in *instance, v, what string) {
	t.Helper()
	var last response
	took := testsite.Eventually(t, patience, what, func() error {
		last = api(t, in.base+"/app", v)
		if last.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("%s answers %d", in.name, last.StatusCode)
		}
		return nil
	})
	wantSignedOut(t, last)
	t.Logf("%s: refused by %s after %v", what, in.name, took.Round(10*time.Microsecond))
}

// ---- authgate flows ----

// csrf fetches a CSRF token and its cookie from the instance.
func csrf(t testing.TB, in *instance) (string, *http.Cookie) {
	t.Helper()
	r := api(t, in.base+"/.auth/csrf", "")
	wantStatus(t, r, http.StatusOK)
	var body struct{ CSRFToken string }
	c := setCookie(r, csrfCookie)
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body.CSRFToken == "" || c == nil {
		t.Fatalf("%s: %q, Set-Cookie %v", r.what, r.Body, r.Header.Values("Set-Cookie"))
	}
	return body.CSRFToken, &http.Cookie{Name: c.Name, Value: c.Value}
}

// signIn signs username in on the instance with the credentials form and
// returns the session cookie's value.
func signIn(t testing.TB, in *instance, username string) string {
	t.Helper()
	tok, c := csrf(t, in)
	r := mustDo(t, request{method: http.MethodPost, url: in.base + "/.auth/callback/credentials", accept: htmlAccept,
		cookies: []*http.Cookie{c},
		form: url.Values{"username": {username}, "password": {username + "-password"},
			"csrfToken": {tok}, "callbackUrl": {in.base + "/app"}}})
	wantStatus(t, r, http.StatusFound)
	if loc := r.Header.Get("Location"); loc != in.base+"/app" {
		t.Fatalf("%s: signed in, redirected to %q, want %s/app", r.what, loc, in.base)
	}
	sc := setCookie(r, sessionCookie)
	if sc == nil || sc.Value == "" || sc.MaxAge <= 0 {
		t.Fatalf("%s: no session cookie set: %v", r.what, r.Header.Values("Set-Cookie"))
	}
	return sc.Value
}

// signOut signs the session v out on the instance (the CSRF-checked POST) and
// checks that the answer clears the cookie.
func signOut(t testing.TB, in *instance, v string) {
	t.Helper()
	tok, c := csrf(t, in)
	r := mustDo(t, request{method: http.MethodPost, url: in.base + "/.auth/signout", accept: htmlAccept,
		cookies: []*http.Cookie{c, sessionC(v)}, form: url.Values{"csrfToken": {tok}}})
	wantStatus(t, r, http.StatusFound)
	if sc := setCookie(r, sessionCookie); sc == nil || sc.MaxAge >= 0 {
		t.Fatalf("%s: session cookie not cleared: %v", r.what, r.Header.Values("Set-Cookie"))
	}
}

// ---- credentials users ----

// usersFile writes a users file for the credentials provider, each user's
// password being "<login>-password" (see signIn).
func usersFile(t *testing.T, logins ...string) string {
	t.Helper()
	var users []testsite.User
	for _, l := range logins {
		users = append(users, testsite.User{Login: l, Password: l + "-password", Name: l + " User", Email: l + "@example.com"})
	}
	return testsite.UsersFile(t, users...)
}

func redisStore(addr, prefix string) string {
	return fmt.Sprintf("\t\tstore redis redis://%s/0 {\n\t\t\tprefix %s\n\t\t}\n", addr, prefix)
}

// ---- Redis ----

// waitSubscribers waits until n clients are subscribed to the realm's events
// channel (instances resubscribe on their own after Redis came back), and logs
// how long that took.
func waitSubscribers(t *testing.T, addr, prefix string, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	channel := prefix + "events:sessions"
	var got int64
	took := testsite.Eventually(t, patience, fmt.Sprintf("%d subscribers to %s", n, channel), func() error {
		m, err := c.PubSubNumSub(t.Context(), channel).Result()
		if err != nil {
			return err
		}
		if got = m[channel]; got < int64(n) {
			return fmt.Errorf("%d subscribed", got)
		}
		return nil
	})
	t.Logf("%d instances subscribed to %s after %v", got, channel, took.Round(time.Millisecond))
}

// ---- session tokens ----

// decodeToken decodes a jwt session cookie with secret.
func decodeToken(t testing.TB, secret, v string) (map[string]any, error) {
	t.Helper()
	c, err := session.NewCodec([]string{secret}, sessionCookie, session.FormatAuthJS)
	if err != nil {
		t.Fatal(err)
	}
	return c.Decode(v, time.Now())
}

func mustDecode(t testing.TB, secret, v string) map[string]any {
	t.Helper()
	claims, err := decodeToken(t, secret, v)
	if err != nil {
		t.Fatalf("decoding the session token: %v", err)
	}
	return claims
}

var errNotJSON = errors.New("not JSON")

func jsonBody(r response) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
		return nil, fmt.Errorf("%w: %q", errNotJSON, testsite.Excerpt(r.Body))
	}
	return m, nil
}

// tcpProxy forwards loopback connections to a server, and can cut them: an
// instance whose store URL names the proxy loses Redis while the others keep
// it.
type tcpProxy struct {
	Addr   string
	target string
	l      net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{Addr: l.Addr().String(), target: target, l: l, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		l.Close()
		p.Cut()
	})
	return p
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	if cut {
		c.Close()
		return
	}
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, s) {
		return
	}
	defer p.untrack(c, s)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
	<-done
}

// track registers a connection pair, or closes it when the proxy was cut
// meanwhile.
func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *tcpProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

// Cut closes every connection and refuses new ones until Restore.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Restore forwards new connections again.
func (p *tcpProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}
