package session

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// request returns a request carrying the given cookies, in order.
func request(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

// setCookies parses the Set-Cookie headers written to w, by name; it fails on a name written
// twice.
func setCookies(t *testing.T, w *httptest.ResponseRecorder) map[string]*http.Cookie {
	t.Helper()
	m := map[string]*http.Cookie{}
	for _, c := range w.Result().Cookies() {
		if m[c.Name] != nil {
			t.Errorf("cookie %s set twice", c.Name)
		}
		m[c.Name] = c
	}
	return m
}

func names(m map[string]*http.Cookie) []string {
	var s []string
	for n := range m {
		s = append(s, n)
	}
	slices.Sort(s)
	return s
}

// live and deleted sort the cookies written by whether they delete.
func live(m map[string]*http.Cookie) (l, d []string) {
	for _, n := range names(m) {
		if m[n].MaxAge < 0 {
			d = append(d, n)
		} else {
			l = append(l, n)
		}
	}
	return l, d
}

// value makes a value of n distinct-looking characters, so a misordered join shows.
func value(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789-_."[i%39])
	}
	return b.String()
}

func TestSetChunked(t *testing.T) {
	const name = "authjs.session-token"
	for _, tc := range []struct {
		desc        string
		size        int
		present     []string // cookies on the request
		wantLive    []string
		wantDeleted []string
	}{
		{"small", 100, nil, []string{name}, nil},
		{"exactly ChunkSize", ChunkSize, nil, []string{name}, nil},
		{"one over ChunkSize", ChunkSize + 1, nil, []string{name + ".0", name + ".1"}, nil},
		{"three chunks", 2*ChunkSize + 5, nil, []string{name + ".0", name + ".1", name + ".2"}, nil},
		{"shorter replaces chunks", 100,
			[]string{name + ".0", name + ".1", name + ".2"},
			[]string{name}, []string{name + ".0", name + ".1", name + ".2"}},
		{"fewer chunks replace more", ChunkSize + 1,
			[]string{name + ".0", name + ".1", name + ".2", name + ".3"},
			[]string{name + ".0", name + ".1"}, []string{name + ".2", name + ".3"}},
		{"chunks replace unchunked", ChunkSize + 1,
			[]string{name},
			[]string{name + ".0", name + ".1"}, []string{name}},
		{"unrelated cookies stay", 100,
			[]string{name + "x", name + ".x", name + ".01", "other", name + "-csrf"},
			[]string{name}, nil},
		{"duplicate stale chunk deleted once", 100,
			[]string{name + ".1", name + ".1"},
			[]string{name}, []string{name + ".1"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var present []*http.Cookie
			for _, n := range tc.present {
				present = append(present, &http.Cookie{Name: n, Value: "old"})
			}
			v := value(tc.size)
			w := httptest.NewRecorder()
			SetChunked(w, request(present...), name, v, time.Hour, CookieOptions{})
			m := setCookies(t, w)

			l, d := live(m)
			if !reflect.DeepEqual(l, tc.wantLive) || !reflect.DeepEqual(d, tc.wantDeleted) {
				t.Fatalf("set %v, deleted %v; want set %v, deleted %v", l, d, tc.wantLive, tc.wantDeleted)
			}
			var written []*http.Cookie
			for _, n := range l {
				if len(m[n].Value) > ChunkSize {
					t.Errorf("cookie %s has %d bytes, more than ChunkSize", n, len(m[n].Value))
				}
				written = append(written, m[n])
			}
			// The browser's next request carries what was written; reading joins it.
			if got, ok := ReadChunked(request(written...), name); !ok || got != v {
				t.Errorf("ReadChunked after SetChunked = %d bytes, %v; want the %d bytes written", len(got), ok, len(v))
			}
		})
	}
}

func TestCookieAttributes(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		maxAge time.Duration
		o      CookieOptions
		want   http.Cookie
	}{
		{"defaults", time.Hour, CookieOptions{},
			http.Cookie{Path: "/", SameSite: http.SameSiteLaxMode, MaxAge: 3600}},
		{"all set", 30 * 24 * time.Hour,
			CookieOptions{Domain: "example.com", Path: "/app", SameSite: http.SameSiteStrictMode, Secure: true},
			http.Cookie{Domain: "example.com", Path: "/app", SameSite: http.SameSiteStrictMode, Secure: true, MaxAge: 2592000}},
		{"session cookie", 0, CookieOptions{SameSite: http.SameSiteNoneMode, Secure: true},
			http.Cookie{Path: "/", SameSite: http.SameSiteNoneMode, Secure: true}},
		{"sub-second max age", 300 * time.Millisecond, CookieOptions{},
			http.Cookie{Path: "/", SameSite: http.SameSiteLaxMode, MaxAge: 1}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			for _, size := range []int{10, 2*ChunkSize + 1} {
				w := httptest.NewRecorder()
				// A stale chunk, to check the attributes of deletions too.
				r := request(&http.Cookie{Name: "s.7", Value: "old"})
				SetChunked(w, r, "s", value(size), tc.maxAge, tc.o)
				for _, c := range w.Result().Cookies() {
					if !c.HttpOnly || c.Domain != tc.want.Domain || c.Path != tc.want.Path ||
						c.SameSite != tc.want.SameSite || c.Secure != tc.want.Secure {
						t.Errorf("size %d: cookie %s = %q; want HttpOnly, Domain %q, Path %q, SameSite %v, Secure %v",
							size, c.Name, c.Raw, tc.want.Domain, tc.want.Path, tc.want.SameSite, tc.want.Secure)
					}
					wantMaxAge := tc.want.MaxAge
					if c.Name == "s.7" {
						wantMaxAge = -1
					}
					if c.MaxAge != wantMaxAge || !c.Expires.IsZero() {
						t.Errorf("size %d: cookie %s = %q; want Max-Age %d (-1: 0) and no Expires", size, c.Name, c.Raw, wantMaxAge)
					}
				}
			}
		})
	}
}

func TestReadChunked(t *testing.T) {
	const name = "s"
	c := func(name, value string) *http.Cookie { return &http.Cookie{Name: name, Value: value} }
	for _, tc := range []struct {
		desc    string
		cookies []*http.Cookie
		want    string
		wantOK  bool
	}{
		{"absent", nil, "", false},
		{"others only", []*http.Cookie{c("t", "x"), c("s-x", "y"), c("s.a", "z")}, "", false},
		{"unchunked", []*http.Cookie{c("s", "abc")}, "abc", true},
		{"unchunked wins over chunks", []*http.Cookie{c("s.0", "x"), c("s", "abc")}, "abc", true},
		{"empty counts as absent", []*http.Cookie{c("s", ""), c("s.0", "ab"), c("s.1", "cd")}, "abcd", true},
		{"numeric order", []*http.Cookie{c("s.10", "k"), c("s.2", "c"), c("s.0", "a"), c("s.1", "b"),
			c("s.3", "d"), c("s.4", "e"), c("s.5", "f"), c("s.6", "g"), c("s.7", "h"), c("s.8", "i"), c("s.9", "j")},
			"abcdefghijk", true},
		{"stop at first gap", []*http.Cookie{c("s.0", "a"), c("s.1", "b"), c("s.3", "d")}, "ab", true},
		{"no first chunk", []*http.Cookie{c("s.1", "b"), c("s.2", "c")}, "", false},
		{"first duplicate wins", []*http.Cookie{c("s.0", "a"), c("s.0", "x"), c("s.1", "b")}, "ab", true},
		{"not chunk names", []*http.Cookie{c("s.0", "a"), c("s.01", "x"), c("s.+1", "y"), c("s.1x", "z")}, "a", true},
		{"huge index", []*http.Cookie{c("s.0", "a"), c("s.99999999999999999999", "x"), c("s.2147483647", "y")}, "a", true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, ok := ReadChunked(request(tc.cookies...), name)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("ReadChunked = %q, %v; want %q, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// ReadChunked reads the cookie net/http reads from a Cookie header as clients
// may write it: spaces or tabs around a name are no other cookie.
func TestReadChunkedAsNetHTTP(t *testing.T) {
	for _, line := range []string{
		"s=abc", "s =abc", "s\t=abc", " s=abc", "x=1; s =abc", "x=1;s=abc", "s =abc; s=def", "s.0 =ab; s.1\t=cd",
	} {
		r := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
		r.Header.Set("Cookie", line)
		want, wantOK := "", false
		if c, err := r.Cookie("s"); err == nil {
			want, wantOK = c.Value, true
		} else if c0, err := r.Cookie("s.0"); err == nil {
			c1, _ := r.Cookie("s.1")
			want, wantOK = c0.Value+c1.Value, true
		}
		if got, ok := ReadChunked(r, "s"); got != want || ok != wantOK {
			t.Errorf("Cookie: %q: ReadChunked = %q, %v; net/http reads %q, %v", line, got, ok, want, wantOK)
		}
	}
}

func TestClearChunked(t *testing.T) {
	o := CookieOptions{Domain: "example.com", Secure: true}
	for _, tc := range []struct {
		desc    string
		present []string
		want    []string
	}{
		{"nothing present", nil, []string{"s"}},
		{"unchunked", []string{"s", "other"}, []string{"s"}},
		{"chunks", []string{"s.0", "s.1", "s.2", "s.x", "t.0"}, []string{"s", "s.0", "s.1", "s.2"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var present []*http.Cookie
			for _, n := range tc.present {
				present = append(present, &http.Cookie{Name: n, Value: "v"})
			}
			w := httptest.NewRecorder()
			ClearChunked(w, request(present...), "s", o)
			m := setCookies(t, w)
			l, d := live(m)
			if len(l) != 0 || !reflect.DeepEqual(d, tc.want) {
				t.Errorf("set %v, deleted %v; want deleted %v", l, d, tc.want)
			}
			for _, c := range m {
				if c.Domain != "example.com" || c.Path != "/" || !c.Secure || !c.HttpOnly {
					t.Errorf("deletion %q lacks the cookie's attributes, so the browser would keep the cookie", c.Raw)
				}
			}
		})
	}
}

func TestNamePrefixes(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{SecureName("authjs.session-token", true), "__Secure-authjs.session-token"},
		{SecureName("authjs.session-token", false), "authjs.session-token"},
		{HostName("authjs.csrf-token", true), "__Host-authjs.csrf-token"},
		{HostName("authjs.csrf-token", false), "authjs.csrf-token"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
