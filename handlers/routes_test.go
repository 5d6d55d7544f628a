package handlers

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/store"
)

// serve sends r through a handler of rl and returns the answer.
func serve(t *testing.T, rl *realm, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	h := benchHandler(t, rl, &Handler{})
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, noop); err != nil {
		t.Fatal(err)
	}
	return w
}

// A 405 names the methods the endpoint really allows, and an unknown endpoint is a 404.
func TestEndpointMethods(t *testing.T) {
	rl := benchRealm(t, func(c *Realm) {
		c.Admin = &AdminConfig{Require: []callbacks.Condition{{Expr: `token.sub == "alice"`}}}
	})
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"POST", "/.auth/jwks.json", 405, "GET, HEAD"},
		{"DELETE", "/.auth/session", 405, "GET, HEAD, POST"},
		{"GET", "/.auth/signin/credentials", 405, "POST"},
		{"PUT", "/.auth/callback/credentials", 405, "GET, HEAD, POST"},
		{"POST", "/.auth/verify", 405, "GET, HEAD"},
		{"POST", "/.auth/admin/sessions", 405, "GET, HEAD"},
		{"GET", "/.auth/admin/revoke", 405, "POST"},
		{"GET", "/.auth/nothing", 404, ""},
		{"GET", "/.auth/admin/other", 404, ""},
		{"GET", "/.auth/callback", 404, ""},
		{"GET", "/.auth/csrf", 200, ""},
		{"HEAD", "/.auth/providers", 200, ""},
	} {
		w := serve(t, rl, httptest.NewRequest(tc.method, "http://app.example.com"+tc.path, nil))
		if w.Code != tc.status || w.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q; want %d, Allow %q", tc.method, tc.path, w.Code, w.Header().Get("Allow"), tc.status, tc.allow)
		}
	}
}

// Without `admin`, the administration endpoints do not exist.
func TestAdminEndpointsOffByDefault(t *testing.T) {
	rl := benchRealm(t, nil)
	w := serve(t, rl, httptest.NewRequest("GET", "http://app.example.com/.auth/admin/sessions?user=alice", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("GET /.auth/admin/sessions without admin: %d, want 404", w.Code)
	}
}

// A malformed revocation request is the client's mistake: 400, never 503
// SessionUnavailable.
func TestAdminRevokeMalformed(t *testing.T) {
	rl := benchRealm(t, func(c *Realm) {
		c.Admin = &AdminConfig{Require: []callbacks.Condition{{Expr: `token.sub == "alice"`}}}
	})
	rl.sessions.store = store.NewMemory()
	token, csrfValue := rl.csrf.csrf.Issue()
	cookies := []*http.Cookie{sessionCookie(t, rl, aliceClaims), {Name: rl.csrf.names[0], Value: csrfValue}}
	for _, tc := range []struct{ body, want string }{
		{`{"csrfToken":"` + token + `"}`, "name the user"},
		{`{"csrfToken":"` + token + `","session":"jwt:abc"}`, "name the user"},
		{`{"csrfToken":`, "invalid JSON body"},
		{`[]`, "invalid JSON body"},
	} {
		r := httptest.NewRequest("POST", "http://app.example.com/.auth/admin/revoke", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", "application/json")
		for _, c := range cookies {
			r.AddCookie(c)
		}
		w := serve(t, rl, r)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("POST %s: %d %s; want 400 %q", tc.body, w.Code, w.Body.String(), tc.want)
		}
	}
	// The control: a well-formed request revokes.
	r := httptest.NewRequest("POST", "http://app.example.com/.auth/admin/revoke", strings.NewReader(`{"csrfToken":"`+token+`","user":"bob"}`))
	for _, c := range cookies {
		r.AddCookie(c)
	}
	if w := serve(t, rl, r); w.Code != http.StatusOK {
		t.Errorf("a well-formed revocation: %d %s, want 200", w.Code, w.Body.String())
	}
}
