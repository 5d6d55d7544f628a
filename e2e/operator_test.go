package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testredis"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// ---- metrics ----

// scrape reads the admin API's /metrics of c.
func scrape(t *testing.T, c *testcaddy.Server) string {
	t.Helper()
	resp, err := http.Get(c.AdminURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, %v\n%s", resp.StatusCode, err, body)
	}
	return string(body)
}

// metric is the value of the series name whose labels include every one of
// labels ("k=v"), summed over the series that match; -1 when none does.
func metric(t *testing.T, text, name string, labels ...string) float64 {
	t.Helper()
	total, found := 0.0, false
	for _, line := range strings.Split(text, "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		got, rest, _ := strings.Cut(series, "{")
		if got != name {
			continue
		}
		have := map[string]string{}
		for _, pair := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
			if k, v, ok := strings.Cut(pair, "="); ok {
				have[k] = strings.Trim(v, `"`)
			}
		}
		match := true
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		total, found = total+f, true
	}
	if !found {
		return -1
	}
	return total
}

// wantMetric checks a metric's value.
func wantMetric(t *testing.T, text string, want float64, name string, labels ...string) {
	t.Helper()
	if got := metric(t, text, name, labels...); got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// TestMetrics reads authgate's metrics from a real Caddy's admin /metrics after
// sign-ins, guarded requests, a webhook, a rate limit and a sign-out: each
// series counts exactly what happened, no label carries user data, and a
// reload (which registers them in the new config's registry) keeps them served.
func TestMetrics(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(hook.Close)
	cfg := globalBlock("\t\turl "+base+"\n"+testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser))+emailProvider("", "log")+`
		callbacks {
			sign_in {
				webhook `+hook.URL+`
				allow domain example.com
			}
		}
`) + siteBlock(port, "authgate {\n\t\trequire "+bt+`!request.path.startsWith("/admin")`+bt+"\n\t}", up.URL)
	c := testcaddy.StartAdmin(t, cfg)
	b := newBrowser(t)

	// Before anything happened, the series with fixed labels are there at zero.
	m := scrape(t, c)
	wantMetric(t, m, 0, "caddy_authgate_requests_total", "realm=default", "decision=allowed")
	wantMetric(t, m, 0, "caddy_authgate_sign_ins_total", "realm=default", "provider=credentials", "outcome=success")

	wantStatus(t, b.navigate(base+"/app"), http.StatusFound)            // unauthenticated
	wantStatus(t, b.api(base+"/app"), http.StatusUnauthorized)          // unauthenticated
	wantStatus(t, b.api(base+"/.auth/verify"), http.StatusUnauthorized) // unauthenticated: forward auth decides too
	r := b.signInCredentials(base, base+"/app", "alice", "wrong")       // denied
	wantStatus(t, r, http.StatusFound)
	wantStatus(t, b.signInCredentials(base, base+"/app", "alice", aliceUser.Password), http.StatusFound) // success, one webhook call
	wantStatus(t, b.navigate(base+"/app"), http.StatusOK)                                                // allowed
	wantStatus(t, b.navigate(base+"/app/2"), http.StatusOK)                                              // allowed
	wantStatus(t, b.navigate(base+"/admin/x"), http.StatusForbidden)                                     // forbidden
	wantStatus(t, b.api(base+"/.auth/verify"), http.StatusOK)                                            // allowed
	wantStatus(t, b.signOut(base), http.StatusFound)
	// Six links for one address in an hour: the sixth is refused (5 per address and client).
	for i := 0; i < 6; i++ {
		r := b.requestLink(base, "email", "carol@example.com", base+"/")
		if i == 5 {
			wantStatus(t, r, http.StatusTooManyRequests)
		}
	}

	m = scrape(t, c)
	wantMetric(t, m, 3, "caddy_authgate_requests_total", "realm=default", "decision=unauthenticated")
	wantMetric(t, m, 3, "caddy_authgate_requests_total", "realm=default", "decision=allowed")
	wantMetric(t, m, 1, "caddy_authgate_requests_total", "realm=default", "decision=forbidden")
	wantMetric(t, m, 0, "caddy_authgate_requests_total", "realm=default", "decision=unavailable")
	wantMetric(t, m, 1, "caddy_authgate_sign_ins_total", "realm=default", "provider=credentials", "outcome=success")
	wantMetric(t, m, 1, "caddy_authgate_sign_ins_total", "realm=default", "provider=credentials", "outcome=denied")
	wantMetric(t, m, 0, "caddy_authgate_sign_ins_total", "realm=default", "provider=credentials", "outcome=error")
	wantMetric(t, m, 1, "caddy_authgate_sign_outs_total", "realm=default")
	wantMetric(t, m, 1, "caddy_authgate_rate_limited_total", "realm=default", "kind=email")
	// sign_in runs, and calls the webhook, once per link asked for (the sixth too: the limit is checked after it) and once for the password.
	wantMetric(t, m, 7, "caddy_authgate_webhook_duration_seconds_count", "callback=sign_in", "outcome=success")
	wantMetric(t, m, 0, "caddy_authgate_store_errors_total", "realm=default", "op=get_claim")
	if hits := metric(t, m, "caddy_authgate_token_cache_hits_total"); hits < 2 {
		t.Errorf("token_cache_hits_total = %v, want at least 2 (the second page and the forbidden one)", hits)
	}
	if misses := metric(t, m, "caddy_authgate_token_cache_misses_total"); misses < 0 {
		t.Error("no token_cache_misses_total")
	}
	if n := metric(t, m, "caddy_authgate_token_cache_entries", "realm=default"); n < 0 {
		t.Error("no token_cache_entries{realm=default}")
	}
	for _, private := range []string{"alice", "carol", "example.com", "127.0.0.1:" + strconv.Itoa(port)} {
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "caddy_authgate_") && strings.Contains(line, private) {
				t.Errorf("a metric carries %q: %s", private, line)
			}
		}
	}

	// A reload registers the metrics in the new config's registry: no
	// duplicate registration, the series are served and count again.
	c.Reload(t, cfg, true)
	waitServedAfterReload(t, base+"/app", http.StatusUnauthorized)
	m = scrape(t, c)
	if n := metric(t, m, "caddy_authgate_requests_total", "realm=default", "decision=unauthenticated"); n < 1 {
		t.Errorf("after the reload: requests_total{decision=unauthenticated} = %v, want the new config's count", n)
	}
	wantMetric(t, m, 0, "caddy_authgate_sign_ins_total", "realm=default", "provider=credentials", "outcome=success")
}

// ---- events ----

// recorder is an events.handlers module for these tests (Caddy ships no event
// handler of its own): it keeps the events it is given.
type recorder struct{}

// recordedEvent is an event as a subscriber sees it.
type recordedEvent struct {
	Name, Origin string
	Data         map[string]any
}

var recorded struct {
	mu     sync.Mutex
	events []recordedEvent
}

func init() { caddy.RegisterModule(recorder{}) }

func (recorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.authgate_test_recorder", New: func() caddy.Module { return new(recorder) }}
}

func (*recorder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the handler's name
	return nil
}

func (*recorder) Handle(_ context.Context, e caddy.Event) error {
	origin := ""
	if e.Origin() != nil {
		origin = string(e.Origin().CaddyModule().ID)
	}
	data := make(map[string]any, len(e.Data))
	for k, v := range e.Data {
		data[k] = v
	}
	recorded.mu.Lock()
	recorded.events = append(recorded.events, recordedEvent{Name: e.Name(), Origin: origin, Data: data})
	recorded.mu.Unlock()
	return nil
}

// takeEvents returns the events recorded since the last call.
func takeEvents() []recordedEvent {
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	out := recorded.events
	recorded.events = nil
	return out
}

// wantEvents checks the events recorded since the last call: their names in
// order, and that each has the data of want (nil values: any value but
// absent), the realm and the authgate app as origin.
func wantEvents(t *testing.T, want ...recordedEvent) []recordedEvent {
	t.Helper()
	got := takeEvents()
	var names, wantNames []string
	for _, e := range got {
		names = append(names, e.Name)
	}
	for _, e := range want {
		wantNames = append(wantNames, e.Name)
	}
	if strings.Join(names, ",") != strings.Join(wantNames, ",") {
		t.Fatalf("events %q, want %q: %+v", names, wantNames, got)
	}
	for i, w := range want {
		e := got[i]
		if e.Origin != "authgate" || e.Data["realm"] != "default" {
			t.Errorf("event %s: origin %q, realm %v; want authgate, default", e.Name, e.Origin, e.Data["realm"])
		}
		for k, v := range w.Data {
			if gv, ok := e.Data[k]; !ok || v != nil && gv != v {
				t.Errorf("event %s: %s = %v, want %v (data %v)", e.Name, k, gv, v, e.Data)
			}
		}
		if len(e.Data) != len(w.Data)+1 {
			t.Errorf("event %s: data %v, want exactly %v and realm", e.Name, e.Data, w.Data)
		}
	}
	return got
}

// TestEvents subscribes to authgate's events in Caddy's events app, as an
// operator's `events { on … }` does, and checks each event's data after
// sign-ins of every kind, a refusal, a session update and a sign-out; no
// event carries a password or a token.
func TestEvents(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	idp := storeIDP(t, base, "oidc", "linked")
	up := testsite.NewUpstream(t, testsite.OK)
	linked := strings.Replace(oidcProvider("linked", idp.Issuer), "\t\t}\n", "\t\t\tallow_email_linking\n\t\t}\n", 1)
	var events strings.Builder
	for _, name := range []string{"sign_in", "sign_out", "create_user", "link_account", "update_session", "sign_in_failed"} {
		fmt.Fprintf(&events, "\t\ton %s authgate_test_recorder\n", name)
	}
	c := testcaddy.Start(t, globalOptions("\tevents {\n"+events.String()+"\t}\n", "\t\turl "+base+"\n"+
		testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser))+oidcProvider("oidc", idp.Issuer)+linked+emailProvider("", "log")+`
		callbacks {
			sign_in {
				allow domain example.com
			}
		}
`)+siteBlock(port, "authgate", up.URL))
	waitForLog(t, c, "OpenID Connect discovery succeeded")
	takeEvents()
	var all []recordedEvent

	b := newBrowser(t)
	wantStatus(t, b.signInCredentials(base, base+"/", "alice", "wrong password"), http.StatusFound)
	all = append(all, wantEvents(t, recordedEvent{Name: "sign_in_failed", Data: map[string]any{"provider": "credentials", "code": "CredentialsSignin"}})...)

	r := b.signInCredentials(base, base+"/", "alice", aliceUser.Password)
	wantStatus(t, r, http.StatusFound)
	token := b.cookie(base, sessionCookie)
	all = append(all, wantEvents(t, recordedEvent{Name: "sign_in", Data: map[string]any{
		"provider": "credentials", "user_id": "alice", "email": "alice@example.com", "is_new_user": false,
	}})...)

	wantStatus(t, b.post(base+"/.auth/session", url.Values{"csrfToken": {b.csrfToken(base)}, "data": {`{"theme":"dark"}`}}), http.StatusOK)
	all = append(all, wantEvents(t, recordedEvent{Name: "update_session", Data: map[string]any{"user_id": "alice"}})...)

	wantStatus(t, b.signOut(base), http.StatusFound)
	all = append(all, wantEvents(t, recordedEvent{Name: "sign_out", Data: map[string]any{"user_id": "alice"}})...)

	// A first OIDC sign-in creates the user and links the account to it.
	ob := newBrowser(t)
	r = ob.signInOIDC(base, "oidc", base+"/", "bob")
	wantStatus(t, r, http.StatusFound)
	sub := wantStoredUserID(t, sessionClaims(t, r))
	all = append(all, wantEvents(t,
		recordedEvent{Name: "create_user", Data: map[string]any{"user_id": sub, "email": "bob@example.com"}},
		recordedEvent{Name: "link_account", Data: map[string]any{"provider": "oidc", "user_id": sub}},
		recordedEvent{Name: "sign_in", Data: map[string]any{"provider": "oidc", "user_id": sub, "email": "bob@example.com", "is_new_user": true}},
	)...)
	// Signed out and in again through provider, bob just signs in.
	again := func(b *browser, provider string) {
		wantStatus(t, b.signOut(base), http.StatusFound)
		takeEvents()
		wantStatus(t, b.signInOIDC(base, provider, base+"/", "bob"), http.StatusFound)
		wantEvents(t, recordedEvent{Name: "sign_in", Data: map[string]any{"provider": provider, "user_id": sub, "email": "bob@example.com", "is_new_user": false}})
	}
	again(ob, "oidc")

	// Another provider with allow_email_linking links its account to bob, the
	// user with the address: link_account, and no new user.
	lb := newBrowser(t)
	r = lb.signInOIDC(base, "linked", base+"/", "bob")
	wantStatus(t, r, http.StatusFound)
	if got := wantStoredUserID(t, sessionClaims(t, r)); got != sub {
		t.Fatalf("the linked sign-in is user %s, want bob's %s", got, sub)
	}
	all = append(all, wantEvents(t,
		recordedEvent{Name: "link_account", Data: map[string]any{"provider": "linked", "user_id": sub}},
		recordedEvent{Name: "sign_in", Data: map[string]any{"provider": "linked", "user_id": sub, "email": "bob@example.com", "is_new_user": false}},
	)...)
	again(lb, "linked")

	// An email link: a new user, no account to link; an address sign_in
	// refuses never gets a link.
	eb := newBrowser(t)
	claims := eb.signInByLink(c, base, "carol@example.com", base+"/")
	carol := wantStoredUserID(t, claims)
	all = append(all, wantEvents(t,
		recordedEvent{Name: "create_user", Data: map[string]any{"user_id": carol, "email": "carol@example.com"}},
		recordedEvent{Name: "sign_in", Data: map[string]any{"provider": "email", "user_id": carol, "email": "carol@example.com", "is_new_user": true}},
	)...)
	r = eb.requestLink(base, "email", "mallory@elsewhere.test", base+"/")
	wantErrorPage(t, eb, base, r, "AccessDenied", http.StatusForbidden)
	all = append(all, wantEvents(t, recordedEvent{Name: "sign_in_failed", Data: map[string]any{"provider": "email", "code": "AccessDenied"}})...)

	// The events app logs each event at debug level under the logger "events":
	// what examples/events/Caddyfile writes to a file of its own.
	if !c.LogContains(`"logger":"events"`, `"name":"create_user"`, `"origin":"authgate"`, `"email":"carol@example.com"`) {
		t.Error("the debug log has no create_user event line")
	}

	raw, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{aliceUser.Password, "wrong password", token, testSecret, "oidc-client-secret", "linked-client-secret", "eyJ"} {
		if secret != "" && strings.Contains(string(raw), secret) {
			t.Errorf("an event carries %q: %s", secret, raw)
		}
	}
}

// ---- health ----

// health asks /.auth/health and returns its status and JSON body.
func health(t *testing.T, base string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(base + "/.auth/health")
	if err != nil {
		t.Fatalf("GET /.auth/health: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /.auth/health: %v", err)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("GET /.auth/health: Cache-Control %q, want no-store", cc)
	}
	return resp.StatusCode, body
}

// wantHealth waits (the store may take a moment to notice) for /.auth/health
// to answer status with down listing exactly what is down.
func wantHealth(t *testing.T, base string, status int, down ...string) {
	t.Helper()
	testsite.Eventually(t, 15*time.Second, fmt.Sprintf("/.auth/health %d, down %q", status, down), func() error {
		got, body := health(t, base)
		var gotDown []string
		if list, ok := body["down"].([]any); ok {
			for _, d := range list {
				gotDown = append(gotDown, fmt.Sprint(d))
			}
		}
		wantStatus := "ok"
		if status != http.StatusOK {
			wantStatus = "unavailable"
		}
		if got != status || body["status"] != wantStatus || strings.Join(gotDown, ",") != strings.Join(down, ",") {
			return fmt.Errorf("status %d, body %v", got, body)
		}
		return nil
	})
}

// TestHealth: /.auth/health answers 200 {"status":"ok"} while the store answers
// and every provider is usable, and 503 naming what is down: a Redis store that
// stopped (and is fine again once it is back), an OpenID Provider whose
// discovery has not succeeded.
func TestHealth(t *testing.T) {
	t.Run("store", func(t *testing.T) {
		rs := testredis.NewServer(t)
		port := testcaddy.FreePort(t)
		base := origin(port)
		up := testsite.NewUpstream(t, testsite.OK)
		c := testcaddy.StartAdmin(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser))+
			"\t\tstore redis redis://"+rs.Addr+"/0\n")+siteBlock(port, "authgate", up.URL))
		wantHealth(t, base, http.StatusOK)
		if up.Count() != 0 {
			t.Error("the health check reached the upstream")
		}

		rs.Stop()
		wantHealth(t, base, http.StatusServiceUnavailable, "store")
		if !c.LogContains("health: unavailable", "store") {
			t.Error("the log does not say the store is down")
		}
		if n := metric(t, scrape(t, c), "caddy_authgate_store_errors_total", "realm=default", "op=get_claim"); n < 1 {
			t.Errorf("store_errors_total{op=get_claim} = %v while Redis is down, want at least 1", n)
		}

		rs.Start()
		wantHealth(t, base, http.StatusOK)
	})

	t.Run("provider discovery", func(t *testing.T) {
		port, dead := testcaddy.FreePort(t), testcaddy.FreePort(t)
		base := origin(port)
		up := testsite.NewUpstream(t, testsite.OK)
		testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser))+fmt.Sprintf(`
		provider oidc sso {
			issuer http://127.0.0.1:%d
			client_id authgate
			client_secret s3cret
		}
		callbacks {
			sign_in {
				allow domain example.com
			}
		}
`, dead))+siteBlock(port, "authgate", up.URL))
		wantHealth(t, base, http.StatusServiceUnavailable, "provider sso")
		_, body := health(t, base)
		if raw, _ := json.Marshal(body); strings.Contains(string(raw), strconv.Itoa(dead)) {
			t.Errorf("the health answer shows the issuer: %s", raw)
		}
	})
}
