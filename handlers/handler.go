// Package handlers is authgate's HTTP side: the `authgate` app with its realms,
// the guard that lets only signed-in users through to the upstream, and the
// /.auth/* sign-in endpoints with their HTML pages.
package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
)

// Handler guards routes: requests without a valid session are sent to sign in
// (browsers) or answered 401; requests with one go on with the user's identity
// in headers. It also serves the realm's /.auth/* endpoints.
type Handler struct {
	// Realm names the realm of the `authgate` app to sign users in with. Default: "default".
	Realm string `json:"realm,omitempty"`

	// Headers set on the request to the upstream, each from a CEL expression over
	// `session`, `token` and `request`. When empty, the defaults are set:
	// X-Auth-Request-User (sub), X-Auth-Request-Email and X-Auth-Request-Name.
	Headers []HeaderConfig `json:"headers,omitempty"`

	// Require lists conditions that must all hold for a signed-in user to pass:
	// CEL expressions over `session`, `token` and `request`, or the email, domain
	// and claim shorthands. Otherwise the answer is 403.
	Require []callbacks.Condition `json:"require,omitempty"`

	// Assertion, when set, names a header that carries a signed assertion of the
	// user's identity to the upstream: an EdDSA JWT (iss, sub, email, name, iat,
	// exp) verifiable with <base_path>/jwks.json, valid for five minutes.
	Assertion string `json:"assertion,omitempty"`

	// UnauthenticatedStatus, when set, answers signed-out requests with this status
	// instead of redirecting browsers to the sign-in page.
	UnauthenticatedStatus int `json:"unauthenticated_status,omitempty"`

	realm *realm
	// tokenOnly: require and headers read no `request`, so their results are
	// computed once per token.
	tokenOnly bool
	require   []*callbacks.Check
	headers   []header
	// strip lists the configured header names, lowercase with '-' for '_'.
	strip  []string
	logger *zap.Logger
}

// HeaderConfig is one identity header for the upstream.
type HeaderConfig struct {
	// Name of the header.
	Name string `json:"name"`
	// Expr is a CEL expression; a list is joined with ",", an empty value or an
	// absent field removes the header.
	Expr string `json:"expr"`
}

type header struct {
	name string
	expr *callbacks.Expr
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.authgate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision looks up the realm and compiles the header expressions.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("authgate")
	if err != nil {
		return fmt.Errorf("loading the authgate app: %v", err)
	}
	rl, err := appIface.(*App).realm(h.Realm)
	if err != nil {
		return err
	}
	return h.compile(rl)
}

// compile prepares the handler for rl: the require and header programs.
func (h *Handler) compile(rl *realm) error {
	h.realm = rl
	if h.logger == nil {
		h.logger = rl.logger
	}
	for i, c := range h.Require {
		chk, err := callbacks.CompileCheck(c, fmt.Sprintf("require #%d", i+1))
		if err != nil {
			return err
		}
		h.require = append(h.require, chk)
	}
	for _, hc := range h.Headers {
		if hc.Name == "" || strings.ContainsAny(hc.Name, " :\t\r\n") {
			return fmt.Errorf("header %q: invalid header name", hc.Name)
		}
		e, err := callbacks.CompileExpr(hc.Expr)
		if err != nil {
			return fmt.Errorf("header %s: %v", hc.Name, err)
		}
		h.headers = append(h.headers, header{name: http.CanonicalHeaderKey(hc.Name), expr: e})
		h.strip = append(h.strip, strings.ReplaceAll(strings.ToLower(hc.Name), "_", "-"))
	}
	if h.Assertion != "" {
		if strings.ContainsAny(h.Assertion, " :\t\r\n") {
			return fmt.Errorf("assertion header %q: invalid header name", h.Assertion)
		}
		h.Assertion = http.CanonicalHeaderKey(h.Assertion)
		h.strip = append(h.strip, strings.ReplaceAll(strings.ToLower(h.Assertion), "_", "-"))
	}
	h.tokenOnly = !rl.cb.HasSessionRules() || rl.cb.SessionDependsOnTokenOnly()
	for _, c := range h.require {
		h.tokenOnly = h.tokenOnly && !c.UsesRequest()
	}
	for _, hd := range h.headers {
		h.tokenOnly = h.tokenOnly && !hd.expr.UsesRequest()
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if s := h.UnauthenticatedStatus; s != 0 && (s < 400 || s > 499) {
		return fmt.Errorf("unauthenticated status %d: want a 4xx status", s)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rl := h.realm
	if sub, ok := rl.endpoint(r.URL.Path); ok {
		return rl.serveEndpoint(w, r, sub)
	}

	h.stripIdentityHeaders(r)
	st, err := rl.readSession(w, r)
	if err != nil {
		return rl.unavailable(w, r, err)
	}
	if st == nil || st.entry.failedRefresh {
		return h.unauthenticated(w, r)
	}
	rl.stripAuthCookies(r)

	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl != nil {
		repl.Set("http.auth.user.id", st.token["sub"])
		repl.Set("http.auth.user.email", st.token["email"])
		repl.Set("http.auth.user.name", st.token["name"])
		repl.Map(st.placeholder(r))
	}
	v := h.view(st, r)
	if !v.allowed {
		return h.forbidden(w, r)
	}
	for _, hv := range v.headers {
		r.Header[hv.name] = hv.value
	}
	if h.Assertion != "" {
		a, err := rl.assertion(st, r)
		if err != nil {
			h.logger.Error("signing the upstream assertion; refusing the request", zap.Error(err))
			return h.forbidden(w, r)
		}
		r.Header[h.Assertion] = a
	}
	return next.ServeHTTP(w, r)
}

// view returns what this handler derives from the request's session: whether it
// may pass and the upstream headers. When that depends on the token only, it is
// computed once per token and kept with the cached token.
func (h *Handler) view(st *sessionState, r *http.Request) *view {
	if !h.tokenOnly || st.entry == nil {
		return h.computeView(st, r)
	}
	if v, ok := st.entry.views.Load(h); ok {
		return v.(*view)
	}
	v := h.computeView(st, r)
	st.entry.views.Store(h, v)
	return v
}

var defaultHeaderNames = [3]string{"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Name"}

func (h *Handler) computeView(st *sessionState, r *http.Request) *view {
	v := &view{allowed: true}
	if len(h.headers) == 0 {
		for i, name := range defaultHeaderNames {
			if val := st.entryDefault(i); val != nil {
				v.headers = append(v.headers, headerValue{name: name, value: val})
			}
		}
		if len(h.require) == 0 {
			return v
		}
	}
	sess, err := st.session(r)
	if err != nil {
		h.logger.Error("session callback failed; refusing the request", zap.Error(err))
		return &view{}
	}
	req := map[string]any{}
	if !h.tokenOnly {
		req = requestVars(r)
	}
	vars := map[string]any{"session": sess, "token": st.token, "request": req}
	for _, chk := range h.require {
		ok, err := chk.Holds(vars)
		if err != nil {
			h.logger.Error("require failed; refusing the request", zap.Error(err))
		}
		if !ok {
			return &view{}
		}
	}
	for _, hd := range h.headers {
		val, err := hd.expr.String(vars)
		if err != nil && err != callbacks.ErrAbsent {
			h.logger.Error("header expression failed; refusing the request", zap.String("header", hd.name), zap.Error(err))
			return &view{}
		}
		if val = headerSafe(val); val != "" {
			v.headers = append(v.headers, headerValue{name: hd.name, value: []string{val}})
		}
	}
	return v
}

// unavailable answers a request whose session could not be read because the
// store is down: 503 with a page for browsers, JSON for others.
func (rl *realm) unavailable(w http.ResponseWriter, r *http.Request, err error) error {
	rl.logger.Error("the session store is unavailable", zap.Error(err))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "5")
	if isNavigation(r) {
		rl.renderPage(w, http.StatusServiceUnavailable, pageData{
			Title:   "Temporarily unavailable",
			Message: "Your session cannot be checked right now. Try again in a few seconds.",
		})
		return nil
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "SessionUnavailable"})
	return nil
}

// forbidden answers a signed-in request this route does not allow: an HTML page
// for browsers, JSON for others.
func (h *Handler) forbidden(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if isNavigation(r) {
		h.realm.renderPage(w, http.StatusForbidden, pageData{
			Title:   "Access denied",
			Message: "You are signed in, but this page is not available to your account.",
			Link:    h.realm.basePath + "/signout", LinkText: "Sign in as someone else",
		})
		return nil
	}
	writeJSON(w, http.StatusForbidden, map[string]string{"error": "AccessDenied"})
	return nil
}

// headerSafe replaces control characters, which no header value may carry, with
// spaces: identity values come from identity providers and users.
func headerSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 && r != '\t' || r == 0x7f {
					return ' '
				}
				return r
			}, s)
		}
	}
	return s
}

// unauthenticated answers a request that has no valid session.
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if h.UnauthenticatedStatus == 0 && isNavigation(r) {
		target := h.realm.base(r).String() + r.URL.RequestURI()
		http.Redirect(w, r, h.realm.basePath+"/signin?callbackUrl="+url.QueryEscape(target), http.StatusFound)
		return nil
	}
	status := h.UnauthenticatedStatus
	if status == 0 {
		status = http.StatusUnauthorized
	}
	writeJSON(w, status, map[string]string{"error": "SessionRequired"})
	return nil
}

// isNavigation reports whether r looks like a browser loading a page, which is
// worth a redirect to the sign-in page; scripts and API clients get a status.
func isNavigation(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		strings.Contains(r.Header.Get("Accept"), "text/html") &&
		r.Header.Get("X-Requested-With") == ""
}

// stripIdentityHeaders deletes every client-sent header the upstream could
// mistake for identity: any X-Auth-Request-* and any configured header, in any
// case and with '_' for '-' (some servers map both to the same variable).
func (h *Handler) stripIdentityHeaders(r *http.Request) {
	for k := range r.Header {
		if len(k) >= len(identityPrefix) && headerNameEqual(k[:len(identityPrefix)], identityPrefix) {
			delete(r.Header, k)
			continue
		}
		for _, name := range h.strip {
			if headerNameEqual(k, name) {
				delete(r.Header, k)
				break
			}
		}
	}
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

// requestVars is the `request` variable of rules.
// Cookies and credentials are left out: rules have no use for them, and webhooks
// receive these variables.
func requestVars(r *http.Request) map[string]any {
	headers := make(map[string]any, len(r.Header))
	for k, v := range r.Header {
		switch k = strings.ToLower(k); k {
		case "cookie", "authorization", "proxy-authorization":
			continue
		}
		headers[k] = strings.Join(v, ",")
	}
	query := map[string]any{}
	for k, v := range r.URL.Query() {
		query[k] = strings.Join(v, ",")
	}
	remote, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return map[string]any{
		"method":    r.Method,
		"host":      r.Host,
		"path":      r.URL.Path,
		"query":     query,
		"headers":   headers,
		"remote_ip": remote,
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sessionState is the session of one request.
type sessionState struct {
	rl      *realm
	entry   *tokenEntry // nil for a token not in the cache
	token   map[string]any
	expires time.Time
	key     string // the cache key: the cookie value (jwt) or the session's hash (database)

	// the session callback's result, computed at most once per request
	sess     map[string]any
	sessErr  error
	sessDone bool
}

// entryDefault is the i-th default header value (sub, email, name), or nil.
func (s *sessionState) entryDefault(i int) []string {
	if s.entry != nil {
		return s.entry.defaults[i]
	}
	if v, ok := s.token[[3]string{"sub", "email", "name"}[i]].(string); ok && v != "" {
		return []string{headerSafe(v)}
	}
	return nil
}

func (s *sessionState) session(r *http.Request) (map[string]any, error) {
	if s.sessDone {
		return s.sess, s.sessErr
	}
	cb := s.rl.cb
	compute := func(req map[string]any) (map[string]any, error) {
		in := callbacks.SessionInput{Token: s.token, Expires: s.expires, Request: req}
		if s.entry != nil {
			in.User = s.entry.user
		}
		return cb.Session(r.Context(), in)
	}
	switch {
	case !cb.HasSessionRules() || cb.SessionDependsOnTokenOnly():
		if s.entry != nil {
			e := s.entry
			e.sessOnce.Do(func() { e.sess, e.sessErr = compute(nil) })
			s.sess, s.sessErr = e.sess, e.sessErr
		} else {
			s.sess, s.sessErr = compute(nil)
		}
	default:
		s.sess, s.sessErr = compute(requestVars(r))
	}
	s.sessDone = true
	return s.sess, s.sessErr
}

// placeholder serves {http.auth.session.<path>}: a value of the session, computed
// once per request and only if a placeholder asks for it.
func (s *sessionState) placeholder(r *http.Request) caddy.ReplacerFunc {
	return func(key string) (any, bool) {
		path, ok := strings.CutPrefix(key, "http.auth.session.")
		if !ok {
			return nil, false
		}
		sess, _ := s.session(r)
		var cur any = sess
		for _, k := range strings.Split(path, ".") {
			m, ok := cur.(map[string]any)
			if !ok {
				return "", true
			}
			cur = m[k]
		}
		if cur == nil {
			return "", true
		}
		if v, err := callbacks.HeaderValue(cur); err == nil {
			return v, true
		}
		return "", true
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
