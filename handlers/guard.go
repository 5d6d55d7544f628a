package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/session"
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

	// AllowAmbiguousPaths lets through request paths that Caddy's matchers and
	// common upstreams read differently (a `;` parameter, an encoded slash or
	// backslash, a backslash, a NUL, double percent-encoding), which are
	// otherwise answered 400: with it, `path /admin/*` may not see a request
	// that the upstream serves as /admin/….
	AllowAmbiguousPaths bool `json:"allow_ambiguous_paths,omitempty"`

	// Passive handlers guard nothing: they strip client-sent identity headers
	// and refuse ambiguous paths on the routes a guard's matcher leaves public.
	// The Caddyfile adds one for every `authgate <matcher>`.
	Passive bool `json:"passive,omitempty"`

	realm *realm
	// tokenOnly: require and headers read no `request`, so their results are
	// computed once per token.
	tokenOnly bool
	// defaultView: no require and no header lines, so the view is the default
	// headers', kept in each entry.
	defaultView bool
	require     []*callbacks.Check
	headers     []header
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
	// Source is where the line was written ("Caddyfile:12"), for warnings.
	Source string `json:"source,omitempty"`
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
		callbacks.LogUnknownKeys(rl.logger, rl.cb.UnknownKeysIn(chk))
		h.require = append(h.require, chk)
	}
	for _, hc := range h.Headers {
		if err := callbacks.CheckHeaderName(hc.Name); err != nil {
			return err
		}
		e, err := callbacks.CompileExpr(hc.Expr)
		if err != nil {
			return fmt.Errorf("header %s: %v", hc.Name, err)
		}
		if !h.Passive {
			callbacks.LogUnknownKeys(rl.logger, rl.cb.UnknownKeysIn(e), zap.String("header", hc.Name), zap.String("source", hc.Source))
		}
		h.headers = append(h.headers, header{name: http.CanonicalHeaderKey(hc.Name), expr: e})
		h.strip = append(h.strip, stripName(hc.Name))
	}
	if h.Assertion != "" {
		if err := callbacks.CheckHeaderName(h.Assertion); err != nil {
			return fmt.Errorf("assertion %v", err)
		}
		h.Assertion = http.CanonicalHeaderKey(h.Assertion)
		h.strip = append(h.strip, stripName(h.Assertion))
	}
	if h.Passive {
		return nil
	}
	h.tokenOnly = !rl.cb.HasSessionRules() || rl.cb.SessionDependsOnTokenOnly()
	for _, c := range h.require {
		h.tokenOnly = h.tokenOnly && !c.UsesRequest()
	}
	for _, hd := range h.headers {
		h.tokenOnly = h.tokenOnly && !hd.expr.UsesRequest()
	}
	h.defaultView = len(h.require) == 0 && len(h.headers) == 0
	return nil
}

// stripName is how a header name is compared when stripping client headers.
func stripName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// errNotStarted answers requests that arrive before the app opened its store.
var errNotStarted = errors.New("the authgate app has not opened its store yet")

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if s := h.UnauthenticatedStatus; s != 0 {
		if err := CheckUnauthenticatedStatus(s); err != nil {
			return fmt.Errorf("unauthenticated status %d: %v", s, err)
		}
	}
	return nil
}

// CheckUnauthenticatedStatus checks the status of `unauthenticated status <code>`.
func CheckUnauthenticatedStatus(code int) error {
	if code < 400 || code > 499 {
		return errors.New("want a 4xx status such as 401")
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rl := h.realm
	if !h.AllowAmbiguousPaths {
		if reason := ambiguousPath(r); reason != "" {
			return h.refuseAmbiguous(w, r, reason)
		}
	}
	rs := stateOf(r)
	h.stripIdentityHeaders(r, rs)
	if h.Passive {
		return next.ServeHTTP(w, r)
	}
	if !rl.started.Load() {
		rl.metrics.decide(decisionUnavailable)
		return unavailable(w, r, rl.pages, rl.logger, errNotStarted)
	}
	if sub, ok := rl.endpoint(r.URL.Path); ok {
		return rl.serveEndpoint(w, r, sub, h)
	}

	st, err := rs.session(w, r, rl)
	if err != nil {
		rl.metrics.decide(decisionUnavailable)
		return unavailable(w, r, rl.pages, rl.logger, err)
	}
	if st == nil && rs.bearer {
		return bearerRefused(w)
	}
	if st == nil || st.entry.failedRefresh {
		return h.unauthenticated(w, r)
	}
	if rs.realm != rl || !rs.cookiesStripped {
		stripAuthCookies(r, rl.sessions.isAuthCookie)
		rs.cookiesStripped = rs.realm == rl
	}

	if repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); repl != nil {
		repl.Map(st.placeholder(r))
	}
	v := h.view(st, r)
	if !v.allowed {
		rl.requireRefused(r, v.refusedBy, st.claims())
		return h.forbidden(w, r)
	}
	for _, hv := range v.headers {
		rs.setHeader(r, hv.name, hv.value)
	}
	if h.Assertion != "" {
		a, err := rl.assertion(st, r)
		if err != nil {
			h.logger.Error("signing the upstream assertion; refusing the request", zap.Error(err))
			return h.forbidden(w, r)
		}
		rs.setHeader(r, h.Assertion, a)
	}
	rl.metrics.decide(decisionAllowed)
	return next.ServeHTTP(w, r)
}

// view returns what this handler derives from the request's session: whether it
// may pass and the upstream headers. When that depends on the token only, it is
// computed once per token and kept with the cached token.
func (h *Handler) view(st *sessionState, r *http.Request) *view {
	if h.defaultView && st.entry != nil {
		return &st.entry.defaultView
	}
	if !h.tokenOnly || st.entry == nil {
		return h.computeView(st, r)
	}
	more := st.entry.extra()
	if v, ok := more.views.Load(h); ok {
		return v.(*view)
	}
	v := h.computeView(st, r)
	if _, loaded := more.views.LoadOrStore(h, v); !loaded {
		st.entry.grow(viewSize(v))
	}
	st.entry.settle()
	return v
}

var (
	defaultHeaderNames  = [3]string{"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Name"}
	defaultHeaderClaims = [3]string{"sub", "email", "name"}
)

func (h *Handler) computeView(st *sessionState, r *http.Request) *view {
	v := &view{allowed: true}
	if len(h.headers) == 0 {
		v.headers = st.defaultHeaders()
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
	vars := map[string]any{"session": sess, "token": st.claims(), "request": req}
	if ok, rule := requireHolds(h.require, vars, h.logger); !ok {
		return &view{refusedBy: rule}
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

// requireHolds reports whether every check holds for vars, and else the
// source of the one that does not; a check that fails to evaluate does not
// hold, and is logged.
func requireHolds(checks []*callbacks.Check, vars map[string]any, logger *zap.Logger) (bool, string) {
	for _, chk := range checks {
		ok, err := chk.Holds(vars)
		if err != nil {
			logger.Error("require failed; refusing the request", zap.Error(err))
		}
		if !ok {
			return false, chk.Source()
		}
	}
	return true, ""
}

// requireRefused logs, at info, a request that the require line at rule
// refused (DESIGN.md "Rules": every refusal by a rule): the rule's file:line,
// the realm (the logger's), the provider, the user's id and email and the
// client IP. An empty rule is a failure, logged where it happened.
func (rl *realm) requireRefused(r *http.Request, rule string, token map[string]any) {
	if rule == "" {
		return
	}
	rl.logger.Info("request refused by a rule", append(refusalFields(rule, token["sub"], token["email"]),
		zap.Any("provider", token["provider"]), zap.String("client_ip", clientIP(r)), zap.String("path", r.URL.Path))...)
}

// refusalFields are what the log of a refusal by a rule says of the rule and
// the user: the rule's file:line, the user's id and email.
func refusalFields(rule string, userID, email any) []zap.Field {
	return []zap.Field{zap.String("rule", rule), zap.Any("user_id", userID), zap.Any("email", email)}
}

// forbidden answers a signed-in request this route does not allow: an HTML page
// for browsers, JSON for others.
func (h *Handler) forbidden(w http.ResponseWriter, r *http.Request) error {
	h.realm.metrics.decide(decisionForbidden)
	w.Header().Set("Cache-Control", "no-store")
	if isNavigation(r) {
		h.realm.pages.message(w, http.StatusForbidden, pageData{
			Title:   "Access denied",
			Message: "You are signed in, but this page is not available to your account.",
			Link:    h.realm.basePath + "/signout", LinkText: "Sign in as someone else",
		})
		return nil
	}
	writeError(w, http.StatusForbidden, errAccessDenied)
	return nil
}

// unauthenticated answers a request that has no valid session.
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request) error {
	h.realm.metrics.decide(decisionUnauthenticated)
	w.Header().Set("Cache-Control", "no-store")
	if h.UnauthenticatedStatus == 0 && isNavigation(r) {
		target := h.realm.origin.base(r).String() + r.URL.RequestURI()
		http.Redirect(w, r, h.realm.basePath+"/signin?callbackUrl="+url.QueryEscape(target), http.StatusFound)
		return nil
	}
	status := h.UnauthenticatedStatus
	if status == 0 {
		status = http.StatusUnauthorized
	}
	writeError(w, status, errSessionRequired)
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

// stripAuthCookies removes authgate's own cookies from the request, so the
// upstream never sees the session token. It edits the Cookie header's text
// rather than re-serializing parsed cookies, so that the application's cookies
// arrive as the browser sent them, even those net/http would unquote or reject.
func stripAuthCookies(r *http.Request, isAuthCookie func(name string) bool) {
	lines := r.Header["Cookie"]
	found := false
	for _, line := range lines {
		for rest := line; rest != "" && !found; {
			var name string
			name, _, rest = session.NextCookie(rest)
			found = isAuthCookie(name)
		}
	}
	if !found {
		return
	}
	var b strings.Builder
	for _, line := range lines {
		for rest := line; rest != ""; {
			var pair, name string
			pair, rest, _ = strings.Cut(rest, ";")
			pair = strings.TrimSpace(pair)
			if name, _, _ = session.NextCookie(pair); pair == "" || isAuthCookie(name) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(pair)
		}
	}
	if b.Len() == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = []string{b.String()}
}

// placeholder serves {http.auth.user.id}, {http.auth.user.email} and
// {http.auth.user.name} (the claims sub, email and name, as Caddy's own
// authentication sets the first) and {http.auth.session.<path>}: a value of the
// session, computed once per request and only if a placeholder asks for it.
func (st *sessionState) placeholder(r *http.Request) caddy.ReplacerFunc {
	return func(key string) (any, bool) {
		path, ok := strings.CutPrefix(key, "http.auth.")
		if !ok {
			return nil, false
		}
		if claim, ok := strings.CutPrefix(path, "user."); ok {
			return st.user(claim)
		}
		if path, ok = strings.CutPrefix(path, "session."); !ok {
			return nil, false
		}
		sess, _ := st.session(r)
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

// user is the value of {http.auth.user.<name>}.
func (st *sessionState) user(name string) (any, bool) {
	i := -1
	switch name {
	case "id":
		i = 0
	case "email":
		i = 1
	case "name":
		i = 2
	}
	if i < 0 {
		return nil, false
	}
	if st.entry != nil {
		return st.entry.placeholder(i), true
	}
	return st.token[defaultHeaderClaims[i]], true
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
