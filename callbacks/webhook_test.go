package callbacks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookRequest is what a test webhook received.
type hookRequest struct {
	method string
	header http.Header
	body   []byte
}

// hook is a real HTTP server on loopback that answers every POST with answer
// (and status), and records what it was sent.
type hook struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []hookRequest
}

func newHook(t *testing.T, status int, answer string) *hook {
	t.Helper()
	return newHookFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, answer)
	})
}

func newHookFunc(t *testing.T, answer http.HandlerFunc) *hook {
	t.Helper()
	h := &hook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("webhook server: reading the request: %v", err)
		}
		h.mu.Lock()
		h.reqs = append(h.reqs, hookRequest{method: r.Method, header: r.Header.Clone(), body: body})
		h.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(h.Close)
	return h
}

// only returns the single request the hook received.
func (h *hook) only(t *testing.T) hookRequest {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reqs) != 1 {
		t.Fatalf("webhook received %d requests, want 1", len(h.reqs))
	}
	return h.reqs[0]
}

// payload decodes the request body as the webhook receiver would.
func (r hookRequest) payload(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("request body %q: %v", r.body, err)
	}
	return m
}

// webhookRule is a webhook rule at Caddyfile:<line> for url.
func webhookRule(line, url string) Rule {
	return Rule{Action: "webhook", Webhook: &WebhookConfig{URL: url}, Source: "Caddyfile:" + line}
}

func TestWebhookRequest(t *testing.T) {
	const secret = "s3cr3t-shared"
	h := newHook(t, http.StatusOK, `{"allow": true}`)
	c := mustCallbacks(t, Config{SignIn: []Rule{{
		Action: "webhook",
		Webhook: &WebhookConfig{
			URL:     h.URL + "/sign-in",
			Secret:  secret,
			Headers: map[string]string{"X-Api-Key": "k1", "Authorization": "Bearer t"},
		},
		Source: "Caddyfile:4",
	}}})
	in := SignInInput{
		User:        map[string]any{"id": "u1", "email": "ada@example.com"},
		Account:     map[string]any{"provider": "github", "type": "oauth"},
		Profile:     map[string]any{"login": "ada", "orgs": []any{"acme"}},
		Credentials: map[string]any{"username": "ada"},
		Request:     map[string]any{"method": "GET", "remote_ip": "192.0.2.1"},
	}
	d, err := c.SignIn(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if d != (Decision{Allow: true, Source: "Caddyfile:4"}) {
		t.Errorf("SignIn = %+v, want allowed by Caddyfile:4", d)
	}

	req := h.only(t)
	if req.method != http.MethodPost {
		t.Errorf("method %s, want POST", req.method)
	}
	if ct := req.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if got := req.header.Get("X-Api-Key"); got != "k1" {
		t.Errorf("X-Api-Key %q, want k1", got)
	}
	if got := req.header.Get("Authorization"); got != "Bearer t" {
		t.Errorf("Authorization %q, want the configured header", got)
	}

	want := map[string]any{
		"callback":    "sign_in",
		"user":        map[string]any{"id": "u1", "email": "ada@example.com"},
		"account":     map[string]any{"provider": "github", "type": "oauth"},
		"profile":     map[string]any{"login": "ada", "orgs": []any{"acme"}},
		"email":       map[string]any{},
		"credentials": map[string]any{"username": "ada"},
		"request":     map[string]any{"method": "GET", "remote_ip": "192.0.2.1"},
	}
	if got := req.payload(t); !reflect.DeepEqual(got, want) {
		t.Errorf("payload\n\t%#v\nwant\n\t%#v", got, want)
	}

	// The signature, checked as a receiver would, without the package's Sign.
	sig := req.header.Get("X-Authgate-Signature")
	ts, mac, ok := strings.Cut(sig, ",")
	ts, tsOK := strings.CutPrefix(ts, "t=")
	mac, macOK := strings.CutPrefix(mac, "v1=")
	if !ok || !tsOK || !macOK {
		t.Fatalf("X-Authgate-Signature %q, want t=<unix>,v1=<hex>", sig)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatalf("signature timestamp %q: %v", ts, err)
	}
	if skew := time.Since(time.Unix(unix, 0)); skew < -time.Minute || skew > time.Minute {
		t.Errorf("signature timestamp %d is %v away from now", unix, skew)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(req.body)))
	if wantMAC := hex.EncodeToString(m.Sum(nil)); mac != wantMAC {
		t.Errorf("signature v1=%s, want HMAC-SHA256(secret, t.body) = %s", mac, wantMAC)
	}
	m = hmac.New(sha256.New, []byte("another secret"))
	m.Write([]byte(ts + "." + string(req.body)))
	if hex.EncodeToString(m.Sum(nil)) == mac {
		t.Error("the signature does not depend on the secret")
	}
}

func TestWebhookUnsignedWithoutSecret(t *testing.T) {
	h := newHook(t, http.StatusOK, `{}`)
	c := mustCallbacks(t, Config{SignIn: []Rule{webhookRule("1", h.URL)}})
	if _, err := c.SignIn(context.Background(), SignInInput{}); err != nil {
		t.Fatal(err)
	}
	if sig := h.only(t).header.Get("X-Authgate-Signature"); sig != "" {
		t.Errorf("X-Authgate-Signature %q without a secret", sig)
	}
}

func TestSign(t *testing.T) {
	// Computed with: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac k
	got := Sign([]byte("k"), time.Unix(1700000000, 0), []byte(`{"a":1}`))
	const want = "t=1700000000,v1=1b6ad1bc9bf48c52ce01939866d5877c6cc4e87ddad27e16673cb8c4964394a3"
	if got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

// TestWebhookURLArgument: the Caddyfile writes `webhook <url>`, the URL as the
// rule's argument.
func TestWebhookURLArgument(t *testing.T) {
	h := newHook(t, http.StatusOK, `{"allow": false}`)
	c := mustCallbacks(t, Config{SignIn: []Rule{rule("2", "webhook", args(h.URL+"/x"), nil)}})
	d, err := c.SignIn(context.Background(), SignInInput{})
	if err != nil {
		t.Fatal(err)
	}
	if d != (Decision{Source: "Caddyfile:2"}) {
		t.Errorf("SignIn = %+v, want denied by the webhook", d)
	}
	h.only(t)
}

func TestWebhookSignIn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string
		want   Decision
	}{
		{"allow", `{"allow": true}`, Decision{Allow: true, Source: "Caddyfile:1"}},
		{"deny", `{"allow": false}`, Decision{Source: "Caddyfile:1"}},
		{"redirect", `{"redirect": "/x"}`, Decision{Redirect: "/x", Source: "Caddyfile:1"}},
		{"no decision: next rule", `{}`, Decision{Redirect: "/next", Source: "Caddyfile:2"}},
		{"unknown fields: next rule", `{"note": "later"}`, Decision{Redirect: "/next", Source: "Caddyfile:2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHook(t, http.StatusOK, tc.answer)
			c := mustCallbacks(t, Config{SignIn: []Rule{
				webhookRule("1", h.URL),
				rule("2", "redirect", args("/next"), nil),
			}})
			got, err := c.SignIn(context.Background(), SignInInput{User: map[string]any{"email": "a@example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("SignIn = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestWebhookOnlyWhenConditionHolds: a webhook rule's condition gates the call.
func TestWebhookOnlyWhenConditionHolds(t *testing.T) {
	h := newHook(t, http.StatusOK, `{"allow": true}`)
	r := webhookRule("1", h.URL)
	r.If = ifShort("domain", "partner.example")
	c := mustCallbacks(t, Config{SignIn: []Rule{r, rule("2", "deny", nil, nil)}})
	d, err := c.SignIn(context.Background(), SignInInput{User: map[string]any{"email": "a@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if d != (Decision{Source: "Caddyfile:2"}) {
		t.Errorf("SignIn = %+v, want the deny rule", d)
	}
	h.mu.Lock()
	n := len(h.reqs)
	h.mu.Unlock()
	if n != 0 {
		t.Errorf("webhook called %d times although its condition was false", n)
	}
}

func TestWebhookRedirect(t *testing.T) {
	for _, tc := range []struct {
		name, answer, want string
	}{
		{"relative", `{"url": "/welcome"}`, cbBase + "/welcome"},
		{"same origin", `{"url": "` + cbBase + `/x"}`, cbBase + "/x"},
		{"other origin is still checked", `{"url": "https://evil.example"}`, cbBase},
		{"scheme-relative is still checked", `{"url": "//evil.example"}`, cbBase},
		{"not a string", `{"url": 3}`, cbBase},
		{"no answer: next rule", `{}`, cbBase + "/next"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHook(t, http.StatusOK, tc.answer)
			c := mustCallbacks(t, Config{Redirect: []Rule{
				webhookRule("1", h.URL),
				rule("2", "rewrite", args(`base_url + "/next"`), nil),
			}})
			got, err := c.Redirect(context.Background(), "/start", mustParse(t, cbBase), map[string]any{"path": "/p"})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Redirect = %q, want %q", got, tc.want)
			}
			want := map[string]any{"callback": "redirect", "url": "/start", "base_url": cbBase, "request": map[string]any{"path": "/p"}}
			if p := h.only(t).payload(t); !reflect.DeepEqual(p, want) {
				t.Errorf("payload %#v, want %#v", p, want)
			}
		})
	}
}

func TestWebhookJWT(t *testing.T) {
	input := func() JWTInput {
		return JWTInput{
			Token:   map[string]any{"sub": "u1", "role": "user", "iat": int64(100), "exp": int64(200), "jti": "j1"},
			Trigger: "update",
			Session: map[string]any{"role": "admin"},
		}
	}
	for _, tc := range []struct {
		name   string
		answer string
		want   map[string]any
	}{
		{"token replaced, iat exp jti stay",
			`{"token": {"sub": "u2", "role": "admin", "iat": 1, "exp": 9999999999, "jti": "forged"}}`,
			map[string]any{"sub": "u2", "role": "admin", "iat": int64(100), "exp": int64(200), "jti": "j1", "seen": "admin"}},
		{"token replaced without iat exp jti keeps them",
			`{"token": {"role": "admin"}}`,
			map[string]any{"role": "admin", "iat": int64(100), "exp": int64(200), "jti": "j1", "seen": "admin"}},
		{"no answer keeps the token",
			`{}`,
			map[string]any{"sub": "u1", "role": "user", "iat": int64(100), "exp": int64(200), "jti": "j1", "seen": "user"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHook(t, http.StatusOK, tc.answer)
			c := mustCallbacks(t, Config{JWT: []Rule{
				webhookRule("1", h.URL),
				rule("2", "set", args("seen", "token.role"), nil), // later rules see the webhook's token
			}})
			in := input()
			got, err := c.JWT(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("JWT =\n\t%#v\nwant\n\t%#v", got, tc.want)
			}
			if !reflect.DeepEqual(in, input()) {
				t.Errorf("JWT modified its input: %#v", in)
			}
			p := h.only(t).payload(t)
			if p["callback"] != "jwt" || p["trigger"] != "update" || !reflect.DeepEqual(p["session"], map[string]any{"role": "admin"}) ||
				!reflect.DeepEqual(p["token"], map[string]any{"sub": "u1", "role": "user", "iat": float64(100), "exp": float64(200), "jti": "j1"}) {
				t.Errorf("payload %#v", p)
			}
		})
	}
}

func TestWebhookSession(t *testing.T) {
	expires := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	defaults := map[string]any{"user": map[string]any{"name": "Ada", "email": nil, "image": nil}, "expires": "2030-01-02T03:04:05.000Z"}
	for _, tc := range []struct {
		name, answer string
		want         map[string]any
	}{
		{"session replaced", `{"session": {"user": {"name": "Ada L."}, "plan": "pro"}}`,
			map[string]any{"user": map[string]any{"name": "Ada L."}, "plan": "pro"}},
		{"no answer keeps the session", `{}`, defaults},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHook(t, http.StatusOK, tc.answer)
			c := mustCallbacks(t, Config{Session: []Rule{webhookRule("1", h.URL)}})
			got, err := c.Session(context.Background(), SessionInput{Token: map[string]any{"name": "Ada", "sub": "u1"}, Expires: expires})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Session =\n\t%#v\nwant\n\t%#v", got, tc.want)
			}
			p := h.only(t).payload(t)
			if p["callback"] != "session" || !reflect.DeepEqual(p["session"], map[string]any{
				"user": map[string]any{"name": "Ada", "email": nil, "image": nil}, "expires": "2030-01-02T03:04:05.000Z",
			}) || !reflect.DeepEqual(p["token"], map[string]any{"name": "Ada", "sub": "u1"}) {
				t.Errorf("payload %#v", p)
			}
		})
	}
}

// TestWebhookFailsClosed: whatever goes wrong with a webhook, the callback
// returns an error, never a decision — in each of the four callbacks.
func TestWebhookFailsClosed(t *testing.T) {
	answer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    []string // in the error, besides the rule's source
		only    string   // the one callback this answer is wrong for; "" for all
	}{
		{"slow beyond the timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			io.WriteString(w, `{"allow": true}`)
		}, []string{"deadline exceeded"}, ""},
		{"500", answer(http.StatusInternalServerError, `{"allow": true}`), []string{"status 500"}, ""},
		{"redirect status", answer(http.StatusFound, `{}`), []string{"status 302"}, ""},
		{"garbage", answer(http.StatusOK, `allow`), []string{"not a JSON object"}, ""},
		{"empty", answer(http.StatusOK, ``), []string{"not a JSON object"}, ""},
		{"JSON array", answer(http.StatusOK, `[{"allow": true}]`), []string{"not a JSON object"}, ""},
		{"JSON null", answer(http.StatusOK, `null`), []string{"not a JSON object"}, ""},
		{"two objects", answer(http.StatusOK, `{"allow": false} {"allow": true}`), []string{"not a JSON object"}, ""},
		{"oversized", answer(http.StatusOK, `{"allow": true, "pad": "`+strings.Repeat("x", 1<<20)+`"}`), []string{"larger than"}, ""},
		{"allow not a boolean", answer(http.StatusOK, `{"allow": "yes"}`), []string{"allow", "not a boolean"}, KindSignIn},
		{"redirect not a string", answer(http.StatusOK, `{"redirect": 1}`), []string{"redirect"}, KindSignIn},
		{"redirect empty", answer(http.StatusOK, `{"redirect": ""}`), []string{"redirect"}, KindSignIn},
		{"token not an object", answer(http.StatusOK, `{"token": "abc"}`), []string{"token", "not an object"}, KindJWT},
		{"session not an object", answer(http.StatusOK, `{"session": [1]}`), []string{"session", "not an object"}, KindSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHookFunc(t, tc.handler)
			r := Rule{Action: "webhook", Webhook: &WebhookConfig{URL: h.URL, Timeout: Duration(200 * time.Millisecond)}, Source: "Caddyfile:5"}
			// Each callback gets a permissive rule after the webhook: it must not be reached.
			c := mustCallbacks(t, Config{
				SignIn:   []Rule{r, rule("6", "allow", nil, nil)},
				Redirect: []Rule{r, rule("6", "allow", nil, nil)},
				JWT:      []Rule{r, rule("6", "set", args("role", `"admin"`), nil)},
				Session:  []Rule{r, rule("6", "set", args("admin", `true`), nil)},
			})
			ctx := context.Background()
			want := append([]string{"Caddyfile:5"}, tc.want...)
			if tc.only == "" {
				want = append(want, h.URL) // the call failed: say which one
			}
			check := func(kind string, err error, decided bool) {
				t.Helper()
				if tc.only != "" && tc.only != kind {
					return
				}
				if err == nil {
					t.Errorf("%s: no error", kind)
					return
				}
				for _, w := range want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q does not mention %q", kind, err, w)
					}
				}
				if decided {
					t.Errorf("%s: a decision along with the error", kind)
				}
			}

			d, err := c.SignIn(ctx, SignInInput{})
			check(KindSignIn, err, d.Allow || d.Redirect != "")
			u, err := c.Redirect(ctx, "https://evil.example", mustParse(t, cbBase), nil)
			check(KindRedirect, err, u != cbBase)
			tok, err := c.JWT(ctx, JWTInput{Token: map[string]any{"sub": "u1"}})
			check(KindJWT, err, tok != nil)
			s, err := c.Session(ctx, SessionInput{Token: map[string]any{"sub": "u1"}})
			check(KindSession, err, s != nil)
		})
	}
}

// TestWebhookRedirectNotFollowed: a 3xx fails closed like any non-2xx answer;
// the signed request is not sent on.
func TestWebhookRedirectNotFollowed(t *testing.T) {
	elsewhere := newHook(t, http.StatusOK, `{"allow": true}`)
	h := newHookFunc(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
	})
	c := mustCallbacks(t, Config{SignIn: []Rule{{Action: "webhook", Webhook: &WebhookConfig{URL: h.URL, Secret: "s"}, Source: "Caddyfile:5"}}})
	d, err := c.SignIn(context.Background(), SignInInput{})
	wantErrContains(t, err, "Caddyfile:5", "status 307")
	if d.Allow {
		t.Error("allowed by the redirected webhook")
	}
	elsewhere.mu.Lock()
	n := len(elsewhere.reqs)
	elsewhere.mu.Unlock()
	if n != 0 {
		t.Errorf("the redirect target received %d requests", n)
	}
}

func TestWebhookUnreachable(t *testing.T) {
	h := newHook(t, http.StatusOK, `{"allow": true}`)
	url := h.URL
	h.Close()
	c := mustCallbacks(t, Config{SignIn: []Rule{webhookRule("5", url), rule("6", "allow", nil, nil)}})
	d, err := c.SignIn(context.Background(), SignInInput{})
	wantErrContains(t, err, "Caddyfile:5", url)
	if d.Allow {
		t.Error("allowed although the webhook is unreachable")
	}
}

// TestWebhookContextCanceled: the request's context bounds the call too.
func TestWebhookContextCanceled(t *testing.T) {
	h := newHookFunc(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	c := mustCallbacks(t, Config{SignIn: []Rule{webhookRule("5", h.URL)}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.SignIn(ctx, SignInInput{})
	wantErrContains(t, err, "Caddyfile:5", "context canceled")
}

func TestDurationUnmarshalJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Duration
	}{
		{`"3s"`, Duration(3 * time.Second)},
		{`"1m30s"`, Duration(90 * time.Second)},
		{`"200ms"`, Duration(200 * time.Millisecond)},
		{`3000000000`, Duration(3 * time.Second)},
		{`0`, 0},
	} {
		var d Duration
		if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
			t.Errorf("Unmarshal(%s): %v", tc.in, err)
			continue
		}
		if d != tc.want {
			t.Errorf("Unmarshal(%s) = %v, want %v", tc.in, time.Duration(d), time.Duration(tc.want))
		}
	}
	for _, in := range []string{`"3 parsecs"`, `"3"`, `true`, `1.5`, `{}`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", in, time.Duration(d))
		}
	}

	var cfg WebhookConfig
	if err := json.Unmarshal([]byte(`{"url": "http://h.test/x", "secret": "s", "timeout": "250ms", "headers": {"X-A": "b"}}`), &cfg); err != nil {
		t.Fatal(err)
	}
	want := WebhookConfig{URL: "http://h.test/x", Secret: "s", Timeout: Duration(250 * time.Millisecond), Headers: map[string]string{"X-A": "b"}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("WebhookConfig = %+v, want %+v", cfg, want)
	}
}

func TestWebhookDefaultTimeout(t *testing.T) {
	w, err := compileWebhook(Rule{Action: "webhook", Args: args("http://h.test/x")}, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if w.timeout != 3*time.Second {
		t.Errorf("default timeout %v, want 3s", w.timeout)
	}
}
