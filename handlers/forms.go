package handlers

import (
	"net/http"

	"github.com/authgate/caddy-authgate/session"
)

// maxFormBytes bounds every POST body the endpoints read.
const maxFormBytes = 64 << 10

// parseForm reads a bounded POST form.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	return r.ParseForm()
}

// csrfCookie is the double-submit CSRF check of every POST: a token in a
// __Host- cookie, bound to the realm's secret, that the form must repeat.
type csrfCookie struct {
	csrf   *session.CSRF
	names  [2]string // by whether the request is secure
	origin *origin
}

// token returns the CSRF token of r's cookie, or issues a new one.
func (c *csrfCookie) token(w http.ResponseWriter, r *http.Request) string {
	name := c.names[idx(c.origin.secure(r))]
	if ck, err := r.Cookie(name); err == nil {
		if tok, ok := c.csrf.FromCookie(ck.Value); ok {
			return tok
		}
	}
	tok, val := c.csrf.Issue()
	session.SetChunked(w, r, name, val, 0, c.origin.hostCookieOpts(r))
	return tok
}

// check verifies a submitted CSRF token against the request's cookie.
func (c *csrfCookie) check(r *http.Request, submitted string) bool {
	ck, err := r.Cookie(c.names[idx(c.origin.secure(r))])
	if err != nil {
		return false
	}
	return c.csrf.Verify(ck.Value, submitted)
}

// checkForm verifies the csrfToken field of a parsed form POST.
func (c *csrfCookie) checkForm(r *http.Request) bool {
	return c.check(r, r.PostForm.Get("csrfToken"))
}
