// Command soak runs authgate under mixed load on loopback for a while (`make
// soak`, not part of `make test`): guarded requests over many sessions, whose
// tokens are re-issued now and then as renewals do (so the token cache fills
// and evicts), and users who sign in with credentials, make a few requests,
// update their session and sign out. It starts one Caddy (the load benchmark's
// bench/caddyfiles/authgate.Caddyfile), logs every minute what was done and
// Caddy's resident memory, and fails on any unexpected answer or when memory
// grows: the RSS at the end must be within -rss-growth of the RSS at -rss-from.
//
//	go run ./bench/soak -caddy ./caddy [-duration 10m] [-sessions 20000] [-workers 16] [-journeys 4]
//
// It is bounded in time (-duration) and in requests (-max-requests), and stops
// by itself; it only talks to 127.0.0.1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/caddy-authgate/session"
)

const cookieName = "authgate.session-token" // http: no __Secure- prefix

type config struct {
	caddy       string
	duration    time.Duration
	sessions    int
	workers     int
	journeys    float64 // sign-in journeys per second, all workers together
	maxRequests int64
	rssFrom     time.Duration
	rssGrowth   float64
	port        int
	renew       time.Duration // the pool's tokens are re-issued this often
}

func main() {
	var cfg config
	flag.StringVar(&cfg.caddy, "caddy", "", "the Caddy binary with authgate (required)")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Minute, "how long to run")
	flag.IntVar(&cfg.sessions, "sessions", 20000, "distinct sessions of the guarded requests")
	flag.IntVar(&cfg.workers, "workers", 16, "concurrent clients of guarded requests")
	flag.Float64Var(&cfg.journeys, "journeys", 4, "sign-in, requests, update, sign-out journeys started per second")
	flag.Int64Var(&cfg.maxRequests, "max-requests", 20_000_000, "stop after this many requests")
	flag.DurationVar(&cfg.rssFrom, "rss-from", 2*time.Minute, "when the reference RSS is taken")
	flag.Float64Var(&cfg.rssGrowth, "rss-growth", 0.10, "allowed RSS growth from -rss-from to the end")
	flag.IntVar(&cfg.port, "port", 18600, "the guarded site's port (the upstream's is port+1)")
	// The cache must reach its bound before the RSS reference (-rss-from, minute 2):
	// at about 0.7 KB a session the default 64 MiB holds some five generations
	// of 20,000 sessions, which a re-issue every 15 s brings in 75 s.
	flag.DurationVar(&cfg.renew, "renew", 15*time.Second, "re-issue the sessions' tokens this often, as renewals do (0: never)")
	flag.Parse()
	if cfg.caddy == "" || cfg.sessions < 1 || cfg.workers < 1 || cfg.duration <= cfg.rssFrom {
		fmt.Fprintln(os.Stderr, "soak: -caddy is required; -sessions and -workers at least 1; -duration longer than -rss-from")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "soak: FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("soak: PASS")
}

// counts are what the load did, by kind; errors are unexpected answers.
type counts struct {
	guarded, signIns, updates, signOuts, refused, errors atomic.Int64
	firstError                                           atomic.Value // string
}

// total is the requests sent, about: a journey is 9 requests.
func (c *counts) total() int64 {
	return c.guarded.Load() + 9*c.signIns.Load()
}

func (c *counts) fail(format string, args ...any) {
	if c.errors.Add(1) == 1 {
		c.firstError.Store(fmt.Sprintf(format, args...))
	}
}

func run(cfg config) error {
	dir, err := os.MkdirTemp("", "authgate-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	secret := strconv.FormatInt(time.Now().UnixNano(), 36) + "-soak-secret-not-for-production"
	users, err := writeUsers(dir, 50)
	if err != nil {
		return err
	}
	caddy, err := startCaddy(cfg, dir, secret)
	if err != nil {
		return err
	}
	defer func() {
		_ = caddy.Process.Signal(syscall.SIGTERM)
		_ = caddy.Wait()
	}()

	first, err := mintCookies(secret, cfg.sessions)
	if err != nil {
		return err
	}
	var cookies atomic.Pointer[[]string]
	cookies.Store(&first)
	fmt.Printf("soak: Caddy pid %d on 127.0.0.1:%d; %d sessions (tokens re-issued every %s), %d workers, %.1f journeys/s, %s\n",
		caddy.Process.Pid, cfg.port, cfg.sessions, cfg.renew, cfg.workers, cfg.journeys, cfg.duration)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	base := "http://127.0.0.1:" + strconv.Itoa(cfg.port)
	var c counts
	var wg sync.WaitGroup
	transport := &http.Transport{MaxIdleConnsPerHost: cfg.workers + 8, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for w := range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			guardedLoop(ctx, client, base, &cookies, w*cfg.sessions/cfg.workers, cfg.maxRequests, &c, cancel)
		}()
	}
	if cfg.renew > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			renew(ctx, secret, cfg, &cookies, &c)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		journeys(ctx, transport, base, users, cfg.journeys, &c)
	}()

	rss, err := watch(ctx, caddy.Process.Pid, cfg, &c)
	wg.Wait()
	if err != nil {
		return err
	}
	fmt.Printf("soak: %d guarded requests, %d sign-ins, %d updates, %d sign-outs, %d refused after sign-out as expected; %d errors\n",
		c.guarded.Load(), c.signIns.Load(), c.updates.Load(), c.signOuts.Load(), c.refused.Load(), c.errors.Load())
	if n := c.errors.Load(); n > 0 {
		return fmt.Errorf("%d unexpected answers; the first: %v", n, c.firstError.Load())
	}
	if c.guarded.Load() == 0 || c.signOuts.Load() == 0 {
		return errors.New("the load did not run")
	}
	return rss.check(cfg.rssGrowth)
}

// writeUsers writes a credentials users file of n users (user0 … with password
// "pw-<name>"), hashed at bcrypt's least cost so that sign-ins do not drown the load.
func writeUsers(dir string, n int) ([]string, error) {
	var b strings.Builder
	names := make([]string, n)
	for i := range names {
		names[i] = "user" + strconv.Itoa(i)
		hash, err := bcrypt.GenerateFromPassword([]byte("pw-"+names[i]), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s:%s:User %d:%s@example.com\n", names[i], hash, i, names[i])
	}
	return names, os.WriteFile(filepath.Join(dir, "users.txt"), []byte(b.String()), 0o600)
}

// startCaddy runs the load benchmark's authgate configuration and waits for it.
func startCaddy(cfg config, dir, secret string) (*exec.Cmd, error) {
	caddyfile, err := filepath.Abs("bench/caddyfiles/authgate.Caddyfile")
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.caddy, "run", "--adapter", "caddyfile", "--config", caddyfile)
	cmd.Env = append(os.Environ(), "BENCH_PORT="+strconv.Itoa(cfg.port), "BENCH_UPPORT="+strconv.Itoa(cfg.port+1),
		"BENCH_SECRET="+secret, "BENCH_USERS="+filepath.Join(dir, "users.txt"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for range 100 {
		if conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(cfg.port)); err == nil {
			conn.Close()
			return cmd, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	out, _ := os.ReadFile(log.Name())
	return nil, fmt.Errorf("caddy did not start:\n%s", out)
}

// mintCookies makes n users' session tokens as the realm would (iat now, so
// no request renews them), the guarded requests' sessions.
func mintCookies(secret string, n int) ([]string, error) {
	codec, err := session.NewCodec([]string{secret}, cookieName, session.FormatAuthJS)
	if err != nil {
		return nil, err
	}
	cookies := make([]string, n)
	now := time.Now()
	for i := range cookies {
		tok, err := codec.Encode(map[string]any{"sub": "pool" + strconv.Itoa(i), "name": "Pool User " + strconv.Itoa(i),
			"email": "pool" + strconv.Itoa(i) + "@example.com", "picture": nil}, 24*time.Hour, now)
		if err != nil {
			return nil, err
		}
		cookies[i] = cookieName + "=" + tok
	}
	return cookies, nil
}

// renew re-issues the pool's tokens every cfg.renew until ctx ends: the cache
// meets a new generation of sessions, and the old ones go cold, as they do
// when sessions are renewed.
func renew(ctx context.Context, secret string, cfg config, cookies *atomic.Pointer[[]string], c *counts) {
	tick := time.NewTicker(cfg.renew)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		next, err := mintCookies(secret, cfg.sessions)
		if err != nil {
			c.fail("re-issuing the sessions: %v", err)
			return
		}
		cookies.Store(&next)
	}
}

// guardedLoop sends guarded requests with the pool's cookies in turn from
// start, each of which must answer 200 ok.
func guardedLoop(ctx context.Context, client *http.Client, base string, pool *atomic.Pointer[[]string], start int, maxRequests int64, c *counts, stop func()) {
	for i := start; ctx.Err() == nil; i++ {
		cookies := *pool.Load()
		if c.total() >= maxRequests {
			stop()
			return
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", cookies[i%len(cookies)])
		status, body, err := do(client, req)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			c.fail("guarded request: %v", err)
		case status != http.StatusOK || body != "ok":
			c.fail("guarded request: %d %q", status, body)
		default:
			c.guarded.Add(1)
		}
	}
}

// journeys starts rate journeys a second until ctx ends, each on a client of
// its own (a browser with a cookie jar).
func journeys(ctx context.Context, transport http.RoundTripper, base string, users []string, rate float64, c *counts) {
	if rate <= 0 {
		return
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := journey(ctx, transport, base, users[i%len(users)]); err != nil && ctx.Err() == nil {
				c.fail("journey of %s: %v", users[i%len(users)], err)
			} else if err == nil {
				c.signIns.Add(1)
				c.updates.Add(1)
				c.signOuts.Add(1)
				c.refused.Add(1)
			}
		}()
	}
}

// journey signs user in with credentials, makes three guarded requests,
// updates the session, makes one more, signs out, and checks that the cookie
// it had no longer passes.
func journey(ctx context.Context, transport http.RoundTripper, base, user string) error {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Transport: transport, Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	csrf, err := csrfToken(ctx, client, base)
	if err != nil {
		return err
	}
	form := url.Values{"username": {user}, "password": {"pw-" + user}, "csrfToken": {csrf}, "callbackUrl": {base + "/"}}
	if err := expect(ctx, client, http.MethodPost, base+"/.auth/callback/credentials", form, http.StatusFound, ""); err != nil {
		return fmt.Errorf("sign-in: %w", err)
	}
	for range 3 {
		if err := expect(ctx, client, http.MethodGet, base+"/", nil, http.StatusOK, "ok"); err != nil {
			return fmt.Errorf("after sign-in: %w", err)
		}
	}
	update, _ := json.Marshal(map[string]any{"csrfToken": csrf, "data": map[string]any{"theme": "dark"}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/.auth/session", strings.NewReader(string(update)))
	req.Header.Set("Content-Type", "application/json")
	if status, body, err := do(client, req); err != nil || status != http.StatusOK {
		return fmt.Errorf("session update: %d %q %v", status, body, err)
	}
	if err := expect(ctx, client, http.MethodGet, base+"/", nil, http.StatusOK, "ok"); err != nil {
		return fmt.Errorf("after the update: %w", err)
	}
	u, _ := url.Parse(base)
	var signedIn []*http.Cookie
	for _, ck := range jar.Cookies(u) {
		if ck.Name == cookieName {
			signedIn = append(signedIn, ck)
		}
	}
	if err := expect(ctx, client, http.MethodPost, base+"/.auth/signout", url.Values{"csrfToken": {csrf}}, http.StatusFound, ""); err != nil {
		return fmt.Errorf("sign-out: %w", err)
	}
	// The token the browser had is revoked, not only cleared.
	if len(signedIn) != 1 {
		return fmt.Errorf("want one session cookie before sign-out, have %d", len(signedIn))
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	req.Header.Set("Accept", "application/json")
	req.AddCookie(signedIn[0])
	if status, body, err := do(&http.Client{Transport: transport, Timeout: 10 * time.Second}, req); err != nil || status != http.StatusUnauthorized {
		return fmt.Errorf("the signed-out token: %d %q %v, want 401", status, body, err)
	}
	return nil
}

// csrfToken gets a CSRF token (and its cookie, into client's jar).
func csrfToken(ctx context.Context, client *http.Client, base string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.auth/csrf", nil)
	status, body, err := do(client, req)
	if err != nil || status != http.StatusOK {
		return "", fmt.Errorf("csrf: %d %q %v", status, body, err)
	}
	var v struct {
		CSRFToken string `json:"csrfToken"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.CSRFToken == "" {
		return "", fmt.Errorf("csrf: %q", body)
	}
	return v.CSRFToken, nil
}

// expect sends a request (a form POST when form is set) and checks its status
// and, when want is set, its body.
func expect(ctx context.Context, client *http.Client, method, target string, form url.Values, status int, want string) error {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequestWithContext(ctx, method, target, body)
	req.Header.Set("Accept", "application/json")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	got, text, err := do(client, req)
	if err != nil {
		return err
	}
	if got != status || (want != "" && text != want) {
		return fmt.Errorf("%s %s: %d %q, want %d", method, target, got, text, status)
	}
	return nil
}

func do(client *http.Client, req *http.Request) (int, string, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b), err
}

// rssLog is Caddy's resident memory over the run.
type rssLog struct {
	from, last int64 // KiB, at -rss-from and at the end
}

func (r rssLog) check(growth float64) error {
	if r.from == 0 || r.last == 0 {
		return errors.New("no RSS figures")
	}
	g := float64(r.last-r.from) / float64(r.from)
	fmt.Printf("soak: RSS %d KiB at the reference, %d KiB at the end (%+.1f %%, allowed %+.0f %%)\n", r.from, r.last, 100*g, 100*growth)
	if g > growth {
		return fmt.Errorf("memory grew by %.1f %%", 100*g)
	}
	return nil
}

// watch logs the counts and Caddy's RSS every minute until ctx ends, and
// takes the RSS at cfg.rssFrom and at the end.
func watch(ctx context.Context, pid int, cfg config, c *counts) (rssLog, error) {
	var r rssLog
	start := time.Now()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	ref := time.After(cfg.rssFrom)
	for {
		select {
		case <-ctx.Done():
			var err error
			r.last, err = rssKiB(pid)
			return r, err
		case <-ref:
			var err error
			if r.from, err = rssKiB(pid); err != nil {
				return r, err
			}
		case <-tick.C:
			rss, err := rssKiB(pid)
			if err != nil {
				return r, err
			}
			fmt.Printf("soak: %4.1f min: RSS %d KiB; %d guarded, %d journeys, %d errors\n",
				time.Since(start).Minutes(), rss, c.guarded.Load(), c.signIns.Load(), c.errors.Load())
		}
	}
}

// rssKiB reads a process's resident set size.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}
