package providers

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"
)

// What the tests send as the browser's part of the flow.
const (
	testClientID     = "the-client"
	testClientSecret = "the-secret"
	testCode         = "the-code"
	testState        = "the-state"
	testNonce        = "the-nonce"
	testAccessToken  = "the-access-token"
	testRedirectURL  = "https://app.example.com/.auth/callback/x"
)

// fakeOAuth plays an OAuth 2.0 authorization server's token endpoint (/token) and
// the resource API behind it (api, by path; each handler sees only requests that
// carry the bearer token the token endpoint issued).
type fakeOAuth struct {
	*httptest.Server
	verifier string
	// token is the token endpoint's JSON answer to a valid request.
	token map[string]any
	api   map[string]http.HandlerFunc
	// public serves paths that need no token (discovery, keys).
	public map[string]http.HandlerFunc

	mu       sync.Mutex
	requests []string // paths, in order
}

func newFakeOAuth(t *testing.T) *fakeOAuth {
	t.Helper()
	f := &fakeOAuth{
		verifier: oauth2.GenerateVerifier(),
		token:    map[string]any{"access_token": testAccessToken, "token_type": "bearer"},
		api:      map[string]http.HandlerFunc{},
		public:   map[string]http.HandlerFunc{},
	}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOAuth) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.URL.Path)
	f.mu.Unlock()
	if r.URL.Path == "/token" {
		f.serveToken(w, r)
		return
	}
	if h, ok := f.public[r.URL.Path]; ok {
		h(w, r)
		return
	}
	h, ok := f.api[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testAccessToken {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials"})
		return
	}
	h(w, r)
}

func (f *fakeOAuth) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != testClientID || secret != testClientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
		return
	}
	form := r.PostForm
	if form.Get("grant_type") != "authorization_code" || form.Get("code") != testCode ||
		form.Get("code_verifier") != f.verifier || form.Get("redirect_uri") != testRedirectURL {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": form.Encode()})
		return
	}
	writeJSON(w, http.StatusOK, f.token)
}

// withCode is an authorization response carrying code and nothing else.
func withCode(code string) url.Values {
	return url.Values{"code": {code}}
}

// hits counts the requests made to path.
func (f *fakeOAuth) hits(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.requests {
		if p == path {
			n++
		}
	}
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// answer is an API handler that writes body as it is.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

// s256 is the PKCE S256 code challenge of verifier (RFC 7636 section 4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// parseAuthURL checks that raw is an authorization request at authURL with PKCE
// S256 for verifier and the test state and returns its query.
func parseAuthURL(t *testing.T, raw, authURL, verifier string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("AuthCodeURL %q: %v", raw, err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != authURL {
		t.Errorf("AuthCodeURL goes to %q, want %q", got, authURL)
	}
	q := u.Query()
	want := map[string]string{
		"response_type":         "code",
		"client_id":             testClientID,
		"redirect_uri":          testRedirectURL,
		"state":                 testState,
		"code_challenge_method": "S256",
		"code_challenge":        s256(verifier),
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("AuthCodeURL %s = %q, want %q (URL %s)", k, q.Get(k), v, raw)
		}
	}
	return q
}

// offline is a client whose every request fails, for code that must not reach
// the network.
var offline = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
	return nil, errors.New("test: no network: " + r.URL.String())
})}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// errContains fails t unless err is an error whose message contains every one of want.
func errContains(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
