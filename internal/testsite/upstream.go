package testsite

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Upstream is the guarded application: an httptest server that records each
// request authgate let through.
type Upstream struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string

	mu   sync.Mutex
	seen []Request
}

// Request is a request the upstream received.
type Request struct {
	URI    string
	Header http.Header
	// Trailer is what came after a body that declared trailers (read to its
	// end for them); nil otherwise.
	Trailer http.Header
}

// NewUpstream starts an upstream that records each request and answers it with
// answer (OK, or what the test needs the response to tell); it stops when the
// test ends.
func NewUpstream(t testing.TB, answer http.HandlerFunc) *Upstream {
	t.Helper()
	u := &Upstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := Request{URI: r.URL.RequestURI(), Header: r.Header.Clone()}
		if r.Trailer != nil {
			_, _ = io.Copy(io.Discard, r.Body) // trailers arrive after the body
			seen.Trailer = r.Trailer.Clone()
		}
		u.mu.Lock()
		u.seen = append(u.seen, seen)
		u.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// OK answers 200 "upstream: ok" (text/plain).
func OK(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "upstream: ok")
}

// Count is the number of requests the upstream received so far.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// Last returns the latest request the upstream received, failing the test when
// there is none.
func (u *Upstream) Last(t testing.TB) Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the upstream received no request")
	}
	return u.seen[len(u.seen)-1]
}

// CookieNames returns the names of the cookies in the request's Cookie header.
func (s Request) CookieNames() []string {
	r := &http.Request{Header: s.Header}
	var names []string
	for _, c := range r.Cookies() {
		names = append(names, c.Name)
	}
	return names
}

// AuthHeaders returns every header whose name, read as authgate reads identity
// headers (any case, '_' for '-'), starts with X-Auth-Request-, with the name
// in that normal form.
func (s Request) AuthHeaders() map[string][]string {
	out := map[string][]string{}
	for k, v := range s.Header {
		if n := normalHeader(k); strings.HasPrefix(n, "x-auth-request-") {
			out[n] = append(out[n], v...)
		}
	}
	return out
}

// HeaderValues returns every value of a header in any case and with '_' for '-'.
func (s Request) HeaderValues(name string) []string {
	var out []string
	for k, v := range s.Header {
		if normalHeader(k) == normalHeader(name) {
			out = append(out, v...)
		}
	}
	return out
}

func normalHeader(k string) string {
	return strings.ReplaceAll(strings.ToLower(k), "_", "-")
}
