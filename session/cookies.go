package session

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// CookieOptions are the attributes shared by authgate's cookies.
type CookieOptions struct {
	// Domain is the cookie's Domain attribute; empty means host-only.
	Domain string
	// Path is the cookie's Path attribute; empty means "/".
	Path string
	// SameSite is the cookie's SameSite attribute; zero means http.SameSiteLaxMode.
	SameSite http.SameSite
	// Secure marks the cookie Secure; required for the __Secure- and __Host- prefixes.
	Secure bool
}

// ChunkSize is the largest cookie value written in one piece (Auth.js: 4096 - 163). It is
// what next-auth v4 used; @auth/core 0.41 uses 4096 - 160, and the smaller size suits both.
const ChunkSize = 3933

// cookie returns a cookie with o's attributes. maxAge 0 makes a session cookie, a negative
// maxAge deletes the cookie.
func (o CookieOptions) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Domain:   o.Domain,
		Path:     o.Path,
		SameSite: o.SameSite,
		Secure:   o.Secure,
		HttpOnly: true,
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.SameSite == 0 {
		c.SameSite = http.SameSiteLaxMode
	}
	switch {
	case maxAge < 0:
		c.MaxAge = -1
	case maxAge > 0:
		// Round up, so that a sub-second maxAge does not become a session cookie.
		c.MaxAge = int((maxAge + time.Second - 1) / time.Second)
	}
	return c
}

// SetChunked writes value as cookie name, or, when longer than ChunkSize, as name.0,
// name.1, …; it deletes any other name or name.N cookies present on r that this write does not
// overwrite (stale chunks). The cookies are always HttpOnly. maxAge 0 makes session cookies.
func SetChunked(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration, o CookieOptions) {
	n := 0 // number of chunks; 0 means one unchunked cookie
	if len(value) > ChunkSize {
		n = (len(value) + ChunkSize - 1) / ChunkSize
		for i := range n {
			chunk := value[i*ChunkSize : min((i+1)*ChunkSize, len(value))]
			http.SetCookie(w, o.cookie(chunkName(name, i), chunk, maxAge))
		}
	} else {
		http.SetCookie(w, o.cookie(name, value, maxAge))
	}
	deleteStale(w, r, name, o, func(i int) bool {
		if i < 0 {
			return n == 0
		}
		return i < n
	})
}

// ReadChunked returns the value of cookie name, or else the chunks name.0, name.1, … joined in
// numeric order up to the first missing one; ok is false when neither is present. Empty
// cookies count as absent, as in Auth.js.
func ReadChunked(r *http.Request, name string) (value string, ok bool) {
	// The Cookie header is scanned in place rather than parsed into http.Cookies:
	// this runs on every guarded request, and an unchunked value is returned
	// without allocating.
	var (
		single    string
		chunks    [maxChunks]string
		hasChunks bool
	)
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var n, v string
			n, v, line = NextCookie(line)
			if !strings.HasPrefix(n, name) {
				continue
			}
			v = unquote(v)
			if v == "" {
				continue
			}
			i, ok := chunkIndex(n, name)
			switch {
			case !ok:
			case i < 0:
				if single == "" {
					single = v
				}
			case i < maxChunks && chunks[i] == "": // of duplicate names, browsers send the most specific first
				chunks[i] = v
				hasChunks = true
			}
		}
	}
	if single != "" || !hasChunks {
		return single, single != ""
	}
	var b strings.Builder
	for _, c := range chunks {
		if c == "" {
			break
		}
		b.WriteString(c)
	}
	return b.String(), b.Len() > 0
}

// NextCookie reads the first name=value pair of a Cookie header line, and
// returns the rest of the line. The name is trimmed of spaces and tabs as
// net/http (and the cookie parsers of Node, PHP, …) trim it, so that a pair
// such as "name =value" is the cookie they read: a cookie an upstream reads
// is one authgate reads and strips. It allocates nothing: Cookie headers are
// scanned in place on every guarded request.
func NextCookie(line string) (name, value, rest string) {
	pair, rest, _ := strings.Cut(line, ";")
	name, value, _ = strings.Cut(strings.TrimSpace(pair), "=")
	return textproto.TrimString(name), value, rest
}

// maxChunks bounds how many chunks are read (64 KB of cookies, beyond what
// browsers keep for one site).
const maxChunks = 16

// unquote removes the double quotes a cookie value may be wrapped in.
func unquote(v string) string {
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// ClearChunked expires name and every name.N present on r.
func ClearChunked(w http.ResponseWriter, r *http.Request, name string, o CookieOptions) {
	http.SetCookie(w, o.cookie(name, "", -1))
	deleteStale(w, r, name, o, func(i int) bool { return i < 0 })
}

// deleteStale expires each cookie name or name.N on r, once, unless keep(N) (N = -1 for
// name itself).
func deleteStale(w http.ResponseWriter, r *http.Request, name string, o CookieOptions, keep func(i int) bool) {
	var deleted map[string]bool
	for _, c := range r.Cookies() {
		i, ok := chunkIndex(c.Name, name)
		if !ok || keep(i) || deleted[c.Name] {
			continue
		}
		if deleted == nil {
			deleted = make(map[string]bool)
		}
		deleted[c.Name] = true
		http.SetCookie(w, o.cookie(c.Name, "", -1))
	}
}

func chunkName(name string, i int) string {
	return name + "." + strconv.Itoa(i)
}

// chunkIndex reports whether cookieName is name (i = -1) or a chunk name.i of it.
func chunkIndex(cookieName, name string) (i int, ok bool) {
	suffix, found := strings.CutPrefix(cookieName, name)
	if !found {
		return 0, false
	}
	if suffix == "" {
		return -1, true
	}
	digits, found := strings.CutPrefix(suffix, ".")
	if !found || digits == "" || (digits[0] == '0' && len(digits) > 1) {
		return 0, false
	}
	for _, d := range []byte(digits) {
		if d < '0' || d > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(digits)
	return i, err == nil
}

// SecureName returns "__Secure-"+name when secure, else name.
func SecureName(name string, secure bool) string {
	if secure {
		return "__Secure-" + name
	}
	return name
}

// HostName returns "__Host-"+name when secure, else name. Browsers accept the __Host- prefix
// only on Secure cookies with no Domain and Path "/".
func HostName(name string, secure bool) string {
	if secure {
		return "__Host-" + name
	}
	return name
}
