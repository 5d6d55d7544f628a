package handlers

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The ambiguous-path rule: every form that `path /admin/*` misses and an
// upstream may read as /admin/… is refused; legitimate encodings pass.
func TestAmbiguousPath(t *testing.T) {
	for _, tc := range []struct {
		uri       string
		ambiguous bool
	}{
		{"/admin;x/secret", true},
		{"/admin;jsessionid=1", true},
		{"/admin%3Bx/secret", true},
		{"/admin%00/secret", true},
		{"/admin%252fsecret", true},
		{"/%2561dmin/secret", true},
		{"/admin\\secret", true},
		{"/admin%2fsecret", true},
		{"/admin%2Fsecret", true},
		{"/admin%5csecret", true},
		{"/admin%5Csecret", true},
		{"/a%20b", false},
		{"/caf%C3%A9", false},
		{"/search?q=a;b", false},
		{"/search?q=%252f", false},
		{"/100%25", false},
		{"/50%25off", false},
		{"/", false},
		{"/admin/secret", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://app.example.com/", nil)
		r.RequestURI = tc.uri
		got := ambiguousPath(r)
		if (got != "") != tc.ambiguous {
			t.Errorf("%s: ambiguous = %q, want ambiguous %v", tc.uri, got, tc.ambiguous)
		}
	}
}

// Client-sent identity headers go, in any spelling, from headers and
// trailers; those an earlier authgate handler set stay; Connection may not
// name them.
func TestStripIdentityHeaders(t *testing.T) {
	rl := benchRealm(t, nil)
	h := benchHandler(t, rl, &Handler{Headers: []HeaderConfig{{Name: "X-Role", Expr: "token.sub"}}, Assertion: "X-Authgate-Assertion"})
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/", nil)
	r.Header["X-Auth-Request-User"] = []string{"forged"}
	r.Header["X_auth_request_email"] = []string{"forged"}
	r.Header["X-Role"] = []string{"forged"}
	r.Header["X_role"] = []string{"forged"}
	r.Header["X-Authgate-Assertion"] = []string{"forged"}
	r.Header["X-Set-By-Authgate"] = []string{"kept"}
	r.Header["X-App"] = []string{"kept"}
	r.Header["Connection"] = []string{"keep-alive, X-Role", "x-auth-request-user, X-Set-By-Authgate"}
	r.Trailer = http.Header{"X-Auth-Request-User": nil, "X-Role": nil, "X-Checksum": nil}
	rs := &requestState{set: []string{"X-Set-By-Authgate"}}
	h.stripIdentityHeaders(r, rs)
	for _, k := range []string{"X-Auth-Request-User", "X_auth_request_email", "X-Role", "X_role", "X-Authgate-Assertion"} {
		if _, ok := r.Header[k]; ok {
			t.Errorf("header %s survived", k)
		}
	}
	if r.Header.Get("X-App") != "kept" || r.Header.Get("X-Set-By-Authgate") != "kept" {
		t.Errorf("headers that are not the client's identity went: %v", r.Header)
	}
	if got := strings.Join(r.Header["Connection"], "|"); got != "keep-alive" {
		t.Errorf("Connection = %q, want keep-alive", got)
	}
	if _, ok := r.Trailer["X-Checksum"]; !ok || len(r.Trailer) != 1 {
		t.Errorf("trailers = %v, want only X-Checksum", r.Trailer)
	}
}

// Trailers arrive with the end of the body, declared or not (net/http adds
// every one to the request's map then): the identity headers among them are
// gone by the time the reader of the body sees its end.
func TestStripIdentityTrailersAtEndOfBody(t *testing.T) {
	rl := benchRealm(t, nil)
	h := benchHandler(t, rl, &Handler{Headers: []HeaderConfig{{Name: "X-Role", Expr: "token.sub"}}})
	r := httptest.NewRequest(http.MethodPost, "http://app.example.com/", nil)
	r.Trailer = http.Header{"X-Auth-Request-User": nil, "X-Checksum": nil}
	trailer := r.Trailer
	r.Body = io.NopCloser(&endsWithTrailers{body: strings.NewReader("a chunked body"), fill: func() {
		trailer["X-Auth-Request-User"] = []string{"mallory"}
		trailer["X_role"] = []string{"admin"} // not declared
		trailer["X-Checksum"] = []string{"c0ffee"}
	}})
	h.stripIdentityHeaders(r, &requestState{})
	body, err := io.ReadAll(r.Body)
	if err != nil || string(body) != "a chunked body" {
		t.Fatalf("body %q, %v", body, err)
	}
	if len(trailer) != 1 || trailer.Get("X-Checksum") != "c0ffee" {
		t.Errorf("trailers at the end of the body = %v, want only X-Checksum", trailer)
	}
}

// endsWithTrailers is a body that, as net/http's, fills the trailers when it
// reaches its end.
type endsWithTrailers struct {
	body io.Reader
	fill func()
}

func (e *endsWithTrailers) Read(p []byte) (int, error) {
	n, err := e.body.Read(p)
	if err == io.EOF && e.fill != nil {
		e.fill()
		e.fill = nil
	}
	return n, err
}

// No cookie an upstream reads as one of authgate's survives stripAuthCookies,
// however the client spaced its name; the application's cookies stay as sent.
func TestStripAuthCookiesAsUpstreamsRead(t *testing.T) {
	isAuth := func(name string) bool { return name == "authjs.session-token" || name == "authjs.session-token.0" }
	for line, want := range map[string]string{
		"authjs.session-token=a; app=1":                                "app=1",
		"authjs.session-token =a; app=1":                               "app=1",
		"app=1; authjs.session-token\t=a;  authjs.session-token.0 = b": "app=1",
		" authjs.session-token=a":                                      "",
		"app=\"x y\"; other=2":                                         "app=\"x y\"; other=2",
	} {
		r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
		r.Header.Set("Cookie", line)
		stripAuthCookies(r, isAuth)
		if got := r.Header.Get("Cookie"); got != want {
			t.Errorf("Cookie: %q: stripped to %q, want %q", line, got, want)
		}
		for _, c := range r.Cookies() {
			if isAuth(c.Name) {
				t.Errorf("Cookie: %q: net/http still reads %s", line, c.Name)
			}
		}
	}
}
