package handlers

import (
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// requestState is what every authgate handler that a request passes through
// shares: the session read once, and the headers authgate set, which a later
// handler must not take for the client's.
type requestState struct {
	// realm and st: the session of realm, read by the first handler of that realm.
	realm *realm
	st    *sessionState
	err   error
	// set lists the upstream headers authgate set on this request (canonical
	// names), in setBuf unless there are more.
	set    []string
	setBuf [4]string
	// stBuf holds st (one allocation per request, not two).
	stBuf sessionState
	// cookiesStripped: the realm's cookies are gone from the request.
	cookiesStripped bool
	// bearer: the session came from an Authorization: Bearer token.
	bearer bool
}

const requestStateVar = "authgate.request"

// stateOf returns the request's shared state, made by the first authgate
// handler it passes through. Without Caddy's variables (unit tests) each call
// gets a fresh one.
func stateOf(r *http.Request) *requestState {
	if rs, ok := caddyhttp.GetVar(r.Context(), requestStateVar).(*requestState); ok {
		return rs
	}
	rs := &requestState{}
	rs.set = rs.setBuf[:0]
	caddyhttp.SetVar(r.Context(), requestStateVar, rs)
	return rs
}

// session reads the request's session of rl once, whichever handler asks first:
// a handler after it finds the cookie already stripped from the request.
func (rs *requestState) session(w http.ResponseWriter, r *http.Request, rl *realm) (*sessionState, error) {
	if rs.realm == rl {
		return rs.st, rs.err
	}
	var st *sessionState
	var err error
	raw, bearer := rl.bearerToken(r)
	if bearer {
		st = rl.bearerSession(r, raw)
	} else {
		st, err = rl.sessions.readInto(&rs.stBuf, w, r, rl.cb)
	}
	if rs.realm == nil {
		rs.realm, rs.st, rs.err, rs.bearer = rl, st, err, bearer
	}
	return st, err
}

// setHeader sets an upstream header and remembers that authgate set it.
func (rs *requestState) setHeader(r *http.Request, name string, value []string) {
	r.Header[name] = value
	if !rs.isSet(name) {
		rs.set = append(rs.set, name)
	}
}

func (rs *requestState) isSet(name string) bool {
	for _, n := range rs.set {
		if n == name {
			return true
		}
	}
	return false
}

// ambiguousPath returns why the request's path may be read differently by
// Caddy's matchers and by the upstream, or "". A `;` path parameter (Tomcat,
// Spring), an encoded slash or backslash, a backslash (IIS), a NUL or a
// double percent-encoding (%252f, %2561) let `/admin;x/secret` slip past
// `path /admin/*` and still reach /admin at the upstream.
func ambiguousPath(r *http.Request) string {
	raw := r.RequestURI
	if raw == "" || raw[0] != '/' {
		raw = r.URL.EscapedPath()
	}
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case ';':
			return "a ; path parameter"
		case '\\':
			return "a backslash"
		case 0:
			return "a NUL"
		case '%':
			if i+2 >= len(raw) {
				continue
			}
			switch strings.ToLower(raw[i+1 : i+3]) {
			case "2f":
				return "an encoded slash"
			case "5c":
				return "an encoded backslash"
			case "00":
				return "an encoded NUL"
			case "3b":
				return "an encoded ;"
			case "25":
				if i+4 < len(raw) && isHex(raw[i+3]) && isHex(raw[i+4]) {
					return "a double percent-encoding"
				}
			}
		}
	}
	if strings.ContainsAny(r.URL.Path, ";\\\x00") {
		return "an ambiguous character"
	}
	return ""
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// refuseAmbiguous answers 400 to a request whose path is ambiguous.
func (h *Handler) refuseAmbiguous(w http.ResponseWriter, r *http.Request, reason string) error {
	h.logger.Info("request path refused as ambiguous", zap.String("reason", reason), zap.String("client_ip", clientIP(r)))
	w.Header().Set("Cache-Control", "no-store")
	if isNavigation(r) {
		h.realm.pages.message(w, http.StatusBadRequest, pageData{
			Title:   "Bad request",
			Message: "This address cannot be served: its path has " + reason + ".",
		})
		return nil
	}
	writeError(w, http.StatusBadRequest, "AmbiguousPath")
	return nil
}

// stripIdentityHeaders deletes every client-sent header the upstream could
// mistake for identity: any X-Auth-Request-* and any configured header, in any
// case and with '_' for '-' (some servers map both to the same variable), in
// the headers and the trailers. Headers an earlier authgate handler set on
// this request stay. A client's Connection header may not name them either:
// a proxy would drop them as hop-by-hop headers.
func (h *Handler) stripIdentityHeaders(r *http.Request, rs *requestState) {
	for k := range r.Header {
		if h.isIdentityHeader(k) && !rs.isSet(k) {
			delete(r.Header, k)
		}
	}
	if r.Trailer != nil {
		h.stripIdentityTrailers(r.Trailer)
		if r.Body != nil && r.Body != http.NoBody {
			// The declared trailers' values arrive with the end of the body,
			// and net/http then adds every trailer the client sent to this
			// map, which a proxy forwards: strip them again there.
			r.Body = &trailerStripper{ReadCloser: r.Body, trailer: r.Trailer, h: h}
		}
	}
	if conn := r.Header["Connection"]; conn != nil {
		r.Header["Connection"] = h.cleanConnection(conn, rs)
		if len(r.Header["Connection"]) == 0 {
			delete(r.Header, "Connection")
		}
	}
}

// stripIdentityTrailers deletes the identity headers among trailers.
func (h *Handler) stripIdentityTrailers(trailer http.Header) {
	for k := range trailer {
		if h.isIdentityHeader(k) {
			delete(trailer, k)
		}
	}
}

// trailerStripper is a request body that strips identity headers from the
// request's trailers when the body ends, before whoever reads it (Caddy's
// reverse_proxy) sees the end and copies the trailers on. Without it, a client
// that declares `Trailer: X-Auth-Request-User` and sends it after a chunked body
// would hand the upstream an identity header of its own.
type trailerStripper struct {
	io.ReadCloser
	trailer http.Header // the request's, which net/http fills at the end of the body
	h       *Handler
}

func (b *trailerStripper) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.h.stripIdentityTrailers(b.trailer)
	}
	return n, err
}

// isIdentityHeader reports whether a header name is one authgate sets or strips.
func (h *Handler) isIdentityHeader(k string) bool {
	if len(k) >= len(identityPrefix) && headerNameEqual(k[:len(identityPrefix)], identityPrefix) {
		return true
	}
	for _, name := range h.strip {
		if headerNameEqual(k, name) {
			return true
		}
	}
	return false
}

// cleanConnection removes from Connection header values the tokens that name
// identity headers (or headers authgate set), keeping the rest.
func (h *Handler) cleanConnection(values []string, rs *requestState) []string {
	bad := false
	for _, v := range values {
		for rest := v; rest != "" && !bad; {
			var tok string
			tok, rest, _ = strings.Cut(rest, ",")
			tok = strings.TrimSpace(tok)
			bad = h.isIdentityHeader(tok) || rs.isSet(http.CanonicalHeaderKey(tok))
		}
	}
	if !bad {
		return values
	}
	var out []string
	for _, v := range values {
		var keep []string
		for _, tok := range strings.Split(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" || h.isIdentityHeader(tok) || rs.isSet(http.CanonicalHeaderKey(tok)) {
				continue
			}
			keep = append(keep, tok)
		}
		if len(keep) > 0 {
			out = append(out, strings.Join(keep, ", "))
		}
	}
	return out
}

const identityPrefix = "x-auth-request-"

// headerNameEqual reports whether header name k spells want (lowercase, '-'),
// ignoring case and reading '_' as '-'. It allocates nothing: it runs for every
// header of every request.
func headerNameEqual(k, want string) bool {
	if len(k) != len(want) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}
